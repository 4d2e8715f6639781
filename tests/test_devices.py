"""GPU slot assignment: real concurrent processes on fake device lists (BERTLOTTERY_GPUS)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertlottery import devices
from bertlottery.errors import BertLotteryError

# The job each wrapped process runs: record which device it saw and when it ran.
JOB = """
import json, os, sys, time
start = time.time()
time.sleep(float(sys.argv[2]))
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"dev": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time(), "pid": os.getpid()}) + "\\n")
"""


def _env(tmp_path: Path, gpus: str | None, per_gpu: str | None = None) -> dict[str, str]:
    skip = {devices.ENV_VISIBLE, devices.ENV_GPUS, devices.ENV_JOBS_PER_GPU}
    env = {k: v for k, v in os.environ.items() if k not in skip}
    if per_gpu is not None:
        env[devices.ENV_JOBS_PER_GPU] = per_gpu
    env[devices.ENV_LOCK_DIR] = str(tmp_path / "locks")
    if gpus is not None:
        env[devices.ENV_GPUS] = gpus
    return env


def _with_gpu(env: dict[str, str], *command: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bertlottery", "with-gpu", "--", *command],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _max_overlap(runs: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def _assert_distinct_when_overlapping(runs: list[dict], key: str) -> None:
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a[key] != b[key], (a, b)


def test_parse_device_list():
    assert devices.parse_device_list(" 0, 2,3 ", "X") == ["0", "2", "3"]
    assert devices.parse_device_list("", "X") == []
    assert devices.parse_device_list("GPU-8f3a-11", "X") == ["GPU-8f3a-11"]
    with pytest.raises(BertLotteryError, match="X='0,a'"):
        devices.parse_device_list("0,a", "X")
    with pytest.raises(BertLotteryError, match="twice"):
        devices.parse_device_list("1,1", "X")


def test_slot_devices_sources(tmp_path, monkeypatch):
    # A scheduler's (or the user's) CUDA_VISIBLE_DEVICES wins, even an empty one.
    assert devices.slot_devices({"CUDA_VISIBLE_DEVICES": "2", "BERTLOTTERY_GPUS": "0,1"}) is None
    assert devices.slot_devices({"CUDA_VISIBLE_DEVICES": ""}) is None
    assert devices.slot_devices({"BERTLOTTERY_GPUS": "0,1"}) == ["0", "1"]
    # Else nvidia-smi: a fake one that lists two GPUs, one split into MIG instances.
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-aa)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-bb)'\n"
        "echo 'GPU 1: NVIDIA H100 (UUID: GPU-cc)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert devices.slot_devices({}) == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi: no GPU
    assert devices.slot_devices({}) == []


def test_concurrent_jobs_get_distinct_slots(tmp_path):
    """4 jobs, 2 fake GPUs: at most 2 run at once, overlapping jobs never share a device."""
    record = tmp_path / "runs.jsonl"
    env = _env(tmp_path, "0,1")
    procs = [_with_gpu(env, sys.executable, "-c", JOB, str(record), "1.5") for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(runs) == 4
    assert {r["dev"] for r in runs} <= {"0", "1"}
    assert _max_overlap(runs) <= 2
    _assert_distinct_when_overlapping(runs, "dev")
    # The lock files carry the host name and the holder's pid (the exec'd job itself).
    assert sorted(p.name.split(".", 1)[1] for p in (tmp_path / "locks").iterdir()) == [
        "gpu0.slot0.lock", "gpu1.slot0.lock"]


def _run_jobs(env: dict[str, str], record: Path, n: int, seconds: str = "1.5") -> list[dict]:
    procs = [_with_gpu(env, sys.executable, "-c", JOB, str(record), seconds) for _ in range(n)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return [json.loads(line) for line in record.read_text().splitlines()]


def _max_overlap_per_device(runs: list[dict]) -> dict[str, int]:
    return {dev: _max_overlap([r for r in runs if r["dev"] == dev]) for dev in {r["dev"] for r in runs}}


def test_jobs_per_gpu_share_one_gpu_and_the_next_waits(tmp_path):
    """2 jobs per GPU, 1 fake GPU, 3 jobs: two run together on GPU 0, the third waits for a slot."""
    runs = _run_jobs(_env(tmp_path, "0", per_gpu="2"), tmp_path / "runs.jsonl", 3, seconds="2.5")
    assert [r["dev"] for r in runs] == ["0", "0", "0"]
    assert _max_overlap(runs) == 2  # two shared the GPU; the third ran only once one of them had ended
    names = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "locks").iterdir())
    assert names == ["gpu0.slot0.lock", "gpu0.slot1.lock"]


def test_jobs_per_gpu_fill_every_gpu(tmp_path):
    """2 jobs per GPU, 2 fake GPUs, 5 jobs: at most 4 at once, at most 2 on either GPU, both GPUs used."""
    runs = _run_jobs(_env(tmp_path, "0,1", per_gpu="2"), tmp_path / "runs.jsonl", 5)
    assert {r["dev"] for r in runs} == {"0", "1"}
    assert _max_overlap(runs) <= 4
    assert all(peak <= 2 for peak in _max_overlap_per_device(runs).values())


def test_slot_order_spreads_over_gpus_first(tmp_path):
    assert devices.slots(["0", "1"], 2) == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    held = [devices.take_slots(["0", "1"], 1, tmp_path, per_gpu=2) for _ in range(4)]
    assert [list(h) for h in held] == [["0"], ["1"], ["0"], ["1"]]  # two jobs never share while a GPU is idle
    with pytest.raises(BertLotteryError, match=r"\(2 per GPU\)"):  # the N+1-th job per GPU waits
        devices.take_slots(["0", "1"], 1, tmp_path, timeout_s=0.2, per_gpu=2)
    os.close(held[1]["1"])  # a job on GPU 1 ends: the next takes its slot
    again = devices.take_slots(["0", "1"], 1, tmp_path, timeout_s=1.0, per_gpu=2)
    assert list(again) == ["1"]
    # A 2-GPU job takes one slot on each of two distinct GPUs, not two slots of one.
    for h in [held[0], held[2], held[3], again]:
        for fd in h.values():
            os.close(fd)
    both = devices.take_slots(["0", "1"], 2, tmp_path, per_gpu=2)
    assert sorted(both) == ["0", "1"]
    for fd in both.values():
        os.close(fd)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_jobs_per_gpu_is_a_clear_error(tmp_path, value):
    with pytest.raises(BertLotteryError, match=f"BERTLOTTERY_JOBS_PER_GPU='{re.escape(value)}'"):
        devices.jobs_per_gpu({devices.ENV_JOBS_PER_GPU: value})
    proc = _with_gpu(_env(tmp_path, "0", per_gpu=value), "true")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "BERTLOTTERY_JOBS_PER_GPU" in err and "1 or more" in err


def test_jobs_per_gpu_default():
    assert devices.jobs_per_gpu({}) == 1
    assert devices.jobs_per_gpu({devices.ENV_JOBS_PER_GPU: ""}) == 1
    assert devices.jobs_per_gpu({devices.ENV_JOBS_PER_GPU: " 4 "}) == 4


def test_killed_holder_releases_its_slot(tmp_path):
    env = _env(tmp_path, "0")
    holder = _with_gpu(env, "sleep", "60")
    lock = tmp_path / "locks"
    deadline = time.monotonic() + 30
    while not any(p.read_text().strip() == str(holder.pid) for p in lock.glob("*.lock")):
        assert time.monotonic() < deadline, "holder never took the slot"
        time.sleep(0.05)
    # The only slot is busy: a second taker times out.
    with pytest.raises(BertLotteryError, match="no 1 free GPU slot"):
        devices.take_slots(["0"], 1, lock, timeout_s=1.0)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    held = devices.take_slots(["0"], 1, lock, timeout_s=10.0)
    assert list(held) == ["0"]
    for fd in held.values():
        os.close(fd)


def test_acquire_gpu_slot_in_process(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("BERTLOTTERY_GPUS", "3,5")
    with devices.acquire_gpu_slot(count=2, directory=tmp_path) as got:
        assert got == ["3", "5"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
        # All slots taken: another taker (all-or-nothing) gets none, not a partial set.
        with pytest.raises(BertLotteryError):
            devices.take_slots(["3", "5"], 1, tmp_path, timeout_s=0.2)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with devices.acquire_gpu_slot(count=1, directory=tmp_path) as got:  # released on exit
        assert got == ["3"]
    with pytest.raises(BertLotteryError, match="asked for 3 GPU slot"):
        devices.take_slots(["3", "5"], 3, tmp_path)
    monkeypatch.setenv("BERTLOTTERY_DEVICE", "cpu")
    with devices.acquire_gpu_slot(directory=tmp_path) as got:  # the CPU on purpose: nothing set
        assert got == [] and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_with_gpu_cpu_fallback_and_scheduler_value(tmp_path):
    show = [sys.executable, "-c", "import os, sys; print(os.environ.get('CUDA_VISIBLE_DEVICES')); sys.exit(3)"]
    cpu = _with_gpu(_env(tmp_path, None) | {"BERTLOTTERY_DEVICE": "cpu"}, *show)
    out, err = cpu.communicate(timeout=60)
    assert (cpu.returncode, out.strip()) == (3, "None")  # exit status passes through
    assert "running on CPU" in err
    slurm_env = _env(tmp_path, "0,1") | {"CUDA_VISIBLE_DEVICES": "2"}
    slurm = _with_gpu(slurm_env, *show)
    out, err = slurm.communicate(timeout=60)
    assert out.strip() == "2" and "left as is" in err
    assert not (tmp_path / "locks").exists()  # a scheduler's choice takes no local lock


def test_local_profile_runs_gpu_jobs_on_distinct_slots(tmp_path):
    """Through Snakemake: the default profile, 4 GPU jobs, 2 fake GPUs, Snakemake allowing 3 at once."""
    repo = Path(__file__).resolve().parents[1]
    env = _env(tmp_path, "0,1")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "tests/slurm/gpu_probe/Snakefile"), "-d", str(tmp_path / "wd"),
         "--profile", str(repo / "workflow/profiles/default"), "--cores", "4", "--resources", "gpu=3",
         "--config", "probe_seconds=4"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    runs = json.loads((tmp_path / "wd/probe/all.json").read_text())
    assert len(runs) == 4 and {r["CUDA_VISIBLE_DEVICES"] for r in runs} == {"0", "1"}
    assert _max_overlap(runs) <= 2
    _assert_distinct_when_overlapping(runs, "CUDA_VISIBLE_DEVICES")
    # Each job's log says which slot it got; one of the 3 jobs Snakemake started had to wait.
    logs = "".join(p.read_text() for p in (tmp_path / "wd/probe/logs/gpu_probe").glob("*.log"))
    assert logs.count("slot lock in") == 4 and "busy; waiting" in logs


def _fake_nvidia_smi(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "nvidia-smi"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    return folder


def test_a_preset_multi_gpu_visible_list_is_the_slot_pool(tmp_path):
    """A workstation with CUDA_VISIBLE_DEVICES=0,1 exported: two jobs get one GPU each, not both GPU 0."""
    assert devices.slot_devices({"CUDA_VISIBLE_DEVICES": "0,1"}) == ["0", "1"]
    assert devices.slot_devices({"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "7"}) is None  # a scheduler's
    assert devices.slot_devices({"CUDA_VISIBLE_DEVICES": "3"}) is None
    assert devices.slot_devices({"CUDA_VISIBLE_DEVICES": "-1"}) is None
    env = _env(tmp_path, None) | {"CUDA_VISIBLE_DEVICES": "2,5"}
    env.pop("SLURM_JOB_ID", None)
    out = tmp_path / "runs.jsonl"
    jobs = [_with_gpu(env, sys.executable, "-c", JOB, str(out), "2") for _ in range(2)]
    for job in jobs:
        job.communicate(timeout=120)
    assert sorted(json.loads(line)["dev"] for line in out.read_text().splitlines()) == ["2", "5"]


@pytest.mark.parametrize("value, message", [
    ("", "BERTLOTTERY_GPUS='': empty, which would hide every GPU"),
    ("5", "BERTLOTTERY_GPUS='5': no GPU 5 here (nvidia-smi lists 0, 1)"),
])
def test_bertlottery_gpus_empty_or_naming_a_missing_gpu_is_an_error(tmp_path, monkeypatch, value, message):
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path / "bin", "echo 'GPU 0: A (UUID: GPU-a)'\n"
                                                                      "echo 'GPU 1: A (UUID: GPU-b)'\n")))
    with pytest.raises(BertLotteryError, match=re.escape(message)):
        devices.slot_devices({"BERTLOTTERY_GPUS": value})
    assert devices.slot_devices({"BERTLOTTERY_GPUS": "1"}) == ["1"]


def test_nvidia_smi_failing_on_a_machine_with_nvidia_devices_is_an_error(tmp_path, monkeypatch):
    """Before: an empty slot list, "running on CPU", while torch still saw and used GPU 0."""
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidia0").write_text("")
    monkeypatch.setattr(devices, "NVIDIA_DEVICE_FILES", str(tmp_path / "dev" / "nvidia[0-9]*"))
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path / "bin", "echo 'Failed to initialize NVML' >&2\nexit 9\n")))
    with pytest.raises(BertLotteryError, match=r"nvidia-smi failed .* on a machine with NVIDIA GPUs \(.*nvidia0\)"):
        devices.slot_devices({})
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # missing altogether: the same
    with pytest.raises(BertLotteryError, match="nvidia-smi not found on PATH"):
        devices.slot_devices({})
    monkeypatch.setattr(devices, "NVIDIA_DEVICE_FILES", str(tmp_path / "none" / "nvidia[0-9]*"))
    assert devices.slot_devices({}) == []  # no NVIDIA device: the CPU


def test_lock_folder_errors_name_the_variable(tmp_path, monkeypatch):
    def no_flock(fd, op):
        raise OSError(38, "Function not implemented")  # Lustre without the flock mount option

    monkeypatch.setattr(devices.fcntl, "flock", no_flock)
    with pytest.raises(BertLotteryError, match="does not support file locks; point BERTLOTTERY_GPU_LOCK_DIR"):
        devices.take_slots(["0"], 1, tmp_path / "locks", per_gpu=1)


def test_an_unwritable_lock_folder_names_the_variable(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    if os.access(tmp_path / "ro", os.W_OK):
        pytest.skip("root writes into a read-only folder")
    with pytest.raises(BertLotteryError, match="cannot create the GPU lock folder .*BERTLOTTERY_GPU_LOCK_DIR"):
        devices.take_slots(["0"], 1, tmp_path / "ro" / "locks", per_gpu=1)


def test_a_job_private_tmpdir_as_lock_folder_is_refused(tmp_path, monkeypatch):
    private = tmp_path / "job123"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))
    with pytest.raises(BertLotteryError, match="inside this job's private TMPDIR"):
        devices.take_slots(["0"], 1, private / "locks", per_gpu=1)
    held = devices.take_slots(["0"], 1, tmp_path / "shared", per_gpu=1)  # a shared folder is fine
    os.close(held["0"])
