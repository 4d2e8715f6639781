"""Load BERT-style classifiers and apply masks to them (spec 2.2 "modified BERT", 3; DESIGN.md "Masks").

Works for any BERT-style encoder of transformers 5 (BERT, MiniLM, RoBERTa, ELECTRA, ...): the encoder's
`layer` ModuleList is found through `model.base_model`, and parts are found by role inside each layer
(attention.self.{query,key,value}, attention.output.{dense,LayerNorm}, intermediate.dense,
output.{dense,LayerNorm}), never by a "bert." name prefix.

Three ways to apply a mask:
* soft (`attach_soft_masks`): differentiable multipliers, xi per head on the attention context before the
  output projection (= on the attention probabilities) and nu per layer on the MLP output before the
  residual add; their gradients are the s-pruning importance scores.
* physical (`prune_heads_and_mlps`): removes heads and MLPs; a layer with zero heads or no MLP returns
  LayerNorm(input) for that sub-layer.
* weight masks (`apply_weight_mask`): a parametrization weight * mask, so masked values are exactly zero
  in every forward pass and through any training (AdamW weight decay and momentum included).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from bertlottery.errors import BertLotteryError
from bertlottery.masks import PRUNED_CONFIG_KEYS, HeadMlpMask, WeightMask

_SOFT_ATTR = "_bertlottery_soft_masks"

# --------------------------------------------------------------------------------------------------
# loading


def _looks_local(name_or_path: str) -> bool:
    return Path(name_or_path).expanduser().exists() or name_or_path.startswith(("/", "./", "../", "~"))


def _is_pruned_dir(name: str) -> bool:
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get(PRUNED_CONFIG_KEYS[0]) is not None
    except (OSError, ValueError) as exc:
        raise BertLotteryError(f"{config}: not readable JSON ({exc})") from exc


def load_classifier(name_or_path: str | os.PathLike, num_labels: int, *, random_init: bool = False,
                    attn_implementation: str = "sdpa") -> nn.Module:
    """A sequence-classification model in fp32 (num_labels=1: regression with MSE loss).

    random_init builds the architecture from the checkpoint's config with random weights (the paper's
    Table 2 "random init" row); the caller seeds torch first for a reproducible init. A saved physically
    pruned model (config.json has bertlottery_head_mask) is rebuilt with `load_pruned`."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    name = str(name_or_path)
    if _looks_local(name) and not Path(name).expanduser().is_dir():
        raise BertLotteryError(f"{name}: model directory not found (expected a save_pretrained directory "
                               "with config.json and weights, or a hub id)")
    if not random_init and _is_pruned_dir(name):
        model = load_pruned(name, attn_implementation=attn_implementation)
        if model.config.num_labels != num_labels:
            raise BertLotteryError(f"{name}: pruned model has num_labels={model.config.num_labels}, "
                                   f"expected {num_labels}")
        return model
    problem = "regression" if num_labels == 1 else "single_label_classification"
    try:
        if random_init:
            config = AutoConfig.from_pretrained(name, num_labels=num_labels, problem_type=problem)
            for key in PRUNED_CONFIG_KEYS:  # a random full-size model, even from a pruned model's config
                if hasattr(config, key):
                    delattr(config, key)
            model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn_implementation)
        else:
            # dtype fixed: checkpoints may store fp16 (the shared MiniLM) while the study runs in fp32
            model = AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=num_labels, problem_type=problem, dtype=torch.float32,
                attn_implementation=attn_implementation)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # RuntimeError: e.g. a fine-tuned checkpoint whose classifier has another number of labels
        raise BertLotteryError(f"{name}: cannot load a sequence-classification model with "
                               f"num_labels={num_labels} ({exc})") from exc
    model = model.float()
    encoder_layers(model)  # fail early on a non-BERT-style architecture
    return model


