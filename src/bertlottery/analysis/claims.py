"""The paper's claims (docs/protocol.md §Claims) checked on our numbers, beside the same checks on the paper's own
numbers: each claim is a function of a `Numbers` bundle (summary, stability, overlaps, survivors, m-block
fractions, importance, paired tests) returning a Verdict (holds / does not hold / cannot be checked).

`bertlottery claims` writes claims.{json,md,html}."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from bertlottery.analysis.aggregate import NO_KIND, lookup, task_order

HOLDS, FAILS, UNCHECKABLE = "holds", "does not hold", "cannot be checked"
PAR_TOLERANCE = 0.03      # "on par": the good mean exceeds the other by at most 3 points
FULL_TOLERANCE = 0.02     # "reaches the full model": at most 2 points below it
COMPETITIVE = 0.05        # Table 2: within 5 points of a baseline = competitive


@dataclass
class Numbers:
    """Everything a claim looks at; built from our results or from the paper's published numbers."""

    label: str
    summary: pd.DataFrame  # task, family, kind, evaluated, reported_mean, reported_std, sizes
    stability: pd.DataFrame | None = None
    stability_f: pd.DataFrame | None = None  # the same statistics of the f-good masks (family f, beyond the paper)
    overlaps: pd.DataFrame | None = None
    survivors: pd.DataFrame | None = None
    m_blocks: pd.DataFrame | None = None
    importance: pd.DataFrame | None = None
    tests: pd.DataFrame | None = None
    majority: dict = field(default_factory=dict)
    glue: dict = field(default_factory=dict)  # Table 2 baseline rows: key -> task -> value


@dataclass
class Verdict:
    verdict: str
    reason: str
    evidence: dict = field(default_factory=dict)


def _cannot(reason: str) -> Verdict:
    return Verdict(UNCHECKABLE, reason)


def _count_verdict(hits: dict, need: float, what: str, items: str = "tasks") -> Verdict:
    """'holds' when the share of tasks (or task pairs) that satisfy the criterion is at least `need`."""
    if not hits:
        return _cannot(f"no {items[:-1]} has the numbers this claim needs")
    share = sum(hits.values()) / len(hits)
    yes = [t for t, ok in hits.items() if ok]
    no = [t for t, ok in hits.items() if not ok]
    reason = (f"{len(yes)}/{len(hits)} {items} {what} (needs >= {need:.0%}); "
              f"yes: {', '.join(yes) or '-'}; no: {', '.join(no) or '-'}")
    return Verdict(HOLDS if share >= need else FAILS, reason, {"per_task": hits})


def _mean(n: Numbers, task: str, family: str, kind: str, evaluated: str, col: str = "reported_mean"):
    row = lookup(n.summary, task, family, kind, evaluated)
    if row is None or col not in row or pd.isna(row[col]):
        return None
    return float(row[col])


def _tasks(n: Numbers) -> list[str]:
    return task_order(n.summary["task"].unique())


def _per_task(n: Numbers, fn) -> dict:
    """fn(task) -> bool or None (None = this task lacks the numbers); returns task -> bool."""
    out = {}
    for task in _tasks(n):
        value = fn(task)
        if value is not None:
            out[task] = bool(value)
    return out


def _diff(n, task, a: tuple, b: tuple):
    x, y = _mean(n, task, *a), _mean(n, task, *b)
    return None if x is None or y is None else x - y


def claim_good_keeps_90(n: Numbers, family: str) -> Verdict:
    def check(task):
        full, good = _mean(n, task, "full", NO_KIND, "full"), _mean(n, task, family, "good", "pruned")
        return None if full is None or good is None else good >= 0.9 * full - 1e-9
    return _count_verdict(_per_task(n, check), 1.0, f"keep >= 90 % of the full model's {family}-pruned score")


def claim_good_beats(n: Numbers, family: str, evaluated: str, margin: float) -> Verdict:
    def check(task):
        d = [_diff(n, task, (family, "good", evaluated), (family, k, evaluated)) for k in ("random", "bad")]
        return None if None in d else min(d) > margin
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9,
                          f"have good {evaluated} > random and bad {evaluated} by > {margin:.2f}")


