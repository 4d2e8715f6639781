"""GPU slot assignment for concurrent jobs on one multi-GPU machine.

Snakemake's `--resources gpu=N` caps how many GPU jobs run at once but does not say which device
each job gets, and every job would otherwise start on GPU 0. A slot is a share of one visible GPU
with a lock file (`<lock dir>/<host>.gpu<id>.slot<j>.lock`); a job takes a free slot with `flock`,
sets `CUDA_VISIBLE_DEVICES` to that GPU and keeps the lock for its whole life. Each GPU has
`BERTLOTTERY_JOBS_PER_GPU` slots (default 1): a BERT-base fine-tune at batch 32 uses a fraction of a
large GPU, so N jobs on one GPU can give more total throughput (run with `--resources gpu=<GPUs x N>`).
Free slots are taken spreading over the GPUs first (slot 0 of every GPU, then slot 1, ...), so fewer
jobs than GPUs never share one. The kernel drops a flock
when the last descriptor to it closes, so a crashed or killed job frees its slot with no cleanup.

    python -m bertlottery with-gpu -- python -m bertlottery finetune ...

`with-gpu` takes the slot and then *execs* the command with the lock descriptor inherited, so the
command itself holds the lock (no wrapper process in between: signals, exit codes and Snakemake's
benchmarks see the real job).

Which devices are slots:
- `BERTLOTTERY_DEVICE=cpu`: none, the job runs on the CPU on purpose.
- `CUDA_VISIBLE_DEVICES` already set by a scheduler (SLURM_JOB_ID, PBS_JOBID, LSB_JOBID or JOB_ID set),
  or naming one device: left as it is, no locking. Naming several devices without a scheduler (a
  workstation's exported `CUDA_VISIBLE_DEVICES=0,1,2,3`): those devices are the slot pool, so jobs do
  not all land on the first.
- else `BERTLOTTERY_GPUS` (comma-separated device ids) when set: for restricting a run to some GPUs,
  and for tests with fake devices. Empty, or naming a GPU that `nvidia-smi` does not list, is an error.
- else the GPUs that `nvidia-smi -L` lists (no CUDA initialisation in this process); `nvidia-smi`
  missing or failing on a machine with NVIDIA device files (/dev/nvidia0, ...) is an error, not the CPU;
- no GPU at all: the command runs unchanged, on CPU.
Lock files live in `BERTLOTTERY_GPU_LOCK_DIR` (default `results/.gpu_locks`); the host name in their
names keeps machines that share a file system apart. The folder must be shared by the jobs: a
scheduler's job-private `$TMPDIR` is refused (every job would take slot 0 of its own folder).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bertlottery.errors import BertLotteryError

ENV_VISIBLE = "CUDA_VISIBLE_DEVICES"
ENV_GPUS = "BERTLOTTERY_GPUS"
ENV_LOCK_DIR = "BERTLOTTERY_GPU_LOCK_DIR"
ENV_JOBS_PER_GPU = "BERTLOTTERY_JOBS_PER_GPU"
DEFAULT_LOCK_DIR = "results/.gpu_locks"
POLL_S = 0.5
SCHEDULER_JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")
NVIDIA_DEVICE_FILES = "/dev/nvidia[0-9]*"  # the driver's device nodes, one per GPU


def parse_device_list(text: str, source: str) -> list[str]:
    """'0, 2,3' -> ['0', '2', '3']; '' -> []. Ids may also be GPU UUIDs (as CUDA accepts)."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    for dev in ids:
        if not re.fullmatch(r"[0-9]+|(GPU|MIG)-[0-9A-Za-z/-]+", dev):
            raise BertLotteryError(f"{source}={text!r}: {dev!r} is not a device index or GPU UUID")
    if len(set(ids)) != len(ids):
        raise BertLotteryError(f"{source}={text!r}: a device is listed twice")
    return ids


def nvidia_smi_devices() -> list[str]:
    """Indices of the GPUs `nvidia-smi -L` lists; [] on a machine without NVIDIA devices. On a machine
    with NVIDIA device files, a missing or failing nvidia-smi is an error: jobs would otherwise be told
    "CPU" while torch still sees and uses GPU 0."""
    exe = shutil.which("nvidia-smi")
    try:
        if exe is None:
            raise OSError("nvidia-smi not found on PATH")
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        nodes = sorted(glob.glob(NVIDIA_DEVICE_FILES))
        if nodes:
            raise BertLotteryError(f"nvidia-smi failed ({exc}) on a machine with NVIDIA GPUs ({', '.join(nodes)}); "
                                   f"fix the driver tools, or name the GPUs in {ENV_GPUS} (e.g. 0,1), or set "
                                   "BERTLOTTERY_DEVICE=cpu") from None
        return []
    # "GPU 0: NVIDIA H100 ... (UUID: GPU-...)"; MIG instances are indented lines below their GPU.
    return re.findall(r"^GPU (\d+):", out, flags=re.MULTILINE)


