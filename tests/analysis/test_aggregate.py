"""aggregate.py: metrics JSONs -> tidy table -> mean and Bessel std over seeds.

The synthetic results tree built here (make_results_tree) is reused by the stats, tables and figures tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertlottery.analysis.aggregate import (
    collect,
    load_paper,
    main_aggregate,
    paper_performance,
    read_table,
    summarize,
)
from bertlottery.errors import BertLotteryError
from bertlottery.glue.tasks import get_task

FAMILIES = ("m", "s", "super")
KINDS = ("good", "random", "bad")


def metrics_record(task, seed, family, kind, evaluated, value, fraction=None):
    spec = get_task(task)
    metrics = {spec.reported_metric: value, "loss": 0.5}
    size = None
    if fraction is not None:
        size = {"heads_kept": 100, "heads_total": 144, "mlps_kept": 9, "mlps_total": 12,
                "params_kept": int((fraction + 0.21) * 1e6), "params_total": 1_000_000,
                "prunable_kept": int(fraction * 8e5), "prunable_total": 800_000, "paper_fraction": fraction}
    return {"task": task, "seed": seed, "family": family, "kind": kind, "evaluated": evaluated, "metrics": metrics,
            "reported_metric": spec.reported_metric, "reported": value, "stop_metric": spec.stop_metric,
            "stop": value, "n_examples": 100, "mask_size": size, "wall_time_s": 1.0, "device": "cpu",
            "versions": {}, "config_hash": "x"}


def make_results_tree(root: Path, tasks=("MRPC", "RTE"), seeds=(1337, 42, 86), noise=0.01, rng_seed=0,
                      extras=False) -> list[Path]:
    """Metrics JSONs at the workflow's paths, values = the paper's means + Gaussian noise."""
    paper = load_paper()
    rng = np.random.default_rng(rng_seed)
    paths = []

    def write(path, record):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        paths.append(path)

    for task in tasks:
        for seed in seeds:
            full = paper_performance(paper, "full", "none", "full", task)[0] + rng.normal(0, noise)
            write(root / f"finetune/{task}/seed{seed}/metrics.json",
                  metrics_record(task, seed, "full", None, "full", full))
            for family in FAMILIES:
                size = paper["sizes_percent"][family][task][0] / 100
                kinds = KINDS + (("bad_6ep", "randinit_random") if extras and family == "s" else ())
                for kind in kinds:
                    for evaluated in ("pruned", "retrained"):
                        base_kind = "bad" if kind == "bad_6ep" else kind
                        pv = paper_performance(paper, family, base_kind, evaluated, task)
                        if pv is None:
                            continue
                        value = pv[0] + rng.normal(0, noise) - (0.02 if kind == "bad_6ep" else 0)
                        where = "eval" if evaluated == "pruned" else "retrain"
                        name = "pruned.json" if evaluated == "pruned" else "metrics.json"
                        write(root / f"{where}/{family}/{kind}/{task}/seed{seed}/{name}",
                              metrics_record(task, seed, family, kind, evaluated, value, size))
    return paths


def test_collect_and_summarize_known_values(tmp_path):
    for seed, value in ((1, 0.5), (2, 0.7), (3, 0.9)):
        path = tmp_path / f"finetune/RTE/seed{seed}/metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(metrics_record("RTE", seed, "full", None, "full", value)))
    table = collect(sorted(tmp_path.rglob("*.json")))
    assert list(table["seed"]) == [1, 2, 3]
    assert set(table["kind"]) == {"none"}
    summary = summarize(table)
    row = summary.iloc[0]
    assert row["n_seeds"] == 3
    assert row["reported_mean"] == pytest.approx(0.7)
    # Bessel-corrected: sqrt(((-.2)^2 + 0 + .2^2) / 2) = 0.2 (the MLE std would be 0.163)
    assert row["reported_std"] == pytest.approx(0.2)
    assert row["metric_accuracy_std"] == pytest.approx(0.2)


def test_single_seed_std_is_nan(tmp_path):
    path = tmp_path / "finetune/RTE/seed1/metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metrics_record("RTE", 1, "full", None, "full", 0.6)))
    summary = summarize(collect([path]))
    assert np.isnan(summary.iloc[0]["reported_std"])


def test_tree_roundtrip_through_cli(tmp_path):
    paths = make_results_tree(tmp_path / "results")
    main_aggregate(["--inputs", *map(str, paths), "--out-dir", str(tmp_path / "analysis")])
    table = read_table(tmp_path / "analysis/metrics.parquet")
    assert len(table) == len(paths)
    csv = read_table(tmp_path / "analysis/summary.csv")
    parquet = read_table(tmp_path / "analysis/summary.parquet")
    assert len(csv) == len(parquet) == 2 * (1 + 3 * 3 * 2)  # 2 tasks x (full + 3 families x 3 kinds x 2)
    assert (parquet["n_seeds"] == 3).all()
    assert list(parquet["task"].unique()) == ["MRPC", "RTE"]  # the paper's column order
    good = parquet[(parquet.task == "RTE") & (parquet.family == "s") & (parquet.kind == "good")
                   & (parquet.evaluated == "pruned")].iloc[0]
    assert good["paper_fraction_mean"] == pytest.approx(0.54)
    by_hand = table[(table.task == "RTE") & (table.family == "s") & (table.kind == "good")
                    & (table.evaluated == "pruned")]["reported"]
    assert good["reported_std"] == pytest.approx(np.std(by_hand, ddof=1))
    pd.testing.assert_frame_equal(csv[["task", "family", "kind"]], parquet[["task", "family", "kind"]])


def test_duplicate_runs_are_rejected(tmp_path):
    record = metrics_record("RTE", 1, "full", None, "full", 0.6)
    paths = []
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(record))
        paths.append(tmp_path / name)
    with pytest.raises(BertLotteryError, match="same run"):
        collect(paths)


def test_missing_key_names_the_file(tmp_path):
    record = metrics_record("RTE", 1, "full", None, "full", 0.6)
    del record["reported"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(record))
    with pytest.raises(BertLotteryError, match=r"broken\.json.*reported"):
        collect([path])


def test_paper_results_are_consistent():
    """The transcribed numbers hang together: Table 2 bad rows = truncated repo means, averages, counts."""
    paper = load_paper()
    for key in ("s_bad", "m_bad"):
        row = paper["table2"]["rows"][key]
        for task, repo in row["repo"].items():
            assert row["values"][task] == pytest.approx(np.trunc(repo * 100) / 100), (key, task)
        assert np.mean(list(row["repo"].values())) == pytest.approx(row["average"], abs=0.01)
    for task, counts in paper["s_counts"].items():
        assert paper["overlaps"]["super_heads"][task][task] == counts["super_heads"]
        assert paper["overlaps"]["super_mlps"][task][task] == counts["super_mlps"]
        assert paper["overlaps"]["heads"][task][task][0] == pytest.approx(np.mean(counts["heads"]), abs=0.05)
    avg = paper["performance_average"]
    for family in ("s", "m", "super"):
        for kind in ("good", "random", "bad"):
            for evaluated in ("pruned", "retrained"):
                values = [v[0] for v in paper["performance"][family][kind][evaluated].values()]
                assert np.mean(values) == pytest.approx(avg[family][kind][evaluated], abs=0.0015)


def test_records_with_and_without_kept_predictions_give_the_same_rows(tmp_path):
    """Per-example predictions (newer records) are read by the bootstrap, not the tidy table; older records
    without them load as before."""
    old = metrics_record("RTE", 1, "full", None, "full", 0.6)
    new = old | {"seed": 2, "predictions": {"dev": {"predicted": "0110", "labels": "0100"}}}
    paths = [tmp_path / "old.json", tmp_path / "new.json"]
    for path, record in zip(paths, (old, new)):
        path.write_text(json.dumps(record))
    table = collect(paths)
    assert list(table["seed"]) == [1, 2] and "predictions" not in table.columns
    assert table.drop(columns=["seed", "source"]).iloc[0].equals(table.drop(columns=["seed", "source"]).iloc[1])


def test_retrainings_far_above_their_full_models_training_loss_are_flagged(tmp_path):
    """Rule: final training loss more than twice the full model's (same task and seed)."""
    full = metrics_record("STS-B", 1, "full", None, "full", 0.83)
    (tmp_path / "finetune").mkdir()
    (tmp_path / "finetune" / "train_summary.json").write_text(json.dumps({"final_loss": 0.7}))
    records = {"finetune/metrics.json": full}
    for kind, loss in (("good", 0.8), ("bad", 1.76), ("random", None)):
        record = metrics_record("STS-B", 1, "s", kind, "retrained", 0.5)
        if loss is not None:
            record["train"] = {"final_loss": loss}
        records[f"{kind}.json"] = record
    for name, record in records.items():
        (tmp_path / name).write_text(json.dumps(record))
    table = collect([tmp_path / name for name in records]).set_index("kind")
    assert table.loc["none", "train_final_loss"] == 0.7 and not table.loc["none", "nonconverged"]
    assert not table.loc["good", "nonconverged"] and table.loc["bad", "nonconverged"]
    assert table.loc["bad", "train_loss_ratio"] == pytest.approx(1.76 / 0.7)
    assert not table.loc["random", "nonconverged"]  # no loss recorded: not flagged
    assert summarize(table.reset_index()).set_index("kind").loc["bad", "n_nonconverged"] == 1
