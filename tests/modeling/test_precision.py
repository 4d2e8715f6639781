"""bf16 autocast leaves the classification head in fp32; flash attention only where the GPU supports it.
bf16 autocast is exercised on the CPU (torch supports it there), the same code path as on CUDA."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import save_tiny_model

from bertlottery.modeling import unpadded
from bertlottery.modeling.loading import keep_head_in_fp32, load_classifier
from bertlottery.modeling.unpadded import PackedBatch, classify


@pytest.fixture(scope="module")
def regression_model(tmp_path_factory):
    return load_classifier(str(save_tiny_model(tmp_path_factory.mktemp("tiny"))), 1).eval()


def _batch():
    ids = torch.tensor([[101, 2000, 2001, 102, 0], [101, 2002, 102, 0, 0]])
    mask = (ids != 0).long()
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask,
            "labels": torch.tensor([1.5, 3.25])}


@pytest.mark.parametrize("packed", [False, True])
def test_regression_scores_under_bf16_autocast_are_fp32(regression_model, packed):
    batch = PackedBatch.from_padded(_batch()) if packed else _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = classify(regression_model, batch)
    assert out.logits.dtype == torch.float32 and out.loss.dtype == torch.float32
    plain = copy.deepcopy(regression_model)
    plain.classifier.forward = type(plain.classifier).forward.__get__(plain.classifier)  # the head as HF has it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert classify(plain, batch).logits.dtype == torch.bfloat16  # what the fix changes


def test_the_fp32_head_survives_deep_copies_and_leaves_the_state_dict(regression_model):
    keys = set(regression_model.state_dict())
    twin = copy.deepcopy(regression_model)
    with torch.no_grad():
        twin.classifier.bias += 1.0  # the copy's own head must run, not the original's
    a, b = classify(regression_model, _batch()).logits, classify(twin, _batch()).logits
    assert torch.allclose(b - a, torch.ones_like(a)) and set(twin.state_dict()) == keys
    assert keep_head_in_fp32(twin) is twin


@pytest.mark.parametrize("capability, expected", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_flash_attention_only_on_ampere_or_newer(monkeypatch, capability, expected):
    """V100 (7.0) and T4 (7.5) take the SDPA branch: flash-attn 2 would crash there."""
    monkeypatch.setattr(unpadded.torch.cuda, "get_device_capability", lambda device=None: capability)
    assert unpadded.flash_supported(torch.device("cuda")) is expected
