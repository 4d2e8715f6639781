"""The paper's figures from our results (docs/protocol.md §Outputs): Figure 1 (survival heatmaps), Figure 2 (good /
random / bad bar grids), Figure 3 (importance histogram), Figure 5 (task x task overlaps) and the
all-tasks heatmaps of Appendix B. Each is saved as PDF and PNG (200 dpi), sized for a paper column
(3.3 in) or page (6.9 in), with colour-blind-safe colours (Okabe-Ito; sequential OrRd / Purples).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bertlottery.analysis.aggregate import (
    NO_KIND,
    load_paper,
    lookup,
    paper_performance,
    read_table,
    task_order,
)
from bertlottery.analysis.importance import load_trace
from bertlottery.analysis.m_blocks import block_grid
from bertlottery.analysis.masksets import (
    MaskSet,
    load_head_mlp_masks,
    load_original_masks,
)
from bertlottery.analysis.plotting import (
    DOUBLE,
    OKABE_ITO,
    SINGLE,
    _data_range,
    apply_style,
    head_mlp_panel,
    heatmap,
    save,
)
from bertlottery.analysis.stability import all_tasks_survival
from bertlottery.errors import BertLotteryError
from bertlottery.families import FAMILIES, SUPER
from bertlottery.glue.tasks import get_task
from bertlottery.search.spruning import phases_for

KIND_COLOURS = {"good": OKABE_ITO["blue"], "random": OKABE_ITO["orange"], "bad": OKABE_ITO["vermilion"]}
METRIC_LABELS = {"accuracy": "Accuracy", "mcc": "Matthews corr.", "pearson": "Pearson corr."}


def figure1(task: str, s_masks: dict | None, m_blocks: pd.DataFrame | None, stem, s_label: str = "") -> list[Path]:
    """Figure 1: good subnetworks of one task. (a) m-pruning: surviving weight fraction per head / MLP;
    (b) s-pruning: share of seeds in which each head / MLP survives. Mean and std over seeds."""
    panels = []
    if m_blocks is not None and (m_blocks["task"] == task).any():
        hm, hs, mm, ms = block_grid(m_blocks, task)
        n = m_blocks.loc[m_blocks["task"] == task, "seed"].nunique()
        panels.append((f"m-pruning: surviving weights ({n} seed{'s' * (n > 1)})", hm, hs, mm, ms,
                       "surviving fraction", *_data_range(hm, mm)))
    if s_masks:
        # one task: the number of tasks an element survives in is its 0/1 survival per seed
        hm, hs, _, _ = all_tasks_survival({task: s_masks}, "heads")
        mm, ms, _, _ = all_tasks_survival({task: s_masks}, "mlps")
        n = len(s_masks)
        panels.append((f"s-pruning{s_label}: survival over {n} seed{'s' * (n > 1)}", hm, hs, mm, ms,
                       "share of seeds kept", 0.0, 1.0))
    if not panels:
        raise BertLotteryError(f"Figure 1: no m-pruning block fractions or s-masks for task {task}")
    apply_style()
    layers = max(p[1].shape[0] for p in panels)  # original 12-layer masks may sit beside our m-panel
    heads = max(p[1].shape[1] for p in panels)
    width = SINGLE if len(panels) == 1 else DOUBLE
    height = 0.25 * (layers + 1.4) * (width / len(panels)) / (0.25 * heads + 0.6) + 0.5
    fig = plt.figure(figsize=(width, height))
    outer = fig.add_gridspec(1, len(panels), wspace=0.35)
    for k, (title, hm, hs, mm, ms, label, vmin, vmax) in enumerate(panels):
        letter = f"({'ab'[k]}) " if len(panels) > 1 else ""
        head_mlp_panel(fig, outer[0, k], hm, hs, mm, ms, title=f"{letter}{task}, {title}", cmap="OrRd",
                       cbar_label=label, vmin=vmin, vmax=vmax)
    return save(fig, stem)


def appendix_b(s_masks: MaskSet | None, heads_only: MaskSet | None, mlps_only: MaskSet | None,
               m_blocks: pd.DataFrame | None, stem) -> list[Path]:
    """Appendix B: for every head / MLP, the number of tasks it survives in (mean ± std over seeds),
    heads and MLPs pruned together (and separately when those searches ran); m-pruning: the mean
    surviving fraction over all tasks and seeds."""
    panels = []
    if s_masks:
        hm, hs, tasks, seeds = all_tasks_survival(s_masks, "heads")
        mm, ms, _, _ = all_tasks_survival(s_masks, "mlps")
        panels.append((f"s-pruning, together: tasks kept in (of {len(tasks)})", hm, hs, mm, ms, 0, len(tasks), 1,
                       "number of tasks"))
    if heads_only and mlps_only:
        hm, hs, head_tasks, _ = all_tasks_survival(heads_only, "heads")
        mm, ms, mlp_tasks, _ = all_tasks_survival(mlps_only, "mlps")
        n = max(len(head_tasks), len(mlp_tasks))  # the two searches may have run on different tasks
        panels.append((f"s-pruning, separately: tasks kept in (of {n})", hm, hs, mm, ms, 0, n, 1, "number of tasks"))
    if m_blocks is not None and not m_blocks.empty:
        hm, hs, mm, ms = block_grid(m_blocks)
        n = m_blocks["task"].nunique()
        panels.append((f"m-pruning: surviving weights, mean of {n} task{'s' * (n > 1)}", hm, hs, mm, ms,
                       *_data_range(hm, mm), 2, "surviving fraction"))
    if not panels:
        raise BertLotteryError("Appendix B: no masks given")
    apply_style()
    layers = max(p[1].shape[0] for p in panels)  # original 12-layer masks may sit beside our m-panel
    heads = max(p[1].shape[1] for p in panels)
    per_row = 2
    rows = math.ceil(len(panels) / per_row)
    width = DOUBLE if len(panels) > 1 else SINGLE
    panel_w = width / min(len(panels), per_row)
    height = rows * (0.25 * (layers + 1.4) * panel_w / (0.25 * heads + 0.6) + 0.5)
    fig = plt.figure(figsize=(width, height))
    outer = fig.add_gridspec(rows, min(len(panels), per_row), wspace=0.35, hspace=0.3)
    for k, (title, hm, hs, mm, ms, vmin, vmax, digits, label) in enumerate(panels):
        head_mlp_panel(fig, outer[k // per_row, k % per_row], hm, hs, mm, ms, title=title,
                       cmap="OrRd", vmin=vmin, vmax=vmax, digits=digits, cbar_label=label)
    return save(fig, stem)


# --- Figure 2 --------------------------------------------------------------------------------------

BARS = [("majority", None), ("full", None), ("good", "pruned"), ("good", "retrained"),
        ("random", "pruned"), ("random", "retrained"), ("bad", "pruned"), ("bad", "retrained")]


def _bar_value(summary, paper, task, family, kind, evaluated):
    """(ours mean, ours std, paper mean) of one bar; None where absent."""
    if kind == "majority":
        value = paper["majority_baseline"].get(task)
        return value, None, value
    fam, knd, ev = ("full", NO_KIND, "full") if kind == "full" else (family, kind, evaluated)
    row = lookup(summary, task, fam, knd, ev)
    pv = paper_performance(paper, fam, knd, ev, task)
    mean = None if row is None else float(row["reported_mean"])
    std = None if row is None or pd.isna(row["reported_std"]) else float(row["reported_std"])
    return mean, std, None if pv is None else pv[0]


def figure2(summary: pd.DataFrame, paper: dict, family: str, stem) -> list[Path]:
    """Figure 2: one bar chart per task (3 per row): majority baseline, full model, good / random / bad
    subnetworks pruned (hatched) and retrained (solid), error bars = std over seeds (ddof=1); dashed line =
    full model mean - 1 std, dotted = BiLSTM+GloVe; black ticks = the paper's published means."""
    tasks = task_order(summary.loc[summary["family"] == family, "task"].unique())
    if not tasks:
        raise BertLotteryError(f"Figure 2: no results for family {family!r} in the summary")
    apply_style()
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    width = DOUBLE if ncols == 3 else 2.35 * ncols + 0.3
    legend_rows = 2 if ncols == 3 else 4
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 1.75 * nrows + 0.15 * legend_rows + 0.3), squeeze=False,
                             layout="constrained")
    glove = paper["table2"]["rows"]["bilstm_glove"]["values"]
    for ax, task in zip(axes.flat, tasks):
        _bars(ax, summary, paper, family, task, glove.get(task))
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.legend(handles=_figure2_legend(), loc="outside lower center", ncol=6 if ncols == 3 else 3, frameon=False,
               columnspacing=1.0, handlelength=1.6)
    fig.suptitle(f"{FAMILIES[family].title if family in FAMILIES else family}: good, random and bad subnetworks", fontsize=8)
    return save(fig, stem)


