"""speed_report.py: the subnetwork_speed table and figure from speed JSONs and the metrics table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bertlottery.analysis.speed_report import main_speed_report, speed_rows
from bertlottery.errors import BertLotteryError

MACHINE = {"cpu": "Test CPU", "cpu_count": 2, "torch_threads": 1, "torch_interop_threads": 1, "torch": "2.x",
           "device": "cpu", "device_type": "cpu", "platform": "linux"}


def timed(family, kind, params, flops, speedup):
    stats = {"median": speedup, "min": speedup * 0.9, "max": speedup * 1.1, "q1": speedup * 0.95, "q3": speedup * 1.05}
    return {"family": family, "kind": kind, "structured": True, "params": params, "params_total": 100,
            "flops_per_token": flops, "flops_fraction": flops / 1000, "heads_kept": 4, "mlps_kept": 2,
            "infer_s": [1.0, 1.1], "train_step_s": [0.1, 0.1], "infer_speedup": stats, "train_speedup": stats,
            "infer_tokens_per_s": stats}


def speed_json(path, task, seed):
    rows = [timed("full", "none", 100, 1000.0, 1.0), timed("s", "good", 60, 500.0, 1.8),
            timed("s", "bad", 70, 600.0, 1.5),
            {"family": "m", "kind": "good", "structured": False, "params": 100, "params_total": 100,
             "flops_per_token": 1000.0, "flops_fraction": 1.0, "sparsity_prunable": 0.6, "sparsity_all": 0.45,
             "heads_kept": None, "mlps_kept": None}]
    path.write_text(json.dumps({"task": task, "seed": seed, "machine": MACHINE,
                                "speed": {"repeats": 2, "warmup": 1, "train_steps": 2}, "rows": rows}))
    return str(path)


def metrics_table(path):
    rows = []
    for task in ("SST-2", "MRPC"):
        for seed in (1, 2):
            rows.append({"task": task, "seed": seed, "family": "full", "kind": "none", "evaluated": "full",
                         "reported": 0.9, "reported_metric": "acc"})
            for family, kind in (("s", "good"), ("s", "bad"), ("m", "good")):
                for evaluated, score in (("pruned", 0.5), ("retrained", 0.8)):
                    rows.append({"task": task, "seed": seed, "family": family, "kind": kind,
                                 "evaluated": evaluated, "reported": score, "reported_metric": "acc"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_table_and_figure_from_speed_jsons(tmp_path):
    speeds = [speed_json(tmp_path / f"{t}-{s}.json", t, s) for t in ("MRPC", "SST-2") for s in (1, 2)]
    main_speed_report(["--speed", *speeds, "--metrics", metrics_table(tmp_path / "metrics.csv"),
                       "--table", str(tmp_path / "t" / "subnetwork_speed"),
                       "--figure", str(tmp_path / "f" / "subnetwork_speed")])
    long = pd.read_csv(tmp_path / "t" / "subnetwork_speed.csv")
    assert len(long) == 16
    assert list(long["task"].unique()) == ["SST-2", "MRPC"]  # the paper's task order
    assert list(long["family"][:6]) == ["full", "full", "m", "m", "s", "s"]  # aggregate's family order
    good = long[(long["family"] == "s") & (long["kind"] == "good")]
    assert (good["score_retrained"] == 0.8).all() and (good["infer_speedup_median"] == 1.8).all()
    full = long[long["family"] == "full"]
    assert (full["score_retrained"] == 0.9).all()
    md = (tmp_path / "t" / "subnetwork_speed.md").read_text()
    assert "1.80× [1.62–1.98]" in md and "n/a (dense)" in md and "60.0 %" in md
    assert "Test CPU" in md and "1 torch thread(s)" in md
    for ext in ("tex", "html"):
        assert (tmp_path / "t" / f"subnetwork_speed.{ext}").stat().st_size > 0
    for ext in ("png", "pdf"):
        assert (tmp_path / "f" / f"subnetwork_speed.{ext}").stat().st_size > 0


def test_bad_speed_json_names_the_file(tmp_path):
    path = tmp_path / "speed.json"
    path.write_text(json.dumps({"task": "RTE", "seed": 1}))
    with pytest.raises(BertLotteryError, match="speed.json: speed JSON lacks 'rows'"):
        speed_rows([path])


def test_the_table_notes_say_when_the_gpu_was_shared():
    from bertlottery.analysis.speed_report import machine_notes

    alone = {"task": "RTE", "seed": 1, "device": "NVIDIA H100", "cpu": "x", "torch_threads": 1, "torch": "2",
             "cuda": "12.8", "jobs_per_gpu": 1}
    shared = alone | {"seed": 2, "jobs_per_gpu": 3}
    notes = machine_notes([alone, shared])
    assert len(notes) == 2 and "shared" not in notes[0]
    assert "the GPU was shared by up to 3 jobs (BERTLOTTERY_JOBS_PER_GPU=3)" in notes[1]
    assert "shared" not in " ".join(machine_notes([{k: v for k, v in alone.items() if k != "jobs_per_gpu"}]))
