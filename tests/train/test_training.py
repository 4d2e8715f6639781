"""The fine-tuning loop: it learns, it is deterministic, and a killed run resumes to the same result."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config

from bertlottery.glue.splits import TokenizedSplit
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.pruning import prune_heads_and_mlps
from bertlottery.modeling.soft_masks import attach_soft_masks
from bertlottery.settings import TrainingSettings, training_defaults
from bertlottery.train.loop import Plan, epoch_order, train


def synthetic_split(n=64, seed=0):
    """Label 1 rows use one vocabulary range, label 0 rows another: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 16, size=n)
    labels = rng.integers(0, 2, size=n)
    rows = []
    for length, label in zip(lengths, labels):
        row = rng.integers(2000, 2100, size=length) + 1000 * label
        row[0] = 101
        rows.append(row)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return TokenizedSplit(
        torch.tensor(np.concatenate(rows), dtype=torch.int32),
        torch.zeros(int(offsets[-1]), dtype=torch.uint8),
        torch.tensor(offsets, dtype=torch.int64),
        torch.tensor(labels, dtype=torch.int64),
    )


def tiny_classifier(seed, **config):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_labels=2, **config))


def settings(**overrides) -> TrainingSettings:
    values = {"learning_rate": 1e-3, "batch_size": 8, "epochs": 6, "log_every": 4, "checkpoint_every_steps": 0}
    return TrainingSettings.from_dict(values | overrides, where="test")


def test_plan_counts_steps_like_the_original():
    plan = Plan.for_split(100, 32, 3)
    assert (plan.batches_per_epoch, plan.total_steps) == (4, 12)
    assert Plan.for_split(100, 32, 1.5).total_steps == 6


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(50, 7, 0, None, 8), epoch_order(50, 7, 0, None, 8)
    assert np.array_equal(a, b) and sorted(a) == list(range(50))
    assert not np.array_equal(a, epoch_order(50, 7, 1, None, 8))
    assert not np.array_equal(a, epoch_order(50, 8, 0, None, 8))


def test_length_grouping_keeps_every_example_once():
    lengths = np.random.default_rng(0).integers(1, 100, size=500)
    order = epoch_order(500, 1, 0, lengths, 8)
    assert sorted(order) == list(range(500))


def test_training_lowers_the_loss(tmp_path):
    model = tiny_classifier(0)
    summary = train(model, synthetic_split(), settings(learning_rate=3e-3, epochs=10), 1, out_dir=tmp_path,
                    device=torch.device("cpu"), progress=False)
    rows = (tmp_path / "train_log.csv").read_text().splitlines()
    losses = [float(r.split(",")[2]) for r in rows[1:]]
    assert summary["steps"] == 80
    assert losses[-1] < 0.5 * losses[0], losses


def test_same_seed_gives_identical_weights(tmp_path):
    states = []
    for run in range(2):
        model = tiny_classifier(0)
        train(model, synthetic_split(), settings(epochs=1), 5, out_dir=tmp_path / str(run),
              device=torch.device("cpu"), progress=False)
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    other = tiny_classifier(0)
    train(other, synthetic_split(), settings(epochs=1), 6, out_dir=tmp_path / "other",
          device=torch.device("cpu"), progress=False)
    assert not torch.equal(other.classifier.weight, states[0]["classifier.weight"])


