"""claims.py and claims_report.py: claim checks on small hand-built `Numbers`, the markdown / HTML reports,
and `bertlottery claims` end to end on a tiny summary table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bertlottery.analysis import claims as C
from bertlottery.analysis import claims_report as CR
from bertlottery.analysis.aggregate import NO_KIND

SUMMARY_COLUMNS = ["task", "family", "kind", "evaluated", "reported_mean", "reported_std", "n_seeds"]


def summary(rows: list[tuple]) -> pd.DataFrame:
    """(task, family, kind, evaluated, mean) rows -> a summary table as `aggregate` writes it (std 0.01, 3 seeds)."""
    return pd.DataFrame([(*row, 0.01, 3) for row in rows], columns=SUMMARY_COLUMNS)


def numbers(rows: list[tuple], **tables) -> C.Numbers:
    return C.Numbers("ours", summary(rows), **tables)


def on_par_rows(random_mean: float) -> list[tuple]:
    return [(task, "s", kind, "retrained", value) for task in ("MRPC", "RTE")
            for kind, value in (("good", 0.70), ("random", random_mean))]


# --- single claims: holds / does not hold / cannot be checked ---------------------------------------


def test_s_random_on_par_holds_when_random_is_within_the_tolerance():
    verdict = C.claim_s_random_on_par(numbers(on_par_rows(0.69)), C.PAR_TOLERANCE)  # 1 point below good
    assert verdict.verdict == C.HOLDS
    assert verdict.reason.startswith("2/2 tasks") and "yes: MRPC, RTE; no: -" in verdict.reason
    assert verdict.evidence == {"per_task": {"MRPC": True, "RTE": True}}


def test_s_random_on_par_does_not_hold_when_random_is_far_behind():
    verdict = C.claim_s_random_on_par(numbers(on_par_rows(0.60)), C.PAR_TOLERANCE)  # 10 points below good
    assert verdict.verdict == C.FAILS
    assert verdict.reason.startswith("0/2 tasks") and "no: MRPC, RTE" in verdict.reason


def test_s_random_on_par_cannot_be_checked_without_random_runs():
    rows = [(task, "s", "good", "retrained", 0.70) for task in ("MRPC", "RTE")]
    verdict = C.claim_s_random_on_par(numbers(rows), C.PAR_TOLERANCE)
    assert verdict.verdict == C.UNCHECKABLE
    assert verdict.reason == "no task has the numbers this claim needs"


def test_count_verdict_needs_the_given_share():
    """'most tasks' is more than half: 1 of 2 is not enough, 2 of 3 is."""
    assert C._count_verdict({"A": True, "B": False}, 0.5 + 1e-9, "x").verdict == C.FAILS
    assert C._count_verdict({"A": True, "B": True, "C": False}, 0.5 + 1e-9, "x").verdict == C.HOLDS


def test_super_loss_averages_over_tasks_without_wnli():
    rows = [("RTE", "full", NO_KIND, "full", 0.70), ("RTE", "super", "good", "retrained", 0.62),
            ("MRPC", "full", NO_KIND, "full", 0.85), ("MRPC", "super", "good", "retrained", 0.73),
            ("WNLI", "full", NO_KIND, "full", 0.56), ("WNLI", "super", "good", "retrained", 0.0)]
    verdict = C.claim_super_loss(numbers(rows))
    assert verdict.verdict == C.HOLDS  # (8 + 12) / 2 = 10 points, WNLI's 56 left out
    assert verdict.reason.startswith("mean loss 10.0 points over 2 tasks")
    assert verdict.evidence["loss_points"] == pytest.approx({"MRPC": 12.0, "RTE": 8.0})
    worse = [r if r[1] != "super" else (*r[:4], r[4] - 0.10) for r in rows]  # 20 points: more than 'about 10'
    assert C.claim_super_loss(numbers(worse)).verdict == C.FAILS
    assert C.claim_super_loss(numbers(rows[:1])).verdict == C.UNCHECKABLE


def test_kappa_range_from_a_stability_table():
    def stability(kappas: dict) -> pd.DataFrame:
        return pd.DataFrame([{"task": t, "unit": "heads", "kappa": k, "q_p": 0.01, "pairs_similar": 0,
                              "pairs_defined": 10} for t, k in kappas.items()])

    inside = C.claim_kappa_range(numbers([], stability=stability({"MRPC": 0.2, "RTE": 0.3259, "WNLI": 0.9})))
    assert inside.verdict == C.HOLDS  # 0.3259 truncates to 0.32; WNLI is excluded
    assert inside.evidence == {"kappa": {"MRPC": 0.2, "RTE": 0.3259}}
    outside = C.claim_kappa_range(numbers([], stability=stability({"MRPC": 0.2, "RTE": 0.5})))
    assert outside.verdict == C.FAILS and "0.200..0.500 over 2 tasks" in outside.reason
    undefined = C.claim_kappa_range(numbers([], stability=stability({"MRPC": np.nan})))
    assert undefined.verdict == C.UNCHECKABLE and "undefined for every task" in undefined.reason
    assert C.claim_kappa_range(numbers([])).reason == "no head masks"


def test_m_bad_cola_stsb_needs_both_tasks():
    rows = [("CoLA", "s", "bad", "retrained", 0.30), ("CoLA", "m", "bad", "retrained", 0.00)]
    verdict = C.claim_m_bad_cola_stsb(numbers(rows))
    assert verdict.verdict == C.UNCHECKABLE and "both CoLA and STS-B" in verdict.reason


# --- evaluating the claim list ----------------------------------------------------------------------


def test_evaluate_claims_turns_missing_columns_into_cannot_be_checked():
    stability = pd.DataFrame([{"task": "RTE", "unit": "heads", "kappa": 0.2, "q_p": 0.01}])  # no pairs_* columns
    claims = {c["id"]: c for c in CR.evaluate_claims(numbers(on_par_rows(0.69), stability=stability), None,
                                                      0.05, C.PAR_TOLERANCE)}
    assert list(claims) == [cid for cid, *_ in C.claim_list(0.05, C.PAR_TOLERANCE)]
    assert claims["s-random-on-par"]["verdict"] == C.HOLDS
    assert claims["s-random-on-par"]["evidence"] == {"per_task": {"MRPC": True, "RTE": True}}
    assert claims["pairs-similar"]["verdict"] == C.UNCHECKABLE
    assert claims["pairs-similar"]["reason"].startswith("KeyError")
    assert all(c["paper_verdict"] is None and c["paper_reason"] is None for c in claims.values())
    json.dumps(list(claims.values()))  # evidence is JSON-ready


# --- reports ----------------------------------------------------------------------------------------

CLAIMS = [
    {"id": "a", "section": "4.2", "claim": "random <is> on par", "criterion": "within 0.03",
     "verdict": C.HOLDS, "reason": "2/2 tasks", "paper_verdict": C.FAILS, "paper_reason": "1/9 tasks"},
    {"id": "b", "section": "5.1", "claim": "kappa in 0.15-0.32", "criterion": "every task",
     "verdict": C.FAILS, "reason": "kappa 0.5", "paper_verdict": None, "paper_reason": None},
    {"id": "c", "section": "5.3", "claim": "overlaps", "criterion": "most pairs",
     "verdict": C.UNCHECKABLE, "reason": "no overlaps", "paper_verdict": C.HOLDS, "paper_reason": ""},
]


def test_claims_markdown():
    text = CR.claims_markdown(CLAIMS, ["a note", "alpha = 0.05"])
    assert text.startswith("# The paper's claims checked on our numbers\n")
    assert "- a note\n- alpha = 0.05\n" in text
    assert "Summary: 1 holds, 1 does not hold, 1 cannot be checked" in text
    assert "## [4.2] random <is> on par\n\n**HOLDS** on our numbers: 2/2 tasks\n" in text
    assert "- criterion: within 0.03\n- on the paper's numbers: does not hold (1/9 tasks)" in text
    assert "**DOES NOT HOLD** on our numbers: kappa 0.5" in text
    assert "- on the paper's numbers: -\n" in text  # no paper verdict
    assert "- on the paper's numbers: holds\n" in text  # a verdict without a reason: no parentheses


def test_claims_html_escapes_text():
    page = CR.claims_html(CLAIMS, ["a < b & c"])
    assert page.startswith("<html>") and page.endswith("</html>\n")
    assert "<li>a &lt; b &amp; c</li>" in page
    assert "random &lt;is&gt; on par" in page and "<is>" not in page
    assert page.count("<tr") == 1 + len(CLAIMS)  # header + one row per claim
    assert "verdict (paper's numbers)" in page


# --- the command ------------------------------------------------------------------------------------


def test_main_claims_end_to_end_on_a_tiny_summary(tmp_path):
    rows = on_par_rows(0.69) + [("MRPC", "full", NO_KIND, "full", 0.85), ("RTE", "full", NO_KIND, "full", 0.70)]
    path = tmp_path / "summary.csv"
    summary(rows).to_csv(path, index=False)
    out = tmp_path / "analysis"
    CR.main_claims(["--summary", str(path), "--out-dir", str(out)])
    report = json.loads((out / "claims.json").read_text())
    claims = {c["id"]: c for c in report["claims"]}
    assert len(claims) == len(C.claim_list(0.05, C.PAR_TOLERANCE))
    assert claims["s-random-on-par"]["verdict"] == C.HOLDS
    assert claims["kappa-range"]["verdict"] == C.UNCHECKABLE and claims["kappa-range"]["reason"] == "no head masks"
    assert claims["s-random-on-par"]["paper_verdict"] in {C.HOLDS, C.FAILS}  # checked on the paper's numbers too
    assert report["notes"][0].startswith("Our run: 2 task(s) (MRPC, RTE), up to 3 seed(s).")
    assert "alpha = 0.05; 'on par' tolerance = 0.03" in report["notes"][1]
    assert "**HOLDS** on our numbers: 2/2 tasks" in (out / "claims.md").read_text()
    assert "<table" in (out / "claims.html").read_text()


def test_main_claims_stricter_tolerance_changes_the_verdict(tmp_path):
    path = tmp_path / "summary.csv"
    summary(on_par_rows(0.69)).to_csv(path, index=False)
    CR.main_claims(["--summary", str(path), "--par-tolerance", "0.005", "--out-dir", str(tmp_path)])
    claims = {c["id"]: c for c in json.loads((tmp_path / "claims.json").read_text())["claims"]}
    assert claims["s-random-on-par"]["verdict"] == C.FAILS
