"""The paper's claims on the masks themselves (docs/protocol.md §Claims): how m-pruning spreads over the
blocks (§4.1), how stable the good s-masks are across seeds (§5.1), and how they overlap between tasks
(§5.3). Each returns a graded Verdict (analysis/verdicts.py) from the statistics tables of `stats masks`
and `stats m-blocks`, ours or those of the original study's published masks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from bertlottery.analysis.aggregate import task_order
from bertlottery.analysis.claims import MOST, Numbers
from bertlottery.analysis.verdicts import FAILS, HOLDS, NO, NOT_SHOWN, SKIP, UNCLEAR, YES, Verdict, cannot, grade

HALF_BAND = 0.075  # "about half (42-57 %)": within 7.5 points of the task's own pruned share


def _unit(table: pd.DataFrame | None, unit: str, set_: str | None = None):
    if table is None or table.empty:
        return None
    part = table[table["unit"] == unit]
    if set_ is not None and "set" in part:
        part = part[part["set"] == set_]
    return None if part.empty else part


# --- §4.1: m-pruning over the blocks -----------------------------------------------------------------


def claim_m_half(n: Numbers) -> Verdict:
    """The paper's sentence is about QNLI's Figure 1a, pruned to about half overall: every block loses
    about as much as the whole. At another task's own sparsity the same reading is: every block's pruned
    share within HALF_BAND of the task's."""
    if n.m_blocks is None or n.m_blocks.empty:
        return cannot("no m-pruning masks (the paper's m-masks are not published)")
    judged = {}
    for task in task_order(n.m_blocks["task"].unique()):
        rows = n.m_blocks[n.m_blocks["task"] == task]
        pruned = 1 - rows.groupby(["layer", "block", "head"])["fraction"].mean()
        overall = 1 - rows["kept"].sum() / rows["total"].sum()
        inside = float(((pruned - overall).abs() <= HALF_BAND).mean())
        judged[task] = (YES if inside >= 0.9 else NO, f"{overall:.0%} pruned overall, blocks {pruned.min():.0%}.."
                        f"{pruned.max():.0%}, {inside:.0%} of blocks within {100 * HALF_BAND:.1f} points")
    return grade(judged, 1.0, "lose about as much in every block as overall (>= 90 % of heads/MLPs within the band)",
                 min_checkable=1)  # the paper's sentence is about one task's Figure 1a (QNLI)


def spearman_exact(x, y) -> tuple[float, float]:
    """Spearman's rho and its two-sided p: exact over all orderings up to 8 values, else scipy's."""
    rho = float(sps.spearmanr(x, y)[0])
    if len(x) > 8:
        return rho, float(sps.spearmanr(x, y)[1])
    ranks = sps.rankdata(y)
    null = [sps.spearmanr(np.arange(len(ranks)), perm)[0] for perm in itertools.permutations(ranks)]
    return rho, float(np.mean(np.abs(null) >= abs(rho) - 1e-12))


def critical_rho(n_values: int, alpha: float) -> float:
    """The smallest |rho| that reaches p < alpha with n values (exact up to 8, t-approximation beyond)."""
    if n_values > 8:
        t = sps.t.ppf(1 - alpha / 2, n_values - 2)
        return float(t / math.sqrt(n_values - 2 + t * t))
    null = np.sort(np.abs([sps.spearmanr(np.arange(n_values), perm)[0]
                           for perm in itertools.permutations(range(n_values))]))
    for value in np.unique(null):
        if np.mean(null >= value - 1e-12) < alpha:
            return float(value)
    return math.inf


def claim_m_early_layers(n: Numbers, alpha: float) -> Verdict:
    if n.m_blocks is None or n.m_blocks.empty:
        return cannot("no m-pruning masks (the paper's m-masks are not published)")
    per_layer = n.m_blocks.groupby("layer")["fraction"].mean()
    if len(per_layer) < 3:
        return cannot("needs at least 3 layers for a rank correlation")
    rho, p = spearman_exact(per_layer.index.to_numpy(), per_layer.to_numpy())
    needed = critical_rho(len(per_layer), alpha)
    text = (f"Spearman rho(layer, surviving fraction) = {rho:.2f}, p = {p:.3g} over {len(per_layer)} layers; "
            f"with {len(per_layer)} layers p < {alpha} needs |rho| >= {needed:.2f}")
    verdict = (HOLDS if rho > 0 else FAILS) if p < alpha else NOT_SHOWN
    return Verdict(verdict, text, {"per_layer": per_layer.round(4).to_dict()},
                   uncertainty=f"exact permutation p over the {len(per_layer)} layer means")


