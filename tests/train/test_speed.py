"""speed.py: interleaved timings of physically pruned subnetworks on a tiny model (shapes and sanity, not
speed: timings are never asserted against a threshold)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config
from transformers import BertForSequenceClassification

from bertlottery.errors import BertLotteryError
from bertlottery.glue.splits import TokenizedSplit
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.flops import model_cost
from bertlottery.modeling.pruning import prune_heads_and_mlps
from bertlottery.modeling.structure import prunable_parameters
from bertlottery.settings import SpeedSettings, TrainingSettings
from bertlottery.train.speed import (
    interleaved_times,
    machine_facts,
    main_speed,
    measure,
    spread,
)


def split(n, seed=0):
    """A made-up tokenized split with lengths 1..29."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    ids = torch.randint(1000, 30000, (int(offsets[-1]),), generator=g).int()
    types = torch.zeros(int(offsets[-1]), dtype=torch.uint8)
    return TokenizedSplit(ids, types, offsets, torch.randint(0, 2, (n,), generator=g))

SPEED = SpeedSettings.from_dict({"repeats": 3, "warmup": 1, "train_steps": 2, "max_dev_examples": 20}, where="test")
TRAINING = TrainingSettings.from_dict({"batch_size": 8, "eval_batch_size": 8}, where="test")


def tiny():
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_labels=2)).eval()


def masks(model):
    g = torch.Generator().manual_seed(0)
    weights = WeightMask({n: torch.rand(p.shape, generator=g) < 0.3 for n, p in prunable_parameters(model).items()})
    return [("s", "good", HeadMlpMask(torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0]]), torch.tensor([1, 0]))),
            ("s", "bad", HeadMlpMask(torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]), torch.tensor([1, 1]))),
            ("m", "good", weights)]


def test_measure_returns_positive_finite_times_of_the_right_shape():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = measure(model, masks(model), split(40), split(30, seed=1), TRAINING, SPEED, seed=1,
                     device=torch.device("cpu"), progress=False)
    rows = result["rows"]
    assert [(r["family"], r["kind"], r["structured"]) for r in rows] == [
        ("full", "none", True), ("s", "good", True), ("s", "bad", True), ("m", "good", False)]
    assert result["dev_examples"] == 20 and result["train_batches_timed"] == 2
    for row in rows[:3]:
        for key in ("infer_s", "train_step_s"):
            assert len(row[key]) == SPEED.repeats
            assert all(math.isfinite(t) and t > 0 for t in row[key])
        for key in ("infer_speedup", "train_speedup", "infer_tokens_per_s"):
            stats = row[key]
            assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
            assert stats["min"] > 0
    assert rows[0]["infer_speedup"]["median"] == 1.0 and rows[0]["flops_fraction"] == 1.0
    assert rows[1]["params"] < rows[2]["params"] < rows[0]["params"] == rows[0]["params_total"]
    assert rows[1]["flops_per_token"] < rows[2]["flops_per_token"] < rows[0]["flops_per_token"]
    assert rows[1]["heads_kept"] == 2 and rows[1]["mlps_kept"] == 1
    # the m row: dense (no timing), its sparsity reported
    m = rows[3]
    assert "infer_speedup" not in m and m["flops_per_token"] == rows[0]["flops_per_token"]
    assert 0.6 < m["sparsity_prunable"] < 0.8 and 0 < m["sparsity_all"] < m["sparsity_prunable"]
    # the caller's model is untouched (every subnetwork is pruned from a copy)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    lengths = split(40).lengths[:20].numpy()
    assert rows[2]["flops_per_token"] == pytest.approx(model_cost(_pruned(model, masks(model)[1][2])).flops_per_token(lengths))


def _pruned(model, mask):
    return prune_heads_and_mlps(copy.deepcopy(model), mask)


def test_interleaved_order_and_warmup_dropped():
    calls = []
    runs = [lambda i=i: calls.append(i) for i in range(3)]
    times = interleaved_times(runs, repeats=2, warmup=1, device=torch.device("cpu"))
    assert calls == [0, 1, 2] * 3 and times.shape == (2, 3) and np.all(times >= 0)


def test_spread_and_machine_facts():
    assert spread([1.0, 3.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "q1": 1.5, "q3": 2.5}
    facts = machine_facts(torch.device("cpu"))
    assert facts["torch"] == torch.__version__ and facts["torch_threads"] >= 1 and facts["cpu"]


def test_cli_count_mismatch_is_an_error():
    with pytest.raises(BertLotteryError, match="one --family and --kind per --mask"):
        main_speed(["--task", "RTE", "--seed", "1", "--model-dir", "x", "--data-dir", "x", "--training", "{}",
                    "--mask", "a.safetensors", "--output", "out.json"])
