"""The study's vocabulary, defined once: the mask families (one per ticket finder, and the sets derived
from them), the mask kinds, and the retraining variants.

The workflow's rules and target lists, bundle export and the analyses (tables, figures, claims,
statistics, patterns) all derive from these registries. Adding a ticket finder is its search module, one
`MaskFamily` entry here, its schema section and its tests (docs/architecture.md, "Where to add things").
"""

from __future__ import annotations

from dataclasses import dataclass

from bertlottery.errors import BertLotteryError

# -- mask kinds: the files of a family's mask folder (<kind>.safetensors)
GOOD, RANDOM, BAD = "good", "random", "bad"
RANDOM_LIKE_BAD = "random_like_bad"  # a random s-mask with the bad mask's sizes (Table 2's random-init row)
MASK_KINDS = (GOOD, RANDOM, BAD, RANDOM_LIKE_BAD)
EVALUATED_KINDS = (GOOD, RANDOM, BAD)  # what config retrain.kinds may name

# -- mask types: what a family's mask file holds
HEADS_MLPS = "heads_mlps"  # masks.HeadMlpMask: heads and MLPs
WEIGHTS = "weights"        # masks.WeightMask: single weights


@dataclass(frozen=True)
class MaskFamily:
    """One family of masks: how its masks are found and named in the results, tables and figures."""

    name: str                 # folder under masks/, eval/, retrain/; the `family` of metrics records
    mask_type: str            # HEADS_MLPS or WEIGHTS
    finder: str               # the command that writes its good mask
    deriver: str              # the command that writes its random and bad masks
    title: str                # figures' name of the family
    table: str                # its appendix table's file name (tables/<table>.*)
    caption: str              # that table's title
    kinds: tuple[str, ...] = EVALUATED_KINDS  # the mask kinds it has
    s_mode: str | None = None  # the s-search mode (config s_pruning.modes) of an s-family
    in_paper: bool = True
    across_seeds: bool = False  # one mask set per task from every seed's good mask (super-survivors)


# Families, in the order tables and figures list them.
M, S, SUPER, FISHER, IMP, S_HEADS, S_MLPS = "m", "s", "super", "f", "i", "s-heads", "s-mlps"
FAMILIES: dict[str, MaskFamily] = {f.name: f for f in (
    MaskFamily(M, WEIGHTS, "find-m-mask", "find-m-mask", "m-pruning", "appendix_c_m",
               "Appendix C / Figure 2b: m-pruning (global magnitude)"),
    MaskFamily(S, HEADS_MLPS, "find-s-mask", "derive-s-masks", "s-pruning", "appendix_c_s",
               "Appendix C / Figure 2a: s-pruning (heads and MLPs)", kinds=MASK_KINDS, s_mode="joint"),
    MaskFamily(SUPER, HEADS_MLPS, "super-masks", "super-masks", "super-survivors (s)", "appendix_e_super",
               "Appendix E: super-survivor s-subnetworks", across_seeds=True),
    MaskFamily(FISHER, HEADS_MLPS, "find-f-mask", "derive-s-masks", "f-pruning (Fisher, Kwon et al. 2022; beyond the paper)",
               "beyond_f_fisher", "Beyond the paper: Fisher-based f-pruning (Kwon et al. 2022), s-good's sizes",
               kinds=MASK_KINDS, in_paper=False),
    # IMP with rewinding (Chen et al. 2020): a fine-tune per round, so its cost grows with the rounds taken;
    # random and bad masks by m's rules, written by the search itself.
    MaskFamily(IMP, WEIGHTS, "find-i-mask", "find-i-mask", "i-pruning (IMP with rewinding, Chen et al. 2020; "
               "beyond the paper)", "beyond_i_imp", "Beyond the paper: i-pruning, iterative magnitude pruning with "
               "rewinding to the pre-trained weights (Chen et al. 2020)", in_paper=False),
    MaskFamily(S_HEADS, HEADS_MLPS, "find-s-mask", "derive-s-masks", "heads-only s-pruning", "appendix_b_heads_only",
               "Appendix B: heads-only s-pruning", kinds=MASK_KINDS, s_mode="heads"),
    MaskFamily(S_MLPS, HEADS_MLPS, "find-s-mask", "derive-s-masks", "MLPs-only s-pruning", "appendix_b_mlps_only",
               "Appendix B: MLPs-only s-pruning", kinds=MASK_KINDS, s_mode="mlps"),
)}
# The families config retrain.families may name (the separate s-searches come with retrain.separate_searches).
RETRAINABLE = (M, S, SUPER, FISHER, IMP)
# s-search mode -> family ("joint" -> "s", ...), and back
S_MODES = {f.s_mode: f.name for f in FAMILIES.values() if f.s_mode}
SEPARATE_S_FAMILIES = tuple(name for mode, name in S_MODES.items() if mode != "joint")


