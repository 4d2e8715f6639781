"""Apply a mask of either family to a model: s-masks physically, m-masks as weight masks."""

from __future__ import annotations

from torch import nn

from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.pruning import prune_heads_and_mlps
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.weight_masks import apply_weight_mask


def apply_mask(model: nn.Module, mask: HeadMlpMask | WeightMask | None) -> dict | None:
    """Apply a mask in place: s-masks physically (heads/MLPs removed), m-masks as weight masks.

    Returns the mask's size, measured on the full architecture (before pruning)."""
    if mask is None:
        return None
    if isinstance(mask, HeadMlpMask):
        mask.check_fits(model.config)
    size = size_of(model.config, mask)
    if isinstance(mask, HeadMlpMask):
        prune_heads_and_mlps(model, mask)
    else:
        apply_weight_mask(model, mask)
    return size
