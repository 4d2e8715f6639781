"""Attention maps of every head (paper §5.2), raw and normed.

* raw: the attention probabilities alpha (eager attention, output_attentions=True);
* normed (Kobayashi et al. 2020): ||alpha_ij * f_h(x_j)|| with f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h, the
  value vector projected through head h's columns of the attention-output dense (its bias excluded).
  Since alpha_ij is a non-negative scalar this is alpha_ij * ||f_h(x_j)||.
"""

from __future__ import annotations

import torch
from torch import nn

from bertlottery.modeling.structure import encoder_layers, layer_parts, model_inputs

KINDS = ("raw", "normed")


# --------------------------------------------------------------------------------------------------
# attention maps


def _kept_value(store: dict[int, torch.Tensor], index: int, parts):
    def hook(module, args, output):
        store[index] = parts.value_output(output)
    return hook


@torch.no_grad()
def attention_maps(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw and normed attention of a padded batch, both [batch, layers, heads, n, n] (float32).

    Hooks on each layer's value projection capture x W_V + b_V; the model is switched to eager attention,
    the only implementation that returns alpha."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    parts = [layer_parts(layer) for layer in encoder_layers(model)]
    values: dict[int, torch.Tensor] = {}
    handles = [p.value_projection.register_forward_hook(_kept_value(values, i, p)) for i, p in enumerate(parts)]
    try:
        inputs = model_inputs(model, {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")
                                      if k in batch})
        out = model(**inputs, output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    raw = torch.stack([a.float() for a in out.attentions], dim=1)
    heads = raw.shape[2]
    norms = torch.stack([_value_norms(values[i].float(), p.attn_dense.weight.float(), heads)
                         for i, p in enumerate(parts)], dim=1)  # [B, L, H, n]
    return raw, raw * norms[:, :, :, None, :]


def _value_norms(value: torch.Tensor, out_weight: torch.Tensor, heads: int) -> torch.Tensor:
    """||f_h(x_j)|| = ||v_j^h (W_O^h)^T|| for every head h and token j: [batch, heads, n]."""
    batch, n, width = value.shape
    head_dim = width // heads
    v = value.view(batch, n, heads, head_dim)
    w = out_weight.view(out_weight.shape[0], heads, head_dim)  # dense: [hidden, heads * head_dim]
    return torch.einsum("bjhd,ohd->bhjo", v, w).norm(dim=-1)


def strip_padding(maps: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Per example, the [layers, heads, n, n] block over its real tokens (right padding assumed)."""
    lengths = attention_mask.sum(dim=1).tolist()
    return [maps[b, :, :, :n, :n] for b, n in enumerate(lengths)]