def slot_devices(env: dict[str, str] | None = None) -> list[str] | None:
    """The devices to share out, or None when CUDA_VISIBLE_DEVICES is already decided."""
    env = os.environ if env is None else env
    scheduled = any(env.get(var) for var in SCHEDULER_JOB_VARS)
    if env.get("BERTLOTTERY_DEVICE", "").strip().lower() == "cpu":
        # the job runs on the CPU; a scheduler's choice of device is still reported as it is
        return None if ENV_VISIBLE in env and scheduled else []
    if ENV_VISIBLE in env:
        hidden = env[ENV_VISIBLE].strip() in {"", "-1"}
        preset = [] if hidden else parse_device_list(env[ENV_VISIBLE], ENV_VISIBLE)
        return preset if len(preset) > 1 and not scheduled else None
    if ENV_GPUS in env:
        return checked_gpu_list(env[ENV_GPUS])
    return nvidia_smi_devices()


def checked_gpu_list(text: str) -> list[str]:
    """BERTLOTTERY_GPUS: not empty, and every index among the GPUs nvidia-smi lists (where it lists any;
    fake devices for tests pass on a machine without GPUs)."""
    ids = parse_device_list(text, ENV_GPUS)
    if not ids:
        raise BertLotteryError(f"{ENV_GPUS}={text!r}: empty, which would hide every GPU; unset it to use every "
                               "GPU, or set BERTLOTTERY_DEVICE=cpu to run on the CPU on purpose")
    present = nvidia_smi_devices()
    missing = [dev for dev in ids if present and dev.isdigit() and dev not in present]
    if missing:
        raise BertLotteryError(f"{ENV_GPUS}={text!r}: no GPU {', '.join(missing)} here (nvidia-smi lists "
                               f"{', '.join(present)})")
    return ids


def jobs_per_gpu(env: dict[str, str] | None = None) -> int:
    """BERTLOTTERY_JOBS_PER_GPU: how many jobs share one GPU (unset or empty: 1)."""
    env = os.environ if env is None else env
    text = env.get(ENV_JOBS_PER_GPU, "").strip()
    if not text:
        return 1
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise BertLotteryError(f"{ENV_JOBS_PER_GPU}={env[ENV_JOBS_PER_GPU]!r}: expected a whole number of jobs "
                               "per GPU, 1 or more (unset = 1)")
    return int(text)


def slots(devices: list[str], per_gpu: int) -> list[tuple[str, int]]:
    """(device, slot) pairs in the order jobs take them: slot 0 of every GPU first, then slot 1, ..."""
    return [(dev, j) for j in range(per_gpu) for dev in devices]


def lock_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(ENV_LOCK_DIR) or DEFAULT_LOCK_DIR)


def check_lock_dir(directory: Path, env: dict[str, str] | None = None) -> None:
    """The lock folder must be one the jobs share: under a scheduler, its job-private $TMPDIR is not."""
    env = os.environ if env is None else env
    private = env.get("TMPDIR", "")
    if private and Path(private).resolve() not in {Path("/tmp"), Path("/var/tmp")} and \
            directory.resolve().is_relative_to(Path(private).resolve()):
        raise BertLotteryError(f"{ENV_LOCK_DIR}={directory} is inside this job's private TMPDIR ({private}): other "
                               "jobs do not see its lock files, so every job would take the same GPU; use a "
                               "folder the jobs share (default results/.gpu_locks)")


def lock_path(directory: Path, device: str, slot: int = 0) -> Path:
    return directory / f"{socket.gethostname()}.gpu{device.replace('/', '_')}.slot{slot}.lock"


def try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on `path`, or None if another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise BertLotteryError(f"cannot open the GPU slot lock {path} ({exc.strerror}); set {ENV_LOCK_DIR} to a "
                               "writable folder the jobs share") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:  # e.g. Lustre mounted without flock: ENOSYS / EINVAL
        os.close(fd)
        raise BertLotteryError(f"flock on {path} failed ({exc.strerror}): the file system of {ENV_LOCK_DIR}="
                               f"{path.parent} does not support file locks; point {ENV_LOCK_DIR} at a local or "
                               "flock-capable folder the jobs share") from None
    # Record the holder for people inspecting a busy machine (the lock itself is the flock).
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _try_take(devices: list[str], count: int, directory: Path, per_gpu: int = 1) -> dict[str, int] | None:
    """All-or-nothing: free slots on `count` distinct devices (in `slots` order), or None; never holds a
    partial set."""
    held: dict[str, int] = {}
    for dev, slot in slots(devices, per_gpu):
        if dev in held:
            continue
        fd = try_lock(lock_path(directory, dev, slot))
        if fd is not None:
            held[dev] = fd
            if len(held) == count:
                return held
    for fd in held.values():
        os.close(fd)
    return None


