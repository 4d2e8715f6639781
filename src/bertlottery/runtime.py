"""Device, seeding and precision: the small pieces every model-running command shares."""

from __future__ import annotations

import contextlib
import platform
import random

import numpy as np
import torch


def pick_device() -> torch.device:
    """CUDA when available (devices.py has already narrowed CUDA_VISIBLE_DEVICES), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and all CUDA devices), as the original's set_seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def configure_torch(tf32: bool = False) -> None:
    """Process-wide math settings. TF32 is off by default: the paper ran in fp32."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


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
