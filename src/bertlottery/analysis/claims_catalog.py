"""Every claim the study checks: its id, the paper's section, the claim, the paper's sentence behind it
(quoted; a paraphrase is marked), the criterion, and the function of `Numbers` that judges it
(claims.py, claims_masks.py). docs/protocol.md §Claims lists the same criteria."""

from __future__ import annotations

from typing import NamedTuple

from bertlottery.analysis import claims as C
from bertlottery.analysis import claims_masks as K
from bertlottery.families import M, S


class Claim(NamedTuple):
    id: str
    section: str
    claim: str
    quote: str
    criterion: str
    check: object  # Numbers -> Verdict


def claim_list(alpha: float, par_tolerance: float) -> list[Claim]:
    """Every claim, in the paper's order: §4.1-4.2 sizes and subnetworks, §4.2-4.3 retraining and Table 2,
    §5 stability and overlaps."""
    return _subnetwork_claims(alpha, par_tolerance) + _retraining_claims(par_tolerance) + _mask_claims(alpha)


def _subnetwork_claims(alpha: float, par_tolerance: float) -> list[Claim]:
    tol = f"{100 * par_tolerance:.0f}"
    return [
        Claim("m-half", "4.1", "m-pruning: all architecture blocks lose about half the weights (42-57 %)",
              "\"all architecture blocks lose about half the weights (42–57 % weights), but the earlier layers get "
              "pruned more\" (§4.1, of QNLI's Figure 1a, pruned to about half overall)",
              f"per task: >= 90 % of heads/MLPs pruned within {100 * K.HALF_BAND:.1f} points of the task's own "
              "pruned share; every task", K.claim_m_half),
        Claim("m-early", "4.1", "m-pruning: the earlier layers get pruned more", "the same sentence (§4.1)",
              "Spearman rho of layer index and surviving fraction > 0 with exact p < alpha; the power (rho needed) "
              "is stated", lambda n: K.claim_m_early_layers(n, alpha)),
        Claim("separate-fewer", "4.1 / App. B", "fewer heads (MLPs) remain when heads and MLPs are pruned separately",
              "\"fewer heads (or MLPs) remain when they are pruned separately (49% vs 22% for heads, 75% vs 50% for "
              "MLPs)\" (App. B)", "mean surviving share of heads-only (MLPs-only) searches < joint search",
              K.claim_separate_fewer),
        Claim("s-good-90", "3.3 / 4.2", "'good' s-subnetworks keep >= 90 % of the full model's dev score",
              "\"as long as the pruned model retains over 90% performance of the full fine-tuned model\" (§3.3)",
              "every task and seed: s good pruned >= 0.9 x full (reported metric)",
              lambda n: C.claim_good_keeps_90(n, S)),
        Claim("m-good-90", "3.2 / 4.2", "'good' m-subnetworks keep >= 90 % of the full model's dev score",
              "\"keep pruning for as long as the performance remains above 90% of the full fine-tuned model's "
              "performance\" (§3.2)", "every task and seed: m good pruned >= 0.9 x full (reported metric)",
              lambda n: C.claim_good_keeps_90(n, M)),
        Claim("m-good-best-pruned", "4.2 / abstract", "similarly-sized random and 'bad' m-subnetworks perform worse "
              "than 'good' ones (pruned)", "paraphrase of §4.2's bullets after Figure 2",
              f"most tasks: good - random and good - bad pruned above {tol} points (interval)",
              lambda n: C.claim_good_beats(n, M, "pruned", par_tolerance)),
        Claim("s-good-best-pruned", "4.2 / abstract", "similarly-sized random and 'bad' s-subnetworks perform worse "
              "than 'good' ones (pruned)", "paraphrase of §4.2's bullets after Figure 2",
              f"most tasks: good - random and good - bad pruned above {tol} points (interval)",
              lambda n: C.claim_good_beats(n, S, "pruned", par_tolerance)),
        Claim("m-good-retrained-full", "4.2", "retrained 'good' m-subnetworks reach the full model's performance",
              "paraphrase of §4.2's bullets after Figure 2",
              f"most tasks: m good retrained - full above -{100 * C.FULL_TOLERANCE:.0f} points (interval)",
              C.claim_m_good_reaches_full),
        Claim("m-good-best-retrained", "4.2", "after retraining, random and 'bad' m-subnetworks stay behind 'good' ones",
              "paraphrase of §4.2's bullets after Figure 2",
              f"most tasks: good - random and good - bad retrained above {tol} points (interval)",
              lambda n: C.claim_good_beats(n, M, "retrained", par_tolerance)),
    ]


