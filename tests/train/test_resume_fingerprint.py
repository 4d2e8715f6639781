"""A fine-tune's resume state belongs to one job: another job's (or a damaged) state is discarded."""

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
from bertlottery.settings import TrainingSettings, training_defaults
from bertlottery.train.loop import Checkpointer, build_optimizer, job_fingerprint, train

CPU = torch.device("cpu")


def _split(n=48):
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 12, size=n)
    labels = rng.integers(0, 2, size=n)
    ids = np.concatenate([rng.integers(2000, 2100, size=k) + 1000 * y for k, y in zip(lengths, labels)])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return TokenizedSplit(torch.tensor(ids, dtype=torch.int32), torch.zeros(len(ids), dtype=torch.uint8),
                          torch.tensor(offsets), torch.tensor(labels))


def _model():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_labels=2))


def _settings(lr):
    return TrainingSettings.from_dict({"learning_rate": lr, "batch_size": 8, "epochs": 2, "log_every": 2,
                                       "checkpoint_every_steps": 0}, where="test")


def _plant_state(out_dir, settings, split, seed=1):
    """The resume state a killed run of (settings, seed) would leave after 6 steps (an untrained model)."""
    from transformers import get_linear_schedule_with_warmup

    model = _model()
    optimizer = build_optimizer(model, settings, CPU)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 12)
    fingerprint = job_fingerprint(model, split, settings, seed)
    Checkpointer(out_dir / ".resume", 4, fingerprint).save(model, optimizer, scheduler, 6, [])


def _train(out_dir, settings, split, capsys):
    model = _model()
    train(model, split, settings, 1, out_dir=out_dir, device=CPU, progress=False)
    return model.state_dict(), capsys.readouterr().out


def test_state_of_another_learning_rate_is_discarded(tmp_path, capsys):
    split, old, new = _split(), _settings(1e-3), _settings(3e-3)
    fresh, _ = _train(tmp_path / "fresh", new, split, capsys)

    _plant_state(tmp_path / "same", new, split)
    resumed, out = _train(tmp_path / "same", new, split, capsys)
    assert "resuming from step 6" in out  # the same job's state is used ...
    assert not torch.equal(resumed["classifier.weight"], fresh["classifier.weight"])  # ... and matters

    _plant_state(tmp_path / "other", old, split)
    restarted, out = _train(tmp_path / "other", new, split, capsys)
    assert "discarding resume state" in out and "resuming" not in out
    for key, tensor in fresh.items():
        assert torch.equal(restarted[key], tensor), key
    assert not (tmp_path / "other" / ".resume").exists()


def test_fingerprint_changes_with_every_input():
    split, settings = _split(), _settings(1e-3)
    base = job_fingerprint(_model(), split, settings, 1, mask="abc", variant="good")
    assert base == job_fingerprint(_model(), split, settings, 1, mask="abc", variant="good")
    model = _model()
    with torch.no_grad():
        model.classifier.weight[0, 0] += 1
    assert len({base, job_fingerprint(_model(), split, settings, 2, mask="abc", variant="good"),
                job_fingerprint(model, split, settings, 1, mask="abc", variant="good"),
                job_fingerprint(_model(), _split(40), settings, 1, mask="abc", variant="good"),
                job_fingerprint(_model(), split, _settings(2e-3), 1, mask="abc", variant="good"),
                job_fingerprint(_model(), split, settings, 1, mask="abd", variant="good"),
                job_fingerprint(_model(), split, settings, 1, mask="abc", variant="bad")}) == 7


def test_damaged_state_is_discarded(tmp_path, capsys):
    (tmp_path / ".resume").mkdir()
    (tmp_path / ".resume" / "state.pt").write_bytes(b"PK\x03\x04 truncated")
    _train(tmp_path, _settings(1e-3), _split(), capsys)
    assert not (tmp_path / ".resume").exists()


def _finetune_cmd(model_dir, data_dir, out_dir, training):
    return [sys.executable, "-m", "bertlottery", "finetune", "--task", "RTE", "--seed", "42",
            "--model", str(model_dir), "--data-dir", str(data_dir), "--training", json.dumps(training),
            "--out-dir", str(out_dir), "--eval-output", str(out_dir / "metrics.json")]


@pytest.mark.slow
def test_killed_finetune_rerun_with_new_learning_rate_starts_over(tmp_path, tiny_model_dir, rte_small):
    """The issue's silent wrong result: kill after a checkpoint, change the learning rate, rerun."""
    old = training_defaults() | {"learning_rate": 5e-4, "batch_size": 8, "epochs": 3,
                                 "checkpoint_every_steps": 3, "log_every": 1}
    new = old | {"learning_rate": 1e-3}
    env = os.environ | {"BERTLOTTERY_THREADS": "1"}
    fresh = tmp_path / "fresh"
    subprocess.run(_finetune_cmd(tiny_model_dir, rte_small, fresh, new), check=True, env=env, capture_output=True)

    run = tmp_path / "run"
    proc = subprocess.Popen(_finetune_cmd(tiny_model_dir, rte_small, run, old), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / ".resume" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert state.exists(), "no checkpoint was written before the run ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = subprocess.run(_finetune_cmd(tiny_model_dir, rte_small, run, new), check=True, env=env,
                         capture_output=True, text=True)
    assert "discarding resume state" in out.stdout and "resuming" not in out.stdout
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (fresh, run))
    assert a["metrics"] == b["metrics"] and a["config_hash"] == b["config_hash"]
    assert (fresh / "train_log.csv").read_text().splitlines()[1:] != []
    rows = [[r.split(",")[i] for i in (0, 2, 3)] for d in (fresh, run)
            for r in [(d / "train_log.csv").read_text().splitlines()[-1]]]
    assert rows[0] == rows[1]  # step, loss, learning rate of the last row


def test_resume_restores_only_the_current_devices_cuda_rng(monkeypatch):
    """A state saved with 4 visible GPUs (older versions saved every device's RNG) resumes on a job that
    sees one: only that device's state is set (before: set_rng_state_all raised IndexError). Fake CUDA
    calls stand in for a GPU."""
    from bertlottery.train import loop

    calls = []
    monkeypatch.setattr(loop.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loop.torch.cuda, "get_rng_state", lambda: torch.full((4,), 7, dtype=torch.uint8))
    monkeypatch.setattr(loop.torch.cuda, "set_rng_state", lambda state: calls.append(state))
    monkeypatch.setattr(loop.torch.cuda, "set_rng_state_all", lambda states: pytest.fail("sets every device"))
    saved = loop.cuda_rng_states()
    assert len(saved) == 1 and saved[0].tolist() == [7] * 4
    four_gpus = [torch.full((4,), i, dtype=torch.uint8) for i in range(4)]
    loop.restore_cuda_rng(four_gpus)
    assert len(calls) == 1 and calls[0].tolist() == [0] * 4
    loop.restore_cuda_rng([])  # saved on the CPU: nothing to restore
    monkeypatch.setattr(loop.torch.cuda, "is_available", lambda: False)
    loop.restore_cuda_rng(four_gpus)  # resumed on the CPU: nothing to restore
    assert len(calls) == 1
