"""Soft head/MLP masks: differentiable multipliers whose gradients are the s-pruning importance scores.

xi per head scales the attention context before the output projection (= the attention probabilities);
nu per layer scales the MLP output before the residual add.
"""

from __future__ import annotations

import torch
from torch import nn

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.structure import (
    encoder_layers,
    head_counts,
    is_pruned,
    layer_parts,
)

SOFT_MASKS_ATTR = "_bertlottery_soft_masks"


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
            # the hooks sit on the roles' modules (attention output projection, second MLP dense), so
            # every family's own forward runs them
            self._handles.append(part.attn_dense.register_forward_pre_hook(self._head_hook(index, part.head_size)))
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

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def attach_soft_masks(model: nn.Module, mask: HeadMlpMask | None = None, *,
                      empty_layer_bias: bool = False) -> SoftMasks:
    """Hook soft head/MLP multipliers into an unpruned model (all ones, or `mask`)."""
    if getattr(model, SOFT_MASKS_ATTR, None) is not None:
        raise BertLotteryError("soft masks are already attached to this model; detach_soft_masks first")
    if is_pruned(model):
        raise BertLotteryError("soft masks need the unpruned model; this one has physically pruned heads/MLPs")
    if mask is not None:
        check_fits(mask, model)
    soft = SoftMasks(model, empty_layer_bias=empty_layer_bias)
    if mask is not None:
        soft.set(mask)
    setattr(model, SOFT_MASKS_ATTR, soft)
    return soft


def detach_soft_masks(model: nn.Module) -> None:
    soft = getattr(model, SOFT_MASKS_ATTR, None)
    if soft is not None:
        soft.remove()
        delattr(model, SOFT_MASKS_ATTR)