def _bars(ax, summary, paper, family, task, glove_value) -> None:
    spec = get_task(task)
    x = np.arange(len(BARS))
    lows = [0.0]
    for i, (kind, evaluated) in enumerate(BARS):
        mean, std, paper_mean = _bar_value(summary, paper, task, family, kind, evaluated)
        colour = {"majority": OKABE_ITO["grey"], "full": OKABE_ITO["green"]}.get(kind, KIND_COLOURS.get(kind))
        if mean is not None:
            pruned = evaluated == "pruned"
            ax.bar(i, mean, width=0.8, color=colour, alpha=0.45 if pruned else 1.0, hatch="////" if pruned else None,
                   edgecolor=colour, linewidth=0.6, yerr=std, capsize=1.5,
                   error_kw={"elinewidth": 0.6, "capthick": 0.6, "ecolor": "black"})
            lows.append(mean - (std or 0))
        else:
            ax.text(i, 0.02, "n/a", ha="center", va="bottom", fontsize=5, rotation=90, color=OKABE_ITO["grey"])
        if paper_mean is not None and kind != "majority":
            ax.plot([i - 0.38, i + 0.38], [paper_mean, paper_mean], color="black", lw=1.1, solid_capstyle="butt")
            lows.append(paper_mean)
    full = lookup(summary, task, "full", NO_KIND, "full")
    if full is not None:
        line = full["reported_mean"] - (full["reported_std"] if pd.notna(full["reported_std"]) else 0)
        ax.axhline(line, color=OKABE_ITO["green"], ls="--", lw=0.8)
    if glove_value is not None:
        ax.axhline(glove_value, color="black", ls=":", lw=0.9)
    ax.set_xticks(x, [])
    ax.tick_params(axis="x", length=0)
    ax.set_ylim(min(0.0, min(lows) - 0.05), 1.0)
    ax.set_ylabel(METRIC_LABELS.get(spec.reported_metric, spec.reported_metric))
    ax.set_title(_figure2_title(summary, family, task))
    ax.grid(axis="y", lw=0.3, alpha=0.5)
    ax.set_axisbelow(True)