def family(name: str) -> MaskFamily:
    """The registered family `name`, or a clear error naming the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise BertLotteryError(f"unknown mask family {name!r}; expected one of {', '.join(FAMILIES)}") from None


def family_of_mode(mode: str) -> str:
    """The family an s-search of this mode writes ("joint" -> "s", "heads" -> "s-heads", ...)."""
    try:
        return S_MODES[mode]
    except KeyError:
        raise BertLotteryError(f"unknown s-pruning mode {mode!r}; expected one of {', '.join(S_MODES)}") from None


def families_where(**fields) -> list[str]:
    """The names of the families whose fields have these values, e.g. families_where(finder="find-s-mask")."""
    return [f.name for f in FAMILIES.values() if all(getattr(f, k) == v for k, v in fields.items())]


# -- retraining variants: the pre-trained model with a mask, fine-tuned again with the same seed
@dataclass(frozen=True)
class Variant:
    """One way of retraining a mask: which mask kind it starts from and how it departs from fine-tuning."""

    name: str                  # folder under retrain/<family>/; the `variant` of metrics records
    mask_kind: str             # the mask file it reads
    label: str                 # in tables
    flags: tuple[str, ...] = ()  # extra flags of `finetune`
    epochs: int | None = None  # overrides training.epochs
    switch: str | None = None  # the config retrain.<switch> that adds it (None: one per evaluated kind)
    families: tuple[str, ...] = ()  # the families it runs for (switched variants only)


BAD_6EP, RANDINIT_RANDOM = "bad_6ep", "randinit_random"
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant(GOOD, GOOD, "good"),
    Variant(RANDOM, RANDOM, "random"),
    Variant(BAD, BAD, "bad"),
    # Appendix D: are bad subnetworks just under-trained? The bad s-masks retrained for 6 epochs, not 3.
    Variant(BAD_6EP, BAD, "bad, 6 epochs (App. D)", epochs=6, switch="bad_6_epochs", families=(S,)),
    # Table 2: random initialisation with a random s-mask of the bad mask's sizes.
    Variant(RANDINIT_RANDOM, RANDOM_LIKE_BAD, "random init + random s (Table 2)", flags=("--random-init",),
            switch="random_init_random_s", families=(S,)),
)}
# Labels of mask kinds and variants in tables.
KIND_LABELS = {name: v.label for name, v in VARIANTS.items()} | {RANDOM_LIKE_BAD: "random (bad-sized)"}


def variant(name: str) -> Variant:
    """The registered variant `name`, or a clear error naming the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise BertLotteryError(f"unknown retraining variant {name!r}; expected one of {', '.join(VARIANTS)}") from None


def switched_variants(retrain_config: dict) -> list[Variant]:
    """The extra variants config `retrain` switches on (bad_6_epochs, random_init_random_s)."""
    return [v for v in VARIANTS.values() if v.switch and retrain_config.get(v.switch)]
