"""claims_i.py: the m-family's claims asked of family i (IMP with rewinding, beyond the paper) and its comparison
with m, on hand-built per-seed numbers, and only when the summary has family i."""

from __future__ import annotations

import pandas as pd

from bertlottery.analysis import claims as C
from bertlottery.analysis import claims_i as CI
from bertlottery.analysis import claims_report as CR
from bertlottery.analysis import verdicts as V
from bertlottery.analysis.aggregate import NO_KIND, load_paper

TASKS = ("MRPC", "RTE")
SEEDS = (1, 2, 3)


def numbers(values: dict, kept: dict) -> C.Numbers:
    """values: (family, kind, evaluated) -> score, the same for both tasks (per seed +-0.001: tight intervals);
    kept: family -> kept share of the prunable weights of its good mask."""
    rows = []
    for task in TASKS:
        for n, seed in enumerate(SEEDS):
            jitter = 0.001 * (n - 1)
            rows.append({"task": task, "seed": seed, "family": "full", "kind": NO_KIND, "evaluated": "full",
                         "reported": 0.85 + jitter, "prunable_fraction": 1.0})
            for (family, kind, evaluated), score in values.items():
                rows.append({"task": task, "seed": seed, "family": family, "kind": kind, "evaluated": evaluated,
                             "reported": score + jitter, "prunable_fraction": kept.get(family, 1.0) + jitter})
    metrics = pd.DataFrame(rows)
    summary = (metrics.groupby(["task", "family", "kind", "evaluated"], as_index=False)
               .agg(reported_mean=("reported", "mean"), reported_std=("reported", "std"),
                    n_seeds=("seed", "nunique")))
    return C.Numbers("ours", summary, metrics=metrics, majority={"MRPC": 0.684, "RTE": 0.527})


def verdicts(n: C.Numbers) -> dict:
    return {claim.id: claim.check(n).verdict for claim in CI.i_claims(0.05, C.PAR_TOLERANCE)}


GOOD_RUN = {("i", "good", "pruned"): 0.60, ("i", "random", "pruned"): 0.50, ("i", "bad", "pruned"): 0.40,
            ("i", "good", "retrained"): 0.84, ("i", "random", "retrained"): 0.70, ("i", "bad", "retrained"): 0.60,
            ("m", "good", "pruned"): 0.80, ("m", "good", "retrained"): 0.845}


def test_imp_finds_sparser_tickets_that_retrain_like_m():
    got = verdicts(numbers(GOOD_RUN, {"i": 0.35, "m": 0.48}))
    assert got == {"i-good-90": V.HOLDS, "i-good-best-pruned": V.HOLDS, "i-good-retrained-full": V.HOLDS,
                   "i-good-best-retrained": V.HOLDS, "i-sparser-than-m": V.HOLDS, "i-retrains-like-m": V.HOLDS}


def test_imp_claims_fail_where_its_tickets_are_no_sparser_or_retrain_worse():
    values = GOOD_RUN | {("i", "good", "retrained"): 0.70, ("i", "random", "retrained"): 0.70}
    got = verdicts(numbers(values, {"i": 0.60, "m": 0.48}))
    assert got["i-good-90"] == V.FAILS  # 0.70 < 0.9 x 0.85
    assert got["i-sparser-than-m"] == V.FAILS and got["i-retrains-like-m"] == V.FAILS
    assert got["i-good-best-retrained"] == V.FAILS and got["i-good-retrained-full"] == V.FAILS


def test_the_comparison_with_m_cannot_be_checked_without_m():
    values = {key: v for key, v in GOOD_RUN.items() if key[0] == "i"}
    got = verdicts(numbers(values, {"i": 0.35}))
    assert got["i-sparser-than-m"] == V.UNCHECKABLE and got["i-retrains-like-m"] == V.UNCHECKABLE
    assert got["i-good-best-retrained"] == V.HOLDS


def test_i_claims_are_listed_only_when_family_i_ran():
    paper = CR.paper_numbers(load_paper())
    with_i = numbers(GOOD_RUN, {"i": 0.35, "m": 0.48})
    claims = {c["id"]: c for c in CR.evaluate_claims(with_i, paper, 0.05, C.PAR_TOLERANCE)}
    assert claims["i-sparser-than-m"]["verdict"] == V.HOLDS and claims["i-sparser-than-m"]["section"] == CI.SECTION
    assert claims["i-good-best-retrained"]["paper_verdict"] == V.UNCHECKABLE  # the paper has no family i
    without = numbers({key: v for key, v in GOOD_RUN.items() if key[0] == "m"}, {"m": 0.48})
    ids = {c["id"] for c in CR.evaluate_claims(without, paper, 0.05, C.PAR_TOLERANCE)}
    assert "m-good-best-pruned" in ids and not any(i.startswith("i-") for i in ids)
