"""Surviving fraction per head and MLP of m-pruning weight masks, by model role (Figure 1a, and the
paper §4.1 claims). Which slice of which parameter belongs to which head or MLP is read off the model's
structure (`modeling.structure.prunable_roles`), so every supported encoder family works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from bertlottery.analysis.masksets import _task_seed
from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.loading import model_of_config_file
from bertlottery.modeling.structure import encoder_layers, layer_parts, prunable_roles

# --- m-pruning block fractions (Figure 1a, paper §4.1) ---------------------------------------------

# The roles a head owns (rows of its slice; the attention output projection: columns) and an MLP owns.
_HEAD_ROWS = ("query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias")
_FUSED_ROWS = ("qkv.weight", "qkv.bias")
_HEAD_COLUMNS = "attn_out.weight"
_MLP = ("mlp_in.weight", "mlp_in.bias", "mlp_out.weight")


def _masks_by_layer_role(mask: WeightMask, model: nn.Module) -> dict[int, dict[str, np.ndarray]]:
    """{layer index: {"<role>.<weight|bias>": kept array}} of a weight mask that fits the model."""
    check_fits(mask, model)  # exactly the model's prunable parameters, with their shapes
    layers: dict[int, dict[str, np.ndarray]] = {}
    for name, (layer, role) in prunable_roles(model).items():
        layers.setdefault(layer, {})[role] = mask.masks[name].numpy().astype(bool)
    return layers


def block_fractions(mask: WeightMask, model: nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def m_block_table(paths, model_config: str | Path) -> pd.DataFrame:
    """Long table of surviving fractions per (task, seed, layer, block) of m-pruning weight masks, found on
    the model whose config.json is `model_config` (a bundle's copy is enough: no weights are read)."""
    model = model_of_config_file(model_config)
    rows = []
    for path in map(Path, paths):
        mask = WeightMask.load(path)
        task, seed = _task_seed(path, mask.meta)
        hk, ht, mk, mt = block_fractions(mask, model)
        for (layer, head), kept in np.ndenumerate(hk):
            rows.append({"task": task, "seed": seed, "layer": layer, "block": "head", "head": head,
                         "kept": int(kept), "total": int(ht[layer, head]), "fraction": kept / ht[layer, head]})
        for layer, kept in enumerate(mk):
            rows.append({"task": task, "seed": seed, "layer": layer, "block": "mlp", "head": -1,
                         "kept": int(kept), "total": int(mt[layer]), "fraction": kept / mt[layer]})
    if not rows:
        raise BertLotteryError("no m-pruning masks given")
    return pd.DataFrame(rows)


def block_grid(blocks: pd.DataFrame, task: str | None = None):
    """(head mean [L,H], head std, mlp mean [L], mlp std) over seeds (and tasks when task is None)."""
    part = blocks if task is None else blocks[blocks["task"] == task]
    if part.empty:
        raise BertLotteryError(f"no m-pruning block fractions for task {task}")
    heads = part[part["block"] == "head"].groupby(["layer", "head"])["fraction"]
    mlps = part[part["block"] == "mlp"].groupby("layer")["fraction"]
    shape = (part["layer"].max() + 1, part.loc[part["block"] == "head", "head"].max() + 1)
    return (heads.mean().to_numpy().reshape(shape), heads.std(ddof=1).to_numpy().reshape(shape),
            mlps.mean().to_numpy(), mlps.std(ddof=1).to_numpy())
