"""Find the parts of a BERT-style encoder by role, whatever the architecture calls them.

An `Architecture` names where one encoder architecture keeps each role: the layer list under `model.base_model`, and inside a
layer the query/key/value projections, the attention output projection and its LayerNorm, the MLP's two
dense layers and the output LayerNorm, and the attribute holding the number of heads. Two naming schemes
cover the supported encoders:

* BERT-style (BERT, MiniLM, RoBERTa, ELECTRA's discriminator): `encoder.layer[i]` with
  attention.self.{query,key,value}, attention.output.{dense,LayerNorm}, intermediate.dense,
  output.{dense,LayerNorm}; heads in attention.self.num_attention_heads;
* DistilBERT: `transformer.layer[i]` with attention.{q_lin,k_lin,v_lin,out_lin}, sa_layer_norm,
  ffn.{lin1,lin2}, output_layer_norm; heads in attention.n_heads; no token types.

The architecture of a model is recognised from its modules, never from a "bert." name prefix; decoders (GPT-2,
Llama, ...) and anything else are refused with a message naming what was found and what was expected.
Everything that prunes, masks or measures a model walks it through these functions.
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

# config attributes written by pruning.prune_heads_and_mlps; stripped when building the full-size model
PRUNED_CONFIG_KEYS = ("bertlottery_head_mask", "bertlottery_mlp_mask")
# Set (True) on the stand-ins physical pruning puts where a whole attention sub-layer or MLP was removed.
REMOVED_ATTR = "bertlottery_removed"
# The prunable roles of a layer (m-pruning's pool), in the order prunable_parameters lists them.
PRUNABLE_ROLES = (("query", ("weight", "bias")), ("key", ("weight", "bias")), ("value", ("weight", "bias")),
                  ("attn_out", ("weight", "bias")), ("mlp_in", ("weight", "bias")), ("mlp_out", ("weight",)))
# model_type values known to be decoders, named in the refusal (any config with is_decoder is one too).
DECODER_TYPES = ("gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3",
                 "gemma", "gemma2", "phi", "phi3", "opt", "bloom", "falcon", "openai-gpt", "ctrl")


@dataclass(frozen=True)
class Architecture:
    """Where one encoder architecture keeps each role (dotted attribute paths; layer roles relative to a layer)."""

    name: str
    layers: str                 # under model.base_model
    attention_block: str        # the sub-module replaced when every head of a layer is removed
    mlp_blocks: tuple[str, ...]  # the sub-modules replaced when a layer's MLP is removed
    core: str                   # the module holding the head count, q/k/v and the attention dropout
    heads_attr: str
    query: str
    key: str
    value: str
    attn_out: str
    attn_norm: str
    mlp_in: str
    mlp_out: str
    out_norm: str
    token_types: bool           # the embeddings take token_type_ids


BERT_STYLE = Architecture(
    "bert-style", "encoder.layer", "attention", ("intermediate", "output"), "attention.self",
    "num_attention_heads", "attention.self.query", "attention.self.key", "attention.self.value",
    "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense", "output.dense",
    "output.LayerNorm", token_types=True)
DISTILBERT = Architecture(
    "distilbert", "transformer.layer", "attention", ("ffn",), "attention", "n_heads", "attention.q_lin",
    "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm", "ffn.lin1", "ffn.lin2",
    "output_layer_norm", token_types=False)
ARCHITECTURES = (BERT_STYLE, DISTILBERT)
EXPECTED = ("a BERT-style encoder: base_model.encoder.layer[i] with attention.self.{query,key,value}, "
            "attention.output.{dense,LayerNorm}, intermediate.dense, output.{dense,LayerNorm} (BERT, MiniLM, "
            "RoBERTa, ELECTRA), or base_model.transformer.layer[i] with attention.{q_lin,k_lin,v_lin,out_lin}, "
            "sa_layer_norm, ffn.{lin1,lin2}, output_layer_norm (DistilBERT)")


def _get(module: nn.Module | None, path: str) -> Any:
    for name in path.split("."):
        if module is None:
            return None
        module = getattr(module, name, None)
    return module


def is_removed(module: Any) -> bool:
    return bool(getattr(module, REMOVED_ATTR, False))


@dataclass
class LayerParts:
    """The modules of one encoder layer, by role. Removed parts (physical pruning) are None."""

    arch: Architecture
    attention: nn.Module              # the attention sub-layer (layer.attention)
    self_attention: nn.Module | None  # the module with q/k/v, the head count and the attention dropout
    query: nn.Linear | None
    key: nn.Linear | None
    value: nn.Linear | None
    attn_dense: nn.Linear | None      # attention output projection
    attn_norm: nn.LayerNorm
    intermediate_dense: nn.Linear | None  # first MLP dense
    output_dense: nn.Linear | None    # second MLP dense
    output_norm: nn.LayerNorm
    num_heads: int                    # 0 when every head was removed
    head_size: int | None

    def role(self, name: str) -> nn.Linear | None:
        """A prunable role of PRUNABLE_ROLES by name."""
        return {"query": self.query, "key": self.key, "value": self.value, "attn_out": self.attn_dense,
                "mlp_in": self.intermediate_dense, "mlp_out": self.output_dense}[name]


def _layer_architecture(layer: nn.Module) -> Architecture | None:
    """The architecture whose two LayerNorms this layer has (they survive any pruning)."""
    for arch in ARCHITECTURES:
        if isinstance(_get(layer, arch.attn_norm), nn.LayerNorm) and \
                isinstance(_get(layer, arch.out_norm), nn.LayerNorm):
            return arch
    return None


def _found(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", model)
    children = ", ".join(n for n, _ in base.named_children()) or "none"
    return (f"{type(model).__name__} (model_type {getattr(config, 'model_type', '?')!r}; its base model "
            f"{type(base).__name__} has children: {children})")


def model_architecture(model: nn.Module) -> Architecture:
    """The encoder architecture of a model, with a clear refusal for decoders and anything else."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if getattr(config, "is_decoder", False) or model_type in DECODER_TYPES:
        raise BertLotteryError(f"{_found(model)} is a decoder (causal self-attention); expected {EXPECTED}")
    base = getattr(model, "base_model", model)
    for arch in ARCHITECTURES:
        layers = _get(base, arch.layers)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return arch
    raise BertLotteryError(f"{_found(model)}: no encoder layer list found; expected {EXPECTED}")


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers of a BERT-style model, each checked to have every role of its architecture."""
    arch = model_architecture(model)
    layers = list(_get(getattr(model, "base_model", model), arch.layers))
    for i, layer in enumerate(layers):
        if _layer_architecture(layer) is not arch:
            raise BertLotteryError(f"{type(model).__name__}: encoder layer {i} ({type(layer).__name__}) lacks "
                                   f"{arch.attn_norm}/{arch.out_norm} LayerNorms; expected {EXPECTED}")
        layer_parts(layer)  # every role present (or removed by physical pruning)
    return layers


def layer_parts(layer: nn.Module) -> LayerParts:
    """Role-based access to one encoder layer's modules (works on physically pruned layers too)."""
    name = type(layer).__name__
    arch = _layer_architecture(layer)
    if arch is None:
        raise BertLotteryError(f"{name}: not a BERT-style encoder layer (children: "
                               f"{', '.join(n for n, _ in layer.named_children())}); expected {EXPECTED}")
    heads_removed = is_removed(_get(layer, arch.attention_block))
    mlp_removed = any(is_removed(_get(layer, block)) for block in arch.mlp_blocks)
    roles = {}
    for role, removed in (("query", heads_removed), ("key", heads_removed), ("value", heads_removed),
                          ("attn_out", heads_removed), ("mlp_in", mlp_removed), ("mlp_out", mlp_removed)):
        path = getattr(arch, role)
        module = None if removed else _get(layer, path)
        if not removed and not isinstance(module, nn.Linear):
            raise BertLotteryError(f"{name}: {path} is {type(module).__name__ if module is not None else 'missing'}"
                                   f", expected an nn.Linear ({arch.name} layer)")
        roles[role] = module
    core = None if heads_removed else _get(layer, arch.core)
    heads = 0 if core is None else int(getattr(core, arch.heads_attr))
    return LayerParts(
        arch=arch, attention=_get(layer, arch.attention_block), self_attention=core,
        query=roles["query"], key=roles["key"], value=roles["value"], attn_dense=roles["attn_out"],
        attn_norm=_get(layer, arch.attn_norm), intermediate_dense=roles["mlp_in"],
        output_dense=roles["mlp_out"], output_norm=_get(layer, arch.out_norm), num_heads=heads,
        head_size=None if core is None else roles["query"].weight.shape[0] // heads)


def uses_token_types(model: nn.Module) -> bool:
    """Whether the model's embeddings take token_type_ids: not DistilBERT, not a model with one token type
    (RoBERTa: its own tokenizer writes only zeros, and a missing tensor means zeros to the model)."""
    return model_architecture(model).token_types and getattr(model.config, "type_vocab_size", 2) > 1


def model_inputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without token_type_ids for a model that takes none (see uses_token_types)."""
    if "token_type_ids" in batch and not uses_token_types(model):
        return {k: v for k, v in batch.items() if k != "token_type_ids"}
    return batch


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _param(module: nn.Module, attr: str) -> nn.Parameter | None:
    """The stored parameter (under a weight-mask parametrization: the unmasked original)."""
    if parametrize.is_parametrized(module, attr):
        return getattr(module.parametrizations, attr).original
    return module._parameters.get(attr)


def prunable_roles(model: nn.Module) -> dict[str, tuple[int, str]]:
    """The m-pruning pool (docs/protocol.md §m-pruning) by role: {parameter name: (layer index,
    "<role>.<weight|bias>")}, per encoder layer Q/K/V weight+bias, attention-output projection weight+bias,
    first MLP dense weight+bias, second MLP dense weight only (roles of PRUNABLE_ROLES). Never embeddings,
    LayerNorms, the second MLP dense's bias, pooler or classifier. Names are those of the unmasked model."""
    names = _module_names(model)
    result: dict[str, tuple[int, str]] = {}
    for index, layer in enumerate(encoder_layers(model)):
        parts = layer_parts(layer)
        for role, attrs in PRUNABLE_ROLES:
            module = parts.role(role)
            if module is None:
                continue
            for attr in attrs:
                if _param(module, attr) is not None:
                    result[f"{names[id(module)]}.{attr}"] = (index, f"{role}.{attr}")
    return result


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The m-pruning pool as {name: stored parameter}, in prunable_roles' order."""
    result = {}
    for name in prunable_roles(model):
        module_name, attr = name.rsplit(".", 1)
        result[name] = _param(model.get_submodule(module_name), attr)
    return result


def head_counts(model: nn.Module) -> list[int]:
    """Heads currently present in each layer (after physical pruning, fewer)."""
    return [layer_parts(layer).num_heads for layer in encoder_layers(model)]


def is_pruned(model: nn.Module) -> bool:
    return getattr(model.config, PRUNED_CONFIG_KEYS[0], None) is not None


@lru_cache(maxsize=8)
def _meta_model_cached(config_json: str, config_class: type) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    config = config_class.from_dict(json.loads(config_json))
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return AutoModelForSequenceClassification.from_config(config)


def config_of(model_or_config: Any) -> Any:
    """Accept a model (anything with .config) or a transformers config."""
    config = getattr(model_or_config, "config", model_or_config)
    if not hasattr(config, "num_hidden_layers") or not hasattr(config, "num_attention_heads"):
        raise BertLotteryError(
            f"{type(model_or_config).__name__}: expected a BERT-style model or config with "
            "num_hidden_layers and num_attention_heads")
    return config


def meta_model(model_or_config: Any) -> torch.nn.Module:
    """A full-size (unpruned) sequence-classification model of this config on the meta device."""
    config = config_of(model_or_config)
    data = config.to_dict()
    for key in PRUNED_CONFIG_KEYS:
        data.pop(key, None)
    return _meta_model_cached(json.dumps(data, sort_keys=True, default=str), type(config))
