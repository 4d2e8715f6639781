"""Weight masks (m-pruning): a parametrization weight * mask, so masked values are exactly zero in
every forward pass and through any training (AdamW weight decay and momentum included)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.structure import _param, meta_model, prunable_parameters


class _KeepMask(nn.Module):
    """Parametrization weight -> where(mask, weight, 0): masked values are exactly 0 in every forward and
    get exactly zero gradient, whatever the optimizer does to the stored original."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))


def _named_targets(model: nn.Module):
    """(name, module, attr) for each prunable parameter."""
    for name in prunable_parameters(model):
        module_name, attr = name.rsplit(".", 1)
        yield name, model.get_submodule(module_name), attr


def apply_weight_mask(model: nn.Module, mask: WeightMask, *, fits_checked: bool = False) -> nn.Module:
    """Mask prunable parameters in place. Apply before building the optimizer; applying another mask
    later replaces the previous one (the stored originals are kept, so a mask can also be widened).
    `fits_checked`: the caller has run `check_weight_mask(mask, model)` already."""
    if not fits_checked:
        check_weight_mask(mask, model)
    for name, module, attr in _named_targets(model):
        keep = mask.masks[name].to(_param(module, attr).device)
        if parametrize.is_parametrized(module, attr):
            plist = getattr(module.parametrizations, attr)
            existing = [p for p in plist if isinstance(p, _KeepMask)]
            if existing:
                existing[0].mask = keep
                continue
        parametrize.register_parametrization(module, attr, _KeepMask(keep))
    return model


def remove_weight_mask(model: nn.Module) -> nn.Module:
    """Bake the masks into the weights (masked values become stored zeros) and drop the
    parametrizations, so save_pretrained writes plain parameter names."""
    for _, module, attr in list(_named_targets(model)):
        if parametrize.is_parametrized(module, attr):
            parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return model


def check_weight_mask(mask: WeightMask, model_or_config: Any) -> None:
    """Names and shapes must be exactly the model's prunable parameters; the error names the first
    mismatch. Accepts a model or a config (checked against a full-size model of that config)."""
    model = model_or_config if isinstance(model_or_config, torch.nn.Module) else meta_model(model_or_config)
    expected = {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}
    where = f"{mask.source}: " if mask.source else ""
    for name, shape in expected.items():
        if name not in mask.masks:
            raise BertLotteryError(f"{where}weight mask has no entry for prunable parameter {name!r} "
                                   f"{list(shape)} of {type(model).__name__}")
        if tuple(mask.masks[name].shape) != shape:
            raise BertLotteryError(f"{where}weight mask for {name!r} has shape "
                                   f"{list(mask.masks[name].shape)}; the model's parameter is {list(shape)}")
    extra = [n for n in mask.masks if n not in expected]
    if extra:
        raise BertLotteryError(f"{where}weight mask entry {extra[0]!r} is not a prunable parameter of "
                               f"{type(model).__name__} ({len(extra)} such entries)")