def claim_m_good_reaches_full(n: Numbers) -> Verdict:
    def check(task):
        d = _diff(n, task, ("m", "good", "retrained"), ("full", NO_KIND, "full"))
        return None if d is None else d >= -FULL_TOLERANCE
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9, f"have m good retrained >= full - {FULL_TOLERANCE}")


def claim_s_random_on_par(n: Numbers, tol: float, family: str = "s") -> Verdict:
    def check(task):
        d = _diff(n, task, (family, "good", "retrained"), (family, "random", "retrained"))
        return None if d is None else d <= tol
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9, f"have {family} random retrained within {tol:.2f} of good")


def claim_s_bad_trainable(n: Numbers, family: str = "s") -> Verdict:
    def check(task):
        bad, maj = _mean(n, task, family, "bad", "retrained"), n.majority.get(task)
        return None if bad is None or maj is None else bad - maj >= COMPETITIVE
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9,
                          f"have {family} bad retrained >= majority baseline + {COMPETITIVE:.2f}")


def claim_m_more_compression(n: Numbers) -> Verdict:
    def check(task):
        size = "paper_fraction_mean"
        d = _diff(n, task, ("s", "good", "pruned", size), ("m", "good", "pruned", size))
        return None if d is None else round(100 * d) >= 10
    return _count_verdict(_per_task(n, check), 7 / 9 - 1e-9, "prune >= 10 points more weights with m than with s")


def claim_subnetworks_large(n: Numbers) -> Verdict:
    def check(task):
        fr = [_mean(n, task, f, "good", "pruned", "whole_fraction_mean") for f in ("s", "m")]
        return None if None in fr else min(fr) > 0.5
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9,
                          "have s and m good subnetworks > 50 % of the whole model's parameters")


def claim_super_small(n: Numbers) -> Verdict:
    def check(task):
        fr = _mean(n, task, "super", "good", "pruned", "paper_fraction_mean")
        return None if fr is None else 0.095 <= fr <= 0.265
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9, "have super-survivor subnetworks of 10-26 % (paper's %)")


def claim_super_loss(n: Numbers) -> Verdict:
    losses = {t: d for t in _tasks(n) if t != "WNLI"
              and (d := _diff(n, t, ("full", NO_KIND, "full"), ("super", "good", "retrained"))) is not None}
    if not losses:
        return _cannot("no task (WNLI excluded) has both full and super good retrained numbers")
    mean = float(np.mean(list(losses.values())))
    ok = mean <= 0.15
    return Verdict(HOLDS if ok else FAILS, f"mean loss {100 * mean:.1f} points over {len(losses)} tasks "
                   "(WNLI excluded; 'about 10' read as <= 15)",
                   {"loss_points": {t: 100 * v for t, v in losses.items()}})


def claim_bad_6ep(n: Numbers) -> Verdict:
    def check(task):
        d = _diff(n, task, ("s", "bad_6ep", "retrained"), ("s", "bad", "retrained"))
        return None if d is None else d < 0
    hits = _per_task(n, check)
    if not hits:
        return _cannot("no 6-epoch bad retraining (retrain.bad_6_epochs: false, or not in the paper's numbers)")
    return _count_verdict(hits, 0.5 + 1e-9, "score lower after 6 epochs than after 3")


def claim_m_bad_behind(n: Numbers) -> Verdict:
    def check(task):
        d = _diff(n, task, ("s", "bad", "retrained"), ("m", "bad", "retrained"))
        return None if d is None else round(100 * d) >= 5
    return _count_verdict(_per_task(n, check), 6 / 9 - 1e-9, "have m bad >= 5 points (rounded) behind s bad")


def claim_m_bad_cola_stsb(n: Numbers) -> Verdict:
    gaps = {t: d for t in _tasks(n)
            if (d := _diff(n, t, ("s", "bad", "retrained"), ("m", "bad", "retrained"))) is not None}
    if not {"CoLA", "STS-B"} <= set(gaps):
        return _cannot("needs s and m bad retrained results for both CoLA and STS-B")
    top2 = sorted(gaps, key=gaps.get, reverse=True)[:2]
    ok = set(top2) == {"CoLA", "STS-B"}
    return Verdict(HOLDS if ok else FAILS, f"largest s-bad minus m-bad gaps: {', '.join(top2)}",
                   {"gap_points": {t: 100 * g for t, g in gaps.items()}})


