"""The subnetwork_speed table and figure (beyond the paper): the `speed` JSONs of every (task, seed) beside
the retrained dev scores of the same subnetworks (`speed-report`).

Table: per task and subnetwork, over seeds, parameters and padding-free FLOPs per token (and their share
of the full model's), measured inference and training-step speedups against the full model (median of
the seeds' per-round medians, [min – max] over every timed round of every seed) and the retrained dev
score. m-pruning rows say that unstructured sparsity gives no dense speedup and give the sparsity.
Figure: retrained dev score against measured inference speedup, one point per task x seed x subnetwork,
the full models at 1x; colour = subnetwork, marker = task, horizontal bars = min – max over rounds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from bertlottery.analysis.aggregate import (
    FAMILY_ORDER,
    KIND_ORDER,
    NO_KIND,
    read_table,
    task_order,
)
from bertlottery.analysis.table_format import fmt, write_report_table
from bertlottery.errors import BertLotteryError
from bertlottery.io import read_json

TABLE_CAPTION = "Measured speed of every subnetwork against the full model (retrained dev score)"
FLOPS_NOTE = ("FLOPs per token (padding-free, 2 per multiply-accumulate): for a sequence of n real tokens "
              "F(n) = 2·n·P_tok + 4·n²·A + 2·P_seq, with P_tok the weights of the encoder's linear layers (Q, K, V, "
              "attention output, both MLP denses), A the sum over layers of kept heads × head size (QKᵀ and "
              "attention × V) and P_seq the pooler and classifier weights (first token only); per token = "
              "Σ F(n_i) / Σ n_i over the timed dev examples. Biases, LayerNorm, softmax and GELU are not counted.")
DENSE_NOTE = ("m- and i-pruning mask single weights (unstructured sparsity): a dense kernel does the same work on a "
              "matrix with zeros, so they give no dense speedup; their rows give the sparsity (share of the "
              "prunable weights set to zero) instead of a timing.")
LONG_COLUMNS = ["task", "seed", "family", "kind", "structured", "params", "params_total", "params_fraction",
                "flops_per_token", "flops_fraction", "heads_kept", "mlps_kept", "sparsity_prunable", "sparsity_all",
                "infer_speedup_median", "infer_speedup_min", "infer_speedup_max", "infer_speedup_q1",
                "infer_speedup_q3", "train_speedup_median", "train_speedup_min", "train_speedup_max",
                "train_speedup_q1", "train_speedup_q3", "infer_tokens_per_s_median", "score_retrained",
                "reported_metric", "device", "cpu", "torch_threads", "torch", "repeats", "warmup", "train_steps",
                "padding_free"]


def speed_rows(paths) -> tuple[pd.DataFrame, list[dict]]:
    """One tidy row per (task, seed, family, kind) from the speed JSONs, and each JSON's machine facts."""
    rows, machines = [], []
    for path in paths:
        record = read_json(path)
        for key in ("task", "seed", "rows", "machine", "speed"):
            if key not in record:
                raise BertLotteryError(f"{path}: speed JSON lacks {key!r} (expected the output of `bertlottery speed`)")
        machine, speed = record["machine"], record["speed"]
        machines.append(machine | {"task": record["task"], "seed": record["seed"]})
        for row in record["rows"]:
            out = {"task": record["task"], "seed": int(record["seed"]), "device": machine.get("device"),
                   "cpu": machine.get("cpu"), "torch_threads": machine.get("torch_threads"),
                   "torch": machine.get("torch"), **{k: speed.get(k) for k in ("repeats", "warmup", "train_steps")},
                   "padding_free": (record.get("training") or {}).get("padding_free")}
            out |= {k: row.get(k) for k in ("family", "kind", "structured", "params", "params_total", "flops_per_token",
                                             "flops_fraction", "heads_kept", "mlps_kept", "sparsity_prunable",
                                             "sparsity_all")}
            out["params_fraction"] = row["params"] / row["params_total"]
            for what in ("infer_speedup", "train_speedup"):
                for stat, value in (row.get(what) or {}).items():
                    out[f"{what}_{stat}"] = value
            out["infer_tokens_per_s_median"] = (row.get("infer_tokens_per_s") or {}).get("median")
            rows.append(out)
    if not rows:
        raise BertLotteryError("speed-report: no speed JSONs given (--speed)")
    return pd.DataFrame(rows), machines


