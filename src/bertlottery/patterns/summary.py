"""Summaries of pattern counts (`patterns summarize`): distributions, the paper's percentages, tables,
Figure 4 and the super-survivor / heterogeneous correlation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from bertlottery.errors import BertLotteryError
from bertlottery.families import SUPER
from bertlottery.io import write_json
from bertlottery.patterns.attention import KINDS
from bertlottery.patterns.extract import MODEL_CONFIGS, SELECTIONS, load_counts
from bertlottery.patterns.rules import PATTERN_TYPES, synthetic_map

SHORT_NAMES = {"heterogeneous": "het", "block": "block", "diagonal": "diag", "vertical": "vert",
               "vertical+diagonal": "vert+diag"}


# Figure 4's task order (WNLI is left out by the paper: it has no super-survivors).
PAPER_TASK_ORDER = ("MNLI", "QNLI", "RTE", "MRPC", "QQP", "SST-2", "CoLA", "STS-B")


# --------------------------------------------------------------------------------------------------
# summaries: distributions, tables, Figure 4, correlation


def distributions(records: Sequence[tuple[dict[str, torch.Tensor], dict[str, str]]]):
    """Tidy table (config, selection, task, kind, type, count, percent) summed over seeds and heads."""
    import pandas as pd

    rows = []
    for tensors, meta in records:
        for selection in SELECTIONS:
            for kind in KINDS:
                key = f"{selection}/{kind}"
                if key in tensors:
                    totals = tensors[key].sum(dim=(0, 1)).tolist()
                    rows += [{"config": meta["config"], "selection": selection, "task": meta["task"],
                              "seed": int(meta["seed"]), "kind": kind, "type": t, "count": int(c)}
                             for t, c in zip(PATTERN_TYPES, totals)]
    frame = pd.DataFrame(rows, columns=["config", "selection", "task", "seed", "kind", "type", "count"])
    keys = ["config", "selection", "task", "kind"]
    frame = frame.groupby(keys + ["type"], as_index=False, sort=False)["count"].sum()
    frame["percent"] = 100 * frame["count"] / frame.groupby(keys)["count"].transform("sum").replace(0, np.nan)
    return frame


def paper_patterns(path: str | Path | None) -> dict:
    """The published percentages (Figure 4, Appendix F) from paper_results.yaml: {(config, selection): {task: {kind: [5 values]}}}.

    Reads `patterns: {<config>_<selection>: {task: [[raw x5], [normed x5]]}}` with columns in the file's
    `pattern_order` (reordered to PATTERN_TYPES); {} when the file or the key is absent."""
    data = _paper_yaml(path)
    order = data.get("pattern_order", list(PATTERN_TYPES))
    if sorted(order) != sorted(PATTERN_TYPES):
        raise BertLotteryError(f"{path}: pattern_order {order}; expected the types {list(PATTERN_TYPES)}")
    position = [order.index(t) for t in PATTERN_TYPES]
    out = {}
    for key, block in (data.get("patterns") or {}).items():
        config, _, selection = str(key).partition("_")
        if config not in MODEL_CONFIGS or selection not in SELECTIONS or not isinstance(block, dict):
            continue
        for task, pair in block.items():
            if not (isinstance(pair, list) and len(pair) == 2 and all(len(v) == len(order) for v in pair)):
                raise BertLotteryError(f"{path}: patterns.{key}.{task} = {pair!r}; expected [[raw x5], [normed x5]]")
            out.setdefault((config, selection), {})[task] = {
                kind: [float(values[i]) for i in position] for kind, values in zip(KINDS, pair)}
    return out


def _paper_yaml(path: str | Path | None) -> dict:
    import yaml

    if not path or not Path(path).is_file():
        return {}
    return yaml.safe_load(Path(path).read_text()) or {}


def _task_order(tasks: Iterable[str]) -> list[str]:
    tasks = set(tasks)
    return [t for t in PAPER_TASK_ORDER if t in tasks] + sorted(tasks - set(PAPER_TASK_ORDER))


def pattern_table(dist, paper: dict, config: str, selection: str):
    """Wide table: one row per (task, kind, source) with the five percentages and the map count."""
    import pandas as pd

    part = dist[(dist.config == config) & (dist.selection == selection)]
    rows = []
    for task in _task_order(part.task.unique()):
        for kind in KINDS:
            cell = part[(part.task == task) & (part.kind == kind)].set_index("type")
            if cell.empty:
                continue
            rows.append({"task": task, "kind": kind, "source": "ours", "n_maps": int(cell["count"].sum()),
                         **{SHORT_NAMES[t]: round(float(cell.loc[t, "percent"]), 1) for t in PATTERN_TYPES}})
            published = paper.get((config, selection), {}).get(task, {}).get(kind)
            if published:
                rows.append({"task": task, "kind": kind, "source": "paper", "n_maps": None,
                             **dict(zip(SHORT_NAMES.values(), published))})
    return pd.DataFrame(rows, columns=["task", "kind", "source", "n_maps", *SHORT_NAMES.values()])


def table_markdown(table, title: str) -> str:
    """Markdown with 'ours (paper)' cells where the paper has the task."""
    lines = [f"### {title}", "", "% of classified head maps; paper values (Figure 4, Appendix F) in parentheses.", ""]
    for kind in KINDS:
        lines += [f"**{kind}**", "", "| task | " + " | ".join(SHORT_NAMES.values()) + " | maps |",
                  "|---" * (len(SHORT_NAMES) + 2) + "|"]
        part = table[table.kind == kind]
        for task in part.task.unique():
            ours = part[(part.task == task) & (part.source == "ours")].iloc[0]
            paper = part[(part.task == task) & (part.source == "paper")]
            cells = []
            for col in SHORT_NAMES.values():
                value = "n/a" if np.isnan(ours[col]) else f"{ours[col]:.1f}"
                cells.append(value + (f" ({paper.iloc[0][col]:.1f})" if len(paper) else ""))
            lines.append(f"| {task} | " + " | ".join(cells) + f" | {int(ours['n_maps'])} |")
        lines.append("")
    return "\n".join(lines)


COLORS = {"heterogeneous": "#7f7f7f", "block": "#1f77b4", "diagonal": "#2ca02c", "vertical": "#d62728",
          "vertical+diagonal": "#ff7f0e"}


def figure4(dist, config: str, out_stem: str | Path) -> list[Path]:
    """Stacked 100 % bars per task: rows super-survivors / all heads, columns raw / normed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = dist[dist.config == config]
    tasks = _task_order(part.task.unique())[::-1]  # top-to-bottom in paper order
    height = 1.4 + 0.32 * max(len(tasks), 2)  # 8 tasks: about 4 in at column width (3.4 in)
    fig, axes = plt.subplots(2, 2, figsize=(3.4, height), sharey=True, sharex=True)
    for row, selection in enumerate(SELECTIONS):
        for col, kind in enumerate(KINDS):
            ax = axes[row, col]
            left = np.zeros(len(tasks))
            for t in PATTERN_TYPES:
                sel = part[(part.selection == selection) & (part.kind == kind) & (part.type == t)]
                values = sel.set_index("task")["percent"].reindex(tasks).fillna(0).to_numpy()
                ax.barh(tasks, values, left=left, color=COLORS[t], height=0.75, linewidth=0)
                left += values
            ax.set_xlim(0, 100)
            ax.set_title(f"{'super-survivors' if selection == 'super' else 'all heads'}, {kind}", fontsize=7)
            ax.tick_params(labelsize=6, length=2)
    for ax in axes[1]:
        ax.set_xlabel("% of head maps", fontsize=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[t]) for t in PATTERN_TYPES]
    fig.suptitle(f"Self-attention patterns, {'fine-tuned' if config == 'finetuned' else 'pre-trained'} model",
                 fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1), h_pad=0.6, w_pad=0.4)
    fig.legend(handles, [SHORT_NAMES[t] for t in PATTERN_TYPES], loc="lower center", ncol=5, fontsize=6,
               frameon=False, handlelength=1, columnspacing=0.8, bbox_to_anchor=(0.5, -0.01))
    return _save_figure(fig, out_stem)


