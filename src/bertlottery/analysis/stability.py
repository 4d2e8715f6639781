"""Agreement of s-masks across seeds (Fleiss' kappa, Cochran's Q), super-survivors and overlaps
between tasks (paper §5.1, §5.3; docs/protocol.md §Statistics).

Degenerate inputs (two seeds, identical masks) give NaN with a stated reason, never an exception.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import cochrans_q
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from bertlottery.analysis.masksets import UNITS, MaskSet, unit_array
from bertlottery.errors import BertLotteryError
from bertlottery.families import SUPER
from bertlottery.masks.types import HeadMlpMask

# --- agreement across seeds (paper §5.1) -----------------------------------------------------------


def fleiss_kappa_binary(matrix: np.ndarray) -> tuple[float, str]:
    """Fleiss' kappa of a units x raters 0/1 matrix (statsmodels), with a reason when undefined."""
    matrix = np.asarray(matrix, dtype=int)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        return np.nan, "needs at least 2 seeds"
    if matrix.min() == matrix.max():
        return np.nan, f"every element is {'kept' if matrix.max() else 'pruned'} in every seed: agreement undefined"
    table, _ = aggregate_raters(matrix, n_cat=2)
    return float(fleiss_kappa(table, method="fleiss")), ""


def cochran_q_test(matrix: np.ndarray) -> tuple[float, int, float, str]:
    """Cochran's Q of a units x seeds 0/1 matrix (statsmodels): (Q, df, p, reason when undefined)."""
    matrix = np.asarray(matrix, dtype=int)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        return np.nan, 0, np.nan, "needs at least 2 seeds"
    df = matrix.shape[1] - 1
    if (matrix.min(axis=1) == matrix.max(axis=1)).all():
        return np.nan, df, np.nan, "no element differs between seeds: Q undefined (masks identical)"
    result = cochrans_q(matrix)
    return float(result.statistic), int(result.df), float(result.pvalue), ""


