"""Super-survivor masks of one task (docs/protocol.md §Derived masks): good, bad and random.

* good: the heads/MLPs kept by every seed (the AND of all seeds' good masks); one mask for all seeds.
* bad ("bizzaro"): the units kept by no seed, trimmed at random to |good|, or topped up with random
  units that are neither super-survivors nor already chosen; one mask for all seeds, as in the original.
  When those are too few (|good| > total/2, e.g. CoLA's 7 of 12 MLPs), the top-up ("uniform", the
  original's) draws uniformly from every unit not yet chosen, super-survivors included;
  "non_super_first" (subnetworks.super_bad_topup) takes all non-super units first, then super ones.
* random ("midling"): per seed, |good| random units that are neither super-survivors nor super-bad,
  topped up with random other units only when there are too few.
Heads and MLPs are handled separately by the same rules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bertlottery.errors import BertLotteryError
from bertlottery.families import SUPER
from bertlottery.io import write_json
from bertlottery.layout import SUPER_SUMMARY, mask_name, seed_dir
from bertlottery.masks.seeds import S_MASKS, derive_seed
from bertlottery.masks.types import HeadMlpMask
from bertlottery.subnetworks.derive import (
    check_source,
    fill_to,
    make_generator,
    size_meta,
)


def super_units(goods: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept by every seed, kept by no seed) of a stack of per-seed bool masks."""
    stack = torch.stack([g.bool() for g in goods])
    return stack.all(dim=0), ~stack.any(dim=0)


TOPUPS = ("uniform", "non_super_first")


def super_bad_units(good: torch.Tensor, never: torch.Tensor, generator: torch.Generator,
                    topup: str = "uniform") -> torch.Tensor:
    """Never-surviving units, trimmed or topped up to |good| (see the module docstring for `topup`).

    When the units neither super nor chosen suffice, both top-ups are the same call (same draws)."""
    if topup not in TOPUPS:
        raise BertLotteryError(f"super-bad top-up {topup!r}: expected one of {', '.join(TOPUPS)}")
    size = int(good.sum())
    neither = ~good & ~never
    if topup == "uniform" and int(never.sum()) + int(neither.sum()) < size:
        return fill_to(never, size, [torch.ones_like(good)], generator)
    return fill_to(never, size, [~good, good], generator)