def claim_s_bad_vs_glove(n: Numbers) -> Verdict:
    glove = n.glue.get("bilstm_glove", {})
    diffs = {t: bad - glove[t] for t in _tasks(n)
             if t in glove and (bad := _mean(n, t, "s", "bad", "retrained")) is not None}
    if not diffs:
        return _cannot("no s bad retrained results for a task with a BiLSTM+GloVe baseline")
    win = sum(d >= COMPETITIVE for d in diffs.values())
    lose = sum(d <= -COMPETITIVE for d in diffs.values())
    comp = len(diffs) - win - lose
    ok = np.mean(list(diffs.values())) >= -COMPETITIVE
    return Verdict(HOLDS if ok else FAILS,
                   f"vs BiLSTM+GloVe over {len(diffs)} tasks: {comp} within {COMPETITIVE:.2f}, {win} wins, {lose} "
                   f"large losses (paper: 5/2/2 of 9); mean difference {np.mean(list(diffs.values())):+.3f}",
                   {"diff": diffs})


def claim_random_init_beats_m_bad(n: Numbers) -> Verdict:
    pairs = {t: (r, m) for t in _tasks(n) if (r := _mean(n, t, "s", "randinit_random", "retrained")) is not None
             and (m := _mean(n, t, "m", "bad", "retrained")) is not None}
    if not pairs:
        return _cannot("no random-init + random s-pruning runs (retrain.random_init_random_s: false) "
                       "or no m bad retrained runs")
    r, m = (float(np.mean([p[i] for p in pairs.values()])) for i in (0, 1))
    return Verdict(HOLDS if r >= m else FAILS,
                   f"average over {len(pairs)} tasks: random init {r:.3f} vs m bad {m:.3f}")


def claim_kappa_range(n: Numbers) -> Verdict:
    st = _unit(n.stability, "heads")
    if st is None:
        return _cannot("no head masks")
    kappas = {r.task: r.kappa for r in st.itertuples() if r.task != "WNLI" and np.isfinite(r.kappa)}
    if not kappas:
        return _cannot("kappa undefined for every task (fewer than 2 seeds or identical masks)")
    inside = {t: 0.15 <= np.trunc(k * 100) / 100 <= 0.32 for t, k in kappas.items()}
    lo, hi = min(kappas.values()), max(kappas.values())
    return Verdict(HOLDS if all(inside.values()) else FAILS,
                   f"head kappa {lo:.3f}..{hi:.3f} over {len(kappas)} tasks (WNLI excluded); paper 0.15-0.32",
                   {"kappa": kappas})


def claim_cochran_differs(n: Numbers, alpha: float) -> Verdict:
    st = _unit(n.stability, "heads")
    if st is None:
        return _cannot("no head masks")
    ps = {r.task: r.q_p for r in st.itertuples() if np.isfinite(r.q_p)}
    if not ps:
        return _cannot("Cochran's Q undefined for every task (fewer than 2 seeds or identical masks)")
    rejects = {t: p < alpha for t, p in ps.items()}
    v = _count_verdict(rejects, 1.0, f"reject equal survival rates across seeds (Cochran's Q p < {alpha})")
    v.evidence["q_p"] = ps
    return v


def claim_some_pairs_similar(n: Numbers) -> Verdict:
    st = _unit(n.stability, "heads")
    if st is None or st["pairs_defined"].sum() == 0:
        return _cannot("no seed pair with a defined Cochran's Q")
    total = int(st["pairs_similar"].sum())
    return Verdict(HOLDS if total > 0 else FAILS, f"{total} of {int(st['pairs_defined'].sum())} seed pairs "
                   "do not reject (p >= alpha) over all tasks",
                   {"per_task": dict(zip(st["task"], st["pairs_similar"].astype(int)))})


def claim_low_importance(n: Numbers) -> Verdict:
    imp = n.importance
    if imp is None or imp.empty:
        return _cannot("no s-search traces (s_pruning.save_iterations) or the paper's per-iteration scores "
                       "(not published)")
    heads, mlps = imp["heads_low_share"].median(), imp["mlps_low_share"].median()
    ok = heads > 0.5 and (not np.isfinite(mlps) or mlps > 0.5)
    return Verdict(HOLDS if ok else FAILS, f"median share of unpruned elements with normalised importance < 0.5: "
                   f"heads {heads:.2f}, MLPs {mlps:.2f} over {len(imp)} search iterations")


