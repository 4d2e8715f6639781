"""Kept values per head and MLP of an m-pruning weight mask (Figure 1a, paper §4.1), and the summary of a
mask that a study bundle keeps in its place (bertlottery.masks.summary). Which slice of which parameter
belongs to which head or MLP is read off the model's structure (`structure.prunable_roles`), so every
supported encoder family works; a meta-device model built from a config.json is enough."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertlottery.errors import BertLotteryError
from bertlottery.io import file_sha256
from bertlottery.masks.summary import SUMMARY_FORMAT, SUMMARY_OF
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.structure import encoder_layers, layer_parts, prunable_parameters, prunable_roles

# The roles a head owns (rows of its slice; the attention output projection: columns) and an MLP owns.
_HEAD_ROWS = ("query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias")
_FUSED_ROWS = ("qkv.weight", "qkv.bias")
_HEAD_COLUMNS = "attn_out.weight"
_MLP = ("mlp_in.weight", "mlp_in.bias", "mlp_out.weight")

Blocks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # head kept, head total, mlp kept, mlp total


def _masks_by_layer_role(mask: WeightMask, model: nn.Module) -> dict[int, dict[str, np.ndarray]]:
    """{layer index: {"<role>.<weight|bias>": kept array}} of a weight mask that fits the model."""
    check_fits(mask, model)  # exactly the model's prunable parameters, with their shapes
    layers: dict[int, dict[str, np.ndarray]] = {}
    for name, (layer, role) in prunable_roles(model).items():
        layers.setdefault(layer, {})[role] = mask.masks[name].numpy().astype(bool)
    return layers


def block_fractions(mask: WeightMask, model: nn.Module) -> Blocks:
    """Kept and total prunable values per head ([L, H]) and per MLP ([L]) of a weight mask found on
    `model`'s architecture (a meta-device model is enough: only names and shapes are read).

    A head owns its query/key/value rows [h*d, (h+1)*d) with their biases (a fused QKV: those rows of each
    of its three blocks) and the same columns of the attention output projection; an MLP owns its first dense layer (weight, bias) and the second's weight.
    """
    parts_of = [layer_parts(layer) for layer in encoder_layers(model)]
    num_heads = max(parts.num_heads for parts in parts_of)
    head_kept, head_total = np.zeros((len(parts_of), num_heads)), np.zeros((len(parts_of), num_heads))
    mlp_kept, mlp_total = np.zeros(len(parts_of)), np.zeros(len(parts_of))
    for i, roles in sorted(_masks_by_layer_role(mask, model).items()):
        parts, d = parts_of[i], parts_of[i].head_size
        for h in range(parts.num_heads):
            pieces = [roles[role][h * d:(h + 1) * d] for role in _HEAD_ROWS if role in roles]
            if parts.qkv is not None:  # ModernBERT: the head's rows in each of the Q, K and V blocks
                rows = parts.head_rows(parts.qkv, torch.tensor([h])).numpy()
                pieces += [roles[role][rows] for role in _FUSED_ROWS if role in roles]
            pieces.append(roles[_HEAD_COLUMNS][:, h * d:(h + 1) * d])
            head_kept[i, h] = sum(int(p.sum()) for p in pieces)
            head_total[i, h] = sum(p.size for p in pieces)
        mlp = [roles[role] for role in _MLP if role in roles]
        mlp_kept[i] = sum(int(p.sum()) for p in mlp)
        mlp_total[i] = sum(p.size for p in mlp)
    return head_kept, head_total, mlp_kept, mlp_total


def model_block_totals(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Total prunable values per head ([L, H]) and per MLP ([L]) of the model (those of a full mask)."""
    _, head_total, _, mlp_total = block_fractions(WeightMask.full(prunable_parameters(model)), model)
    return head_total, mlp_total


def summarize_weight_mask(mask_path: str | os.PathLike, model: nn.Module, *, mask: str, model_config: dict,
                          regenerate: str) -> dict:
    """The summary of the WeightMask file `mask_path` (bertlottery.masks.summary): its block counts by
    `block_fractions` on `model` (the run's model; `model_config`: {"path", "sha256"} of its config.json),
    size, parameters, metadata and sha256. `mask`: the file's path under the results root; `regenerate`: the
    command that writes it again."""
    loaded = WeightMask.load(mask_path)
    head_kept, head_total, mlp_kept, mlp_total = block_fractions(loaded, model)

    def counts(values: np.ndarray) -> list:
        return values.astype(np.int64).tolist()

    return {
        "format": SUMMARY_FORMAT,
        "summary_of": SUMMARY_OF,
        "mask": mask,
        "sha256": file_sha256(mask_path),
        "bytes": Path(mask_path).stat().st_size,
        "meta": dict(loaded.meta),
        "kept": loaded.kept,
        "total": loaded.total,
        "sparsity": 1 - loaded.fraction,
        "parameters": {name: list(values.shape) for name, values in loaded.masks.items()},
        "blocks": {"head_kept": counts(head_kept), "head_total": counts(head_total),
                   "mlp_kept": counts(mlp_kept), "mlp_total": counts(mlp_total)},
        "model_config": model_config,
        "regenerate": regenerate,
    }


def summary_blocks(summary: dict, model: nn.Module, where: str, totals: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> Blocks:
    """The block counts of a mask summary (read by `masks.summary.read_summary`), as `block_fractions`
    returns them for the mask itself, after checking that the mask fitted `model`: the same parameter
    names and shapes as its prunable parameters, and the same total per head and MLP (`totals`: the
    model's `model_block_totals`, computed here when not given)."""
    expected = {name: list(p.shape) for name, p in prunable_parameters(model).items()}
    recorded = summary["parameters"]
    for name, shape in expected.items():
        if name not in recorded:
            raise BertLotteryError(f"{where}: the summarized weight mask has no entry for prunable parameter "
                                   f"{name!r} {shape} of {type(model).__name__}")
        if recorded[name] != shape:
            raise BertLotteryError(f"{where}: the summarized weight mask for {name!r} has shape {recorded[name]}; "
                                   f"the model's parameter is {shape}")
    extra = [name for name in recorded if name not in expected]
    if extra:
        raise BertLotteryError(f"{where}: the summarized weight mask's entry {extra[0]!r} is not a prunable "
                               f"parameter of {type(model).__name__} ({len(extra)} such entries)")
    blocks = summary["blocks"]
    arrays = tuple(np.asarray(blocks[key], dtype=np.float64)
                   for key in ("head_kept", "head_total", "mlp_kept", "mlp_total"))
    head_total, mlp_total = totals if totals is not None else model_block_totals(model)
    if arrays[1].shape != head_total.shape or not np.array_equal(arrays[1], head_total) \
            or not np.array_equal(arrays[3], mlp_total):
        raise BertLotteryError(f"{where}: the summary's values per head and MLP (blocks.head_total, "
                               "blocks.mlp_total) are not those of the model; it was made on another architecture "
                               "or is damaged")
    return arrays