def super_random_units(good: torch.Tensor, bad: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """|good| units from those neither super-good nor super-bad; top up from the rest if too few."""
    middle = ~good & ~bad
    return fill_to(middle, int(good.sum()), [~middle], generator)


def _check_shapes(goods: list[HeadMlpMask]) -> None:
    shapes = {(tuple(g.heads.shape), tuple(g.mlps.shape)) for g in goods}
    if len(shapes) != 1:
        raise BertLotteryError(f"good masks of one task have different shapes {sorted(shapes)}; expected one")


def super_masks(
    goods: list[HeadMlpMask], *, task: str, seeds: list[int], topup: str = "uniform"
) -> tuple[HeadMlpMask, HeadMlpMask, dict[int, HeadMlpMask]]:
    """(super good, super bad, {seed: super random}) from the good masks of all seeds, in seed order."""
    if not goods or len(goods) != len(seeds):
        raise BertLotteryError(f"super masks of {task}: {len(goods)} good masks for {len(seeds)} seeds")
    _check_shapes(goods)
    good_h, never_h = super_units([g.heads for g in goods])
    good_m, never_m = super_units([g.mlps for g in goods])
    gen = make_generator(task, SUPER, "bad")  # SUPER's spelling is part of the seed
    bad = HeadMlpMask(
        heads=super_bad_units(good_h, never_h, gen, topup),
        mlps=super_bad_units(good_m, never_m, gen, topup),
        meta={},
    )
    randoms = {}
    for seed in seeds:
        gen = make_generator(task, seed, "super-random")
        randoms[seed] = HeadMlpMask(
            heads=super_random_units(good_h, bad.heads, gen),
            mlps=super_random_units(good_m, bad.mlps, gen),
            meta={},
        )
    return HeadMlpMask(heads=good_h, mlps=good_m, meta={}), bad, randoms


def super_summary(goods: list[HeadMlpMask], good: HeadMlpMask, bad: HeadMlpMask, task: str, seeds,
                  topup: str = "uniform") -> dict:
    """Counts for the s_counts table (super-survivors, never-surviving units) and how bad was filled."""
    _, never_h = super_units([g.heads for g in goods])
    _, never_m = super_units([g.mlps for g in goods])
    return {
        "task": task,
        "seeds": list(seeds),
        "super_bad_topup": topup,
        "heads_total": good.heads.numel(),
        "mlps_total": good.mlps.numel(),
        "super_heads": int(good.heads.sum()),
        "super_mlps": int(good.mlps.sum()),
        "never_heads": int(never_h.sum()),
        "never_mlps": int(never_m.sum()),
        "bad_heads_from_never": int((bad.heads & never_h).sum()),
        "bad_mlps_from_never": int((bad.mlps & never_m).sum()),
        # > 0 only when super-survivors are more than half the units (the top-up of super_bad_units)
        "bad_heads_from_super": int((bad.heads & good.heads).sum()),
        "bad_mlps_from_super": int((bad.mlps & good.mlps).sum()),
        "per_seed_heads": {str(s): int(g.heads.sum()) for s, g in zip(seeds, goods)},
        "per_seed_mlps": {str(s): int(g.mlps.sum()) for s, g in zip(seeds, goods)},
    }


METHODS = {
    "good": "super-good: AND over all seeds' good masks (same for every seed)",
    "bad": "super-bad: units kept by no seed, trimmed/topped up at random to the super size (same for every seed)",
    "random": "super-random: units neither super-good nor super-bad, sampled to the super size per seed",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertlottery super-masks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--seeds", required=True, type=int, nargs="+")
    p.add_argument("--goods", required=True, type=Path, nargs="+", help="good masks, in --seeds order")
    p.add_argument("--out-root", required=True, type=Path, help="e.g. results/masks/super/<task>")
    p.add_argument("--bad-topup", choices=TOPUPS, default="uniform",
                   help="subnetworks.super_bad_topup: how super-bad is topped up when too few units are "
                        "neither super nor never-surviving (uniform = the original)")
    return p


def main_super_masks(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    if len(args.goods) != len(args.seeds):
        raise BertLotteryError(f"--goods: {len(args.goods)} paths for {len(args.seeds)} --seeds; expected one per seed")
    goods = [HeadMlpMask.load(p) for p in args.goods]
    for seed, path, mask in zip(args.seeds, args.goods, goods):
        check_source(mask, path, task=args.task, seed=seed)
    good, bad, randoms = super_masks(goods, task=args.task, seeds=args.seeds, topup=args.bad_topup)
    rng_seeds = {"good": "none", "bad": str(derive_seed(args.task, SUPER, "bad", recipe=S_MASKS))}
    shared = {"task": args.task, "family": SUPER, "seeds": ",".join(map(str, args.seeds)),
              "sources": ",".join(map(str, args.goods)), "mode": "exact",
              "super_bad_topup": args.bad_topup}
    for seed in args.seeds:
        rng_seeds["random"] = str(derive_seed(args.task, seed, "super-random", recipe=S_MASKS))
        for kind, mask in (("good", good), ("bad", bad), ("random", randoms[seed])):
            mask.save(args.out_root / seed_dir(seed) / mask_name(kind), **shared, seed=str(seed), kind=kind,
                      method=METHODS[kind], rng_seed=rng_seeds[kind], **size_meta(mask))
    write_json(args.out_root / SUPER_SUMMARY,
               super_summary(goods, good, bad, args.task, args.seeds, args.bad_topup))
