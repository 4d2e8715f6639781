"""How far the study's verdicts can be trusted at its size (docs/protocol.md §Statistics, "Sensitivity"): the searches'
90 % stopping band against the dev set's sampling error, how often a 'good' mask would still count as good
on a resampled dev set, and how many retrainings did not converge.

The searches (m, s and the separate s-searches) stop at the last step whose pruned dev score stays >= the
threshold x the full model's. On a small dev set (CoLA's MCC on 1,043 sentences) that band can be narrower
than the score's own sampling error, so which step counts as the last good one is partly chance. Per task and
seed this module gives the band's width in units of the full score's dev-bootstrap standard deviation, and the
share of bootstrap replicates (the same resampled examples for both runs, so paired) on which the good mask's
pruned score still clears the threshold. A retraining counts as not converged when its final training loss is
more than aggregate.NONCONVERGED_RATIO times its full model's.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from bertlottery.analysis.aggregate import KEYS, NO_KIND, NONCONVERGED_RATIO, task_order
from bertlottery.analysis.table_format import fmt_ms
from bertlottery.errors import BertLotteryError
from bertlottery.families import FAMILIES, GOOD, families_where

# The families whose good mask is the last search step above the threshold on its pruned dev score.
THRESHOLD_FAMILIES = tuple(families_where(finder="find-m-mask") + families_where(finder="find-s-mask"))
CAPTION = "Sensitivity: the 90 % stopping band against dev-set sampling error, and retrainings not converged"


def _replicates_by_run(boot: pd.DataFrame) -> dict[tuple, np.ndarray]:
    """{run key (aggregate.KEYS): its resampled metric, by replicate}; empty when no record keeps predictions
    (aggregate's table then has no key columns either)."""
    if boot.empty:
        return {}
    return {key: rows.sort_values("replicate")["value"].to_numpy(dtype=float) for key, rows in boot.groupby(KEYS)}


def sensitivity(metrics: pd.DataFrame, boot: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """One row per (task, seed, family): the threshold families' band and still-good share (NaN where the
    records keep no predictions), and every retrained family's count of non-converged retrainings."""
    unknown = sorted(set(thresholds) - set(THRESHOLD_FAMILIES))
    if unknown:
        raise BertLotteryError(f"sensitivity: no threshold search for family {unknown}; expected {THRESHOLD_FAMILIES}")
    full = metrics[metrics["evaluated"] == "full"].set_index(["task", "seed"])
    replicates = _replicates_by_run(boot)
    rows = []
    for (task, seed, family), runs in metrics[metrics["family"] != "full"].groupby(["task", "seed", "family"], sort=False):
        if (task, seed) not in full.index:
            raise BertLotteryError(f"sensitivity: {task} seed {seed} has {family} runs but no full model's metrics")
        row = {"task": task, "seed": int(seed), "family": family,
               "reported_metric": full.loc[(task, seed), "reported_metric"],
               "full": float(full.loc[(task, seed), "reported"])}
        retrained = runs[runs["evaluated"] == "retrained"]
        row["retrained"] = len(retrained)
        row["nonconverged"] = int(retrained["nonconverged"].sum()) if "nonconverged" in retrained else 0
        good = runs[(runs["kind"] == GOOD) & (runs["evaluated"] == "pruned")]
        if family in thresholds and len(good):
            threshold = thresholds[family]
            row |= {"threshold": threshold, "good_pruned": float(good["reported"].iloc[0])}
            row["good_ratio"] = row["good_pruned"] / row["full"] if row["full"] else np.nan
            row["band"] = (1 - threshold) * row["full"]
            full_reps = replicates.get((task, seed, "full", NO_KIND, "full"))
            good_reps = replicates.get((task, seed, family, GOOD, "pruned"))
            if full_reps is not None and good_reps is not None:
                row["full_dev_sd"] = float(np.std(full_reps, ddof=1))
                row["band_in_sd"] = row["band"] / row["full_dev_sd"] if row["full_dev_sd"] > 0 else np.nan
                row["p_still_good"] = float(np.mean(good_reps >= threshold * full_reps))
        rows.append(row)
    columns = ["task", "seed", "family", "reported_metric", "full", "threshold", "good_pruned", "good_ratio", "band",
               "full_dev_sd", "band_in_sd", "p_still_good", "retrained", "nonconverged"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    order = {"task": {t: n for n, t in enumerate(task_order(table["task"].unique()))},
             "family": {f: n for n, f in enumerate(FAMILIES)}}
    return table.sort_values(["task", "family", "seed"], key=lambda c: c.map(order[c.name]) if c.name in order else c,
                             ignore_index=True)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """Per task: the band against the dev SD (mean over seeds), the still-good share of each threshold family's
    good mask, and the non-converged retrainings of every family."""
    tasks = task_order(table["task"].unique())

    def mean_sd(values, digits=3):
        values = values.dropna().astype(float)
        return fmt_ms(values.mean(), values.std(ddof=1) if len(values) > 1 else None, digits) if len(values) else "–"

    def row(label, rows, column, digits=3):
        return {"row": label} | {t: mean_sd(rows.loc[rows["task"] == t, column], digits) for t in tasks}

    per_seed = table.drop_duplicates(["task", "seed"])
    banded = table.dropna(subset=["full_dev_sd"]).drop_duplicates(["task", "seed"])
    out = [row("full model (mean ± std over seeds)", per_seed, "full"),
           row("dev-set SD of the full score (bootstrap)", banded, "full_dev_sd"),
           row("width of the stopping band (1 − threshold) × full, in dev SDs", banded, "band_in_sd", 1)]
    for family in [f for f in THRESHOLD_FAMILIES if f in set(table["family"])]:
        of = table[table["family"] == family]
        out += [row(f"{family} good, pruned / full", of, "good_ratio"),
                row(f"{family} good: share of resampled dev sets where it still clears the threshold", of,
                    "p_still_good", 2)]
    for family in [f for f in table["family"].unique() if table.loc[table["family"] == f, "retrained"].sum()]:
        of = table[table["family"] == family]
        out.append({"row": f"{family}: retrainings not converged"} | {t: _count(of[of["task"] == t]) for t in tasks})
    out.append({"row": "all retrainings not converged"} | {t: _count(table[table["task"] == t]) for t in tasks})
    return pd.DataFrame(out, columns=["row", *tasks])


def _count(rows: pd.DataFrame) -> str:
    total = int(rows["retrained"].sum())
    return f"{int(rows['nonconverged'].sum())} of {total}" if total else "–"


def notes(table: pd.DataFrame) -> list[str]:
    metrics = ", ".join(sorted({str(m) for m in table["reported_metric"].dropna()}))
    notes_ = [
        "The searches keep pruning while the pruned dev score stays >= threshold × the full model's; the band is "
        "the distance from the full score to that limit. Band in dev SDs: the band divided by the bootstrap standard "
        "deviation of the full model's score over resampled dev sets (1,000 replicates). Below about 2, the step at "
        "which a search stops is decided partly by which examples happen to be in the dev set.",
        "Still clears the threshold: the share of replicates on which the good mask's pruned score is >= threshold "
        "× the full model's score on the same resampled examples (paired). 1.00: the good mask is good on any dev "
        "sample; about 0.5: good by the luck of this one.",
        f"Not converged: a retraining whose final training loss is more than {NONCONVERGED_RATIO:g} × its full "
        "model's (same task and seed); their scores say little about the mask.",
        f"Scores are each task's reported metric ({metrics}); the search's own stopping metric may differ (MRPC, "
        "STS-B), so the share is that of the reported metric.",
    ]
    if table["full_dev_sd"].isna().all():
        notes_.append("No dev bootstrap: the metrics records keep no per-example predictions.")
    return notes_


def threshold_arg(pair: str) -> tuple[str, float]:
    """FAMILY=THRESHOLD (argparse type of `stats sensitivity --thresholds`)."""
    family, _, value = pair.partition("=")
    try:
        return family, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{pair!r} is not FAMILY=NUMBER (e.g. m=0.9)") from None