def claim_separate_fewer(n: Numbers) -> Verdict:
    sv = n.survivors
    if sv is None or "set" not in sv or not {"heads-only", "mlps-only"} & set(sv["set"]):
        return cannot("no separate (heads-only / MLPs-only) searches (s_pruning.modes)")
    joint = sv[sv["set"] == "joint"].set_index("task")
    judged = {}
    for set_, unit in (("heads-only", "heads"), ("mlps-only", "mlps")):
        sep = sv[sv["set"] == set_].set_index("task")
        tasks = [t for t in sep.index if t in joint.index]
        if tasks:
            j = float((joint.loc[tasks, f"{unit}_mean"] / joint.loc[tasks, f"{unit}_total"]).mean())
            s = float((sep.loc[tasks, f"{unit}_mean"] / sep.loc[tasks, f"{unit}_total"]).mean())
            judged[unit] = (YES if s < j else NO, f"{100 * j:.0f} % joint vs {100 * s:.0f} % separate")
    if not judged:
        return cannot("separate and joint searches share no task")
    verdict = grade(judged, 1.0, "keep fewer when searched separately (paper: heads 49 vs 22, MLPs 75 vs 50)",
                    items="units")
    verdict.uncertainty = "means over tasks and seeds; no interval"
    return verdict


# --- §5.1: stability across seeds --------------------------------------------------------------------


def claim_kappa_range(n: Numbers) -> Verdict:
    st = _unit(n.stability, "heads")
    if st is None:
        return cannot("no head masks")
    judged = {}
    for r in st.itertuples():
        if r.task == "WNLI":
            judged[r.task] = (SKIP, "excluded as in the paper's range")
        elif not np.isfinite(r.kappa):
            judged[r.task] = (SKIP, f"kappa undefined ({r.kappa_reason or 'fewer than 2 seeds'})")
        else:
            k = np.trunc(r.kappa * 100) / 100
            side = "inside" if 0.15 <= k <= 0.32 else "below: less stable" if k < 0.15 else "above: more stable"
            judged[r.task] = (YES if side == "inside" else NO, f"{r.kappa:.3f} ({side})")
    verdict = grade(judged, 1.0, "have Fleiss' kappa (truncated to 2 decimals) within 0.15-0.32")
    below = [t for t, (j, text) in judged.items() if "below" in text]
    if below and len(below) == sum(j != SKIP for j, _ in judged.values()):
        verdict.reason += (" Every task misses below the range: the masks are even less stable than the paper's, "
                           "which supports its conclusion (unstable good subnetworks) more strongly.")
    verdict.uncertainty = "kappa over the heads of all seeds; no interval"
    return verdict


def claim_cochran_differs(n: Numbers, alpha: float) -> Verdict:
    """Cochran's Q asks whether the seeds keep the same *share* of heads, not whether they keep the same
    heads: a rejection says the counts differ, a non-rejection is no evidence of similar masks."""
    st = _unit(n.stability, "heads")
    if st is None:
        return cannot("no head masks")
    judged = {r.task: ((YES if r.q_p < alpha else UNCLEAR), f"p = {r.q_p:.3g}") if np.isfinite(r.q_p)
              else (SKIP, r.q_reason or "Q undefined") for r in st.itertuples()}
    verdict = grade(judged, 1.0, f"have Cochran's Q p < {alpha} (the seeds keep different shares of heads; a "
                    "non-rejection shows nothing)")
    verdict.evidence["q_p"] = {r.task: r.q_p for r in st.itertuples()}
    return verdict


def claim_some_pairs_similar(n: Numbers, alpha: float) -> Verdict:
    """'Similar' pairs by agreement beyond chance: the kept heads two seeds share against the
    hypergeometric expectation, Holm-corrected over all pairs; Cohen's kappa as the effect."""
    pairs = _unit(n.stability_pairs, "heads")
    if pairs is None or "shared_p" not in pairs:
        return cannot("no per-pair agreement of the seeds' head masks (stability_pairs with Cohen's kappa)")
    defined = pairs[np.isfinite(pairs["shared_p"].astype(float))]
    if defined.empty:
        return cannot("no seed pair where both seeds keep some but not all heads")
    reject = multipletests(defined["shared_p"].astype(float), alpha=alpha, method="holm")[0]
    similar = defined[reject]
    best = similar.sort_values("kappa", ascending=False).head(5)
    named = ", ".join(f"{r.task} {r.seed_a}/{r.seed_b} kappa {r.kappa:.2f}" for r in best.itertuples())
    q_similar = int((defined["p"].astype(float) >= alpha).sum())
    reason = (f"{len(similar)} of {len(defined)} seed pairs share more heads than chance (hypergeometric, Holm, "
              f"alpha {alpha})" + (f": {named}" if named else "") + f"; mean pair kappa {defined['kappa'].mean():.3f}. "
              f"Cochran's Q (McNemar) finds {q_similar} pairs with equal head counts, which is not similarity.")
    return Verdict(HOLDS if len(similar) else FAILS, reason, {"similar_pairs": int(len(similar))},
                   uncertainty="Holm-corrected one-sided hypergeometric p per pair")


