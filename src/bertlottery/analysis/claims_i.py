"""Beyond the paper: the m-family's claims asked of IMP with rewinding (family i; Chen et al. 2020; docs/protocol.md
§i-pruning), and two comparisons with m-pruning. Does a fine-tune between pruning steps find sparser good
subnetworks than the paper's one-shot-per-step magnitude pruning, and do they retrain as well? Checked only when
the summary has family i; on the paper's numbers they cannot be checked (it has no i)."""

from __future__ import annotations

from bertlottery.analysis.claims import (
    FULL_TOLERANCE,
    MOST,
    Numbers,
    _judged,
    _per_task,
    _size_effect,
    _with_flags,
    claim_good_beats,
    claim_good_keeps_90,
    claim_m_good_reaches_full,
    effect,
)
from bertlottery.analysis.claims_catalog import Claim
from bertlottery.analysis.verdicts import Verdict, cannot, grade
from bertlottery.families import GOOD, IMP, M

SECTION = "beyond: i-pruning"


def has_i(n: Numbers) -> bool:
    return "family" in n.summary and (n.summary["family"] == IMP).any()


def _has_m(n: Numbers) -> bool:
    return (n.summary["family"] == M).any()


def claim_i_sparser_than_m(n: Numbers) -> Verdict:
    """Per task: m good keeps more of the prunable weights than i good (m - i kept share > 0)."""
    if not _has_m(n):
        return cannot("no m-pruning runs to compare with")

    def check(task):
        return _judged(_size_effect(n, task, [(1, (M, GOOD, "pruned")), (-1, (IMP, GOOD, "pruned"))]), 0.0)
    return grade(_per_task(n, check), MOST, "keep fewer of the prunable weights with i good than with m good "
                 "(m good - i good kept, points of the prunable weights)")


def claim_i_retrains_like_m(n: Numbers, tol: float) -> Verdict:
    """Per task: i good retrained is no more than `tol` below m good retrained (i - m above -tol)."""
    if not _has_m(n):
        return cannot("no m-pruning runs to compare with")

    def check(task):
        return _judged(effect(n, task, [(1, (IMP, GOOD, "retrained")), (-1, (M, GOOD, "retrained"))]), -tol)
    verdict = grade(_per_task(n, check), MOST, f"have i good retrained - m good retrained above -{100 * tol:.0f} "
                    "points")
    return _with_flags(n, verdict, (IMP, M), (GOOD,))


def i_claims(alpha: float, par_tolerance: float) -> list[Claim]:
    """The i-family's claims, as claims_catalog.claim_list."""
    beyond = "beyond the paper: the m-family's claim asked of IMP with rewinding"
    tol = f"{100 * par_tolerance:.0f}"
    return [
        Claim("i-good-90", SECTION, "IMP (i) 'good' subnetworks keep >= 90 % of the full model's dev score once "
              "retrained", beyond + " (its stop rule is on the retrained score)",
              "every task and seed: i good retrained >= 0.9 x full (reported metric; by construction of the search, "
              "up to the evaluation batch)", lambda n: claim_good_keeps_90(n, IMP, "retrained")),
        Claim("i-good-best-pruned", SECTION, "similarly-sized random and 'bad' i-subnetworks perform worse than "
              "'good' ones (pruned)", beyond, f"most tasks: i good - random and good - bad pruned above {tol} points "
              "(interval)", lambda n: claim_good_beats(n, IMP, "pruned", par_tolerance)),
        Claim("i-good-retrained-full", SECTION, "retrained 'good' i-subnetworks reach the full model's performance",
              beyond, f"most tasks: i good retrained - full above -{100 * FULL_TOLERANCE:.0f} points (interval)",
              lambda n: claim_m_good_reaches_full(n, IMP)),
        Claim("i-good-best-retrained", SECTION, "after retraining, random and 'bad' i-subnetworks stay behind "
              "'good' ones", beyond + " (Chen et al.: IMP subnetworks beat random pruning at the same sparsity)",
              f"most tasks: i good - random and good - bad retrained above {tol} points (interval)",
              lambda n: claim_good_beats(n, IMP, "retrained", par_tolerance)),
        Claim("i-sparser-than-m", SECTION, "IMP with rewinding prunes more weights than m-pruning at the same 90 % "
              "rule", "beyond the paper: retraining between steps against the paper's m-pruning",
              "most tasks: m good - i good kept share of the prunable weights above 0 (interval)",
              claim_i_sparser_than_m),
        Claim("i-retrains-like-m", SECTION, "IMP's sparser 'good' subnetworks retrain on par with m's 'good' ones",
              "beyond the paper: retraining between steps against the paper's m-pruning",
              f"most tasks: i good - m good retrained above -{tol} points (interval)",
              lambda n: claim_i_retrains_like_m(n, par_tolerance)),
    ]
