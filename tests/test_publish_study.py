"""scripts/publish_study.py: the reader's files of a results tree land in the study folder, nothing else."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("publish_study", REPO / "scripts" / "publish_study.py")
publish_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(publish_study)


def test_publish_copies_claims_statistics_tables_and_pngs(tmp_path):
    results = tmp_path / "results"
    for rel in ("analysis/claims.md", "analysis/metrics.csv", "analysis/stability.csv", "analysis/metrics.parquet",
                "tables/table2.md", "tables/table2.tex", "figures/fig2_s.png", "figures/fig2_s.pdf",
                "finetune/SST-2/seed42/model/model.safetensors"):
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_text(rel)
    study = tmp_path / "study"
    (study / "README.md").parent.mkdir()
    (study / "README.md").write_text("by hand")
    (study / "figures").mkdir()
    (study / "figures" / "old_figure.png").write_text("from an earlier publish")
    written = publish_study.publish(results, study)
    got = sorted(str(p.relative_to(study)) for p in written)
    assert got == ["claims.md", "figures/fig2_s.png", "metrics.csv", "stability.csv", "tables/table2.md"]
    assert (study / "tables" / "table2.md").read_text() == "tables/table2.md"
    assert (study / "README.md").read_text() == "by hand"
    assert not (study / "figures" / "old_figure.png").exists()  # the figures are the rebuild's, none older


def test_a_study_without_bundles_is_refused(tmp_path):
    (tmp_path / "bundles").mkdir()
    with pytest.raises(SystemExit):
        publish_study.main([str(tmp_path)])


def test_bundles_are_folders_with_a_manifest_or_archives(tmp_path):
    for name in ("CoLA", "RTE", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "CoLA" / "manifest.json").write_text("{}")
    (tmp_path / "SST-2.tar.gz").write_bytes(b"")
    (tmp_path / "README.md").write_text("")
    assert publish_study.find_bundles(tmp_path) == [tmp_path / "CoLA", tmp_path / "SST-2.tar.gz"]


def test_the_claims_table_and_scores_are_rewritten_between_their_markers_only(tmp_path):
    results = tmp_path / "results"
    (results / "analysis").mkdir(parents=True)
    (results / "analysis" / "claims.json").write_text(json.dumps({"notes": [], "claims": [
        {"section": "4.2", "claim": "good beats random", "verdict": "holds", "reason": "3/3 tasks | ok",
         "paper_verdict": "holds"}]}))
    rows = [("full", "none", "full", 0.83, 0.01, 0), ("m", "good", "pruned", 0.77, 0.014, 0),
            ("m", "bad", "retrained", 0.685, 0.061, 2)]
    (results / "analysis" / "summary.csv").write_text(
        "task,family,kind,evaluated,n_seeds,reported_metric,reported_mean,reported_std,n_nonconverged\n"
        + "".join(f"SST-2,{f},{k},{e},3,accuracy,{m},{sd},{nc}\n" for f, k, e, m, sd, nc in rows))
    readme = tmp_path / "README.md"
    readme.write_text("# Study\nby hand\n<!-- claims:start -->\nold table\n<!-- claims:end -->\nbetween\n"
                      "<!-- scores:start -->\nold scores\n<!-- scores:end -->\nafter\n")
    assert publish_study.update_readme(readme, results) == ["claims table", "scores"]
    text = readme.read_text()
    assert text.startswith("# Study\nby hand\n<!-- claims:start -->\n| § | claim |")
    assert "| 4.2 | good beats random | **✔ holds** | 3/3 tasks / ok | ✔ holds |" in text
    assert "old table" not in text and "old scores" not in text and text.endswith("<!-- scores:end -->\nafter\n")
    # ours ± std with the paper's bert-base mean (Appendix C) in brackets; †2: two retrainings did not converge
    assert "**SST-2** (accuracy; 3 seeds; majority class 0.509; full model 0.830 ± 0.010 (0.926))" in text
    assert "| m-pruning | 0.770 ± 0.014 (0.846) | – | – | – | – | 0.685 ± 0.061 (0.816) †2 |" in text
    assert "\n<!-- claims:end -->\nbetween\n<!-- scores:start -->\n**SST-2**" in text
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers")
    assert publish_study.update_readme(plain, results) == [] and plain.read_text() == "no markers"