def test_dynamic_padding_matches_fixed_padding(tmp_path):
    """Padding to the batch's longest gives the same model as padding to max_seq_length.

    Without dropout only: dropout draws depend on the tensor shape, so with dropout the two modes draw
    different (equally distributed) masks."""
    weights = []
    for dynamic in (True, False):
        model = tiny_classifier(0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        train(model, synthetic_split(), settings(epochs=1, dynamic_padding=dynamic, max_seq_length=32,
                                                 padding_free=False), 3,
              out_dir=tmp_path / str(dynamic), device=torch.device("cpu"), progress=False)
        weights.append(model.classifier.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)


def test_padding_free_fine_tune_gives_the_same_weights(tmp_path):
    """A few steps padding-free and padded (dropout 0, so the two are the same computation): same weights."""
    models = []
    for padding_free in (True, False):
        model = tiny_classifier(0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        train(model, synthetic_split(), settings(epochs=1, padding_free=padding_free), 3,
              out_dir=tmp_path / str(padding_free), device=torch.device("cpu"), progress=False)
        models.append(dict(model.named_parameters()))
    moved = models[0]["classifier.weight"] - tiny_classifier(0).classifier.weight
    assert moved.abs().max() > 1e-3  # it trained
    for name, param in models[0].items():
        torch.testing.assert_close(param, models[1][name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("padding_free", [True, False])
def test_retraining_the_pruned_subnetwork_equals_the_soft_masked_full_model(tmp_path, padding_free):
    """Retraining an s-mask trains the physically pruned model (fewer heads and MLPs, fewer FLOPs). The full
    model with the mask as soft multipliers (the removed units' outputs times 0) trains the same kept weights
    to the same losses and logits, to float rounding; it includes a layer left with no head. Dropout 0: with
    dropout the two draw their dropout masks for tensors of other shapes (equally distributed)."""
    mask = HeadMlpMask.full(3, 4)
    mask.heads[0, :3] = False
    mask.heads[1] = False
    mask.mlps[2] = False
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "num_hidden_layers": 3}
    physical, soft = tiny_classifier(0, **no_dropout), tiny_classifier(0, **no_dropout)
    prune_heads_and_mlps(physical, mask)
    attach_soft_masks(soft, mask)
    logs = []
    for name, model in (("physical", physical), ("soft", soft)):
        train(model, synthetic_split(), settings(epochs=2, padding_free=padding_free, log_every=1), 3,
              out_dir=tmp_path / name, device=torch.device("cpu"), progress=False)
        logs.append(np.loadtxt(tmp_path / name / "train_log.csv", delimiter=",", skiprows=1, usecols=(0, 2, 3)))
    np.testing.assert_allclose(logs[0], logs[1], rtol=1e-5, atol=1e-6)
    assert logs[0][-1, 1] < logs[0][0, 1]  # it trained
    batch = synthetic_split().collate(np.arange(64))
    physical.eval(), soft.eval()
    with torch.no_grad():
        torch.testing.assert_close(physical(**batch).logits, soft(**batch).logits, rtol=1e-4, atol=1e-5)


def test_padding_free_with_compile_is_a_clear_error(tmp_path):
    from bertlottery.errors import BertLotteryError

    with pytest.raises(BertLotteryError, match="padding_free"):
        train(tiny_classifier(0), synthetic_split(), settings(epochs=1, compile=True), 3,
              out_dir=tmp_path, device=torch.device("cpu"), progress=False)


def _finetune_cmd(model_dir, data_dir, out_dir, training):
    return [sys.executable, "-m", "bertlottery", "finetune", "--task", "RTE", "--seed", "42",
            "--model", str(model_dir), "--data-dir", str(data_dir), "--training", json.dumps(training),
            "--out-dir", str(out_dir), "--eval-output", str(out_dir / "metrics.json")]


@pytest.mark.slow
def test_killed_finetune_resumes_to_the_same_result(tmp_path, tiny_model_dir, rte_small):
    training = training_defaults() | {"learning_rate": 5e-4, "batch_size": 8, "epochs": 3,
                                      "checkpoint_every_steps": 3, "log_every": 1}
    env = os.environ | {"BERTLOTTERY_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_finetune_cmd(tiny_model_dir, rte_small, straight, training), check=True, env=env,
                   capture_output=True)

    resumed = tmp_path / "resumed"
    proc = subprocess.Popen(_finetune_cmd(tiny_model_dir, rte_small, resumed, training), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = resumed / ".resume" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert state.exists(), "no checkpoint was written before the run ended"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (resumed / "metrics.json").exists(), "the run finished before it could be killed"
    out = subprocess.run(_finetune_cmd(tiny_model_dir, rte_small, resumed, training), check=True, env=env,
                         capture_output=True, text=True)
    assert "resuming from step" in out.stdout
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((resumed / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert (straight / "train_log.csv").read_text() .splitlines()[-1].split(",")[2] == \
        (resumed / "train_log.csv").read_text().splitlines()[-1].split(",")[2]
    assert not (resumed / ".resume").exists()


@pytest.mark.slow
def test_finetune_cli_writes_model_and_metrics(tmp_path, tiny_model_dir, rte_small):
    training = training_defaults() | {"batch_size": 16, "epochs": 1}
    out = tmp_path / "ft"
    subprocess.run(_finetune_cmd(tiny_model_dir, rte_small, out, training), check=True, capture_output=True)
    record = json.loads((out / "metrics.json").read_text())
    assert record["task"] == "RTE" and record["reported_metric"] == "accuracy"
    assert record["n_examples"] == 48 and 0 <= record["reported"] <= 1
    assert {"versions", "config_hash", "device", "wall_time_s"} <= set(record)
    reloaded = load_classifier(out / "model", 2)
    assert reloaded.config.num_hidden_layers == 2


def test_deterministic_option_sets_the_gpu_switches_and_changes_no_cpu_result(tmp_path, monkeypatch):
    """training.deterministic: deterministic algorithms, cuDNN without autotuning, the cuBLAS workspace; on
    the CPU (deterministic anyway) the same weights as without. Its default is left out of config hashes,
    so results made before the option existed keep their hash."""
    from bertlottery.runtime import configure_torch
    from bertlottery.settings import config_hash

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    states = []
    try:
        for deterministic in (False, True):
            configure_torch(deterministic=deterministic)
            assert torch.are_deterministic_algorithms_enabled() is deterministic
            assert torch.backends.cudnn.deterministic is deterministic and not torch.backends.cudnn.benchmark
            model = tiny_classifier(0)
            train(model, synthetic_split(), settings(epochs=1, deterministic=deterministic), 5,
                  out_dir=tmp_path / str(deterministic), device=torch.device("cpu"), progress=False)
            states.append(model.state_dict())
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        configure_torch()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    without = {k: v for k, v in settings().to_dict().items() if k != "deterministic"}
    assert config_hash(settings()) == config_hash(without) != config_hash(settings(deterministic=True))