def _unit(table: pd.DataFrame | None, unit: str, set_: str | None = None):
    if table is None or table.empty:
        return None
    part = table[table["unit"] == unit]
    if set_ is not None:
        part = part[part["set"] == set_]
    return None if part.empty else part


def claim_overlap_above_chance(n: Numbers, unit: str, alpha: float) -> Verdict:
    ov = _unit(n.overlaps, unit, "good")
    if ov is None:
        return _cannot("no overlaps")
    off = ov[(ov["task_a"] != ov["task_b"]) & ov["task_a"].ne("WNLI") & ov["task_b"].ne("WNLI")]
    off = off[np.isfinite(off["expected_mean"])]
    if off.empty:
        return _cannot("needs at least 2 tasks (WNLI excluded) with masks on shared seeds")
    with_p = np.isfinite(off["p_combined"]).all()
    hits = {f"{r.task_a}-{r.task_b}": bool(r.mean > r.expected_mean and (not with_p or r.p_combined < alpha))
            for r in off.itertuples()}
    test = f"hypergeometric, Fisher-combined p < {alpha}" if with_p else "per-seed counts unavailable: no p-value"
    return _count_verdict(hits, 0.5 + 1e-9, f"share more {unit} than expected under independence ({test})",
                          items="task pairs")


def _overlap(n: Numbers, a: str, b: str, unit: str = "heads"):
    ov = _unit(n.overlaps, unit, "good")
    if ov is None:
        return None
    hit = ov[((ov["task_a"] == a) & (ov["task_b"] == b)) | ((ov["task_a"] == b) & (ov["task_b"] == a))]
    return None if hit.empty else float(hit.iloc[0]["mean"])


def claim_mrpc_qnli_half(n: Numbers) -> Verdict:
    shared, own_a, own_b = _overlap(n, "MRPC", "QNLI"), _overlap(n, "MRPC", "MRPC"), _overlap(n, "QNLI", "QNLI")
    if None in (shared, own_a, own_b):
        return _cannot("needs MRPC and QNLI head masks")
    ok = shared > 0.5 * max(own_a, own_b)
    return Verdict(HOLDS if ok else FAILS, f"MRPC-QNLI share {shared:.1f} heads; MRPC keeps {own_a:.1f}, "
                   f"QNLI {own_b:.1f} (mean over seeds)")


def claim_mrpc_qqp_mnli(n: Numbers) -> Verdict:
    qqp, mnli = _overlap(n, "MRPC", "QQP"), _overlap(n, "MRPC", "MNLI")
    if None in (qqp, mnli):
        return _cannot("needs MRPC, QQP and MNLI head masks")
    return Verdict(HOLDS if qqp < mnli else FAILS, f"MRPC-QQP {qqp:.1f} vs MRPC-MNLI {mnli:.1f} shared heads")


def claim_m_half(n: Numbers) -> Verdict:
    if n.m_blocks is None or n.m_blocks.empty:
        return _cannot("no m-pruning masks (the paper's m-masks are not published)")
    per_block = n.m_blocks.groupby(["task", "layer", "block", "head"])["fraction"].mean()
    pruned = 1 - per_block
    inside = ((pruned >= 0.40) & (pruned <= 0.60)).mean()
    return Verdict(HOLDS if inside >= 0.9 else FAILS,
                   f"pruned share per head/MLP (mean over seeds) {pruned.min():.2f}..{pruned.max():.2f}; "
                   f"{inside:.0%} of blocks within 0.40-0.60 (needs >= 90 %)")


def claim_m_early_layers(n: Numbers, alpha: float) -> Verdict:
    if n.m_blocks is None or n.m_blocks.empty:
        return _cannot("no m-pruning masks (the paper's m-masks are not published)")
    per_layer = n.m_blocks.groupby("layer")["fraction"].mean()
    if len(per_layer) < 3:
        return _cannot("needs at least 3 layers for a rank correlation")
    rho, p = sps.spearmanr(per_layer.index, per_layer.to_numpy())
    return Verdict(HOLDS if rho > 0 and p < alpha else FAILS,
                   f"Spearman rho(layer, surviving fraction) = {rho:.2f}, p = {p:.3g} over {len(per_layer)} layers",
                   {"per_layer": per_layer.round(4).to_dict()})