def claim_low_importance(n: Numbers) -> Verdict:
    imp = n.importance
    if imp is None or imp.empty:
        return cannot("no s-search traces (s_pruning.save_iterations) or the paper's per-iteration scores "
                      "(not published)")
    heads, mlps = imp["heads_low_share"].median(), imp["mlps_low_share"].median()
    ok = heads > 0.5 and (not np.isfinite(mlps) or mlps > 0.5)
    return Verdict(HOLDS if ok else FAILS, f"median share of unpruned elements with normalised importance < 0.5: "
                   f"heads {heads:.2f}, MLPs {mlps:.2f} over {len(imp)} search iterations",
                   uncertainty="medians over searches and iterations; no interval")


# --- §5.3: overlaps between tasks --------------------------------------------------------------------


def _degenerate(ov: pd.DataFrame) -> dict:
    """Tasks that keep all or none of the units in every seed: their overlaps are fixed by the counts."""
    diag = ov[ov["task_a"] == ov["task_b"]]
    out = {}
    for r in diag.itertuples():
        if (r.mean in (0, r.total)) and not (np.isfinite(r.std) and r.std > 0):
            out[r.task_a] = "keeps all" if r.mean == r.total else "keeps none"
    return out


def claim_overlap_above_chance(n: Numbers, unit: str, alpha: float) -> Verdict:
    ov = _unit(n.overlaps, unit, "good")
    if ov is None:
        return cannot("no overlaps")
    fixed = _degenerate(ov)
    off = ov[(ov["task_a"] != ov["task_b"]) & ov["task_a"].ne("WNLI") & ov["task_b"].ne("WNLI")]
    off = off[np.isfinite(off["expected_mean"].astype(float))]
    if off.empty:
        return cannot("needs at least 2 tasks (WNLI excluded) with masks on shared seeds")
    with_p = np.isfinite(off["p_combined"].astype(float)).all()
    judged = {}
    for r in off.itertuples():
        pair, text = f"{r.task_a}-{r.task_b}", f"{r.mean:.1f} shared vs {r.expected_mean:.1f} expected"
        degenerate = [f"{t} {fixed[t]} {unit} in every seed" for t in (r.task_a, r.task_b) if t in fixed]
        if degenerate:
            judged[pair] = (SKIP, f"{text}: {'; '.join(degenerate)} (p = 1 by construction)")
        elif r.mean > r.expected_mean and (not with_p or r.p_combined < alpha):
            judged[pair] = (YES, text + (f", p = {r.p_combined:.2g}" if with_p else ""))
        else:
            judged[pair] = (NO if not with_p or r.mean <= r.expected_mean else UNCLEAR,
                            text + (f", p = {r.p_combined:.2g}" if with_p else ""))
    test = f"hypergeometric, Fisher-combined p < {alpha}" if with_p else "per-seed counts unpublished: no p-value"
    verdict = grade(judged, MOST, f"share more {unit} than expected under independence ({test})", items="task pairs")
    verdict.uncertainty = test
    return verdict


def _overlap(n: Numbers, a: str, b: str, unit: str = "heads"):
    ov = _unit(n.overlaps, unit, "good")
    if ov is None:
        return None
    hit = ov[((ov["task_a"] == a) & (ov["task_b"] == b)) | ((ov["task_a"] == b) & (ov["task_b"] == a))]
    return None if hit.empty else hit.iloc[0]


def claim_mrpc_qnli_half(n: Numbers) -> Verdict:
    rows = [_overlap(n, *pair) for pair in (("MRPC", "QNLI"), ("MRPC", "MRPC"), ("QNLI", "QNLI"))]
    if any(r is None for r in rows):
        return cannot("needs MRPC and QNLI head masks")
    shared, own_a, own_b = (float(r["mean"]) for r in rows)
    ok = shared > 0.5 * max(own_a, own_b)
    return Verdict(HOLDS if ok else FAILS, f"MRPC-QNLI share {shared:.1f} heads; MRPC keeps {own_a:.1f}, "
                   f"QNLI {own_b:.1f} (mean over seeds)", uncertainty=_sd_text(rows[0]))


def claim_mrpc_qqp_mnli(n: Numbers) -> Verdict:
    qqp, mnli = _overlap(n, "MRPC", "QQP"), _overlap(n, "MRPC", "MNLI")
    if qqp is None or mnli is None:
        return cannot("needs MRPC, QQP and MNLI head masks")
    a, b = float(qqp["mean"]), float(mnli["mean"])
    return Verdict(HOLDS if a < b else FAILS, f"MRPC-QQP {a:.1f} vs MRPC-MNLI {b:.1f} shared heads",
                   uncertainty=f"MRPC-QQP {_sd_text(qqp)}; MRPC-MNLI {_sd_text(mnli)}")


def _sd_text(row) -> str:
    sd = float(row["std"]) if pd.notna(row.get("std")) else np.nan
    seeds = f" over {int(row['n_seeds'])} seeds" if pd.notna(row.get("n_seeds")) else ""
    return f"sd {sd:.1f}{seeds}" if np.isfinite(sd) else "no spread over seeds"
