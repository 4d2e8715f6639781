"""The paper's claims (docs/protocol.md §Claims) checked on our numbers, beside the same checks on the paper's own
numbers: each claim is a function of a `Numbers` bundle (summary, per-seed metrics, dev bootstrap, stability,
overlaps, survivors, m-block fractions, importance) returning a graded Verdict (analysis/verdicts.py).

This module holds the claims on dev scores and sizes (paper §4); claims_masks.py those on the masks
themselves (§4.1 m-blocks, §5.1 stability, §5.3 overlaps). `bertlottery claims` writes claims.{json,md,html}."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bertlottery.analysis.aggregate import NO_KIND, lookup, task_order
from bertlottery.analysis.verdicts import (
    FAILS,
    HOLDS,
    NO,
    NOT_SHOWN,
    SKIP,
    UNCLEAR,
    YES,
    Effect,
    Verdict,
    cannot,
    grade,
    percentile_interval,
    t_interval,
    welch_interval,
)
from bertlottery.families import BAD, BAD_6EP, GOOD, M, RANDINIT_RANDOM, RANDOM, S, SUPER

PAR_TOLERANCE = 0.03      # "on par": the good mean exceeds the other by at most 3 points
FULL_TOLERANCE = 0.02     # "reaches the full model": at most 2 points below it
COMPETITIVE = 0.05        # Table 2: within 5 points of a baseline = competitive
TRAINABLE_SHARE = 0.5     # "highly trainable": at least half of the full model's gain over the majority class
SUPER_LOSS = 0.15         # "lose only about 10 points": at most 15 points
MOST = 0.5 + 1e-9         # "most tasks": more than half

Key = tuple  # (family, kind, evaluated) or (family, kind, evaluated, column)


@dataclass
class Numbers:
    """Everything a claim looks at; built from our results or from the paper's published numbers."""

    label: str
    summary: pd.DataFrame  # task, family, kind, evaluated, <column>_mean / _std, n_seeds
    metrics: pd.DataFrame | None = None  # one row per run (ours): per-seed values for the seed intervals
    dev_bootstrap: pd.DataFrame | None = None  # per run and replicate: the reported metric on a resampled dev set
    published_seeds: int = 0  # the paper's numbers: seeds behind each published mean and std
    stability: pd.DataFrame | None = None
    stability_pairs: pd.DataFrame | None = None
    stability_f: pd.DataFrame | None = None  # the same statistics of the f-good masks (family f, beyond the paper)
    overlaps: pd.DataFrame | None = None
    survivors: pd.DataFrame | None = None
    m_blocks: pd.DataFrame | None = None
    importance: pd.DataFrame | None = None
    tests: pd.DataFrame | None = None
    majority: dict = field(default_factory=dict)
    glue: dict = field(default_factory=dict)  # Table 2 baseline rows: key -> task -> value
    prunable_share: float = 0.0  # the paper's numbers: prunable weights / all parameters of bert-base


def _tasks(n: Numbers) -> list[str]:
    return task_order(n.summary["task"].unique())


def _column(key: Key) -> str:
    return key[3] if len(key) > 3 else "reported"


def _mean(n: Numbers, task: str, family: str, kind: str, evaluated: str, col: str = "reported"):
    row = lookup(n.summary, task, family, kind, evaluated)
    name = f"{col}_mean"
    if row is None or name not in row or pd.isna(row[name]):
        return None
    return float(row[name])


def _seed_values(n: Numbers, task: str, key: Key) -> dict | None:
    m = n.metrics
    col = _column(key)
    if col not in m:
        return None
    rows = m[(m["task"] == task) & (m["family"] == key[0]) & (m["kind"] == key[1]) & (m["evaluated"] == key[2])]
    rows = rows[rows[col].notna()]
    return None if rows.empty else dict(zip(rows["seed"].astype(int), rows[col].astype(float)))


def _dev_interval(n: Numbers, task: str, terms: list[tuple[float, Key]], seeds: list[int], constant: float):
    """Percentile interval of Σ coef·(mean over `seeds` of the run's resampled metric) + constant."""
    boot = n.dev_bootstrap
    if boot is None or boot.empty:
        return None
    total = None
    for coef, key in terms:
        rows = boot[(boot["task"] == task) & (boot["family"] == key[0]) & (boot["kind"] == key[1])
                    & (boot["evaluated"] == key[2]) & boot["seed"].isin(seeds)]
        if rows["seed"].nunique() != len(seeds):
            return None
        mean = rows.groupby("replicate")["value"].mean().sort_index().to_numpy()
        total = coef * mean if total is None else total + coef * mean
    return None if total is None else percentile_interval(total + constant)


