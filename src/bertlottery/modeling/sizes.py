"""Subnetwork sizes (docs/protocol.md §Evaluation and retraining, "Sizes"): parameters kept by a mask, counted on a meta-device model of the config."""

from __future__ import annotations

from typing import Any

from torch import nn

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.structure import (
    config_of,
    encoder_layers,
    layer_parts,
    meta_model,
    prunable_parameters,
)

# "% surviving weights" in the paper subtracts this from kept/total to discount the embeddings (the Figure 2 subplot titles).
PAPER_EMBEDDING_SHARE = 0.21


def _structure_costs(model: nn.Module) -> list[dict[str, int]]:
    """Per layer: parameters per head (Q/K/V rows + biases, DeBERTa's relative-position projection rows,
    output-dense columns), the output-dense bias
    (gone with the last head), the MLP (intermediate + output dense with biases) and its output bias."""
    costs = []
    for layer in encoder_layers(model):
        parts = layer_parts(layer)
        dim = parts.head_size
        per_head = sum(p.numel() for lin in parts.head_projections for p in lin.parameters()) // parts.num_heads
        per_head += dim * parts.attn_dense.weight.shape[0]
        out_bias = parts.output_dense.bias.numel() if parts.output_dense.bias is not None else 0
        mlp = sum(p.numel() for lin in (parts.intermediate_dense, parts.output_dense) for p in lin.parameters())
        attn_bias = parts.attn_dense.bias.numel() if parts.attn_dense.bias is not None else 0
        costs.append({"per_head": per_head, "attn_bias": attn_bias, "mlp": mlp, "mlp_out_bias": out_bias})
    return costs


def size_of(model_or_config: Any, mask: HeadMlpMask | WeightMask | None, *,
            fits_checked: bool = False) -> dict[str, Any]:
    """Subnetwork size as plain counts and the paper's way ('% surviving weights'). Totals count the whole
    sequence-classification model of the config (embeddings, pooler, classifier included).
    `fits_checked`: the caller has run `check_fits(mask, ...)` already."""
    model = meta_model(model_or_config)
    config = config_of(model_or_config)
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    params_total = sum(p.numel() for p in model.parameters())
    prunable_total = sum(p.numel() for p in prunable_parameters(model).values())
    size = {"heads_kept": layers * heads, "heads_total": layers * heads, "mlps_kept": layers,
            "mlps_total": layers, "params_kept": params_total, "params_total": params_total,
            "prunable_kept": prunable_total, "prunable_total": prunable_total}
    if isinstance(mask, (HeadMlpMask, WeightMask)) and not fits_checked:
        check_fits(mask, model)
    if isinstance(mask, HeadMlpMask):
        removed = removed_prunable = 0
        for cost, head_row, mlp_kept in zip(_structure_costs(model), mask.heads, mask.mlps):
            gone = heads - int(head_row.sum())
            removed_here = gone * cost["per_head"] + (cost["attn_bias"] if gone == heads else 0)
            removed += removed_here
            removed_prunable += removed_here
            if not mlp_kept:
                removed += cost["mlp"]
                removed_prunable += cost["mlp"] - cost["mlp_out_bias"]  # output bias is not prunable
        size.update(heads_kept=mask.heads_kept, mlps_kept=mask.mlps_kept,
                    params_kept=params_total - removed, prunable_kept=prunable_total - removed_prunable)
    elif isinstance(mask, WeightMask):
        # A weight mask removes no head or MLP as a unit; heads/mlps_kept stay at their totals.
        size.update(prunable_kept=mask.kept, params_kept=params_total - prunable_total + mask.kept)
    elif mask is not None:
        raise BertLotteryError(f"size_of: expected a HeadMlpMask, WeightMask or None, got {type(mask).__name__}")
    size["paper_fraction"] = size["params_kept"] / size["params_total"] - PAPER_EMBEDDING_SHARE
    return size