# --------------------------------------------------------------------------------------------------
# structure


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
    """The m-pruning pool (spec 3), by role: per encoder layer Q/K/V weight+bias, attention-output dense
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


# --------------------------------------------------------------------------------------------------
# soft masks


class SoftMasks:
    """Per-head (xi, [L, H]) and per-MLP (nu, [L]) multipliers hooked into a model.

    `heads` and `mlps` are plain float leaf tensors: set values with `set(mask)` or in place, call
    `requires_grad_()` to get `heads.grad` / `mlps.grad` after backward. The hooks read the attributes at
    every forward, so the caller may also assign fresh tensors of the same shape.

    empty_layer_bias: with False (default) a layer whose xi are all exactly 0 also loses its attention
    output bias, so soft masks give the same logits as physical pruning. True keeps the bias, as the
    original study's soft head mask did during its search (there the sub-layer returned
    LayerNorm(input + bias) in such layers, while its physical pruning returned LayerNorm(input))."""

    def __init__(self, model: nn.Module, empty_layer_bias: bool = False):
        layers = encoder_layers(model)
        parts = [layer_parts(layer) for layer in layers]
        counts = head_counts(model)
        param = next(model.parameters())
        self.heads = torch.ones(len(layers), counts[0], dtype=torch.float32, device=param.device)
        self.mlps = torch.ones(len(layers), dtype=torch.float32, device=param.device)
        self.empty_layer_bias = empty_layer_bias
        self._handles = []
        for index, part in enumerate(parts):
            head_dim = part.query.weight.shape[0] // counts[index]
            self._handles.append(part.attn_dense.register_forward_pre_hook(self._head_hook(index, head_dim)))
            if not empty_layer_bias and part.attn_dense.bias is not None:
                self._handles.append(part.attn_dense.register_forward_hook(self._bias_hook(index)))
            self._handles.append(part.output_dense.register_forward_hook(self._mlp_hook(index)))

    def _head_hook(self, index: int, head_dim: int):
        def hook(module, args):
            context, *rest = args
            xi = self.heads[index].to(context.device, context.dtype)
            shape = context.shape
            scaled = (context.reshape(*shape[:-1], -1, head_dim) * xi[:, None]).reshape(shape)
            return (scaled, *rest)
        return hook

    def _bias_hook(self, index: int):
        def hook(module, args, output):
            # Branch-free (no host sync): subtract the bias only when every head of the layer is 0.
            empty = (self.heads[index] == 0).all().to(output.device, output.dtype)
            return output - empty * module.bias.to(output.dtype)
        return hook

    def _mlp_hook(self, index: int):
        # nu * dense(x) before dropout equals nu * dropout(dense(x)): dropout is elementwise scaling.
        def hook(module, args, output):
            return output * self.mlps[index].to(output.device, output.dtype)
        return hook

    def set(self, mask: HeadMlpMask) -> SoftMasks:
        """Copy a 0/1 mask into the multipliers (keeps requires_grad)."""
        if tuple(mask.heads.shape) != tuple(self.heads.shape):
            raise BertLotteryError(f"head/MLP mask with heads {list(mask.heads.shape)} does not fit soft masks "
                                   f"of shape {list(self.heads.shape)}")
        with torch.no_grad():
            self.heads.copy_(mask.heads.to(self.heads))
            self.mlps.copy_(mask.mlps.to(self.mlps))
        return self

    def requires_grad_(self, flag: bool = True) -> SoftMasks:
        self.heads.requires_grad_(flag)
        self.mlps.requires_grad_(flag)
        return self

    def zero_grad(self) -> None:
        self.heads.grad = None
        self.mlps.grad = None

    def as_mask(self) -> HeadMlpMask:
        """The current multipliers as a kept (nonzero) / removed mask."""
        return HeadMlpMask(self.heads.detach().cpu() != 0, self.mlps.detach().cpu() != 0)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def attach_soft_masks(model: nn.Module, mask: HeadMlpMask | None = None, *,
                      empty_layer_bias: bool = False) -> SoftMasks:
    """Hook soft head/MLP multipliers into an unpruned model (all ones, or `mask`)."""
    if getattr(model, _SOFT_ATTR, None) is not None:
        raise BertLotteryError("soft masks are already attached to this model; detach_soft_masks first")
    if is_pruned(model):
        raise BertLotteryError("soft masks need the unpruned model; this one has physically pruned heads/MLPs")
    if mask is not None:
        mask.check_fits(model)
    soft = SoftMasks(model, empty_layer_bias=empty_layer_bias)
    if mask is not None:
        soft.set(mask)
    setattr(model, _SOFT_ATTR, soft)
    return soft


def detach_soft_masks(model: nn.Module) -> None:
    soft = getattr(model, _SOFT_ATTR, None)
    if soft is not None:
        soft.remove()
        delattr(model, _SOFT_ATTR)


# --------------------------------------------------------------------------------------------------
# physical pruning


class _NormOnly(nn.Module):
    """A removed sub-layer: output = LayerNorm(residual input), no bias, no dropout (spec 2.2)."""

    def __init__(self, norm_name: str, norm: nn.LayerNorm):
        super().__init__()
        self.norm_name = norm_name
        self.add_module(norm_name, norm)  # same parameter names as before, so state dicts still line up

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor | None = None) -> torch.Tensor:
        return getattr(self, self.norm_name)(hidden_states if input_tensor is None else input_tensor)


class _HeadlessAttention(nn.Module):
    """Attention sub-layer whose heads are all removed: returns (LayerNorm(input), no attention weights)."""

    def __init__(self, output: _NormOnly):
        super().__init__()
        self.output = output

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return self.output(hidden_states), None


class _Skip(nn.Module):
    """Stands in for a removed intermediate layer (its output is ignored by _NormOnly)."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states


