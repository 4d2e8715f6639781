"""The job server (bertlottery/jobserver.py): a job run as a fork of the server writes what it writes in a
process of its own, byte for byte, with the same exit status and messages; a job whose client goes away
is killed; a client without a server runs its command itself; the server stops with its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertlottery import jobserver
from bertlottery.settings import training_defaults

pytestmark = pytest.mark.slow  # each starts Python processes that import torch (seconds each)


@pytest.fixture
def server(tmp_path):
    """A job server on a socket under tmp_path; yields (socket path, log path)."""
    log = tmp_path / "server.log"
    process, path = jobserver.start(log)
    assert jobserver.wait_until_listening(path), log.read_text()
    yield path, log
    jobserver.stop(process, path)
    assert not Path(path).exists()


def bertlottery(*args: str, server: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = os.environ | {jobserver.ENV: server or "0", "BERTLOTTERY_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bertlottery", *args], env=env, capture_output=True, text=True,
                          **kwargs)


def finetune_args(model_dir: Path, data_dir: Path, out: Path, epochs: int = 1) -> list[str]:
    training = training_defaults() | {"batch_size": 16, "epochs": epochs, "checkpoint_every_steps": 0}
    return ["finetune", "--task", "RTE", "--seed", "42", "--model", str(model_dir), "--data-dir", str(data_dir),
            "--training", json.dumps(training), "--out-dir", str(out), "--eval-output", str(out / "metrics.json")]


def without_timings(value):
    """A record without its measured times and rates (train_time_s, examples_per_s, ...)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "time" not in k and not k.endswith("per_s")}
    return [without_timings(v) for v in value] if isinstance(value, list) else value


def test_a_fine_tune_through_the_server_equals_one_in_its_own_process(tmp_path, tiny_model_dir, rte_small, server):
    path, log = server
    alone, forked = tmp_path / "alone", tmp_path / "forked"
    assert bertlottery(*finetune_args(tiny_model_dir, rte_small, alone)).returncode == 0
    run = bertlottery(*finetune_args(tiny_model_dir, rte_small, forked), server=path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert '"finetune"' in log.read_text() and "exit 0, cpu" in log.read_text()  # it did go through the server
    assert "no job server" not in run.stderr
    weights = sorted(p.relative_to(alone) for p in alone.rglob("*.safetensors"))
    assert weights and all((alone / w).read_bytes() == (forked / w).read_bytes() for w in weights)
    records = [without_timings(json.loads((out / "metrics.json").read_text())) for out in (alone, forked)]
    as_text = [json.dumps(r, sort_keys=True).replace(str(out), "OUT") for r, out in zip(records, (alone, forked))]
    assert as_text[0] == as_text[1]


def test_errors_exit_statuses_and_messages_are_the_commands_own(tmp_path, server):
    path, _ = server
    for args in (["finetune", "--no-such-option"], ["evaluate-full", "--task", "RTE", "--seed", "1", "--data-dir",
                                                     str(tmp_path / "missing"), "--training", "{}", "--output",
                                                     str(tmp_path / "m.json"), "--model-dir", str(tmp_path)]):
        alone, forked = bertlottery(*args), bertlottery(*args, server=path)
        assert alone.returncode == forked.returncode != 0
        *forked_lines, usage = forked.stderr.strip().splitlines()  # a fork ends its log with its own usage
        assert usage.startswith("bertlottery: ran as a fork of the job server: ") and "CPU-s, peak RSS" in usage
        assert alone.stderr.strip().splitlines()[-1] == forked_lines[-1]


def test_a_job_whose_client_goes_away_is_killed(tmp_path, tiny_model_dir, rte_small, server):
    path, log = server
    env = os.environ | {jobserver.ENV: path, "BERTLOTTERY_THREADS": "1"}
    client = subprocess.Popen([sys.executable, "-m", "bertlottery",
                               *finetune_args(tiny_model_dir, rte_small, tmp_path / "long", epochs=500)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while '"finetune"' not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    job = int(log.read_text().split('"finetune"')[0].rsplit("job ", 1)[1].split(":")[0])
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 128 + signal.SIGTERM
    while "its client went away; killed" not in log.read_text() or f"job {job}: exit" not in log.read_text():
        assert time.monotonic() < deadline + 30, log.read_text()
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(job, 0)


def test_without_a_server_the_command_runs_in_its_own_process(tmp_path):
    run = bertlottery("evaluate-full", "--help", server=str(tmp_path / "nothing.sock"))
    assert run.returncode == 0 and "usage: bertlottery evaluate-full" in run.stdout
    assert f"no job server at {tmp_path / 'nothing.sock'}" in run.stderr


def test_the_server_stops_when_the_process_that_started_it_is_gone(tmp_path):
    starter = subprocess.run(
        [sys.executable, "-c", "import sys; from bertlottery import jobserver; "
         f"p, path = jobserver.start({str(tmp_path / 'log')!r}); print(p.pid, path)"],
        capture_output=True, text=True, check=True)
    pid, path = starter.stdout.split()
    deadline = time.monotonic() + 60
    while "stopped" not in (tmp_path / "log").read_text():
        assert time.monotonic() < deadline, (tmp_path / "log").read_text()
        time.sleep(0.1)
    assert not Path(path).exists()
