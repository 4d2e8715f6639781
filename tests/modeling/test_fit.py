"""modeling/fit.py: the all-kept mask of an architecture, and checking that a mask fits a model, once per application."""

from __future__ import annotations

import pytest
import torch

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling import apply, fit, pruning, sizes, weight_masks
from bertlottery.modeling.apply import apply_mask
from bertlottery.modeling.fit import check_fits, full_head_mlp_mask
from bertlottery.modeling.structure import prunable_parameters
from conftest import BERT_BASE, TINY, tiny_model


def test_full_head_mlp_mask_of_model_or_config():
    assert full_head_mlp_mask(BERT_BASE) == HeadMlpMask.full(12, 12)
    mask = full_head_mlp_mask(tiny_model())
    assert (mask.num_layers, mask.num_heads, mask.heads_kept, mask.mlps_kept) == (3, 4, 12, 3)


def test_check_fits_names_shapes():
    check_fits(HeadMlpMask.full(12, 12), BERT_BASE)
    check_fits(HeadMlpMask.full(3, 4), tiny_model())  # a model works too
    with pytest.raises(BertLotteryError) as err:
        check_fits(HeadMlpMask.full(12, 12), TINY)
    text = str(err.value)
    assert "heads [12, 12]" in text and "num_hidden_layers=3" in text and "num_attention_heads=4" in text
    with pytest.raises(BertLotteryError, match="num_hidden_layers"):
        check_fits(HeadMlpMask.full(3, 4), object())
    with pytest.raises(BertLotteryError, match="no entry for prunable parameter"):
        check_fits(WeightMask({}), tiny_model())  # a weight mask: its parameters


def count_checks(monkeypatch) -> list[str]:
    """Record every fit check (head/MLP and weight masks) made through the modules that apply masks."""
    calls: list[str] = []

    def counted(name, real):
        def wrapper(mask, model_or_config):
            calls.append(name)
            return real(mask, model_or_config)
        return wrapper

    for module in (apply, sizes, pruning):
        monkeypatch.setattr(module, "check_fits", counted("check_fits", fit.check_fits), raising=False)
    for module in (fit, weight_masks):
        monkeypatch.setattr(module, "check_weight_mask", counted("check_weight_mask",
                                                                 weight_masks.check_weight_mask))
    return calls


@pytest.mark.parametrize("family", ["s", "m"])
def test_apply_mask_checks_the_fit_once(monkeypatch, family):
    model = tiny_model()
    if family == "s":
        mask = HeadMlpMask(torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]]), torch.tensor([1, 0, 1]))
    else:
        mask = WeightMask({n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) < 0.5
                           for n, p in prunable_parameters(model).items()})
    calls = count_checks(monkeypatch)
    size = apply_mask(model, mask)
    assert calls == ["check_fits"] + (["check_weight_mask"] if family == "m" else [])
    assert size == sizes.size_of(TINY, mask)  # the unchecked paths measure the same size
    with pytest.raises(BertLotteryError, match="does not fit the model"):
        apply_mask(tiny_model(), HeadMlpMask.full(12, 12))