def _figure2_title(summary, family, task) -> str:
    """'Task (x%, std y%)': the share of the prunable weights the good subnetwork keeps. The paper's titles
    give kept / all parameters - 21 %, its model's embedding share, which misstates a model whose
    embeddings are a different share (tables/sizes.* has both)."""
    for evaluated in ("pruned", "retrained"):
        row = lookup(summary, task, family, "good", evaluated)
        if row is not None and pd.notna(row.get("prunable_kept_mean")) and row.get("prunable_total_mean"):
            total = row["prunable_total_mean"]
            std = row.get("prunable_kept_std")
            sd = f", std {100 * std / total:.0f}%" if pd.notna(std) else ""
            return f"{task} ({100 * row['prunable_kept_mean'] / total:.0f}% of prunable{sd})"
    return task


def _figure2_legend() -> list:
    handles = [Patch(color=OKABE_ITO["grey"], label="majority baseline"),
               Patch(color=OKABE_ITO["green"], label="full model")]
    for kind in ("good", "random", "bad"):
        c = KIND_COLOURS[kind]
        handles.append(Patch(facecolor=c, alpha=0.45, hatch="////", edgecolor=c, label=f"{kind} (pruned)"))
        handles.append(Patch(color=c, label=f"{kind} (retrained)"))
    handles += [Line2D([], [], color=OKABE_ITO["green"], ls="--", lw=0.8, label="full − 1 std"),
                Line2D([], [], color="black", ls=":", lw=0.9, label="BiLSTM + GloVe"),
                Line2D([], [], color="black", lw=1.1, label="paper (published mean)")]
    return handles


