"""Surviving fraction per head and MLP of m-pruning weight masks, by model role (Figure 1a, and the
paper §4.1 claims). Which slice of which parameter belongs to which head or MLP is read off the model's
structure (`modeling.mask_blocks.block_fractions`), so every supported encoder family works. A study
bundle may hold a mask's summary in its place (`bundle export --m-masks summary`): its block counts, made
by the same function on the run's model config, give the same table, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bertlottery.analysis.masksets import _task_seed
from bertlottery.errors import BertLotteryError
from bertlottery.masks.summary import is_summary, read_summary
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.loading import model_of_config_file
from bertlottery.modeling.mask_blocks import block_fractions, model_block_totals, summary_blocks

__all__ = ["block_fractions", "block_grid", "m_block_table"]

# --- m-pruning block fractions (Figure 1a, paper §4.1) ---------------------------------------------


def m_block_table(paths, model_config: str | Path) -> pd.DataFrame:
    """Long table of surviving fractions per (task, seed, layer, block) of m-pruning weight masks, found on
    the model whose config.json is `model_config` (a bundle's copy is enough: no weights are read). A path
    may be a mask's summary (<kind>.summary.json, bertlottery.masks.summary) instead of the mask: its
    recorded counts are used, after checking they fit the model."""
    model = model_of_config_file(model_config)
    rows = []
    totals = None  # the model's values per head and MLP: computed once, for the summaries
    for path in map(Path, paths):
        if is_summary(path):
            summary = read_summary(path)
            totals = totals if totals is not None else model_block_totals(model)
            meta, (hk, ht, mk, mt) = summary["meta"], summary_blocks(summary, model, str(path), totals)
        else:
            mask = WeightMask.load(path)
            meta, (hk, ht, mk, mt) = mask.meta, block_fractions(mask, model)
        task, seed = _task_seed(path, meta)
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