def effect(n: Numbers, task: str, terms: list[tuple[float, Key]], constant: float = 0.0) -> Effect | None:
    """Σ coef·value + constant for one task, with its interval over seeds (paired by seed; published std
    on the paper's numbers) and over dev examples (where predictions were kept); None when a term is missing."""
    if n.metrics is None:  # means and stds only (the published numbers): groups taken as independent
        parts, seeds = [], [n.published_seeds] if n.published_seeds else []
        for coef, key in terms:
            row = lookup(n.summary, task, *key[:3])
            col = _column(key)
            if row is None or pd.isna(row.get(f"{col}_mean")):
                return None
            parts.append((coef, float(row[f"{col}_mean"]), float(row.get(f"{col}_std", np.nan))))
            seeds += [] if n.published_seeds or pd.isna(row.get("n_seeds")) else [int(row["n_seeds"])]
        n_seeds = min(seeds, default=0)
        value, ci = welch_interval(parts, n_seeds)
        return Effect(value + constant, n_seeds, None if ci is None else (ci[0] + constant, ci[1] + constant))
    per_key = [(coef, key, _seed_values(n, task, key)) for coef, key in terms]
    if any(values is None for _, _, values in per_key):
        return None
    seeds = sorted(set.intersection(*(set(values) for _, _, values in per_key)))
    if not seeds:
        return None
    combined = [sum(coef * values[s] for coef, _, values in per_key) + constant for s in seeds]
    value, ci = t_interval(combined)
    reported = [(c, k) for c, k, _ in per_key if _column(k) == "reported"]
    fixed = sum(c * np.mean([v[s] for s in seeds]) for c, k, v in per_key if _column(k) != "reported")
    dev = _dev_interval(n, task, reported, seeds, fixed + constant) if reported else None
    return Effect(value, len(seeds), ci, dev)


def _judged(e: Effect | None, cut: float, above: bool = True, scale: float = 100, digits: int = 1):
    return None if e is None else (e.judge(cut, above), e.text(scale, digits))


def _per_task(n: Numbers, fn, exclude: dict | None = None) -> dict:
    """task -> (judgement, text) from fn(task) (None: the task lacks the numbers, left out); tasks in
    `exclude` (task -> reason) are 'cannot be checked' with their reason."""
    out = {}
    for task in _tasks(n):
        if exclude and task in exclude:
            out[task] = (SKIP, exclude[task])
            continue
        judged = fn(task)
        if judged is not None:
            out[task] = judged
    return out


def _both(a, b):
    """Two judgements that must both be yes: (yes | no | unclear, both texts)."""
    if a is None or b is None:
        return None
    judgements = {a[0], b[0]}
    verdict = NO if NO in judgements else YES if judgements == {YES} else UNCLEAR
    return verdict, f"{a[1]} / {b[1]}"


def _full_range(n: Numbers, task: str) -> float | None:
    """The full model's gain over the majority class (the task's own scale), None where either is missing."""
    full, majority = _mean(n, task, "full", NO_KIND, "full"), n.majority.get(task)
    return None if full is None or majority is None else full - majority


def _below_majority(n: Numbers) -> dict:
    """Tasks whose full model is not clearly above the majority class (by more than COMPETITIVE): subnetworks
    compared there are compared at chance, so the task cannot tell a claim about them either way."""
    out = {}
    for task in _tasks(n):
        scale = _full_range(n, task)
        if scale is not None and scale <= COMPETITIVE:
            out[task] = (f"{'our' if n.metrics is not None else 'the'} full model is {100 * scale:+.1f} points from "
                         f"the majority class (needs > +{100 * COMPETITIVE:.0f}: no scale to compare subnetworks on)")
    return out


def _per_task_above_chance(n: Numbers, fn) -> dict:
    """_per_task for a claim that compares scores: a task whose full model is at chance cannot be checked."""
    return _per_task(n, fn, _below_majority(n))