# --- Figure 3 --------------------------------------------------------------------------------------


def heads_pruned_next(trace_path, iteration: int, n_layers: int, n_heads: int, amount: float) -> int:
    """Heads the search prunes in the step after `iteration`: its phase (trace.json) sizes the step, as in
    spruning.phases_for (e.g. 14 in the joint phase of bert-base, 7 in the heads-only phase); 0 at the end."""
    import json

    meta = json.loads(Path(trace_path).with_name("trace.json").read_text())
    rows = meta["iterations"]
    if iteration + 1 >= len(rows):
        return 0
    per_phase = {phase.name: phase.heads_per_step for phase in phases_for(meta["mode"], n_layers, n_heads, amount)}
    return per_phase.get(rows[iteration + 1]["phase"], 0)


def figure3(trace_path, stem, *, task: str, seed: int, iteration: int = 0, amount: float = 0.1) -> list[Path]:
    """Figure 3: histogram (24 bins) of normalised head importance at one pruning iteration, with a
    dashed line at the score of the first head that survives this step (the cut)."""
    trace = load_trace(trace_path)
    n_iter = trace["head_importance"].shape[0]
    if not 0 <= iteration < n_iter:
        raise BertLotteryError(f"{trace_path}: iteration {iteration} not in the trace (0..{n_iter - 1})")
    alive = trace["heads"][iteration].astype(bool)
    scores = np.sort(trace["head_importance"][iteration][alive])
    n_prune = heads_pruned_next(trace_path, iteration, *alive.shape, amount)
    apply_style()
    fig, ax = plt.subplots(figsize=(SINGLE, 2.0))
    counts, _, _ = ax.hist(scores, bins=24, range=(0, 1), color=OKABE_ITO["blue"], edgecolor="white", linewidth=0.4)
    ax.set_ylim(0, max(counts.max(), 1) * 1.3)  # headroom: the legend never covers a bar
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if 0 < n_prune < scores.size:
        cut = scores[n_prune]
        ax.axvline(cut, color=OKABE_ITO["vermilion"], ls="--", lw=1.0,
                   label=f"cut: the {n_prune} lowest-scoring heads are pruned")
        ax.legend(frameon=False, loc="upper right")
    ax.set_xlabel("normalised head importance")
    ax.set_ylabel("number of heads")
    ax.set_xlim(0, 1)
    ax.set_title(f"{task}, seed {seed}, pruning iteration {iteration + 1} ({alive.sum()} heads)")
    return save(fig, stem)


# --- Figure 5 --------------------------------------------------------------------------------------


def figure5(overlaps: pd.DataFrame, unit: str, set_: str, stem, label: str = "") -> list[Path]:
    """Figure 5 / Appendix G: lower-triangular task x task overlap of good (or super-survivor) masks,
    mean ± std over same-seed pairs, with the overlap expected under independence (hypergeometric mean)
    below; the diagonal is the task's own count."""
    part = overlaps[(overlaps["unit"] == unit) & (overlaps["set"] == set_)]
    if "search" in part:
        part = part[part["search"] == "joint"]
    tasks = task_order(list(part["task_a"]) + list(part["task_b"]))
    if not tasks:
        raise BertLotteryError(f"Figure 5: no {set_} {unit} overlaps")
    n = len(tasks)
    mean, std = np.full((n, n), np.nan), np.full((n, n), np.nan)
    expected = np.full((n, n), "", dtype=object)
    for row in part.itertuples():
        i, j = sorted((tasks.index(row.task_a), tasks.index(row.task_b)), reverse=True)
        mean[i, j], std[i, j] = row.mean, row.std
        if pd.notna(row.expected_mean):  # what independent masks of these sizes would share
            expected[i, j] = f"(exp. {row.expected_mean:.1f})"
    apply_style()
    side = float(np.clip(0.55 * n + 1.0, 2.4, DOUBLE))
    fig, ax = plt.subplots(figsize=(side + 0.4, side))
    total = part["total"].max()
    vmax = np.nanmax(mean) if np.isfinite(mean).any() and np.nanmax(mean) > 0 else 1
    image = heatmap(ax, mean, std if set_ == "good" else None, vmin=0, vmax=vmax,
                    cmap="Purples", digits=1, fontsize=5.5 if n <= 5 else 4.6, xticklabels=tasks, yticklabels=tasks,
                    extra=expected)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(f"shared {unit} (of {total:.0f})", fontsize=6)
    bar.ax.tick_params(labelsize=5.5)
    what = "super-survivor" if set_ == SUPER else "good"
    ax.set_title(f"{what} {unit} shared between tasks{label}")
    return save(fig, stem)


