"""i-pruning against m-pruning (beyond the paper; docs/protocol.md §i-pruning): the good masks of IMP with rewinding
(a fine-tune between pruning steps) and of the paper's m-pruning (no retraining between steps), per (task, seed).

How different are the two masks: the sparsity of each (share of the prunable pool set to zero), the overlap of
what they keep (Jaccard index, and the share of each mask's kept weights the other keeps too, beside the share
expected for an independent mask of the other's size), and their dev scores side by side, pruned (the mask on
the fine-tuned model) and retrained (the mask on the pre-trained model, fine-tuned again). `i-vs-m` writes the
tidy rows (analysis/i_vs_m.{csv,parquet}), the table (tables/i_vs_m.*, mean ± std over seeds per task) and a
figure (figures/i_vs_m.*): each seed's IMP rounds, dev score against sparsity, beside its m-good mask.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bertlottery.analysis.aggregate import NO_KIND, read_table, task_order, write_frame
from bertlottery.analysis.table_format import fmt_ms, write_report_table
from bertlottery.errors import BertLotteryError
from bertlottery.families import GOOD, IMP, M
from bertlottery.io import read_json
from bertlottery.layout import run_of
from bertlottery.masks.types import WeightMask, load_mask_for

CAPTION = ("Beyond the paper: i-pruning (IMP with rewinding, Chen et al. 2020) against m-pruning, good masks per "
           "task (mean ± std over seeds)")
ROWS = [  # (display label, column, scale to percent)
    ("i good: pruned share of the prunable weights (%)", "i_sparsity", True),
    ("m good: pruned share of the prunable weights (%)", "m_sparsity", True),
    ("i: rounds taken (fine-tunes)", "i_rounds_taken", False),
    ("i: round of the good mask", "i_round", False),
    ("m: step of the good mask", "m_step", False),
    ("Jaccard index of the kept weights (%)", "jaccard", True),
    ("share of i's kept weights m keeps too (%)", "i_kept_in_m", True),
    ("… expected for a random mask of m's size (%)", "i_kept_in_m_chance", True),
    ("share of m's kept weights i keeps too (%)", "m_kept_in_i", True),
    ("full model", "full", False),
    ("i good, pruned", "i_pruned", False),
    ("m good, pruned", "m_pruned", False),
    ("i good, retrained", "i_retrained", False),
    ("m good, retrained", "m_retrained", False),
    ("i good − m good, retrained", "retrained_diff", False),
]


def _runs(paths: list[str], what: str) -> dict[tuple[str, int], str]:
    """(task, seed) -> path, read back from the path's tail .../<task>/seed<S>/<file>."""
    out = {}
    for path in paths:
        run = run_of(path)
        if run is None:
            raise BertLotteryError(f"{path}: not a {what} of one run (expected .../<task>/seed<S>/<file>)")
        out[run] = path
    return out


def overlap(i_mask: WeightMask, m_mask: WeightMask) -> dict[str, float]:
    """Sizes and overlap of two weight masks over the same prunable parameters."""
    if set(i_mask.masks) != set(m_mask.masks):
        raise BertLotteryError("the i and m masks cover different parameters (masks of different models?)")
    both = sum(int((i_mask.masks[k] & m_mask.masks[k]).sum()) for k in i_mask.masks)
    total, i_kept, m_kept = i_mask.total, i_mask.kept, m_mask.kept
    union = i_kept + m_kept - both
    return {"prunable_total": total, "i_kept": i_kept, "m_kept": m_kept, "both_kept": both,
            "i_sparsity": 1 - i_kept / total, "m_sparsity": 1 - m_kept / total,
            "jaccard": both / union if union else 1.0,
            "i_kept_in_m": both / i_kept if i_kept else np.nan, "m_kept_in_i": both / m_kept if m_kept else np.nan,
            "i_kept_in_m_chance": m_kept / total}


