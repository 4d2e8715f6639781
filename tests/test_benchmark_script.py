"""benchmarks/finetune_speed.py runs end to end (--quick, a tiny BERT, a few real RTE rows) and writes its JSON.

A functional test only: the speed numbers themselves are measured by the script, not asserted here."""

import importlib.util
import json
import re

import numpy as np
import pytest
from conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("finetune_speed", REPO / "benchmarks" / "finetune_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_half_heads_mask_is_seeded_and_keeps_half():
    from bertlottery.masks.types import HeadMlpMask

    bench = load_script()

    class Config:  # the mask only needs the model's shape
        num_hidden_layers, num_attention_heads = 3, 4

    class Model:
        config = Config()

    a, b = bench.half_heads_mask(Model(), 7), bench.half_heads_mask(Model(), 7)
    assert isinstance(a, HeadMlpMask) and a == b
    assert a.heads_kept == 6 and a.mlps_kept == 3
    assert a != bench.half_heads_mask(Model(), 8)


def test_matmul_rate_counts_the_three_matmuls_of_each_linear_layer():
    import torch
    from conftest import tiny_bert_config
    from transformers import BertForSequenceClassification

    bench = load_script()
    shapes = bench.linear_shapes(BertForSequenceClassification(tiny_bert_config()))
    assert shapes == [(32, 32)] * 4 + [(32, 64), (64, 32)] + [(32, 32)] * 4 + [(32, 64), (64, 32)]
    assert 0 < bench.matmul_tflops(shapes, 64, torch.device("cpu"), passes=2) < 1000


def test_cost_model_sums_the_glue_tasks():
    bench = load_script()
    rows = sum(n for n, _, _ in bench.GLUE_TRAIN.values())
    assert rows == 949_733  # GLUE train sets: one 1-epoch sweep over the nine tasks
    hours = bench.study_hours(3600.0, False, 128)  # 3600 padded tokens/s, every example padded to 128
    assert hours["core_450"] == pytest.approx(150 * rows * 128 / 3600 / 3600)
    assert hours["paper_complete_540"] == pytest.approx(195 * rows * 128 / 3600 / 3600)
    dynamic = bench.study_hours(3600.0, True, 128)
    assert dynamic["core_450"] < hours["core_450"]  # every task's mean padded length is below 128


@pytest.mark.parametrize("training, key", [('{"epochs": 1}', "epochs"), ('{"batch_size": 8}', "batch_size"),
                                           ('{"precision": "fp16"}', "precision"), ('{"epoch": 1}', "epoch")])
def test_training_overrides_that_would_unmatch_the_paths_or_are_invalid_stop_early(tmp_path, training, key):
    from bertlottery.errors import BertLotteryError

    bench = load_script()
    with pytest.raises(BertLotteryError, match=key):
        bench.main(["--quick", "--model", str(tmp_path / "none"), "--glue-dir", str(tmp_path), "--task", "RTE",
                    "--training", training])


@pytest.mark.slow
def test_quick_run_writes_json_and_prints_the_speedup_last(tmp_path, tiny_model_dir, fixture_glue_dir, capsys,
                                                           monkeypatch):
    import torch

    bench = load_script()
    monkeypatch.setattr(bench, "pick_device", lambda: torch.device("cpu"))  # the CPU assertions below
    out, table = tmp_path / "bench.json", tmp_path / "table.md"
    bench.main(["--quick", "--model", str(tiny_model_dir), "--glue-dir", str(fixture_glue_dir), "--task", "RTE",
                "--train-examples", "40", "--dev-examples", "16", "--output", str(out),
                "--markdown", str(table), "--work-dir", str(tmp_path / "work")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert re.fullmatch(r"speedup_vs_trainer=\d+\.\d\d fraction_of_matmul_peak=\d+\.\d\d", last)
    speedup, fraction = (float(field.split("=")[1]) for field in last.split())
    assert speedup == round(summary["speedup_vs_trainer"], 2)
    assert fraction == round(summary["fraction_of_matmul_peak"], 2) and summary["fraction_of_matmul_peak"] > 0
    b = summary["bertlottery"]
    assert b["fraction_of_matmul_peak"] == pytest.approx(b["achieved_tflops"] / b["matmul_tflops"])

    a, b, c = summary["trainer"], summary["bertlottery"], summary["subnetwork"]
    assert a["train_examples"] == b["train_examples"] == c["train_examples"] == 40  # 1 epoch of 40 rows
    assert a["real_tokens"] == b["real_tokens"] == c["real_tokens"]  # the same inputs on both paths
    assert a["padded_tokens"] == 40 * 128 and b["padded_tokens"] <= a["padded_tokens"]
    assert summary["speedup_vs_trainer"] == pytest.approx(b["examples_per_s"] / a["examples_per_s"])
    assert c["mask_size"]["heads_kept"] == c["mask_size"]["heads_total"] // 2
    assert c["encoder_params"] < b["encoder_params"] and summary["subnetwork_flop_ratio"] > 1
    for run in (a, b, c):
        assert run["examples_per_s"] > 0 and run["peak_memory_bytes"] > 0 and run["mfu"] is None  # CPU
        assert 0 <= run["dev_reported"] <= 1 and run["dev_metrics"]["accuracy"] == run["dev_reported"]
    assert report["device"] == "cpu" and report["setup"]["dev_examples"] == 16
    assert np.isfinite(report["cost_model"]["device_hours"]["core_450"])
    assert "(a) HF Trainer" in table.read_text() and "(c)" in table.read_text()
