"""tables.py and table_format.py: Table 2 truncation, ours / paper / diff rows, and the files of every table."""

from __future__ import annotations

import pandas as pd
import pytest
from test_aggregate import make_results_tree
from test_stats import make_mask_tree

from bertlottery.analysis import table_format as TF
from bertlottery.analysis import tables as T
from bertlottery.analysis.aggregate import (
    collect,
    load_paper,
    main_aggregate,
    summarize,
)
from bertlottery.analysis.stats import main_stats


@pytest.mark.parametrize("value, expected", [(0.40599, 0.40), (0.02475, 0.02), (0.58, 0.58), (0.999, 0.99),
                                             (-0.118, -0.11), (0.6, 0.6), (0.85826, 0.85)])
def test_truncate2(value, expected):
    assert TF.truncate2(value) == expected
    assert TF.fmt(value, truncate=True) == f"{expected:.2f}"


def test_formatting_helpers():
    assert TF.fmt_ms(0.5114, 0.0071) == "0.511 ± 0.007"
    assert TF.fmt_ms(0.5, float("nan")) == "0.500"
    assert TF.fmt_ms(None, None) == TF.MISSING
    assert TF.fmt_diff(0.52, 0.5) == "+0.020"
    assert TF.tex_escape("a_b 50% ± x") == r"a\_b 50\% $\pm$ x"


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    return summarize(collect(make_results_tree(root, tasks=("CoLA", "RTE"), seeds=(1, 2, 3), noise=0.01)))


def _cell(display, row, source, task):
    return display[(display["row"] == row) & (display["source"] == source)][task].item()


def test_table2_truncates_ours_and_shows_paper_and_diff(summary):
    paper = load_paper()
    long, display, caption, notes = T.table2(summary, paper, ["CoLA", "RTE"], truncate=True)
    s_bad = summary[(summary.task == "CoLA") & (summary.family == "s") & (summary.kind == "bad")
                    & (summary.evaluated == "retrained")]["reported_mean"].item()
    label = paper["table2"]["rows"]["s_bad"]["label"]
    assert _cell(display, label, "ours", "CoLA") == f"{TF.truncate2(s_bad):.2f} ‡"  # s-bad beats m-bad: best
    assert _cell(display, label, "paper", "CoLA") == "0.40"
    diff = TF.truncate2(s_bad) - 0.40
    assert _cell(display, label, "diff", "CoLA") == f"{diff:+.2f}"
    m_label = paper["table2"]["rows"]["m_bad"]["label"]
    assert _cell(display, m_label, "paper", "CoLA") == "0.02"  # the typo 0.24 corrected
    assert any("0.24" in n and "typo" in n for n in notes)
    ri = paper["table2"]["rows"]["random_init"]["label"]
    assert _cell(display, ri, "ours", "RTE") == TF.MISSING
    cbow = paper["table2"]["rows"]["cbow"]["label"]  # CoLA: CBOW 0.46 is the best baseline
    assert _cell(display, cbow, "GLUE baseline (Wang et al., 2018)", "CoLA") == "0.46 †"
    assert "marked ‡" in caption and "marked †" in caption
    _, _, _, without_cola = T.table2(summary, paper, ["RTE"], truncate=True)
    assert not any("typo" in n for n in without_cola)  # no note about a task the run lacks
    assert any("not in this run" in n and "SST-2" in n for n in notes)
    assert "Bad" in caption
    rounded = T.table2(summary, paper, ["CoLA", "RTE"], truncate=False)[1]
    assert _cell(rounded, label, "ours", "CoLA") == f"{s_bad:.3f} ‡"
    record = [r for r in long if r["row"] == label and r["task"] == "CoLA"][0]
    assert record["ours_mean"] == pytest.approx(s_bad) and record["paper_mean"] == 0.40


def test_family_table_has_every_run_type(summary):
    long, display, _, notes = T.family_table(summary, load_paper(), ["CoLA", "RTE"], "s")
    rows = set(display["row"])
    assert {"full model", "majority baseline", "good, pruned", "random, retrained", "bad, retrained"} <= rows
    row = summary[(summary.task == "RTE") & (summary.family == "s") & (summary.kind == "random")
                  & (summary.evaluated == "retrained")].iloc[0]
    assert _cell(display, "random, retrained", "ours", "RTE") == f"{row.reported_mean:.3f} ± {row.reported_std:.3f}"
    assert _cell(display, "random, retrained", "paper", "RTE") == "0.565 ± 0.054"  # the true random runs
    assert any("plotting bug" in n for n in notes)
    assert {"Avg"} <= set(display.columns)


