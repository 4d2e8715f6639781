"""Apply a mask of either family to a model: s-masks physically, m-masks as weight masks."""

from __future__ import annotations

from torch import nn

from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.pruning import prune_heads_and_mlps
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.weight_masks import apply_weight_mask


def apply_mask(model: nn.Module, mask: HeadMlpMask | WeightMask | None) -> dict | None:
    """Apply a mask in place: s-masks physically (heads/MLPs removed), m-masks as weight masks.

    The mask is checked against the model once, here. Returns the mask's size, measured on the full
    architecture (before pruning)."""
    if mask is None:
        return None
    check_fits(mask, model)
    size = size_of(model.config, mask, fits_checked=True)
    if isinstance(mask, HeadMlpMask):
        prune_heads_and_mlps(model, mask, fits_checked=True)
    else:
        apply_weight_mask(model, mask, fits_checked=True)
    return size