def _with_flags(n: Numbers, verdict: Verdict, families: tuple[str, ...], kinds: tuple[str, ...]) -> Verdict:
    """Name the retrainings behind a verdict that did not converge (aggregate.flag_nonconverged)."""
    m = n.metrics
    if m is None or "nonconverged" not in m:
        return verdict
    rows = m[(m["evaluated"] == "retrained") & m["family"].isin(families) & m["kind"].isin(kinds)]
    flagged = rows[rows["nonconverged"].astype(bool)]
    if len(rows):
        where = ", ".join(f"{r.task} {r.family}/{r.kind} seed {r.seed}" for r in flagged.itertuples())
        verdict.reason += (f" Run diagnostics: {len(flagged)} of {len(rows)} retrainings behind it did not converge"
                           + (f" ({where})" if where else "") + ".")
        verdict.evidence["nonconverged"] = int(len(flagged))
    return verdict


# --- §4.2: good, random and bad subnetworks --------------------------------------------------------


def claim_good_keeps_90(n: Numbers, family: str, evaluated: str = "pruned") -> Verdict:
    """By construction every seed's good mask keeps >= 90 % of its full model's stop score: judged per seed
    (the searches' own evaluation: pruned for s and m; retrained for IMP, family i)."""
    def check(task):
        e = effect(n, task, [(1, (family, GOOD, evaluated)), (-0.9, ("full", NO_KIND, "full"))])
        if e is None:
            return None
        if n.metrics is not None:
            good = _seed_values(n, task, (family, GOOD, evaluated))
            full = _seed_values(n, task, ("full", NO_KIND, "full"))
            lowest = min(good[s] - 0.9 * full[s] for s in good if s in full)
            return (YES if lowest >= -1e-9 else NO), f"{100 * e.value:+.1f} (lowest seed {100 * lowest:+.1f})"
        return (YES if e.value >= -1e-9 else NO), f"{100 * e.value:+.1f}"
    return grade(_per_task(n, check), 1.0, f"keep >= 90 % of the full model's score in every seed "
                 f"({family} good {evaluated} - 0.9 x full, points)")


def claim_good_beats(n: Numbers, family: str, evaluated: str, margin: float) -> Verdict:
    def check(task):
        good = (1, (family, GOOD, evaluated))
        return _both(*(_judged(effect(n, task, [good, (-1, (family, kind, evaluated))]), margin)
                       for kind in (RANDOM, BAD)))
    verdict = grade(_per_task_above_chance(n, check), MOST, f"have good {evaluated} above random and bad "
                    f"{evaluated} by more than {100 * margin:.0f} points (good - random / good - bad)")
    return _with_flags(n, verdict, (family,), (GOOD, RANDOM, BAD)) if evaluated == "retrained" else verdict


def claim_m_good_reaches_full(n: Numbers, family: str = M) -> Verdict:
    def check(task):
        return _judged(effect(n, task, [(1, (family, GOOD, "retrained")), (-1, ("full", NO_KIND, "full"))]),
                       -FULL_TOLERANCE)
    return _with_flags(n, grade(_per_task_above_chance(n, check), MOST, f"have {family} good retrained - full "
                                f"above -{100 * FULL_TOLERANCE:.0f} points"), (family,), (GOOD,))


def claim_s_random_on_par(n: Numbers, tol: float, family: str = S) -> Verdict:
    def check(task):
        return _judged(effect(n, task, [(1, (family, GOOD, "retrained")), (-1, (family, RANDOM, "retrained"))]),
                       tol, above=False)
    return _with_flags(n, grade(_per_task_above_chance(n, check), MOST, f"have {family} good - random retrained "
                                f"below {100 * tol:.0f} points"), (family,), (GOOD, RANDOM))


def claim_s_bad_trainable(n: Numbers, family: str = S) -> Verdict:
    """Per task: the retrained bad subnetwork recovers at least half of the full model's gain over the
    majority class (the same runs as Table 2's s-bad row)."""
    def check(task):
        scale, majority = _full_range(n, task), n.majority.get(task)
        if scale is None:
            return None
        e = effect(n, task, [(1 / scale, (family, BAD, "retrained"))], constant=-majority / scale)
        return _judged(e, TRAINABLE_SHARE, scale=100, digits=0)
    verdict = grade(_per_task_above_chance(n, check), MOST,
                    f"recover >= {TRAINABLE_SHARE:.0%} of the full model's gain over the majority class with "
                    f"{family} bad retrained (% of that gain)")
    return _with_flags(n, verdict, (family,), (BAD,))


