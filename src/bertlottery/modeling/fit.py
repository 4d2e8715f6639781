"""Fitting a mask to a model: the all-kept head/MLP mask of an architecture, and the check that a mask's
shape is the model's. The mask types themselves (masks/) know nothing of models."""

from __future__ import annotations

from typing import Any

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.structure import config_of
from bertlottery.modeling.weight_masks import check_weight_mask


def full_head_mlp_mask(model_or_config: Any) -> HeadMlpMask:
    """The all-kept head/MLP mask for a model's architecture."""
    config = config_of(model_or_config)
    return HeadMlpMask.full(config.num_hidden_layers, config.num_attention_heads)


def check_fits(mask: HeadMlpMask | WeightMask, model_or_config: Any) -> None:
    """Raise BertLotteryError unless the mask fits the model: a head/MLP mask is layers x heads, a weight
    mask has exactly the model's prunable parameters (`check_weight_mask`)."""
    if isinstance(mask, WeightMask):
        check_weight_mask(mask, model_or_config)
        return
    config = config_of(model_or_config)
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    if (mask.num_layers, mask.num_heads) != (layers, heads):
        where = f"{mask.source}: " if mask.source else ""
        raise BertLotteryError(
            f"{where}head/MLP mask with heads {list(mask.heads.shape)} and mlps {list(mask.mlps.shape)} "
            f"does not fit the model ({getattr(config, 'model_type', '?')}: num_hidden_layers={layers}, "
            f"num_attention_heads={heads}); expected heads [{layers}, {heads}] and mlps [{layers}]")