def test_tables_cli_writes_all_formats(tmp_path):
    metrics = make_results_tree(tmp_path, tasks=("MRPC", "RTE"), seeds=(1337, 42))
    make_mask_tree(tmp_path)
    a, out = tmp_path / "analysis", tmp_path / "tables"
    main_aggregate(["--inputs", *map(str, metrics), "--out-dir", str(a)])
    main_stats(["masks", "--s-masks", *map(str, sorted(tmp_path.glob("masks/s/*/*/good.safetensors"))),
                "--out-dir", str(a)])
    main_stats(["tests", "--metrics", str(a / "metrics.parquet"), "--bootstrap", "200",
                "--output", str(a / "paired_tests.csv")])
    T.main_tables(["--summary", str(a / "summary.parquet"), "--survivors", str(a / "survivors.parquet"),
                   "--stability", str(a / "stability.parquet"), "--overlaps", str(a / "overlaps.parquet"),
                   "--tests", str(a / "paired_tests.parquet"), "--families", "s", "m", "super",
                   "--out-dir", str(out)])
    names = ["table2", "sizes", "appendix_c_s", "appendix_c_m", "appendix_e_super", "s_counts", "stability",
             "overlaps_heads", "overlaps_mlps", "overlaps_super_heads", "overlaps_super_mlps", "paired_tests"]
    for name in names:
        for ext in ("csv", "md", "tex", "html"):
            assert (out / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    assert r"\begin{tabular}" in (out / "table2.tex").read_text()
    assert "$\\pm$" in (out / "appendix_c_s.tex").read_text()
    sizes = pd.read_csv(out / "sizes.csv")
    assert {"ours_mean", "paper_mean", "diff"} <= set(sizes.columns)
    stab = (out / "stability.md").read_text()
    assert "κ heads: paper" in stab and "0.215" in stab  # MRPC's published kappa
    counts = (out / "s_counts.md").read_text()
    assert "88 81 95 81 102" in counts  # MRPC's published head counts
    with pytest.raises(Exception, match="unknown family"):
        T.main_tables(["--summary", str(a / "summary.parquet"), "--families", "nope", "--out-dir", str(out)])


def test_the_sizes_note_says_whether_the_paper_correction_fits_the_model():
    minilm = pd.DataFrame({"params_total_mean": [22_713_986.0, None]})
    assert "this run's model has 22.7 M parameters" in T._model_size_note(minilm)
    bert = pd.DataFrame({"params_total_mean": [float(T.BERT_BASE_PARAMS)]})
    assert "the model of this run" in T._model_size_note(bert)
    assert "not comparable" in T._model_size_note(pd.DataFrame({"task": ["RTE"]}))


def test_scores_by_task_put_the_papers_mean_beside_every_cell_it_has(tmp_path):
    summary = summarize(collect(make_results_tree(tmp_path, tasks=("RTE", "CoLA"), seeds=(1, 2, 3), extras=True)))
    fisher = summary[(summary["family"] == "s") & (summary["kind"] == "good")].assign(family="f")  # beyond the paper
    text = T.scores_by_task_markdown(pd.concat([summary, fisher]), load_paper())
    assert text.index("**CoLA** (mcc; 3 seeds; majority class 0.000;") < text.index("**RTE** (accuracy;")  # paper order
    cola = text.split("**RTE**")[0].splitlines()
    for label in ("m-pruning", "s-pruning", "super-survivors"):
        row = next(line for line in cola if line.startswith(f"| {label} |"))
        assert row.count("(") == 6 and "–" not in row, row  # the paper reports all six cells of these families
    f_row = next(line for line in cola if line.startswith("| f-pruning |"))
    assert "(" not in f_row and f_row.split(" | ")[2:4] == ["–", "–"], f_row  # no paper numbers; random, bad not run
    assert any(line.startswith("s-pruning bad, 6 epochs (App. D), retrained: ") for line in cola)