def _size_effect(n: Numbers, task: str, terms: list[tuple[float, tuple]]) -> Effect | None:
    """A size on the share of prunable weights: ours from the masks; the paper's from its formula
    (kept / all - 0.21), converted with bert-base's prunable share."""
    if n.metrics is not None:
        return effect(n, task, [(c, k + ("prunable_fraction",)) for c, k in terms])
    share = n.prunable_share
    e = effect(n, task, [(c, k + ("paper_fraction",)) for c, k in terms])
    if e is None or not share:
        return None
    offset = sum(c for c, _ in terms) * (0.21 - (1 - share)) / share
    scale = lambda x: x / share + offset  # noqa: E731
    ci = None if e.seed_ci is None else (scale(e.seed_ci[0]), scale(e.seed_ci[1]))
    return Effect(scale(e.value), e.n_seeds, ci)


def claim_m_more_compression(n: Numbers) -> Verdict:
    def check(task):
        e = _size_effect(n, task, [(1, (S, GOOD, "pruned")), (-1, (M, GOOD, "pruned"))])
        judged = _judged(e, 0.10)
        paper = _mean(n, task, S, GOOD, "pruned", "paper_fraction")
        other = _mean(n, task, M, GOOD, "pruned", "paper_fraction")
        if judged is None or paper is None or other is None:
            return judged
        return judged[0], f"{judged[1]} (paper's formula: {100 * (paper - other):.0f})"
    return grade(_per_task(n, check), 7 / 9 - 1e-9, "keep >= 10 points less of the prunable weights with m than "
                 "with s (s good - m good, points of the prunable weights)")


def claim_subnetworks_large(n: Numbers) -> Verdict:
    def check(task):
        return _both(*(_judged(effect(n, task, [(1, (f, GOOD, "pruned", "whole_fraction"))]), 0.5)
                       for f in (S, M)))
    return grade(_per_task(n, check), MOST, "keep > 50 % of all parameters with both s and m good (s / m, %)")


def claim_super_small(n: Numbers) -> Verdict:
    """The paper's 10-26 % (kept / all - 0.21 of bert-base) is about 11-32 % of the prunable weights."""
    def check(task):
        units = [_mean(n, task, SUPER, GOOD, "pruned", f"{unit}_kept") for unit in ("heads", "mlps")]
        if units == [0, 0]:  # an empty set is no subnetwork, not a small one (the paper's WNLI has none either)
            return SKIP, "no head or MLP survives in every seed: no super-survivor subnetwork"
        e = _size_effect(n, task, [(1, (SUPER, GOOD, "pruned"))])
        return _judged(e, 0.35, above=False, digits=0)
    return grade(_per_task(n, check), MOST, "keep <= 35 % of the prunable weights with the super-survivors "
                 "(the paper's 10-26 % of bert-base is 11-32 % of its prunable weights; %)")


def claim_super_loss(n: Numbers) -> Verdict:
    def check(task):
        return _judged(effect(n, task, [(1, ("full", NO_KIND, "full")), (-1, (SUPER, GOOD, "retrained"))]),
                       SUPER_LOSS, above=False)
    exclude = _below_majority(n)
    verdict = grade(_per_task(n, check, exclude), MOST, f"lose <= {100 * SUPER_LOSS:.0f} points ('about 10') with "
                    "super good retrained (full - super, points)")
    large = [t for t in _tasks(n) if t not in exclude and claim_super_small_task(n, t) is False]
    if large:
        verdict.reason += (f" The super-survivors of {', '.join(large)} are larger than the paper's, so a small "
                           "loss there is not the paper's finding.")
    return _with_flags(n, verdict, (SUPER,), (GOOD,))


def claim_super_small_task(n: Numbers, task: str) -> bool | None:
    e = _size_effect(n, task, [(1, (SUPER, GOOD, "pruned"))])
    return None if e is None else e.value <= 0.35


# --- §4.3 / Table 2 ----------------------------------------------------------------------------------


