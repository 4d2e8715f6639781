"""Device, seeding and precision: the small pieces every model-running command shares."""

from __future__ import annotations

import contextlib
import os
import platform
import random

import numpy as np
import torch

from bertlottery.errors import BertLotteryError

ENV_DEVICE = "BERTLOTTERY_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def device_setting(env: dict[str, str] | None = None) -> str:
    """BERTLOTTERY_DEVICE: auto (unset or empty; CUDA when usable), cpu (the CPU even beside a GPU) or cuda."""
    env = os.environ if env is None else env
    value = env.get(ENV_DEVICE, "").strip().lower() or "auto"
    if value not in DEVICE_CHOICES:
        raise BertLotteryError(f"{ENV_DEVICE}={env[ENV_DEVICE]!r}: expected one of {', '.join(DEVICE_CHOICES)} "
                               "(unset = auto)")
    return value


def gpu_assigned(env: dict[str, str] | None = None) -> bool:
    """Whether CUDA_VISIBLE_DEVICES gives this process a device ('' and '-1' hide every GPU)."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() not in {"", "-1"} and not value.strip().startswith("-1,")


def cuda_unusable_reason() -> str | None:
    """Why torch cannot use CUDA here, or None when it can."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    try:
        torch.cuda.init()
    except Exception as exc:  # torch raises RuntimeError/AssertionError with the driver's own words
        return f"CUDA does not start ({_first_line(exc)})"
    return "torch.cuda.is_available() is false (no device visible to this torch build)"


def device_problem(env: dict[str, str] | None = None) -> str | None:
    """Why a model job here would silently run on the wrong device, or None. A job given a GPU
    (CUDA_VISIBLE_DEVICES) that cannot use it is refused; BERTLOTTERY_DEVICE=cpu asks for the CPU."""
    env = os.environ if env is None else env
    setting = device_setting(env)
    if setting == "cpu":
        return None
    reason = cuda_unusable_reason()
    if reason is None:
        return None
    if setting == "cuda":
        return f"{ENV_DEVICE}=cuda but CUDA is unusable: {reason}"
    if gpu_assigned(env):
        return (f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} gives this job a GPU, but CUDA is unusable: "
                f"{reason}; install a torch build for this machine's driver, or set {ENV_DEVICE}=cpu to run on "
                "the CPU on purpose")
    return None


def pick_device(env: dict[str, str] | None = None) -> torch.device:
    """CUDA when usable (devices.py has already narrowed CUDA_VISIBLE_DEVICES), else CPU; a job given a GPU
    that it cannot use stops here (device_problem) instead of running for days on one CPU thread."""
    problem = device_problem(env)
    if problem is not None:
        raise BertLotteryError(problem)
    if device_setting(env) == "cpu":
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and all CUDA devices), as the original's set_seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def configure_torch(tf32: bool = False, deterministic: bool = False) -> None:
    """Process-wide math settings. TF32 is off by default: the paper ran in fp32. `deterministic`: the
    GPU's deterministic algorithms (an op without one raises), cuDNN without autotuning, and the cuBLAS
    workspace setting CUDA needs for repeatable matmuls (read when CUDA starts: set before any CUDA call)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked; a no-op otherwise (fp32 reference path)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; elsewhere what `platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