def _retraining_claims(par_tolerance: float) -> list[Claim]:
    tol = f"{100 * par_tolerance:.0f}"
    return [
        Claim("s-random-on-par", "4.2", "random s-subnetworks (retrained) mostly perform on par with 'good' ones",
              "\"for s-pruning they [random] mostly perform on par with the 'good' subnetworks\" (§4.2)",
              f"most tasks: s good - s random retrained below {tol} points (interval; true random runs, not the "
              "published Figure 2a bars)", lambda n: C.claim_s_random_on_par(n, par_tolerance)),
        Claim("s-bad-trainable", "4.3 / abstract", "even the worst ('bad') s-subnetworks remain highly trainable",
              "\"even the worst possible selection of pre-trained BERT components for a given task still contains a "
              "lot of useful information\" (§4.3)",
              f"most tasks: s bad retrained recovers >= {C.TRAINABLE_SHARE:.0%} of the full model's gain over the "
              "majority class (interval); a task whose full model does not beat the majority class cannot be checked",
              C.claim_s_bad_trainable),
        Claim("m-more-compression", "4.2 / 6.3", "for 7 of 9 tasks m-pruning prunes 10-15 % more weights than "
              "s-pruning", "\"For 7 out of 9 tasks m-pruning yields considerably higher compression (10–15% more "
              "weights pruned) than s-pruning\" (§4.2)",
              ">= 7/9 of tasks: s good - m good >= 10 points of the prunable weights (interval; the paper's "
              "'kept - 21 %' formula beside it)", C.claim_m_more_compression),
        Claim("subnetworks-large", "4.2 / 6.3", "subnetworks are relatively large with both methods (mostly over "
              "50 % of the full model)", "\"our pruned subnetworks are relatively large with both pruning methods "
              "(mostly over 50% of the full model)\" (§4.2)",
              "most tasks: s and m good keep > 50 % of all parameters (interval)", C.claim_subnetworks_large),
        Claim("super-small", "4.2 / App. E", "super-survivor subnetworks contain only about 10-26 % of the weights "
              "for most tasks", "\"For most tasks, these [super-survivor] subnetworks contained only about 10–26 % "
              "of the full model weights\" (§4.2)",
              "most tasks: super good keeps <= 35 % of the prunable weights (the paper's 10-26 % of bert-base)",
              C.claim_super_small),
        Claim("super-loss", "4.2 / App. E", "super-survivor subnetworks lose only about 10 points",
              "\"but lost only about 10 performance points on average\" (§4.2)",
              "most tasks (those whose full model is > 5 points above the majority class): full - super good "
              f"retrained <= {100 * C.SUPER_LOSS:.0f} points (interval), per task", C.claim_super_loss),
        Claim("bad-6ep", "4.3 / App. D", "'bad' s-subnetworks trained for 6 epochs: on most tasks performance went "
              "down", "\"on most tasks the performance went down\" (App. D)",
              "most tasks: s bad 6-epoch - 3-epoch retrained below 0 (interval)", C.claim_six_epoch_bad),
        Claim("m-bad-behind", "4.3 / Table 2", "m-bad is >= 5 points behind s-bad on 6/9 tasks",
              "paraphrase of §4.3 on Table 2", ">= 6/9 of tasks: s bad - m bad retrained >= 5 points rounded (interval)",
              C.claim_m_bad_behind),
        Claim("m-bad-cola-stsb", "4.3 / Table 2", "m-bad is particularly bad on CoLA and STS-B",
              "paraphrase of §4.3 on Table 2",
              "CoLA and STS-B have the two lowest m bad retrained scores relative to each task's full - majority "
              "range (intervals apart: holds; apart only as points: not shown)", C.claim_m_bad_cola_stsb),
        Claim("s-bad-glove", "4.3 / Table 2", "s-bad is comparable to BiLSTM+GloVe (competitive on 5/9, loses by a "
              "large margin on 2, wins on 2)", "paraphrase of §4.3 on Table 2",
              f">= 7/9 of tasks: s bad retrained no more than {100 * C.COMPETITIVE:.0f} points below BiLSTM+GloVe; "
              "a task whose full model does not reach BiLSTM+GloVe cannot be checked", C.claim_s_bad_vs_glove),
        Claim("randinit-vs-m-bad", "4.3 / Table 2", "random init + random s-pruning is slightly better than m-bad",
              "paraphrase of §4.3 on Table 2", "most tasks: random init - m bad retrained above 0 (interval)",
              C.claim_random_init_beats_m_bad),
    ]