def claim_separate_fewer(n: Numbers) -> Verdict:
    sv = n.survivors
    if sv is None or "set" not in sv or not {"heads-only", "mlps-only"} & set(sv["set"]):
        return _cannot("no separate (heads-only / MLPs-only) searches (s_pruning.modes)")
    joint = sv[sv["set"] == "joint"].set_index("task")
    parts = []
    for set_, unit in (("heads-only", "heads"), ("mlps-only", "mlps")):
        sep = sv[sv["set"] == set_].set_index("task")
        tasks = [t for t in sep.index if t in joint.index]
        if tasks:
            j = float((joint.loc[tasks, f"{unit}_mean"] / joint.loc[tasks, f"{unit}_total"]).mean())
            s = float((sep.loc[tasks, f"{unit}_mean"] / sep.loc[tasks, f"{unit}_total"]).mean())
            parts.append((unit, j, s))
    if not parts:
        return _cannot("separate and joint searches share no task")
    ok = all(s < j for _, j, s in parts)
    text = "; ".join(f"{u}: {100 * j:.0f} % joint vs {100 * s:.0f} % separate" for u, j, s in parts)
    return Verdict(HOLDS if ok else FAILS, text + " (paper: heads 49 vs 22, MLPs 75 vs 50)")


def claim_list(alpha: float, par_tolerance: float) -> list[tuple]:
    """(id, section, claim as the paper puts it, how we check it, function of Numbers -> Verdict)."""
    return [
        ("m-half", "4.1", "m-pruning: all architecture blocks lose about half the weights (42-57 %)",
         "pruned share of >= 90 % of heads/MLPs within 0.40-0.60", claim_m_half),
        ("m-early", "4.1", "m-pruning: the earlier layers get pruned more",
         "Spearman correlation of layer index and surviving fraction > 0, p < alpha",
         lambda n: claim_m_early_layers(n, alpha)),
        ("separate-fewer", "4.1 / App. B", "fewer heads (MLPs) remain when heads and MLPs are pruned separately",
         "mean surviving share of heads-only (MLPs-only) searches < joint search", claim_separate_fewer),
        ("s-good-90", "4.2", "'good' s-subnetworks keep >= 90 % of the full model's dev score (by construction)",
         "every task: s good pruned >= 0.9 x full (reported metric)", lambda n: claim_good_keeps_90(n, "s")),
        ("m-good-90", "4.2", "'good' m-subnetworks keep >= 90 % of the full model's dev score (by construction)",
         "every task: m good pruned >= 0.9 x full (reported metric)", lambda n: claim_good_keeps_90(n, "m")),
        ("m-good-best-pruned", "4.2 / abstract", "similarly-sized random and 'bad' m-subnetworks perform worse "
         "than 'good' ones (pruned)", f"most tasks: good pruned > random and bad pruned by > {par_tolerance}",
         lambda n: claim_good_beats(n, "m", "pruned", par_tolerance)),
        ("s-good-best-pruned", "4.2 / abstract", "similarly-sized random and 'bad' s-subnetworks perform worse "
         "than 'good' ones (pruned)", f"most tasks: good pruned > random and bad pruned by > {par_tolerance}",
         lambda n: claim_good_beats(n, "s", "pruned", par_tolerance)),
        ("m-good-retrained-full", "4.2", "retrained 'good' m-subnetworks reach the full model's performance",
         f"most tasks: m good retrained >= full - {FULL_TOLERANCE}", claim_m_good_reaches_full),
        ("m-good-best-retrained", "4.2", "after retraining, random and 'bad' m-subnetworks stay behind 'good' ones",
         f"most tasks: good retrained > random and bad retrained by > {par_tolerance}",
         lambda n: claim_good_beats(n, "m", "retrained", par_tolerance)),
        ("s-random-on-par", "4.2", "random s-subnetworks (retrained) mostly perform on par with 'good' ones",
         f"most tasks: s good retrained - s random retrained <= {par_tolerance} (true random runs, not the "
         "published Figure 2a bars)", lambda n: claim_s_random_on_par(n, par_tolerance)),
        ("s-bad-trainable", "4.3 / abstract", "even the worst ('bad') s-subnetworks remain highly trainable",
         f"most tasks: s bad retrained >= majority baseline + {COMPETITIVE}", claim_s_bad_trainable),
        ("m-more-compression", "4.2 / 6.3", "for 7 of 9 tasks m-pruning prunes 10-15 % more weights than s-pruning",
         ">= 7/9 of tasks: s good minus m good '% surviving weights' >= 10 points", claim_m_more_compression),
        ("subnetworks-large", "4.2 / 6.3", "subnetworks are relatively large with both methods (mostly over 50 % "
         "of the full model)", "most tasks: s and m good keep > 50 % of all parameters", claim_subnetworks_large),
        ("super-small", "4.2 / App. E", "super-survivor subnetworks contain only about 10-26 % of the weights "
         "for most tasks", "most tasks: super good '% surviving weights' within 10-26 %", claim_super_small),
        ("super-loss", "4.2 / App. E", "super-survivor subnetworks lose only about 10 points on average",
         "mean over tasks (WNLI excluded) of full - super good retrained <= 15 points", claim_super_loss),
        ("bad-6ep", "4.3 / App. D", "'bad' s-subnetworks trained for 6 epochs: on most tasks performance went down",
         "most tasks: s bad 6-epoch retrained < s bad 3-epoch retrained", claim_bad_6ep),
        ("m-bad-behind", "4.3 / Table 2", "m-bad is >= 5 points behind s-bad on 6/9 tasks",
         ">= 6/9 of tasks: round(100 x (s bad - m bad)) >= 5 (retrained)", claim_m_bad_behind),
        ("m-bad-cola-stsb", "4.3 / Table 2", "m-bad is particularly bad on CoLA and STS-B",
         "CoLA and STS-B have the two largest s-bad minus m-bad gaps", claim_m_bad_cola_stsb),
        ("s-bad-glove", "4.3 / Table 2", "s-bad is comparable to BiLSTM+GloVe (competitive on 5/9, loses by a "
         "large margin on 2, wins on 2)", f"mean difference to BiLSTM+GloVe >= -{COMPETITIVE}; counts reported",
         claim_s_bad_vs_glove),
        ("randinit-vs-m-bad", "4.3 / Table 2", "random init + random s-pruning is slightly better than m-bad",
         "average over tasks: random init >= m bad", claim_random_init_beats_m_bad),
        ("kappa-range", "5.1", "Fleiss' kappa on head survival across seeds is 0.15-0.32 for all tasks",
         "every task (WNLI excluded): kappa truncated to 2 decimals within [0.15, 0.32]", claim_kappa_range),
        ("cochran-unstable", "5.1", "Cochran's Q did not show the seeds' head masks to be similar (alpha 0.05)",
         f"every task: Cochran's Q over all seeds rejects (p < {alpha})", lambda n: claim_cochran_differs(n, alpha)),
        ("pairs-similar", "5.1", "masks obtained with some pairs of seeds were similar",
         f"at least one seed pair with pairwise Q p >= {alpha}", claim_some_pairs_similar),
        ("low-importance", "5.1 / Figure 3",
         "at any pruning iteration most heads and MLPs have a low importance score",
         "median over searches and iterations of the share of unpruned elements with normalised importance < 0.5 "
         "is > 0.5", claim_low_importance),
        ("overlap-heads", "5.3", "good head subnetworks of different tasks overlap more than expected if independent",
         f"most task pairs: mean overlap > hypergeometric expectation and combined p < {alpha}",
         lambda n: claim_overlap_above_chance(n, "heads", alpha)),
        ("overlap-mlps", "5.3", "MLPs show a similar overlap pattern",
         f"most task pairs: mean MLP overlap > expectation and combined p < {alpha}",
         lambda n: claim_overlap_above_chance(n, "mlps", alpha)),
        ("mrpc-qnli", "5.3", "MRPC and QNLI share over a half of their 'good' subnetworks",
         "mean shared heads > half of the larger task's mean head count", claim_mrpc_qnli_half),
        ("mrpc-qqp-mnli", "5.3", "MRPC and QQP have less in common than MRPC and MNLI",
         "mean shared heads MRPC-QQP < MRPC-MNLI", claim_mrpc_qqp_mnli),
    ]
