"""Beyond the paper: the lottery claims asked of a third ticket finder, the Fisher-based f-pruning (Kwon et
al. 2022; docs/protocol.md §f-pruning). Do its good subnetworks beat same-sized random and bad ones when
pruned, and are all of them winning tickets once retrained, as the paper found for s-pruning? Checked
only when the summary has family f; on the paper's numbers they cannot be checked (it has no f)."""

from __future__ import annotations

from dataclasses import replace

from bertlottery.analysis.claims import (
    TRAINABLE_SHARE,
    Numbers,
    claim_good_beats,
    claim_s_bad_trainable,
    claim_s_random_on_par,
)
from bertlottery.analysis.claims_catalog import Claim
from bertlottery.analysis.claims_masks import claim_cochran_differs
from bertlottery.analysis.verdicts import Verdict, cannot
from bertlottery.families import FISHER

SECTION = "beyond: f-pruning"


def has_f(n: Numbers) -> bool:
    return "family" in n.summary and (n.summary["family"] == FISHER).any()


def claim_f_unstable(n: Numbers, alpha: float) -> Verdict:
    if n.stability_f is None:
        return cannot("no stability statistics of the f-good masks")
    verdict = claim_cochran_differs(replace(n, stability=n.stability_f), alpha)
    heads = n.stability_f[n.stability_f["unit"] == "heads"]
    verdict.evidence["kappa"] = dict(zip(heads["task"], heads["kappa"]))
    return verdict


def f_claims(alpha: float, par_tolerance: float) -> list[Claim]:
    """The f-family's claims, as claims_catalog.claim_list."""
    beyond = "beyond the paper: the s-family's claim asked of f-pruning"
    return [
        Claim("f-good-best-pruned", SECTION, "Fisher-found (f) 'good' subnetworks beat similarly-sized random and "
              "'bad' ones (pruned)", beyond, f"most tasks: f good - random and good - bad pruned above "
              f"{100 * par_tolerance:.0f} points (interval)", lambda n: claim_good_beats(n, FISHER, "pruned", par_tolerance)),
        Claim("f-random-on-par", SECTION, "random f-sized subnetworks (retrained) perform on par with f 'good' ones",
              beyond, f"most tasks: f good - f random retrained below {100 * par_tolerance:.0f} points (interval)",
              lambda n: claim_s_random_on_par(n, par_tolerance, family=FISHER)),
        Claim("f-bad-trainable", SECTION, "even the worst ('bad') f-subnetworks remain highly trainable", beyond,
              f"most tasks: f bad retrained recovers >= {TRAINABLE_SHARE:.0%} of the full model's gain over the "
              "majority class (interval)", lambda n: claim_s_bad_trainable(n, family=FISHER)),
        Claim("f-cochran-unstable", SECTION, "f 'good' head masks also differ across seeds (Cochran's Q), as s-masks do",
              beyond, f"every task: Cochran's Q over all seeds of the f-good head masks p < {alpha}; Fleiss' kappa "
              "in the evidence", lambda n: claim_f_unstable(n, alpha)),
    ]