def _mask_claims(alpha: float) -> list[Claim]:
    return [
        Claim("kappa-range", "5.1", "Fleiss' kappa on head survival across seeds is 0.15-0.32 for all tasks",
              "\"For all tasks, Fleiss' kappa on head survival across 5 random seeds was in the range of 0.15–0.32\" "
              "(§5.1)", "every task (WNLI excluded): kappa truncated to 2 decimals within [0.15, 0.32]; the "
              "direction of a miss is named", K.claim_kappa_range),
        Claim("cochran-unstable", "5.1", "Cochran's Q did not show the seeds' head masks to be similar (alpha 0.05)",
              "\"Cochran Q test did not show that the binary mask of head survival obtained with five random seeds "
              "for each tasks were significantly similar at α = 0.05\" (§5.1)",
              f"every task: Cochran's Q over all seeds p < {alpha} (Q tests equal shares kept, not which heads)",
              lambda n: K.claim_cochran_differs(n, alpha)),
        Claim("pairs-similar", "5.1", "masks obtained with some pairs of seeds were similar",
              "\"(although masks obtained with some pairs of seeds were)\" (§5.1)",
              f"at least one seed pair shares more kept heads than chance (hypergeometric, Holm over all pairs, "
              f"alpha {alpha}); Cohen's kappa per pair", lambda n: K.claim_some_pairs_similar(n, alpha)),
        Claim("low-importance", "5.1 / Figure 3", "at any pruning iteration most heads and MLPs have a low importance "
              "score", "\"At any given pruning iteration, most heads and MLPs have a low importance score\" (§5.1)",
              "median over searches and iterations of the share of unpruned elements with normalised importance "
              "< 0.5 is > 0.5", K.claim_low_importance),
        Claim("overlap-heads", "5.3", "good head subnetworks of different tasks overlap more than expected if "
              "independent", "\"still more than what we would expect if the heads were completely independent\" "
              "(§5.3)", f"most task pairs: mean overlap > hypergeometric expectation and combined p < {alpha}; a "
              "task keeping all or none in every seed cannot be checked", lambda n: K.claim_overlap_above_chance(
                  n, "heads", alpha)),
        Claim("overlap-mlps", "5.3", "MLPs show a similar overlap pattern",
              "\"Both heads and MLPs show a similar pattern\" (§5.3)",
              f"most task pairs: mean MLP overlap > expectation and combined p < {alpha}; a task keeping all or "
              "none in every seed cannot be checked", lambda n: K.claim_overlap_above_chance(n, "mlps", alpha)),
        Claim("mrpc-qnli", "5.3", "MRPC and QNLI share over a half of their 'good' subnetworks",
              "\"(e.g. MRPC and QNLI share over a half of their 'good' subnetworks)\" (§5.3)",
              "mean shared heads > half of the larger task's mean head count", K.claim_mrpc_qnli_half),
        Claim("mrpc-qqp-mnli", "5.3", "MRPC and QQP have less in common than MRPC and MNLI",
              "\"MRPC and QQP have less in common than MRPC and MNLI\" (§5.3)",
              "mean shared heads MRPC-QQP < MRPC-MNLI", K.claim_mrpc_qqp_mnli),
    ]