def figure4a(out_stem: str | Path, n: int = 24, seed: int = 0) -> list[Path]:
    """Schematic examples of the five types (synthetic maps, as classified by the rules)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 5, figsize=(3.4, 0.95))
    for ax, t in zip(axes, PATTERN_TYPES):
        image = synthetic_map(t, n, rng, noise=0.1)
        ax.imshow(image, cmap="Greys", vmin=0, vmax=image.max())  # each map on its own scale, as a heatmap
        ax.set_title(SHORT_NAMES[t], fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    return _save_figure(fig, out_stem)


def _save_figure(fig, out_stem: str | Path) -> list[Path]:
    import matplotlib.pyplot as plt

    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".pdf"), out_stem.with_suffix(".png")]
    for path in paths:
        fig.savefig(path, dpi=300, bbox_inches="tight")
    plt.close(fig)
    return paths


def heterogeneous_pairs(counts: torch.Tensor, is_super: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One (is_super, is_heterogeneous) pair per classified map, from per-head counts [L, H, 5]."""
    het = counts[..., PATTERN_TYPES.index("heterogeneous")].flatten().numpy()
    rest = counts.sum(-1).flatten().numpy() - het
    flag = is_super.bool().flatten().numpy()
    x = np.concatenate([np.repeat(flag, het), np.repeat(flag, rest)]).astype(float)
    y = np.concatenate([np.ones(het.sum()), np.zeros(rest.sum())])
    return x, y


