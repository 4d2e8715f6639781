"""runtime: device choice, seeding and precision shared by every model-running command."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch

from bertlottery import runtime


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_set_seed_makes_python_numpy_and_torch_repeat():
    runtime.set_seed(1337)
    first = _draws()
    runtime.set_seed(1337)
    assert _draws() == first
    runtime.set_seed(42)
    assert _draws() != first


def test_set_seed_accepts_seeds_beyond_numpys_range():
    runtime.set_seed(2**40 + 5)  # numpy takes seeds < 2**32: reduced modulo, not an error
    a = float(np.random.rand())
    runtime.set_seed(5)
    assert float(np.random.rand()) == a


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_cpu_fallback_device_and_name():
    device = runtime.pick_device()
    assert device.type == "cpu" and runtime.device_name(device) == "cpu"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_autocast_is_a_no_op_on_cpu(precision):
    # bf16 autocast is CUDA-only by design: the CPU path stays the fp32 reference.
    context = runtime.autocast(torch.device("cpu"), precision)
    assert isinstance(context, contextlib.nullcontext)
    with context:
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_configure_torch_sets_and_clears_tf32():
    try:
        runtime.configure_torch(tf32=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        runtime.configure_torch()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        runtime.configure_torch()
