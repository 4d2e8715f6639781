"""What a bundle records about the machine it came from."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

from bertlottery.runtime import cpu_model


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def hardware() -> dict:
    """CPU model, logical cores, RAM, GPU names (none: []), OS."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(), "gpus": _gpus(),
            "os": platform.platform()}


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