def _pointbiserial(x: np.ndarray, y: np.ndarray) -> dict:
    from scipy.stats import pointbiserialr

    if len(x) < 3 or x.min() == x.max() or y.min() == y.max():
        return {"r": None, "p": None, "n_pairs": int(len(x))}  # undefined: a constant variable
    result = pointbiserialr(x, y)
    return {"r": float(result.statistic), "p": float(result.pvalue), "n_pairs": int(len(x))}


def super_heterogeneous_correlation(records: Sequence[tuple[dict[str, torch.Tensor], dict[str, str]]]) -> dict:
    """Point-biserial r between "head is a super-survivor" and "map is heterogeneous" over every
    (example, layer, head) of the fine-tuned full models (paper §5.2), pooled and per task."""
    pairs: dict[str, dict[str, list]] = {}
    for tensors, meta in records:
        if meta["config"] != "finetuned" or "super/heads" not in tensors:
            continue
        for kind in KINDS:
            x, y = heterogeneous_pairs(tensors[f"all/{kind}"], tensors["super/heads"])
            for scope in ("pooled", meta["task"]):
                slot = pairs.setdefault(scope, {}).setdefault(kind, [[], []])
                slot[0].append(x)
                slot[1].append(y)
    result = {scope: {kind: _pointbiserial(np.concatenate(v[0]), np.concatenate(v[1])) for kind, v in kinds.items()}
              for scope, kinds in pairs.items()}
    pooled = result.pop("pooled", {})
    return {**pooled, "per_task": result,
            "definition": "Pearson r (scipy.stats.pointbiserialr) of is_super_survivor vs is_heterogeneous "
                          "over example x layer x head maps of the fine-tuned full models"}


@dataclass(frozen=True)
class SummaryJob:
    """One `patterns summarize` command (its options, typed)."""

    counts: list[str]
    tables_dir: str
    figures_dir: str
    correlation: str
    paper: str | None = None


def summarize(job: SummaryJob) -> None:
    records = [load_counts(path) for path in job.counts]
    dist = distributions(records)
    paper = paper_patterns(job.paper)
    tables_dir, figures_dir = Path(job.tables_dir), Path(job.figures_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    dist.to_csv(tables_dir / "patterns_distribution.csv", index=False)
    for config in MODEL_CONFIGS:
        for selection in SELECTIONS:
            table = pattern_table(dist, paper, config, selection)
            stem = tables_dir / f"patterns_{config}_{selection}"
            table.to_csv(stem.with_suffix(".csv"), index=False)
            title = f"{config}, {'super-survivor heads' if selection == SUPER else 'all heads'}"
            stem.with_suffix(".md").write_text(table_markdown(table, title) + "\n")
        figure4(dist, config, figures_dir / f"figure4_{config}")
    figure4a(figures_dir / "figure4a_types")
    classifiers = sorted({f"{m['classifier_raw']}/{m['classifier_normed']}" for _, m in records})
    correlation = super_heterogeneous_correlation(records) | {"classifiers_raw_normed": classifiers}
    correlation["paper"] = _paper_yaml(job.paper).get("pattern_correlation")  # 8.4: raw 0.015, normed 0.025
    write_json(job.correlation, correlation)
    if not paper:
        print(f"patterns summarize: no `patterns` key in {job.paper}; tables carry no paper columns")
