"""The s-search trace tensors and the importance distribution of Figure 3 (paper §5.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bertlottery.errors import BertLotteryError
from bertlottery.layout import run_of

# --- importance distribution (Figure 3, paper §5.1) ------------------------------------------------


def load_trace(trace_json: str | Path) -> dict[str, np.ndarray]:
    """The per-iteration tensors of an s-search (trace.safetensors beside trace.json)."""
    from safetensors.numpy import load_file

    path = Path(trace_json)
    path = path if path.suffix == ".safetensors" else path.with_name("trace.safetensors")
    if not path.exists():
        raise BertLotteryError(f"{path}: no s-search trace tensors (set s_pruning.save_iterations: true)")
    return load_file(str(path))


def importance_summary(trace_paths) -> pd.DataFrame:
    """Per search and iteration: the share of the still-unpruned heads (MLPs) whose normalised
    importance lies in the lower half of [0, 1]."""
    rows = []
    for path in map(Path, trace_paths):
        trace = load_trace(path)
        task, seed = run_of(path) or (path.parent.name, -1)
        for it in range(trace["head_importance"].shape[0]):
            row = {"task": task, "seed": seed, "iteration": it}
            for unit, key in (("heads", "head_importance"), ("mlps", "mlp_importance")):
                alive = trace[unit][it].astype(bool)
                scores = trace[key][it][alive]
                row[f"{unit}_alive"] = int(alive.sum())
                row[f"{unit}_low_share"] = float((scores < 0.5).mean()) if scores.size else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