def take_slots(
    devices: list[str], count: int = 1, directory: Path | None = None, timeout_s: float | None = None,
    per_gpu: int | None = None,
) -> dict[str, int]:
    """Wait until a slot is free on `count` of `devices`; returns {device: locked descriptor}.

    per_gpu: slots per device (default: BERTLOTTERY_JOBS_PER_GPU)."""
    per_gpu = jobs_per_gpu() if per_gpu is None else per_gpu
    if count < 1 or count > len(devices):
        raise BertLotteryError(f"asked for {count} GPU slot(s); {len(devices)} device(s) available: {devices}")
    directory = lock_dir() if directory is None else Path(directory)
    check_lock_dir(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BertLotteryError(f"cannot create the GPU lock folder {directory} ({exc.strerror}); set {ENV_LOCK_DIR} "
                               "to a writable folder the jobs share") from None
    start, announced = time.monotonic(), False
    while True:
        held = _try_take(devices, count, directory, per_gpu)
        if held is not None:
            return held
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise BertLotteryError(
                f"no {count} free GPU slot(s) among {devices} ({per_gpu} per GPU) in {directory} after {timeout_s} s"
            )
        if not announced:
            print(f"bertlottery with-gpu: all GPU slots in {directory} busy; waiting", file=sys.stderr, flush=True)
            announced = True
        time.sleep(POLL_S)


@contextlib.contextmanager
def acquire_gpu_slot(
    count: int = 1, directory: Path | None = None, timeout_s: float | None = None
) -> Iterator[list[str] | None]:
    """In-process use: hold `count` slots and set CUDA_VISIBLE_DEVICES for the block.

    Yields the assigned devices, [] on a machine without GPUs, or None when CUDA_VISIBLE_DEVICES was
    already set. Must be entered before torch initialises CUDA (the first torch.cuda call), which
    reads the variable once.
    """
    devices = slot_devices()
    if not devices:
        yield devices
        return
    held = take_slots(devices, count, directory, timeout_s)
    before = os.environ.get(ENV_VISIBLE)  # a preset pool is restored after the block
    os.environ[ENV_VISIBLE] = ",".join(held)
    try:
        yield list(held)
    finally:
        if before is None:
            del os.environ[ENV_VISIBLE]
        else:
            os.environ[ENV_VISIBLE] = before
        for fd in held.values():
            os.close(fd)


def exec_with_gpu(command: list[str], count: int = 1, directory: Path | None = None) -> None:
    """Take slots, then replace this process by `command`, which inherits the locks (never returns)."""
    per_gpu = jobs_per_gpu()  # a bad value is an error even where a scheduler chose the GPU
    devices = slot_devices()
    if devices is None:
        note = f"{ENV_VISIBLE}={os.environ[ENV_VISIBLE]} (already set; left as is)"
    elif not devices:
        on_purpose = os.environ.get("BERTLOTTERY_DEVICE", "").strip().lower() == "cpu"
        note = "BERTLOTTERY_DEVICE=cpu; running on CPU" if on_purpose else "no GPU found; running on CPU"
    else:
        held = take_slots(devices, count, directory, per_gpu=per_gpu)
        for fd in held.values():
            os.set_inheritable(fd, True)  # the exec'd job keeps holding the lock
        os.environ[ENV_VISIBLE] = ",".join(held)
        where = lock_dir() if directory is None else directory
        note = f"{ENV_VISIBLE}={os.environ[ENV_VISIBLE]} (slot lock in {where}, {per_gpu} job(s) per GPU)"
    # start= is when the job got its device (after any wait): tests compare it across jobs.
    print(f"bertlottery with-gpu: start={time.time():.3f} host={socket.gethostname()} {note}", file=sys.stderr, flush=True)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise BertLotteryError(f"cannot run {command[0]!r}: {exc}") from exc


def main_with_gpu(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bertlottery with-gpu",
        description="Run COMMAND on its own free GPU (sets CUDA_VISIBLE_DEVICES; CPU without GPUs).",
    )
    parser.add_argument("--count", type=int, default=1, help="GPUs the job needs (default 1)")
    parser.add_argument(
        "--lock-dir", type=Path, default=None, help=f"slot lock files (default ${ENV_LOCK_DIR} or {DEFAULT_LOCK_DIR})"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (usage: with-gpu [--count N] -- COMMAND [ARGS...])")
    exec_with_gpu(command, args.count, args.lock_dir)