def claim_six_epoch_bad(n: Numbers) -> Verdict:
    def check(task):
        return _judged(effect(n, task, [(1, (S, BAD_6EP, "retrained")), (-1, (S, BAD, "retrained"))]),
                       0.0, above=False)
    judged = _per_task_above_chance(n, check)
    if not judged:
        return cannot("no 6-epoch bad retraining (retrain.bad_6_epochs: false, or not in the paper's numbers)")
    return _with_flags(n, grade(judged, MOST, "score lower after 6 epochs than after 3 (6 - 3 epochs, points)"),
                       (S,), (BAD, BAD_6EP))


def claim_m_bad_behind(n: Numbers) -> Verdict:
    def check(task):
        return _judged(effect(n, task, [(1, (S, BAD, "retrained")), (-1, (M, BAD, "retrained"))]), 0.045)
    return _with_flags(n, grade(_per_task_above_chance(n, check), 6 / 9 - 1e-9, "have m bad >= 5 points (rounded) "
                                "behind s bad (s bad - m bad retrained, points)"), (S, M), (BAD,))


def claim_m_bad_cola_stsb(n: Numbers) -> Verdict:
    """'Particularly bad' relative to each task's own range: m-bad's share of the full model's gain over the
    majority class, (m bad - majority) / (full - majority); CoLA and STS-B should be the two lowest."""
    shares = {}
    for task in _tasks(n):
        scale, majority = _full_range(n, task), n.majority.get(task)
        if scale is not None and scale > COMPETITIVE:
            e = effect(n, task, [(1 / scale, (M, BAD, "retrained"))], constant=-majority / scale)
            if e is not None:
                shares[task] = e
    if not {"CoLA", "STS-B"} <= set(shares) or len(shares) < 3:
        return cannot("needs m bad retrained results of CoLA, STS-B and at least one other task whose full "
                      "model beats the majority class")
    text = "; ".join(f"{t} {e.text(100, 0)}" for t, e in shares.items())
    named = [shares[t] for t in ("CoLA", "STS-B")]
    others = [e for t, e in shares.items() if t not in ("CoLA", "STS-B")]
    if max(e.value for e in named) >= min(e.value for e in others):
        verdict = FAILS
    else:
        highest = max(hi for e in named for _, hi in (e.intervals() or [(e.value, e.value)]))
        lowest = min(lo for e in others for lo, _ in (e.intervals() or [(e.value, e.value)]))
        verdict = HOLDS if highest < lowest else NOT_SHOWN
    return _with_flags(n, Verdict(verdict, "m bad retrained as % of the task's full - majority range (lowest = "
                                  "worst): " + text), (M,), (BAD,))


def _glove_unreached(n: Numbers) -> dict:
    """Tasks whose full model does not beat BiLSTM+GloVe: comparing a subnetwork with it says nothing."""
    glove = n.glue.get("bilstm_glove", {})
    out = {}
    for task in _tasks(n):
        full = _mean(n, task, "full", NO_KIND, "full")
        if task in glove and full is not None and full <= glove[task]:
            out[task] = f"our full model ({full:.3f}) does not reach BiLSTM+GloVe ({glove[task]:.2f})"
    return out


def claim_s_bad_vs_glove(n: Numbers) -> Verdict:
    glove = n.glue.get("bilstm_glove", {})

    def check(task):
        if task not in glove:
            return None
        return _judged(effect(n, task, [(1, (S, BAD, "retrained"))], constant=-glove[task]), -COMPETITIVE)
    verdict = grade(_per_task(n, check, _glove_unreached(n)), 7 / 9 - 1e-9,
                    f"have s bad retrained no more than {100 * COMPETITIVE:.0f} points below BiLSTM+GloVe "
                    "(paper: competitive on 5, wins on 2, large losses on 2 of 9; s bad - GloVe, points)")
    return _with_flags(n, verdict, (S,), (BAD,))


def claim_random_init_beats_m_bad(n: Numbers) -> Verdict:
    def check(task):
        return _judged(effect(n, task, [(1, (S, RANDINIT_RANDOM, "retrained")), (-1, (M, BAD, "retrained"))]),
                       0.0)
    judged = _per_task_above_chance(n, check)
    if not judged:
        return cannot("no random-init + random s-pruning runs (retrain.random_init_random_s: false) "
                      "or no m bad retrained runs")
    return _with_flags(n, grade(judged, MOST, "score higher with random init + random s-pruning than with m bad "
                                "(random init - m bad, points)"), (S, M), (RANDINIT_RANDOM, BAD))
