"""Paired tests of good vs random vs bad subnetworks across seeds (t-test, Wilcoxon, bootstrap, Holm).

Degenerate inputs (constant differences) give NaN with a stated reason, never an exception.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from bertlottery.analysis.stability import _std
from bertlottery.families import BAD, BAD_6EP, GOOD, RANDOM

# --- paired tests across seeds ---------------------------------------------------------------------

COMPARISONS = [(GOOD, RANDOM), (GOOD, BAD), (RANDOM, BAD), (BAD, BAD_6EP)]


def paired_test(a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired t-test, Wilcoxon signed-rank, Cohen's d_z and a percentile bootstrap 95 % CI of the mean
    difference a - b. Undefined pieces are NaN and `reason` says why."""
    d = np.asarray(a, float) - np.asarray(b, float)
    out = {"n": d.size, "mean_diff": float(d.mean()) if d.size else np.nan, "sd_diff": _std(d),
           "cohen_dz": np.nan, "ci_low": np.nan, "ci_high": np.nan, "t": np.nan, "t_p": np.nan,
           "w": np.nan, "w_p": np.nan, "reason": ""}
    if d.size < 2:
        return out | {"reason": "needs at least 2 paired seeds"}
    reasons = []
    if np.allclose(d, 0, rtol=0, atol=1e-12):
        reasons.append("all paired differences are 0")
    elif np.allclose(d, d[0], rtol=0, atol=1e-12):  # float noise would make t astronomically large
        reasons.append("constant non-zero difference: t and d_z undefined")
    else:
        t = sps.ttest_rel(a, b)
        out |= {"t": float(t.statistic), "t_p": float(t.pvalue), "cohen_dz": out["mean_diff"] / out["sd_diff"]}
    if not np.allclose(d, 0, rtol=0, atol=1e-12):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = sps.wilcoxon(d)
        out |= {"w": float(w.statistic), "w_p": float(w.pvalue)}
        if d.size < 6:
            reasons.append(f"Wilcoxon with n={d.size}: smallest possible two-sided p is {2 / 2 ** d.size:.3g}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = sps.bootstrap((d,), np.mean, n_resamples=n_boot, method="percentile",
                           rng=np.random.default_rng(seed)).confidence_interval
    out |= {"ci_low": float(ci.low), "ci_high": float(ci.high)}
    if d.size < 5:
        reasons.append(f"bootstrap over {d.size} seeds is coarse")
    return out | {"reason": "; ".join(reasons)}


def paired_tests(metrics: pd.DataFrame, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Every task x family x evaluated x comparison of mask kinds, paired by seed, Holm-corrected
    (statsmodels) across all rows of this table, separately for the t-test and the Wilcoxon test."""
    rows = []
    masked = metrics[metrics["family"] != "full"]
    for (task, family, evaluated), part in masked.groupby(["task", "family", "evaluated"], sort=False):
        wide = part.pivot_table(index="seed", columns="kind", values="reported")
        for kind_a, kind_b in COMPARISONS:
            if kind_a not in wide or kind_b not in wide:
                continue
            both = wide[[kind_a, kind_b]].dropna()
            result = paired_test(both[kind_a].to_numpy(), both[kind_b].to_numpy(), n_boot, seed)
            rows.append({"task": task, "family": family, "evaluated": evaluated, "a": kind_a, "b": kind_b,
                         "mean_a": both[kind_a].mean(), "mean_b": both[kind_b].mean()} | result)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for col in ("t_p", "w_p"):
        table[col + "_holm"] = holm(table[col].to_numpy())
    order = ["task", "family", "evaluated", "a", "b", "n", "mean_a", "mean_b", "mean_diff", "sd_diff",
             "cohen_dz", "ci_low", "ci_high", "t", "t_p", "t_p_holm", "w", "w_p", "w_p_holm", "reason"]
    return table[order]


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels multipletests); NaNs stay NaN and are not counted."""
    pvalues = np.asarray(pvalues, float)
    out = np.full_like(pvalues, np.nan)
    ok = np.isfinite(pvalues)
    if ok.any():
        out[ok] = multipletests(pvalues[ok], method="holm")[1]
    return out
