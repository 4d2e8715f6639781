"""Physical pruning: remove heads and MLPs from the model; save and rebuild such a model.

A layer left with zero heads or without its MLP returns LayerNorm(input) for that sub-layer in every
post-norm family (BERT-style and DeBERTa: the sub-layer is replaced by its LayerNorm; DistilBERT: the
attention or FFN adds zeros before the layer's own LayerNorm); in the pre-norm ModernBERT the removed
sub-layer adds zeros to the residual stream. The stand-ins carry `bertlottery_removed`, so the role lookup
reports the removed parts as None.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.soft_masks import SOFT_MASKS_ATTR
from bertlottery.modeling.structure import (
    PRUNED_CONFIG_KEYS,
    LayerParts,
    attention_implementation,
    encoder_layers,
    is_pruned,
    layer_parts,
)


class _NormOnly(nn.Module):
    """A removed sub-layer: output = LayerNorm(residual input), no bias, no dropout (as the original)."""

    bertlottery_removed = True

    def __init__(self, norm_name: str, norm: nn.LayerNorm):
        super().__init__()
        self.norm_name = norm_name
        self.add_module(norm_name, norm)  # same parameter names as before, so state dicts still line up

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor | None = None) -> torch.Tensor:
        return getattr(self, self.norm_name)(hidden_states if input_tensor is None else input_tensor)


class _HeadlessAttention(nn.Module):
    """BERT-style attention sub-layer whose heads are all removed: (LayerNorm(input), no attention weights)."""

    bertlottery_removed = True

    def __init__(self, output: _NormOnly):
        super().__init__()
        self.output = output

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return self.output(hidden_states), None


class _Skip(nn.Module):
    """Stands in for a removed BERT-style intermediate layer (its output is ignored by _NormOnly)."""

    bertlottery_removed = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states


class _Zero(nn.Module):
    """DistilBERT's or ModernBERT's removed attention or FFN: adds nothing to the residual (DistilBERT's own
    LayerNorm(0 + input) = LayerNorm(input), as a removed BERT-style sub-layer)."""

    bertlottery_removed = True

    def __init__(self, attention: bool):
        super().__init__()
        self.attention = attention

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        zero = torch.zeros_like(hidden_states)
        return (zero, None) if self.attention else zero


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep `index` along dim 0 (output features, with bias) or dim 1 (input features), in place."""
    with torch.no_grad():
        weight = linear.weight.index_select(dim, index.to(linear.weight.device)).clone()
        linear.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
        if dim == 0 and linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias[index.to(linear.bias.device)].clone(),
                                       requires_grad=linear.bias.requires_grad)
    if dim == 0:
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def _remove_attention(layer: nn.Module, parts: LayerParts) -> None:
    arch = parts.arch
    if arch.removed_adds_zero:
        setattr(layer, arch.attention_block, _Zero(attention=True))
    else:
        norm_name = arch.attn_norm.rsplit(".", 1)[1]
        setattr(layer, arch.attention_block, _HeadlessAttention(_NormOnly(norm_name, parts.attn_norm)))


def _remove_mlp(layer: nn.Module, parts: LayerParts) -> None:
    arch = parts.arch
    if arch.removed_adds_zero:
        (block,) = arch.mlp_blocks
        setattr(layer, block, _Zero(attention=False))
    else:
        first, second = arch.mlp_blocks
        setattr(layer, first, _Skip())
        setattr(layer, second, _NormOnly(arch.out_norm.rsplit(".", 1)[1], parts.output_norm))


def _prune_layer_heads(layer: nn.Module, keep: torch.Tensor) -> None:
    parts = layer_parts(layer)
    if keep.all():
        return
    if not keep.any():
        _remove_attention(layer, parts)
        return
    attn, head_dim = parts.self_attention, parts.head_size
    kept_heads = torch.nonzero(keep).flatten()
    for linear in parts.head_projections:
        _slice_linear(linear, parts.head_rows(linear, kept_heads), 0)
    _slice_linear(parts.attn_dense, parts.head_rows(parts.attn_dense, kept_heads), 1)
    if parts.arch.heads_attr is not None:
        setattr(attn, parts.arch.heads_attr, int(keep.sum()))
    if hasattr(attn, "all_head_size"):
        attn.all_head_size = int(keep.sum()) * head_dim
    if hasattr(attn, "attention_head_size") and attn.attention_head_size != head_dim:
        raise BertLotteryError(f"{type(attn).__name__}: attention_head_size {attn.attention_head_size} "
                               f"!= query rows per head {head_dim}")


def prune_heads_and_mlps(model: nn.Module, mask: HeadMlpMask, *, fits_checked: bool = False) -> nn.Module:
    """Physically remove the heads and MLPs that `mask` drops, in place (docs/protocol.md §Evaluation and retraining).

    Q/K/V lose the heads' rows (with biases), the attention output dense the matching columns; a layer
    with no head left returns LayerNorm(input) from its attention sub-layer, one with no MLP returns
    LayerNorm(input) from its feed-forward sub-layer. The mask is recorded in model.config
    (bertlottery_head_mask, bertlottery_mlp_mask) so `load_pruned` can rebuild a saved pruned model.
    `fits_checked`: the caller has run `check_fits(mask, model)` already."""
    if not fits_checked:
        check_fits(mask, model)
    if is_pruned(model):
        raise BertLotteryError("this model is already physically pruned; prune the unpruned model with the "
                               "combined mask (mask_a & mask_b) instead")
    if getattr(model, SOFT_MASKS_ATTR, None) is not None:
        raise BertLotteryError("detach_soft_masks(model) before pruning it physically")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise BertLotteryError("remove_weight_mask(model) before pruning heads/MLPs physically")
    for layer, keep_heads, keep_mlp in zip(encoder_layers(model), mask.heads, mask.mlps):
        _prune_layer_heads(layer, keep_heads)
        if not keep_mlp:
            _remove_mlp(layer, layer_parts(layer))
    model.config.bertlottery_head_mask = mask.heads.int().tolist()
    model.config.bertlottery_mlp_mask = mask.mlps.int().tolist()
    return model


def load_pruned(path: str | os.PathLike, *, attn_implementation: str = "sdpa") -> nn.Module:
    """Reload a physically pruned model saved with save_pretrained: rebuild the architecture from
    config.json, prune it with the recorded mask, then load model.safetensors strictly."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = Path(path)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise BertLotteryError(f"{weights}: not found (expected a save_pretrained directory of a pruned model)")
    config = AutoConfig.from_pretrained(path)
    heads, mlps = (getattr(config, k, None) for k in PRUNED_CONFIG_KEYS)
    if heads is None or mlps is None:
        raise BertLotteryError(f"{path / 'config.json'}: no {PRUNED_CONFIG_KEYS[0]}; not a pruned model "
                               "(load it with load_classifier)")
    for key in PRUNED_CONFIG_KEYS:
        delattr(config, key)
    model = AutoModelForSequenceClassification.from_config(
        config, attn_implementation=attention_implementation(config, attn_implementation))
    prune_heads_and_mlps(model.float(), HeadMlpMask(torch.tensor(heads), torch.tensor(mlps), source=str(path)))
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    if missing or unexpected:
        raise BertLotteryError(f"{weights}: weights do not match the pruned architecture "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
