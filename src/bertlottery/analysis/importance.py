"""The s-search trace tensors and the importance distribution of Figure 3 (paper §5.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bertlottery.errors import BertLotteryError
from bertlottery.layout import SEARCH_TRACE_TENSORS, run_of

# --- importance distribution (Figure 3, paper §5.1) ------------------------------------------------

# The search Figure 3 shows in the paper: CoLA, seed 71.
FIGURE3_PAPER_RUN = ("CoLA", "71")


def figure3_run(tasks, seeds) -> tuple[str, str]:
    """(task, seed) of Figure 3: the paper's where this run has them, else its first task / seed."""
    task, seed = FIGURE3_PAPER_RUN
    seeds = [str(s) for s in seeds]
    return (task if task in tasks else tasks[0]), (seed if seed in seeds else seeds[0])


def load_trace(trace_json: str | Path) -> dict[str, np.ndarray]:
    """The per-iteration tensors of an s-search (trace.safetensors beside trace.json)."""
    from safetensors.numpy import load_file

    path = Path(trace_json)
    path = path if path.suffix == ".safetensors" else path.with_name(SEARCH_TRACE_TENSORS)
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