def cohen_kappa_binary(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two 0/1 vectors: agreement beyond chance (NaN when chance agreement is 1)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    observed = float((a == b).mean())
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return np.nan if chance == 1 else (observed - chance) / (1 - chance)


def pair_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Which elements two seeds' masks share: Cohen's kappa and the kept overlap against its
    hypergeometric expectation (one-sided p of sharing more kept elements than chance). Cochran's Q on
    two seeds (McNemar's test) asks only whether they keep the same *number* of elements."""
    counts = overlap_counts(a, b)
    degenerate = counts["n_a"] in (0, counts["total"]) or counts["n_b"] in (0, counts["total"])
    return {"kept_a": counts["n_a"], "kept_b": counts["n_b"], "shared": counts["overlap"],
            "shared_expected": counts["expected"], "kappa": cohen_kappa_binary(a, b),
            "shared_p": np.nan if degenerate else counts["p"],
            "agreement_reason": "a seed keeps all or none: overlap fixed by the counts" if degenerate else ""}


def stability(masks: MaskSet, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per task and unit: Fleiss' kappa and Cochran's Q over all seeds, and Q for every seed pair.

    A pair counts as 'similar' when its Q test does not reject (p >= alpha), the original notebook's
    reading. Statistically a non-rejection does not show similarity; we only count it. Which elements a
    pair shares is in the pair's Cohen's kappa and hypergeometric overlap test (`pair_agreement`).
    """
    rows, pair_rows = [], []
    for task, by_seed in masks.items():
        seeds = list(by_seed)
        for unit in UNITS:
            matrix = np.stack([unit_array(by_seed[s], unit) for s in seeds], axis=1)
            kappa, k_reason = fleiss_kappa_binary(matrix)
            q, df, p, q_reason = cochran_q_test(matrix)
            pairs = []
            for a, b in itertools.combinations(range(len(seeds)), 2):
                pq, _, pp, p_reason = cochran_q_test(matrix[:, [a, b]])
                pairs.append(pp)
                pair_rows.append({"task": task, "unit": unit, "seed_a": seeds[a], "seed_b": seeds[b],
                                  "q": pq, "p": pp, "similar": bool(pp >= alpha) if np.isfinite(pp) else None,
                                  "reason": p_reason} | pair_agreement(matrix[:, a], matrix[:, b]))
            defined = [p_ for p_ in pairs if np.isfinite(p_)]
            rows.append({
                "task": task, "unit": unit, "n_seeds": len(seeds), "n_units": matrix.shape[0],
                "kept_mean": matrix.sum(axis=0).mean(), "kept_std": _std(matrix.sum(axis=0)),
                "kappa": kappa, "kappa_reason": k_reason, "q": q, "q_df": df, "q_p": p, "q_reason": q_reason,
                "q_rejects": bool(p < alpha) if np.isfinite(p) else None,
                "pairs_similar": sum(p_ >= alpha for p_ in defined), "pairs_defined": len(defined),
                "pairs_total": len(pairs),
            })
    return pd.DataFrame(rows), pd.DataFrame(pair_rows)


def _std(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else np.nan


# --- super-survivors and overlaps (paper §5.3) ----------------------------------------------------


def super_survivors(masks: MaskSet) -> pd.DataFrame:
    """Per task: counts per seed, super-survivors (kept in every seed), never-surviving elements."""
    rows = []
    for task, by_seed in masks.items():
        row = {"task": task, "n_seeds": len(by_seed), "seeds": " ".join(map(str, by_seed))}
        for unit in UNITS:
            matrix = np.stack([unit_array(m, unit) for m in by_seed.values()], axis=1)
            counts = matrix.sum(axis=0)
            row |= {f"{unit}_total": matrix.shape[0], f"{unit}_per_seed": " ".join(map(str, counts)),
                    f"{unit}_mean": counts.mean(), f"{unit}_std": _std(counts),
                    f"super_{unit}": int(matrix.all(axis=1).sum()), f"never_{unit}": int((~matrix.any(axis=1)).sum())}
        rows.append(row)
    return pd.DataFrame(rows)


def super_mask(by_seed: dict[int, "HeadMlpMask"], unit: str) -> np.ndarray:
    """Elements kept in every seed (the AND of the seeds' masks)."""
    return np.stack([unit_array(m, unit) for m in by_seed.values()]).all(axis=0)


def overlap_counts(a: np.ndarray, b: np.ndarray) -> dict:
    """Shared kept elements of two masks and the hypergeometric expectation and tail under independence.

    With N elements, n_a and n_b kept at random, the overlap X is hypergeometric: E[X] = n_a n_b / N,
    and p = P(X >= observed) is the one-sided test of 'more than expected if independent'.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total, n_a, n_b, k = a.size, int(a.sum()), int(b.sum()), int((a & b).sum())
    expected = n_a * n_b / total if total else np.nan
    p = float(sps.hypergeom.sf(k - 1, total, n_a, n_b)) if total else np.nan
    return {"overlap": k, "n_a": n_a, "n_b": n_b, "total": total, "expected": expected, "p": p}


def overlaps(masks: MaskSet, alpha: float = 0.05) -> pd.DataFrame:
    """Lower-triangular task x task overlaps (Figure 5, Appendix G) for heads and MLPs.

    set 'good': same-seed pairing (task A seed s with task B seed s), mean and std over the shared seeds,
    the mean hypergeometric expectation and Fisher's combination of the per-seed tail p-values.
    set 'super': the super-survivor masks (one per task), with the hypergeometric expectation and tail.
    The diagonal holds each task's own count.
    """
    rows = []
    tasks = list(masks)
    for unit in UNITS:
        for i, task_a in enumerate(tasks):
            for task_b in tasks[: i + 1]:
                rows.append(_good_overlap(masks, unit, task_a, task_b, alpha))
                one = overlap_counts(super_mask(masks[task_a], unit), super_mask(masks[task_b], unit))
                diag = task_a == task_b
                rows.append({"unit": unit, "set": SUPER, "task_a": task_a, "task_b": task_b, "n_seeds": 1,
                             "mean": float(one["overlap"]), "std": np.nan, "total": one["total"],
                             "expected_mean": np.nan if diag else one["expected"],
                             "p_combined": np.nan if diag else one["p"],
                             "seeds_significant": None if diag else int(one["p"] < alpha), "per_seed": ""})
    return pd.DataFrame(rows)


def _good_overlap(masks: MaskSet, unit: str, task_a: str, task_b: str, alpha: float) -> dict:
    seeds = [s for s in masks[task_a] if s in masks[task_b]]
    per_seed = [overlap_counts(unit_array(masks[task_a][s], unit), unit_array(masks[task_b][s], unit))
                for s in seeds]
    counts = [r["overlap"] for r in per_seed]
    row = {"unit": unit, "set": "good", "task_a": task_a, "task_b": task_b, "n_seeds": len(seeds),
           "mean": float(np.mean(counts)) if counts else np.nan, "std": _std(counts),
           "total": per_seed[0]["total"] if per_seed else np.nan,
           "per_seed": " ".join(f"{s}:{c}" for s, c in zip(seeds, counts))}
    if task_a == task_b or not per_seed:
        return row | {"expected_mean": np.nan, "p_combined": np.nan, "seeds_significant": None}
    ps = [r["p"] for r in per_seed]
    combined = float(sps.combine_pvalues(ps, method="fisher").pvalue) if len(ps) > 1 else ps[0]
    return row | {"expected_mean": float(np.mean([r["expected"] for r in per_seed])), "p_combined": combined,
                  "seeds_significant": int(sum(p < alpha for p in ps))}


def all_tasks_survival(masks: MaskSet, unit: str) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """Appendix B: per element, the number of tasks it survives in, mean and std over the seeds that
    every task has. Returns (mean, std, tasks, seeds) with the unit's shape ([L, H] or [L])."""
    tasks = list(masks)
    seeds = [s for s in next(iter(masks.values())) if all(s in masks[t] for t in tasks)]
    if not seeds:
        raise BertLotteryError(f"no seed is shared by all tasks {tasks}; Appendix B needs same-seed masks")
    counts = np.stack([sum(getattr(masks[t][s], unit).numpy().astype(int) for t in tasks) for s in seeds])
    std = counts.std(axis=0, ddof=1) if len(seeds) > 1 else np.full(counts.shape[1:], np.nan)
    return counts.mean(axis=0), std, tasks, seeds