def with_scores(table: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Each row's retrained dev score (reported metric); the full model's is its fine-tuned score."""
    wanted = metrics[metrics["evaluated"].isin(["retrained", "full"])]
    keys = wanted.assign(kind=wanted["kind"].fillna(NO_KIND).astype(str), seed=wanted["seed"].astype(int))
    keys = keys[["task", "seed", "family", "kind", "reported", "reported_metric"]].rename(
        columns={"reported": "score_retrained"})
    out = table.merge(keys, on=["task", "seed", "family", "kind"], how="left")
    return out.reindex(columns=LONG_COLUMNS)


def _order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's task order, then family (full first), kind (good, random, bad), seed."""
    rank = {"task": {t: i for i, t in enumerate(task_order(table["task"].unique()))},
            "family": {f: i for i, f in enumerate(FAMILY_ORDER)}, "kind": {k: i for i, k in enumerate(KIND_ORDER)}}
    keys = pd.DataFrame({col: table[col].map(rank[col]).fillna(len(rank[col])) for col in rank})
    keys["name"], keys["seed"] = table["family"] + "/" + table["kind"], table["seed"]
    return table.loc[keys.sort_values(["task", "family", "kind", "name", "seed"]).index].reset_index(drop=True)


def label(family: str, kind: str) -> str:
    return "full model" if family == "full" else f"{family} {kind}"


def _speedup(group: pd.DataFrame, what: str) -> str:
    medians = group[f"{what}_median"].dropna()
    if medians.empty:
        return "–"
    return (f"{medians.median():.2f}× [{group[f'{what}_min'].min():.2f}–{group[f'{what}_max'].max():.2f}]")


def display_table(long: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (task, family, kind), group in long.groupby(["task", "family", "kind"], sort=False):
        structured = bool(group["structured"].iloc[0])
        scores = group["score_retrained"].dropna()
        score = "–" if scores.empty else (fmt(scores.mean()) + (f" ± {fmt(scores.std(ddof=1))}"
                                                                 if len(scores) > 1 else ""))
        params = f"{group['params'].mean() / 1e6:.3g} M ({100 * group['params_fraction'].mean():.0f} %)"
        flops = f"{group['flops_per_token'].mean() / 1e6:.3g} M ({100 * group['flops_fraction'].mean():.0f} %)"
        if structured:
            infer, train, sparsity = _speedup(group, "infer_speedup"), _speedup(group, "train_speedup"), "–"
        else:
            infer = train = "n/a (dense)"
            sparsity = f"{100 * group['sparsity_prunable'].mean():.1f} %"
        rows.append({"task": task, "subnetwork": label(family, kind), "seeds": len(group), "params": params,
                     "FLOPs / token": flops, "inference speedup": infer, "training-step speedup": train,
                     "sparsity": sparsity, "dev score (retrained)": score})
    return pd.DataFrame(rows)


def machine_notes(machines: list[dict]) -> list[str]:
    """The machine facts, once per distinct machine (device, CPU, threads, torch)."""
    seen: dict[tuple, list[str]] = {}
    for m in machines:
        key = (m.get("device"), m.get("cpu"), m.get("torch_threads"), m.get("torch"), m.get("cuda"),
               m.get("jobs_per_gpu") or 1)
        seen.setdefault(key, []).append(f"{m['task']}/{m['seed']}")
    notes = []
    for (device, cpu, threads, torch_version, cuda, per_gpu), runs in seen.items():
        where = "" if len(seen) == 1 else f" ({len(runs)} jobs: {', '.join(runs[:4])}{'…' if len(runs) > 4 else ''})"
        extra = f", CUDA {cuda}" if cuda else ""
        if per_gpu > 1:
            extra += (f"; the GPU was shared by up to {per_gpu} jobs (BERTLOTTERY_JOBS_PER_GPU={per_gpu}), so these "
                      "timings may include other jobs' load: rerun the speed jobs with 1 job per GPU to compare")
        notes.append(f"Machine{where}: device {device}, CPU {cpu}, {threads} torch thread(s), torch {torch_version}{extra}.")
    return notes


def _batching(long: pd.DataFrame) -> str:
    """How the timed batches were built (training.padding_free of the records); the FLOPs assume padding-free."""
    modes = set(long["padding_free"].dropna())
    if modes == {True}:
        return "padding-free"
    if modes == {False}:
        return "padded (training.padding_free: false; the FLOPs count real tokens only)"
    return "padding-free or padded (training.padding_free differs between records)"


def speed_table(long: pd.DataFrame, machines: list[dict]) -> tuple:
    first = long.iloc[0]
    notes = [
        "Every head/MLP subnetwork is pruned physically (heads and MLPs removed from the matrices) and timed "
        "against the full model of the same task and seed, on the same batches, in interleaved rounds (full, "
        f"subnetwork 1, subnetwork 2, …, full, …): {first['repeats']} timed rounds after {first['warmup']} "
        f"warm-up round(s); inference = one {_batching(long)} pass over the dev examples, training step = the mean of "
        f"{first['train_steps']} AdamW steps on training batches. Speedup = t(full) / t(subnetwork) per round; "
        "shown: median over seeds of the per-round medians [min–max over all rounds and seeds].",
        DENSE_NOTE, FLOPS_NOTE,
        "Dev score: the subnetwork retrained from the pre-trained weights (the full model: fine-tuned), "
        "reported metric of the task, mean ± std over seeds.",
        "Timings on a machine shared with other jobs are noisy; interleaving spreads that noise over the full "
        "model and the subnetworks alike. Parameters include the embeddings, which pruning never removes.",
    ] + machine_notes(machines)
    return long, display_table(long), TABLE_CAPTION, notes


def speed_figure(long: pd.DataFrame, stem) -> list[Path]:
    """Retrained dev score against measured inference speedup: one point per task x seed x subnetwork."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from bertlottery.analysis.plotting import DOUBLE, OKABE_ITO, apply_style, save

    points = long[long["structured"].astype(bool) & long["infer_speedup_median"].notna()]
    if points.empty:
        raise BertLotteryError("speed figure: no timed subnetwork in the speed JSONs")
    apply_style()
    kinds = list(dict.fromkeys(zip(points["family"], points["kind"])))
    palette = [c for name, c in OKABE_ITO.items() if name not in ("black", "yellow")] + ["#7f7f7f", "#8c564b"]
    colours = {k: OKABE_ITO["black"] if k[0] == "full" else palette[i % len(palette)]
               for i, k in enumerate(k for k in kinds if k[0] != "full")} | {("full", NO_KIND): OKABE_ITO["black"]}
    tasks = task_order(points["task"].unique())
    markers = dict(zip(tasks, "osD^v<>pP*Xh"))
    fig, ax = plt.subplots(figsize=(DOUBLE * 0.62, 2.6), layout="constrained")
    for (family, kind, task), group in points.groupby(["family", "kind", "task"], sort=False):
        x = group["infer_speedup_median"].to_numpy(float)
        err = np.vstack([x - group["infer_speedup_min"].to_numpy(float), group["infer_speedup_max"].to_numpy(float) - x])
        y = group["score_retrained"].to_numpy(float)
        ax.errorbar(x, y, xerr=None if family == "full" else err, fmt=markers[task], color=colours[(family, kind)],
                    ms=4, mew=0.5, mfc="none" if kind == "bad" else colours[(family, kind)], elinewidth=0.5,
                    capsize=0, alpha=0.9, ls="none")
    ax.axvline(1.0, color=OKABE_ITO["grey"], lw=0.6, ls="--")
    ax.set_xscale("log")  # speedups are ratios: 0.5x and 2x sit symmetrically around the full model
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("measured inference speedup over the full model (×, median over rounds)")
    ax.set_ylabel("dev score, retrained (reported metric)")
    ax.grid(lw=0.3, alpha=0.5)
    handles = [Line2D([], [], color=colours[k], marker="o", ls="none", ms=4, mfc="none" if k[1] == "bad" else colours[k],
                      label=label(*k)) for k in sorted(colours, key=lambda k: kinds.index(k) if k in kinds else -1)
               if k in kinds]
    handles += [Line2D([], [], color="black", marker=markers[t], ls="none", ms=4, mfc="none", label=t) for t in tasks]
    fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize=5.5)
    fig.suptitle("Dev score against measured speedup (physically pruned subnetworks)", fontsize=7.5)
    return save(fig, stem)


def main_speed_report(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery speed-report", description=__doc__)
    parser.add_argument("--speed", nargs="+", required=True, help="speed JSONs from `bertlottery speed`")
    parser.add_argument("--metrics", required=True, help="metrics.parquet/.csv from `aggregate` (per run)")
    parser.add_argument("--table", required=True, help="table stem: writes <stem>.csv, .md, .tex and .html")
    parser.add_argument("--figure", required=True, help="figure stem: writes <stem>.pdf and <stem>.png")
    args = parser.parse_args(argv)
    table, machines = speed_rows(args.speed)
    long = _order(with_scores(table, read_table(args.metrics)))
    missing = long[long["structured"].astype(bool) & long["score_retrained"].isna() & (long["family"] != "full")]
    if not missing.empty:
        print(f"speed-report: no retrained score for {len(missing)} timed row(s) (not retrained in this run)")
    write_report_table(args.table, *speed_table(long, machines))
    speed_figure(long, args.figure)
    print(f"speed-report: {len(long)} rows -> {args.table}.{{csv,md,tex,html}}, {args.figure}.{{pdf,png}}")
