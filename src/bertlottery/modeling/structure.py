"""Find the parts of a BERT-style encoder by role, whatever the model family calls its prefix.

The encoder's `layer` ModuleList is found through `model.base_model`; inside each layer the parts are
found by role (attention.self.{query,key,value}, attention.output.{dense,LayerNorm}, intermediate.dense,
output.{dense,LayerNorm}), never by a "bert." name prefix. Everything that prunes, masks or measures a
model walks it through these functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import PRUNED_CONFIG_KEYS, _config_of


@dataclass
class LayerParts:
    """The modules of one encoder layer, by role. Removed parts (physical pruning) are None."""

    attention: nn.Module              # layer.attention (self-attention + output projection + norm)
    self_attention: nn.Module | None  # attention.self: query/key/value, num_attention_heads
    query: nn.Linear | None
    key: nn.Linear | None
    value: nn.Linear | None
    attn_dense: nn.Linear | None      # attention output projection
    attn_norm: nn.LayerNorm
    intermediate_dense: nn.Linear | None
    output_dense: nn.Linear | None    # second MLP dense
    output_norm: nn.LayerNorm


def _norm_of(module: nn.Module, where: str) -> nn.LayerNorm:
    for child in module.children():
        if isinstance(child, nn.LayerNorm):
            return child
    raise BertLotteryError(f"{where}: no LayerNorm found; not a BERT-style encoder layer")


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers of a BERT-style model (model.base_model.encoder.layer)."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise BertLotteryError(f"{type(model).__name__}: no encoder.layer list under its base model; "
                               "expected a BERT-style encoder (BERT, MiniLM, RoBERTa, ELECTRA, ...)")
    for i, layer in enumerate(layers):
        if not all(hasattr(layer, a) for a in ("attention", "intermediate", "output")):
            raise BertLotteryError(f"{type(model).__name__}: encoder layer {i} ({type(layer).__name__}) lacks "
                                   "attention/intermediate/output; expected a BERT-style encoder layer")
    return list(layers)


def layer_parts(layer: nn.Module) -> LayerParts:
    """Role-based access to one encoder layer's modules (works on physically pruned layers too)."""
    name = type(layer).__name__
    attention = layer.attention
    self_attn = getattr(attention, "self", None)
    out = attention.output
    if self_attn is not None and not all(isinstance(getattr(self_attn, a, None), nn.Linear)
                                         for a in ("query", "key", "value")):
        raise BertLotteryError(f"{name}: attention.self has no query/key/value Linear layers")
    intermediate_dense = getattr(layer.intermediate, "dense", None)
    return LayerParts(
        attention=attention, self_attention=self_attn,
        query=getattr(self_attn, "query", None), key=getattr(self_attn, "key", None),
        value=getattr(self_attn, "value", None), attn_dense=getattr(out, "dense", None),
        attn_norm=_norm_of(out, f"{name}.attention.output"),
        intermediate_dense=intermediate_dense,
        output_dense=getattr(layer.output, "dense", None) if intermediate_dense is not None else None,
        output_norm=_norm_of(layer.output, f"{name}.output"))


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _param(module: nn.Module, attr: str) -> nn.Parameter | None:
    """The stored parameter (under a weight-mask parametrization: the unmasked original)."""
    if parametrize.is_parametrized(module, attr):
        return getattr(module.parametrizations, attr).original
    return module._parameters.get(attr)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The m-pruning pool (docs/protocol.md §m-pruning), by role: per encoder layer Q/K/V weight+bias, attention-output dense
    weight+bias, intermediate dense weight+bias, output dense weight only. Never embeddings, LayerNorms,
    the output dense bias, pooler or classifier. Keys are the parameters' names in the unmasked model."""
    names = _module_names(model)
    result: dict[str, nn.Parameter] = {}
    for layer in encoder_layers(model):
        p = layer_parts(layer)
        roles = [(p.query, ("weight", "bias")), (p.key, ("weight", "bias")), (p.value, ("weight", "bias")),
                 (p.attn_dense, ("weight", "bias")), (p.intermediate_dense, ("weight", "bias")),
                 (p.output_dense, ("weight",))]
        for module, attrs in roles:
            if module is None:
                continue
            for attr in attrs:
                param = _param(module, attr)
                if param is not None:
                    result[f"{names[id(module)]}.{attr}"] = param
    return result


def head_counts(model: nn.Module) -> list[int]:
    """Heads currently present in each layer (after physical pruning, fewer)."""
    return [0 if p.self_attention is None else int(p.self_attention.num_attention_heads)
            for p in map(layer_parts, encoder_layers(model))]


def is_pruned(model: nn.Module) -> bool:
    return getattr(model.config, PRUNED_CONFIG_KEYS[0], None) is not None


@lru_cache(maxsize=8)
def _meta_model_cached(config_json: str, config_class: type) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    config = config_class.from_dict(json.loads(config_json))
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return AutoModelForSequenceClassification.from_config(config)


def meta_model(model_or_config: Any) -> torch.nn.Module:
    """A full-size (unpruned) sequence-classification model of this config on the meta device."""
    config = _config_of(model_or_config)
    data = config.to_dict()
    for key in PRUNED_CONFIG_KEYS:
        data.pop(key, None)
    return _meta_model_cached(json.dumps(data, sort_keys=True, default=str), type(config))