def _scores(metrics: pd.DataFrame, task: str, seed: int) -> dict[str, float]:
    """The reported metric of the full model and of the i and m good masks, pruned and retrained."""
    rows = metrics[(metrics["task"] == task) & (metrics["seed"].astype(int) == seed)]

    def one(family, kind, evaluated):
        hit = rows[(rows["family"] == family) & (rows["kind"] == kind) & (rows["evaluated"] == evaluated)]
        return float(hit["reported"].iloc[0]) if len(hit) else np.nan

    out = {"full": one("full", NO_KIND, "full"), "i_pruned": one(IMP, GOOD, "pruned"),
           "m_pruned": one(M, GOOD, "pruned"), "i_retrained": one(IMP, GOOD, "retrained"),
           "m_retrained": one(M, GOOD, "retrained")}
    out["retrained_diff"] = out["i_retrained"] - out["m_retrained"]
    out["reported_metric"] = rows["reported_metric"].iloc[0] if len(rows) else None
    return out


def compare(i_masks: list[str], i_records: list[str], m_masks: list[str], m_records: list[str],
            metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, seed) that has both good masks."""
    runs = {name: _runs(paths, name) for name, paths in
            (("i_mask", i_masks), ("i_record", i_records), ("m_mask", m_masks), ("m_record", m_records))}
    keys = sorted(set.intersection(*(set(r) for r in runs.values())))
    if not keys:
        raise BertLotteryError("i-vs-m: no (task, seed) has both an i and an m good mask with its search record")
    rows = []
    for task, seed in keys:
        i_mask = load_mask_for(runs["i_mask"][(task, seed)], task=task, seed=seed, family=IMP, kind=GOOD)
        m_mask = load_mask_for(runs["m_mask"][(task, seed)], task=task, seed=seed, family=M, kind=GOOD)
        i_record, m_record = read_json(runs["i_record"][(task, seed)]), read_json(runs["m_record"][(task, seed)])
        rows.append({"task": task, "seed": seed, **overlap(i_mask, m_mask),
                     "i_round": i_record["good_round"], "i_rounds_taken": i_record["rounds_taken"],
                     "m_step": m_record["saved_step"], "m_steps_taken": m_record["steps_taken"],
                     "i_fine_tune_wall_s": i_record["cost"]["wall_time_s"],
                     "stop_metric": i_record["stop_metric"], "s0": i_record["s0"], "limit": i_record["threshold"],
                     "i_score": i_record["score"], "m_score": m_record["score"], **_scores(metrics, task, seed)})
    table = pd.DataFrame(rows)
    order = {t: n for n, t in enumerate(task_order(table["task"].unique()))}
    return table.sort_values(["task", "seed"], key=lambda c: c.map(order) if c.name == "task" else c,
                             ignore_index=True)


def display(table: pd.DataFrame) -> pd.DataFrame:
    tasks = task_order(table["task"].unique())
    out = []
    for label, column, percent in ROWS:
        row = {"row": label}
        for task in tasks:
            values = table.loc[table["task"] == task, column].astype(float).dropna()
            scale = 100 if percent else 1
            digits = 1 if percent or column.startswith(("i_round", "m_step")) else 3
            std = values.std(ddof=1) * scale if len(values) > 1 else None
            row[task] = fmt_ms(values.mean() * scale, std, digits) if len(values) else "–"
        out.append(row)
    return pd.DataFrame(out, columns=["row", *tasks])


def notes(table: pd.DataFrame) -> list[str]:
    metrics = ", ".join(sorted({str(m) for m in table["reported_metric"].dropna()}))
    return [
        "i: iterative magnitude pruning with rewinding (family i): every round prunes 10 % of the remaining prunable "
        "weights by the magnitude of the last round's trained weights, rewinds the rest to the pre-trained values "
        "(the classifier to its seeded initialisation) and fine-tunes again; the good mask is the last round whose "
        "retrained dev score stayed >= 90 % of the full model's. m: the paper's m-pruning, 10 % of the remaining "
        "weights per step by the fine-tuned magnitudes, without retraining between steps, the same 90 % rule on the "
        "pruned score. Round 1 of i prunes exactly m's first step.",
        "Overlap on the prunable pool: Jaccard = both kept / either kept; 'i's kept weights m keeps too' = both / i "
        "kept, beside m's kept share (what an independent mask of m's size would give).",
        "Pruned: the mask on the fine-tuned model, no retraining (i's criterion is the retrained score, so its pruned "
        "score may fall far below 90 %). Retrained: the mask on the pre-trained model fine-tuned with the same seed; "
        "for i this repeats the accepted round's fine-tune.",
        f"Scores are the reported metric ({metrics}); every i round costs one fine-tune (mean "
        f"{table['i_rounds_taken'].mean():.1f} per task and seed here).",
    ]


def figure(table: pd.DataFrame, i_records: list[str], stem: str | Path) -> list[Path]:
    """Per task: each seed's IMP rounds (retrained stop-metric score against sparsity; open markers failed the
    limit), its m-good mask (pruned score, a cross) and the limit (dashed)."""
    from bertlottery.analysis.plotting import DOUBLE, OKABE_ITO, apply_style, plt, save

    apply_style()
    records = {(r["task"], int(r["seed"])): r for r in map(read_json, i_records)}
    tasks = task_order(table["task"].unique())
    cols = min(3, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(DOUBLE, 2.0 * rows), squeeze=False, layout="constrained")
    colours = list(OKABE_ITO.values())[1:]
    for ax, task in zip(axes.flat, tasks):
        for n, row in enumerate(table[table["task"] == task].itertuples()):
            colour = colours[n % len(colours)]
            rounds = records[(task, int(row.seed))]["rounds"]
            x = [100 * r["sparsity"] for r in rounds]
            y = [r["score"] for r in rounds]
            ax.plot(x, y, "-", color=colour, lw=0.8, label=f"i, seed {row.seed}")
            for xi, yi, r in zip(x, y, rounds):
                ax.plot(xi, yi, "o", ms=3, color=colour, mfc=colour if r["accepted"] else "white")
            ax.plot(100 * row.m_sparsity, row.m_score, "x", ms=5, color=colour, label=f"m good, seed {row.seed}")
            ax.axhline(row.limit, color=colour, lw=0.6, ls="--")
        ax.set_title(task)
        ax.set_xlabel("pruned share of the prunable weights (%)")
        ax.set_ylabel(f"dev {table.loc[table['task'] == task, 'stop_metric'].iloc[0]}")
        ax.legend(frameon=False, fontsize=5)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("i-pruning rounds (retrained) and the m-good mask (pruned, x); dashed: 90 % of the full model",
                 fontsize=7)
    return save(fig, stem)


def main_i_vs_m(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bertlottery i-vs-m", description=__doc__.split("\n")[0])
    p.add_argument("--i-masks", nargs="+", required=True, help="good.safetensors of family i, every task and seed")
    p.add_argument("--i-records", nargs="+", required=True, help="their search.json files")
    p.add_argument("--m-masks", nargs="+", required=True, help="good.safetensors of family m")
    p.add_argument("--m-records", nargs="+", required=True, help="their search.json files")
    p.add_argument("--metrics", required=True, help="metrics.parquet (or .csv) from `aggregate`")
    p.add_argument("--output", required=True, help="the tidy rows: <stem>.csv and <stem>.parquet")
    p.add_argument("--table", required=True, help="the table's stem (.csv, .md, .tex, .html)")
    p.add_argument("--figure", required=True, help="the figure's stem (.png, .pdf)")
    args = p.parse_args(argv)
    table = compare(args.i_masks, args.i_records, args.m_masks, args.m_records, read_table(args.metrics))
    write_frame(table, Path(args.output).with_suffix(""))
    write_report_table(args.table, table, display(table), CAPTION, notes(table))
    figure(table, args.i_records, args.figure)
    print(f"i-vs-m: {len(table)} (task, seed) runs -> {args.output}, {args.table}.*, {args.figure}.*")
