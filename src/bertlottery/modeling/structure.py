"""Find the parts of a BERT-style encoder by role, whatever the architecture calls them.

An `Architecture` names where one encoder architecture keeps each role: the layer list under `model.base_model`, and inside a
layer the query/key/value projections, the attention output projection and its LayerNorm, the MLP's two
dense layers and the output LayerNorm, and the attribute holding the number of heads. Four naming schemes
cover the supported encoders:

* BERT-style (BERT, MiniLM, RoBERTa, ELECTRA's discriminator): `encoder.layer[i]` with
  attention.self.{query,key,value}, attention.output.{dense,LayerNorm}, intermediate.dense,
  output.{dense,LayerNorm}; heads in attention.self.num_attention_heads;
* DistilBERT: `transformer.layer[i]` with attention.{q_lin,k_lin,v_lin,out_lin}, sa_layer_norm,
  ffn.{lin1,lin2}, output_layer_norm; heads in attention.n_heads; no token types;
* DeBERTa-v2/v3: BERT-style with attention.self.{query_proj,key_proj,value_proj}; the relative-position
  projections attention.self.{pos_key_proj,pos_query_proj} (present when share_att_key is false) have one
  block of rows per head, so they lose a removed head's rows too, but they are not in the m-pruning pool
  (the paper's pool is Q/K/V, attention output and MLP);
* ModernBERT (pre-norm): `layers[i]` with one fused attn.Wqkv (rows [Q; K; V], each head's rows in each
  block), attn.Wo, a GLU MLP mlp.Wi (rows [input; gate]) and mlp.Wo, the norms attn_norm (an Identity
  in layer 0) and mlp_norm before the sub-layers. Roles: "qkv" is the fused projection (one entry of the
  m-pruning pool, in place of query, key and value), "mlp_in" is Wi with both GLU halves; a head is its
  rows in each of the three blocks. A removed sub-layer adds nothing to the residual stream.

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
                  ("qkv", ("weight", "bias")), ("attn_out", ("weight", "bias")), ("mlp_in", ("weight", "bias")), ("mlp_out", ("weight",)))
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
    heads_attr: str | None      # None: the head count is the fused projection's rows / (3 * core.head_dim)
    query: str                  # "" where a fused projection (qkv) holds Q, K and V
    key: str
    value: str
    attn_out: str
    attn_norm: str
    mlp_in: str
    mlp_out: str
    out_norm: str
    token_types: bool           # the embeddings take token_type_ids
    qkv: str = ""               # the fused [Q; K; V] projection, if any
    extra_head_rows: tuple[str, ...] = ()  # other projections with a block of rows per head, where present
    removed_adds_zero: bool = False  # a removed sub-layer adds 0 to the residual (else: LayerNorm(input))
    identity_attn_norm: bool = False  # the attention norm may be an nn.Identity (ModernBERT's layer 0)


BERT_STYLE = Architecture(
    "bert-style", "encoder.layer", "attention", ("intermediate", "output"), "attention.self",
    "num_attention_heads", "attention.self.query", "attention.self.key", "attention.self.value",
    "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense", "output.dense",
    "output.LayerNorm", token_types=True)
DISTILBERT = Architecture(
    "distilbert", "transformer.layer", "attention", ("ffn",), "attention", "n_heads", "attention.q_lin",
    "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm", "ffn.lin1", "ffn.lin2",
    "output_layer_norm", token_types=False, removed_adds_zero=True)
DEBERTA_V2 = Architecture(
    "deberta-v2", "encoder.layer", "attention", ("intermediate", "output"), "attention.self",
    "num_attention_heads", "attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj",
    "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense", "output.dense",
    "output.LayerNorm", token_types=True,
    extra_head_rows=("attention.self.pos_key_proj", "attention.self.pos_query_proj"))
MODERNBERT = Architecture(
    "modernbert", "layers", "attn", ("mlp",), "attn", None, "", "", "", "attn.Wo", "attn_norm", "mlp.Wi",
    "mlp.Wo", "mlp_norm", token_types=False, qkv="attn.Wqkv", removed_adds_zero=True, identity_attn_norm=True)
ARCHITECTURES = (BERT_STYLE, DEBERTA_V2, DISTILBERT, MODERNBERT)
EXPECTED = ("a BERT-style encoder: base_model.encoder.layer[i] with attention.self.{query,key,value}, "
            "attention.output.{dense,LayerNorm}, intermediate.dense, output.{dense,LayerNorm} (BERT, MiniLM, "
            "RoBERTa, ELECTRA; DeBERTa-v2/v3 with attention.self.{query_proj,key_proj,value_proj}), or "
            "base_model.transformer.layer[i] with attention.{q_lin,k_lin,v_lin,out_lin}, sa_layer_norm, "
            "ffn.{lin1,lin2}, output_layer_norm (DistilBERT), or base_model.layers[i] with attn.{Wqkv,Wo}, "
            "mlp.{Wi,Wo}, attn_norm, mlp_norm (ModernBERT)")


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
    query: nn.Linear | None           # None also where a fused projection (qkv) holds Q, K and V
    key: nn.Linear | None
    value: nn.Linear | None
    attn_dense: nn.Linear | None      # attention output projection
    attn_norm: nn.Module              # a LayerNorm (ModernBERT's layer 0: an Identity)
    intermediate_dense: nn.Linear | None  # first MLP dense
    output_dense: nn.Linear | None    # second MLP dense
    output_norm: nn.LayerNorm
    num_heads: int                    # 0 when every head was removed
    head_size: int | None
    qkv: nn.Linear | None = None      # the fused [Q; K; V] projection (ModernBERT)
    extra_head_projections: tuple[nn.Linear, ...] = ()  # DeBERTa's separate relative-position projections

    def role(self, name: str) -> nn.Linear | None:
        """A prunable role of PRUNABLE_ROLES by name."""
        return {"query": self.query, "key": self.key, "value": self.value, "qkv": self.qkv,
                "attn_out": self.attn_dense, "mlp_in": self.intermediate_dense, "mlp_out": self.output_dense}[name]

    @property
    def head_projections(self) -> tuple[nn.Linear, ...]:
        """Every projection with a block of rows per head (a removed head loses them)."""
        own = (self.qkv,) if self.qkv is not None else (self.query, self.key, self.value)
        return tuple(m for m in own if m is not None) + self.extra_head_projections

    def head_rows(self, projection: nn.Linear, heads: torch.Tensor) -> torch.Tensor:
        """The rows of `projection` that belong to the given head indices (each of the three blocks of a
        fused projection)."""
        per_head = (heads[:, None] * self.head_size + torch.arange(self.head_size)).flatten()
        if projection is not self.qkv:
            return per_head
        width = self.num_heads * self.head_size
        return torch.cat([per_head + block * width for block in range(3)])

    def value_output(self, output: torch.Tensor) -> torch.Tensor:
        """x W_V + b_V from the output of the value projection (the fused projection's last block)."""
        return output if self.qkv is None else output.chunk(3, dim=-1)[2]

    @property
    def value_projection(self) -> nn.Linear | None:
        return self.qkv if self.qkv is not None else self.value


def _is_norm(module: Any, identity_allowed: bool) -> bool:
    return isinstance(module, nn.LayerNorm) or (identity_allowed and isinstance(module, nn.Identity))


def _layer_architectures(layer: nn.Module) -> list[Architecture]:
    """The architectures whose two norms this layer has (they survive any pruning) and, where its attention
    is present, whose Q (or fused QKV) projection it has. BERT and DeBERTa share their norms' names, so a
    layer with no head left matches both."""
    found = []
    for arch in ARCHITECTURES:
        if not (_is_norm(_get(layer, arch.attn_norm), arch.identity_attn_norm)
                and isinstance(_get(layer, arch.out_norm), nn.LayerNorm)):
            continue
        if is_removed(_get(layer, arch.attention_block)) or \
                isinstance(_get(layer, arch.qkv or arch.query), nn.Linear):
            found.append(arch)
    return found


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
    layers = next((_get(base, arch.layers) for arch in ARCHITECTURES
                   if isinstance(_get(base, arch.layers), nn.ModuleList) and len(_get(base, arch.layers)) > 0), None)
    if layers is None:
        raise BertLotteryError(f"{_found(model)}: no encoder layer list found; expected {EXPECTED}")
    common = [arch for arch in ARCHITECTURES if all(arch in _layer_architectures(layer) for layer in layers)]
    if not common:
        bad = next(i for i, layer in enumerate(layers) if not _layer_architectures(layer))
        raise BertLotteryError(f"{type(model).__name__}: encoder layer {bad} ({type(layers[bad]).__name__}) "
                               f"has no known set of norms and projections; expected {EXPECTED}")
    return common[0]


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers of a BERT-style model, each checked to have every role of its architecture."""
    arch = model_architecture(model)
    layers = list(_get(getattr(model, "base_model", model), arch.layers))
    for layer in layers:
        layer_parts(layer, arch)  # every role present (or removed by physical pruning)
    return layers


def _role_modules(layer: nn.Module, arch: Architecture, heads_removed: bool, mlp_removed: bool) -> dict:
    """The layer's Linear of each role the architecture has (None where removed), each checked."""
    roles = {}
    for role, removed in (("query", heads_removed), ("key", heads_removed), ("value", heads_removed),
                          ("qkv", heads_removed), ("attn_out", heads_removed), ("mlp_in", mlp_removed),
                          ("mlp_out", mlp_removed)):
        path = getattr(arch, role)
        module = None if removed or not path else _get(layer, path)
        if path and not removed and not isinstance(module, nn.Linear):
            raise BertLotteryError(f"{type(layer).__name__}: {path} is "
                                   f"{type(module).__name__ if module is not None else 'missing'}"
                                   f", expected an nn.Linear ({arch.name} layer)")
        roles[role] = module
    return roles


def layer_parts(layer: nn.Module, arch: Architecture | None = None) -> LayerParts:
    """Role-based access to one encoder layer's modules (works on physically pruned layers too)."""
    arch = arch or next(iter(_layer_architectures(layer)), None)
    if arch is None:
        raise BertLotteryError(f"{type(layer).__name__}: not a BERT-style encoder layer (children: "
                               f"{', '.join(n for n, _ in layer.named_children())}); expected {EXPECTED}")
    heads_removed = is_removed(_get(layer, arch.attention_block))
    mlp_removed = any(is_removed(_get(layer, block)) for block in arch.mlp_blocks)
    roles = _role_modules(layer, arch, heads_removed, mlp_removed)
    core = None if heads_removed else _get(layer, arch.core)
    head_size = heads = 0
    if core is not None and arch.heads_attr is None:
        head_size = int(core.head_dim)
        heads = roles["qkv"].out_features // (3 * head_size)
    elif core is not None:
        heads = int(getattr(core, arch.heads_attr))
        head_size = roles["query"].weight.shape[0] // heads
    extra = () if core is None else tuple(
        m for m in (_get(layer, path) for path in arch.extra_head_rows) if isinstance(m, nn.Linear))
    return LayerParts(
        arch=arch, attention=_get(layer, arch.attention_block), self_attention=core,
        query=roles["query"], key=roles["key"], value=roles["value"], attn_dense=roles["attn_out"],
        attn_norm=_get(layer, arch.attn_norm), intermediate_dense=roles["mlp_in"],
        output_dense=roles["mlp_out"], output_norm=_get(layer, arch.out_norm), num_heads=heads,
        head_size=None if core is None else head_size, qkv=roles["qkv"], extra_head_projections=extra)


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


def attention_implementation(config: Any, requested: str) -> str:
    """The requested attention implementation, except "sdpa" for a class without it (DeBERTa-v2/v3): there
    "eager", the same attention computed unfused (transformers refuses to build it with "sdpa")."""
    if requested != "sdpa":
        return requested
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    model_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING.get(type(config), None)
    return requested if model_class is None or model_class._supports_sdpa else "eager"


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
