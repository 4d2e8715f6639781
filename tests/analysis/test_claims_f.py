"""claims_f.py: the lottery claims asked of family f (Fisher-based masks, beyond the paper), on hand-built
numbers, and only when the summary has family f."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bertlottery.analysis import claims as C
from bertlottery.analysis import claims_f as CF
from bertlottery.analysis import claims_report as CR
from bertlottery.analysis.aggregate import NO_KIND, load_paper
from bertlottery.analysis import verdicts as V
from bertlottery.analysis.tables import stability_table

TASKS = ("MRPC", "RTE")


def numbers(values: dict, **tables) -> C.Numbers:
    """values: (kind, evaluated) -> mean, the same for both tasks, family f (std 0.001 over 3 seeds: tight
    intervals, so the means decide)."""
    rows = [(t, "f", kind, ev, mean, 0.001, 3) for t in TASKS for (kind, ev), mean in values.items()]
    rows += [(t, "full", NO_KIND, "full", 0.85, 0.001, 3) for t in TASKS]
    frame = pd.DataFrame(rows, columns=["task", "family", "kind", "evaluated", "reported_mean", "reported_std",
                                        "n_seeds"])
    return C.Numbers("ours", frame, majority={"MRPC": 0.684, "RTE": 0.527}, **tables)


def verdicts(n: C.Numbers) -> dict:
    return {claim.id: claim.check(n).verdict for claim in CF.f_claims(0.05, C.PAR_TOLERANCE)}


def test_all_tickets_winning_for_f():
    n = numbers({("good", "pruned"): 0.80, ("random", "pruned"): 0.60, ("bad", "pruned"): 0.55,
                 ("good", "retrained"): 0.82, ("random", "retrained"): 0.81, ("bad", "retrained"): 0.80})
    got = verdicts(n)
    assert got["f-good-best-pruned"] == V.HOLDS and got["f-random-on-par"] == V.HOLDS
    assert got["f-bad-trainable"] == V.HOLDS and got["f-cochran-unstable"] == V.UNCHECKABLE


def test_f_claims_fail_when_good_does_not_stand_out_or_random_stays_behind():
    n = numbers({("good", "pruned"): 0.70, ("random", "pruned"): 0.69, ("bad", "pruned"): 0.50,
                 ("good", "retrained"): 0.82, ("random", "retrained"): 0.70, ("bad", "retrained"): 0.55})
    got = verdicts(n)
    assert got["f-good-best-pruned"] == V.FAILS and got["f-random-on-par"] == V.FAILS
    assert got["f-bad-trainable"] == V.FAILS


def test_f_stability_claim_reads_the_f_statistics_not_the_s_ones():
    stab_s = pd.DataFrame({"task": TASKS, "unit": "heads", "q_p": [0.5, 0.5], "kappa": [0.9, 0.9]})
    stab_f = pd.DataFrame({"task": TASKS, "unit": "heads", "q_p": [0.001, 0.01], "kappa": [0.2, 0.3]})
    n = numbers({("good", "pruned"): 0.8}, stability=stab_s, stability_f=stab_f)
    verdict = CF.claim_f_unstable(n, 0.05)
    assert verdict.verdict == V.HOLDS and verdict.evidence["kappa"] == {"MRPC": 0.2, "RTE": 0.3}


def test_f_claims_are_listed_only_when_family_f_ran():
    paper = CR.paper_numbers(load_paper())
    with_f = numbers({("good", "pruned"): 0.8, ("random", "pruned"): 0.5, ("bad", "pruned"): 0.4})
    without = C.Numbers("ours", with_f.summary.assign(family="s"))  # (full rows become s rows: no f left)
    claims = {c["id"]: c for c in CR.evaluate_claims(with_f, paper, 0.05, C.PAR_TOLERANCE)}
    assert claims["f-good-best-pruned"]["verdict"] == V.HOLDS
    assert claims["f-good-best-pruned"]["paper_verdict"] == V.UNCHECKABLE  # the paper has no family f
    ids = {c["id"] for c in CR.evaluate_claims(without, paper, 0.05, C.PAR_TOLERANCE)}
    assert "s-good-best-pruned" in ids and not any(i.startswith("f-") for i in ids)


def test_f_stability_table_has_no_paper_columns_filled():
    stab = pd.DataFrame([{"task": t, "unit": u, "kappa": 0.25, "q_p": 0.01, "n_seeds": 2, "pairs_similar": 0,
                          "pairs_total": 1} for t in TASKS for u in ("heads", "mlps")])
    paper = {"stability": {"MRPC": {"kappa_heads": 0.2, "q_p_heads": 0.01, "pairs_similar": 3}},
             "task_order": list(TASKS)}
    long, display, caption, notes = stability_table(stab, paper, list(TASKS), "f")
    assert "f-pruning" in caption and long["paper_kappa"].isna().all()
    assert np.allclose(long["ours_kappa"], 0.25)
    _, _, caption_s, _ = stability_table(stab, paper, list(TASKS))
    assert "s-pruning" in caption_s