def _norm_name(module: nn.Module) -> str:
    return next(n for n, c in module.named_children() if isinstance(c, nn.LayerNorm))


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


def _prune_layer_heads(layer: nn.Module, keep: torch.Tensor) -> None:
    parts = layer_parts(layer)
    if keep.all():
        return
    if not keep.any():
        out = layer.attention.output
        layer.attention = _HeadlessAttention(_NormOnly(_norm_name(out), parts.attn_norm))
        return
    attn = parts.self_attention
    head_dim = parts.query.weight.shape[0] // attn.num_attention_heads
    index = (torch.nonzero(keep).flatten()[:, None] * head_dim + torch.arange(head_dim)).flatten()
    for linear in (parts.query, parts.key, parts.value):
        _slice_linear(linear, index, 0)
    _slice_linear(parts.attn_dense, index, 1)
    attn.num_attention_heads = int(keep.sum())
    attn.all_head_size = attn.num_attention_heads * head_dim
    if hasattr(attn, "attention_head_size") and attn.attention_head_size != head_dim:
        raise BertLotteryError(f"{type(attn).__name__}: attention_head_size {attn.attention_head_size} "
                               f"!= query rows per head {head_dim}")


def prune_heads_and_mlps(model: nn.Module, mask: HeadMlpMask) -> nn.Module:
    """Physically remove the heads and MLPs that `mask` drops, in place (spec 2.2).

    Q/K/V lose the heads' rows (with biases), the attention output dense the matching columns; a layer
    with no head left returns LayerNorm(input) from its attention sub-layer, one with no MLP returns
    LayerNorm(input) from its feed-forward sub-layer. The mask is recorded in model.config
    (bertlottery_head_mask, bertlottery_mlp_mask) so `load_pruned` can rebuild a saved pruned model."""
    mask.check_fits(model)
    if is_pruned(model):
        raise BertLotteryError("this model is already physically pruned; prune the unpruned model with the "
                               "combined mask (mask_a & mask_b) instead")
    if getattr(model, _SOFT_ATTR, None) is not None:
        raise BertLotteryError("detach_soft_masks(model) before pruning it physically")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise BertLotteryError("remove_weight_mask(model) before pruning heads/MLPs physically")
    for layer, keep_heads, keep_mlp in zip(encoder_layers(model), mask.heads, mask.mlps):
        _prune_layer_heads(layer, keep_heads)
        if not keep_mlp:
            out = layer.output
            layer.intermediate = _Skip()
            layer.output = _NormOnly(_norm_name(out), layer_parts(layer).output_norm)
    model.config.bertlottery_head_mask = mask.heads.int().tolist()
    model.config.bertlottery_mlp_mask = mask.mlps.int().tolist()
    return model


def pruned_mask_of(model: nn.Module) -> HeadMlpMask | None:
    """The head/MLP mask a physically pruned model was pruned with (None if unpruned)."""
    if not is_pruned(model):
        return None
    return HeadMlpMask(torch.tensor(model.config.bertlottery_head_mask),
                       torch.tensor(model.config.bertlottery_mlp_mask))


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
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn_implementation)
    prune_heads_and_mlps(model.float(), HeadMlpMask(torch.tensor(heads), torch.tensor(mlps), source=str(path)))
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    if missing or unexpected:
        raise BertLotteryError(f"{weights}: weights do not match the pruned architecture "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


# --------------------------------------------------------------------------------------------------
# weight masks


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


def apply_weight_mask(model: nn.Module, mask: WeightMask) -> nn.Module:
    """Mask prunable parameters in place. Apply before building the optimizer; applying another mask
    later replaces the previous one (the stored originals are kept, so a mask can also be widened)."""
    mask.check_fits(model)
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


def current_weight_mask(model: nn.Module) -> WeightMask | None:
    """The weight mask currently applied (None if none)."""
    masks = {}
    for name, module, attr in _named_targets(model):
        if parametrize.is_parametrized(module, attr):
            masks[name] = next(p.mask for p in getattr(module.parametrizations, attr)
                               if isinstance(p, _KeepMask)).cpu()
    return WeightMask(masks) if masks else None


def remove_weight_mask(model: nn.Module) -> nn.Module:
    """Bake the masks into the weights (masked values become stored zeros) and drop the
    parametrizations, so save_pretrained writes plain parameter names."""
    for _, module, attr in list(_named_targets(model)):
        if parametrize.is_parametrized(module, attr):
            parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return model
