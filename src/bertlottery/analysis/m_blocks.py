"""Surviving fraction per head and MLP of m-pruning weight masks, by parameter name (Figure 1a, and the
paper §4.1 claims)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bertlottery.analysis.masksets import _task_seed
from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import WeightMask

# --- m-pruning block fractions (Figure 1a, paper §4.1) ---------------------------------------------

_LAYER = re.compile(r"layer\.(\d+)\.(.+)$")
_QKV = ("attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
        "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias")
_MLP = ("intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight")


def block_fractions(mask: "WeightMask", num_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kept and total prunable values per head ([L, H]) and per MLP ([L]) of a weight mask.

    A head owns its Q/K/V rows [h*d, (h+1)*d) with their biases and the same columns of the attention
    output dense weight; an MLP owns the intermediate dense (weight, bias) and the output dense weight.
    """
    layers: dict[int, dict[str, np.ndarray]] = {}
    for name, tensor in mask.masks.items():
        match = _LAYER.search(name)
        if match:
            layers.setdefault(int(match.group(1)), {})[match.group(2)] = tensor.numpy().astype(bool)
    if not layers:
        raise BertLotteryError(f"{mask.source}: no encoder 'layer.<i>.' parameters in the weight mask")
    n_layers = max(layers) + 1
    head_kept, head_total = np.zeros((n_layers, num_heads)), np.zeros((n_layers, num_heads))
    mlp_kept, mlp_total = np.zeros(n_layers), np.zeros(n_layers)
    for i, parts in layers.items():
        missing = [p for p in (*_QKV, "attention.output.dense.weight", *_MLP) if p not in parts]
        if missing:
            raise BertLotteryError(f"{mask.source}: layer {i} lacks prunable parameter(s) {missing}")
        rows = parts["attention.self.query.weight"].shape[0]
        if rows % num_heads:
            raise BertLotteryError(f"{mask.source}: {rows} attention rows do not split into {num_heads} heads")
        d = rows // num_heads
        for h in range(num_heads):
            pieces = [parts[p][h * d:(h + 1) * d] for p in _QKV]
            pieces.append(parts["attention.output.dense.weight"][:, h * d:(h + 1) * d])
            head_kept[i, h] = sum(int(p.sum()) for p in pieces)
            head_total[i, h] = sum(p.size for p in pieces)
        mlp_kept[i] = sum(int(parts[p].sum()) for p in _MLP)
        mlp_total[i] = sum(parts[p].size for p in _MLP)
    return head_kept, head_total, mlp_kept, mlp_total


def num_heads_for(mask: "WeightMask", num_heads: int | None, model_config: str | None) -> int:
    """Heads per layer: the mask's metadata, else --num-heads, else the model's config.json."""
    for key in ("num_heads", "num_attention_heads"):
        if key in mask.meta:
            return int(mask.meta[key])
    if num_heads:
        return int(num_heads)
    if model_config:
        try:
            return int(json.loads(Path(model_config).read_text())["num_attention_heads"])
        except (OSError, KeyError, ValueError) as exc:
            raise BertLotteryError(f"{model_config}: no num_attention_heads ({exc})") from None
    raise BertLotteryError(f"{mask.source}: number of heads unknown; pass --num-heads or --model-config")


def m_block_table(paths, num_heads: int | None = None, model_config: str | None = None) -> pd.DataFrame:
    """Long table of surviving fractions per (task, seed, layer, block) of m-pruning weight masks."""
    rows = []
    for path in map(Path, paths):
        mask = WeightMask.load(path)
        task, seed = _task_seed(path, mask.meta)
        hk, ht, mk, mt = block_fractions(mask, num_heads_for(mask, num_heads, model_config))
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
