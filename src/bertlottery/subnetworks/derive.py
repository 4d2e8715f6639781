"""Random and bad s-masks derived from a good one (docs/protocol.md §Derived masks).

Heads (over all L*H units) and MLPs (over all L units) are drawn independently by the same rules. Every
draw uses a generator seeded by `derive_seed(task, seed, kind, recipe=S_MASKS)`, so a rerun gives the same masks bit for
bit; the original's bad masks came from an unseeded `random.sample` and cannot be regenerated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bertlottery.errors import BertLotteryError
from bertlottery.layout import mask_name
from bertlottery.masks.seeds import S_MASKS, derive_seed, seeded_generator
from bertlottery.masks.types import HeadMlpMask

RANDOM_MODES = ("bernoulli", "exact")


def make_generator(task: str, seed: int | str, kind: str) -> torch.Generator:
    return seeded_generator(task, seed, kind, recipe=S_MASKS)


# --- primitives on bool tensors (any shape: heads [L, H] or MLPs [L]) ---------------------------------------------------------------


def sample_from(pool: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """A bool tensor shaped like pool with exactly k True entries, chosen uniformly among pool's."""
    flat = pool.reshape(-1)
    where = torch.nonzero(flat).flatten()
    if k > where.numel():
        raise BertLotteryError(f"cannot sample {k} units from a pool of {where.numel()}")
    out = torch.zeros(flat.numel(), dtype=torch.bool)
    out[where[torch.randperm(where.numel(), generator=generator)[:k]]] = True
    return out.reshape(pool.shape)


def fill_to(chosen: torch.Tensor, size: int, pools: list[torch.Tensor], generator) -> torch.Tensor:
    """Trim `chosen` at random to `size`, or top it up from `pools` in order of preference.

    Each pool is used only after the previous one is exhausted; units already chosen are skipped.
    """
    n = int(chosen.sum())
    if n >= size:
        return sample_from(chosen, size, generator)
    out = chosen.clone()
    for pool in pools:
        free = pool & ~out
        take = min(size - int(out.sum()), int(free.sum()))
        out |= sample_from(free, take, generator)
    if int(out.sum()) != size:
        raise BertLotteryError(f"cannot fill a mask of {size} units out of {out.numel()}")
    return out


def random_units(good: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random units matching good's size: per-unit Bernoulli(q = kept/total) or exactly kept units."""
    flat = good.reshape(-1)
    if mode == "bernoulli":
        q = float(flat.sum()) / flat.numel() if flat.numel() else 0.0
        out = torch.rand(flat.numel(), generator=generator) < q
    elif mode == "exact":
        out = sample_from(torch.ones_like(flat), int(flat.sum()), generator)
    else:
        raise BertLotteryError(f"random mode {mode!r}: expected one of {RANDOM_MODES}")
    return out.reshape(good.shape)


def bad_units(good: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """protocol.md §Derived masks: with G kept and B = total - G pruned away, all B pruned plus G - B random good
    ones when G > B, else a random G of the pruned-away ones. Always exactly G units."""
    flat = good.reshape(-1)
    kept, pruned = int(flat.sum()), int((~flat).sum())
    if kept > pruned:
        out = ~flat | sample_from(flat, kept - pruned, generator)
    else:
        out = sample_from(~flat, kept, generator)
    return out.reshape(good.shape)


# --- HeadMlpMask level -------------------------------------------------------------------------------


def _both(mask: HeadMlpMask, fn, generator) -> HeadMlpMask:
    """Apply fn to heads then MLPs with one generator (fixed order, so draws are reproducible)."""
    heads = fn(mask.heads.bool(), generator)
    mlps = fn(mask.mlps.bool(), generator)
    return HeadMlpMask(heads=heads, mlps=mlps, meta={})


def random_mask(good: HeadMlpMask, *, mode: str = "bernoulli", generator: torch.Generator) -> HeadMlpMask:
    """s random: the original's Bernoulli draw (size matches in expectation) or an exact-size draw."""
    return _both(good, lambda units, g: random_units(units, mode, g), generator)


def bad_mask(good: HeadMlpMask, *, generator: torch.Generator) -> HeadMlpMask:
    """s bad: pruned-away elements first, topped up with random survivors (exact size)."""
    return _both(good, bad_units, generator)


def size_matched_random(reference: HeadMlpMask, *, generator: torch.Generator, mode: str = "exact") -> HeadMlpMask:
    """Table 2 "Random init + random s-pruning": random heads/MLPs the size of a reference mask."""
    return random_mask(reference, mode=mode, generator=generator)


def size_meta(mask: HeadMlpMask) -> dict[str, str]:
    """Totals for the file metadata (HeadMlpMask.save adds heads_kept and mlps_kept itself)."""
    return {"heads_total": str(mask.heads.numel()), "mlps_total": str(mask.mlps.numel())}


def check_source(mask: HeadMlpMask, path, **expected) -> None:
    """A good mask whose metadata names another task or seed is a wiring mistake: stop here."""
    for key, value in expected.items():
        found = mask.meta.get(key)
        if found is not None and found != str(value):
            raise BertLotteryError(f"{path}: metadata {key}={found!r}; expected {str(value)!r}")


# --- CLI ---------------------------------------------------------------------------------------------

METHODS = {
    "bernoulli": "s-random-bernoulli: each head/MLP kept with probability kept/total of the good mask",
    "exact": "s-random-exact: uniform draw of exactly the good mask's numbers of heads and MLPs",
    "bad": "s-bad: all pruned-away units plus random good ones if G > B, else G random pruned-away units",
    "random_like_bad": "random-like-bad: uniform draw of exactly the bad mask's numbers of heads and MLPs "
                       "(Table 2, random init + random s-pruning)",
}


def derive_s_masks(good: HeadMlpMask, task: str, seed: int, mode: str) -> dict[str, tuple[HeadMlpMask, dict]]:
    """random, bad and random_like_bad masks of one (task, seed), each with metadata on how it was drawn."""
    def draw(kind: str, build):
        rng_seed = derive_seed(task, seed, kind, recipe=S_MASKS)
        return build(torch.Generator().manual_seed(rng_seed)), {"rng_seed": str(rng_seed)}

    random, r_meta = draw("random", lambda g: random_mask(good, mode=mode, generator=g))
    bad, b_meta = draw("bad", lambda g: bad_mask(good, generator=g))
    like_bad, l_meta = draw("random-like-bad", lambda g: size_matched_random(bad, generator=g, mode="exact"))
    return {
        "random": (random, {**r_meta, "method": METHODS[mode], "mode": mode}),
        "bad": (bad, {**b_meta, "method": METHODS["bad"], "mode": "exact"}),
        "random_like_bad": (like_bad, {**l_meta, "method": METHODS["random_like_bad"], "mode": "exact"}),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertlottery derive-s-masks", description=__doc__)
    p.add_argument("--task", required=True)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--good", required=True, type=Path, help="good mask (safetensors)")
    p.add_argument("--mode", choices=RANDOM_MODES, default="bernoulli", help="how s random is drawn")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="writes random, bad and random_like_bad .safetensors here")
    return p


def main_derive_s_masks(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    good = HeadMlpMask.load(args.good)
    check_source(good, args.good, task=args.task, seed=args.seed)
    for kind, (mask, meta) in derive_s_masks(good, args.task, args.seed, args.mode).items():
        # the good mask's family (s, s-heads, s-mlps): its derived masks belong to the same family
        mask.save(args.out_dir / mask_name(kind), task=args.task, seed=str(args.seed),
                  family=good.meta.get("family", "s"),
                  kind=kind, source=str(args.good), **meta, **size_meta(mask))