# --- CLI -------------------------------------------------------------------------------------------


def _masks(args, paths_attr: str = "s_masks") -> MaskSet | None:
    if getattr(args, "original_masks", None):
        return load_original_masks(args.original_masks)
    paths = getattr(args, paths_attr, None)
    return load_head_mlp_masks(paths) if paths else None


def _cmd_fig1(args) -> None:
    masks = _masks(args)
    s_masks = None if masks is None else masks.get(args.task)
    blocks = read_table(args.m_blocks) if args.m_blocks else None
    label = " (original masks)" if args.original_masks else ""
    figure1(args.task, s_masks, blocks, args.out, s_label=label)


def _cmd_fig2(args) -> None:
    figure2(read_table(args.summary), load_paper(args.paper), args.family, args.out)


def _cmd_fig3(args) -> None:
    figure3(args.trace, args.out, task=args.task, seed=args.seed, iteration=args.iteration, amount=args.amount)


def _cmd_fig5(args) -> None:
    over = read_table(args.overlaps)
    label = " (original masks)" if "mask_source" in over and (over["mask_source"] != "ours").any() else ""
    figure5(over, args.unit, args.set, args.out, label)


def _cmd_appb(args) -> None:
    heads_only = load_head_mlp_masks(args.heads_only_masks) if args.heads_only_masks else None
    mlps_only = load_head_mlp_masks(args.mlps_only_masks) if args.mlps_only_masks else None
    blocks = read_table(args.m_blocks) if args.m_blocks else None
    appendix_b(_masks(args), heads_only, mlps_only, blocks, args.out)


def main_figures(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery figures", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="figure", required=True)

    def add(name, func, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--out", required=True, help="output stem: writes <out>.pdf and <out>.png")
        p.set_defaults(func=func)
        return p

    p = add("fig1", _cmd_fig1, "Figure 1: survival heatmaps of one task (m and s)")
    p.add_argument("--task", required=True)
    p.add_argument("--s-masks", nargs="*", default=[], help="joint-search good HeadMlpMask files")
    p.add_argument("--original-masks", help="instead: original-layout mask directory")
    p.add_argument("--m-blocks", help="m_blocks table from `stats m-blocks`")

    p = add("fig2", _cmd_fig2, "Figure 2 / Appendix E: bar grid of one family")
    p.add_argument("--summary", required=True)
    p.add_argument("--family", required=True, help="s (Figure 2a), m (2b), super (Appendix E), s-heads, s-mlps, f (Fisher)")
    p.add_argument("--paper", help="paper results YAML (default: the packaged resources/paper_results.yaml)")

    p = add("fig3", _cmd_fig3, "Figure 3: head importance histogram of one s-search iteration")
    p.add_argument("--trace", required=True, help="trace.json of an s-search (trace.safetensors beside it)")
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--iteration", type=int, default=0, help="0 = the first pass, the paper's 'iteration 1'")
    p.add_argument("--amount", type=float, default=0.1, help="share of heads pruned per step (s_pruning.amount)")

    p = add("fig5", _cmd_fig5, "Figure 5 / Appendix G: task x task overlaps")
    p.add_argument("--overlaps", required=True, help="overlaps table from `stats masks`")
    p.add_argument("--unit", choices=["heads", "mlps"], default="heads")
    p.add_argument("--set", choices=["good", SUPER], default="good")

    p = add("appb", _cmd_appb, "Appendix B: all-tasks survival heatmaps")
    p.add_argument("--s-masks", nargs="*", default=[])
    p.add_argument("--original-masks")
    p.add_argument("--heads-only-masks", nargs="*", default=[])
    p.add_argument("--mlps-only-masks", nargs="*", default=[])
    p.add_argument("--m-blocks")

    args = parser.parse_args(argv)
    args.func(args)
