"""Derived s-masks (random, bad) and super-survivor masks: sizes, construction rules, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from bertlottery.errors import BertLotteryError
from bertlottery.masks.seeds import S_MASKS, derive_seed
from bertlottery.masks.types import HeadMlpMask
from bertlottery.subnetworks.derive import (
    bad_mask,
    derive_s_masks,
    random_mask,
    size_matched_random,
)
from bertlottery.subnetworks.super import super_bad_units, super_masks, super_units

L, H = 12, 12
SEEDS = [1337, 42, 86, 71, 166]


def exact_mask(heads: int, mlps: int, seed: int) -> HeadMlpMask:
    """A mask with exactly `heads` heads and `mlps` MLPs kept, at positions fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    h = torch.zeros(L * H, dtype=torch.bool)
    h[torch.randperm(L * H, generator=g)[:heads]] = True
    m = torch.zeros(L, dtype=torch.bool)
    m[torch.randperm(L, generator=g)[:mlps]] = True
    return HeadMlpMask(h.reshape(L, H), m)


def gen(i: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(i)


# --- s random -----------------------------------------------------------------------------------------


def test_bernoulli_random_matches_size_in_expectation_only():
    good = exact_mask(95, 11, seed=0)
    sizes = [random_mask(good, mode="bernoulli", generator=gen(i)) for i in range(400)]
    heads = torch.tensor([m.heads_kept for m in sizes], dtype=torch.float64)
    mlps = torch.tensor([m.mlps_kept for m in sizes], dtype=torch.float64)
    # standard errors of the mean: sqrt(144 q (1-q) / 400) ~ 0.29 heads, sqrt(12 q (1-q) / 400) ~ 0.05 MLPs
    assert abs(heads.mean().item() - 95) < 1.2
    assert abs(mlps.mean().item() - 11) < 0.25
    assert heads.std().item() > 2  # Bernoulli: the size varies from draw to draw
    assert len({(m.heads_kept, m.mlps_kept) for m in sizes}) > 10


def test_exact_random_has_exact_size_and_varies_in_position():
    good = exact_mask(81, 7, seed=1)
    draws = [random_mask(good, mode="exact", generator=gen(i)) for i in range(50)]
    assert all(m.heads_kept == 81 and m.mlps_kept == 7 for m in draws)
    assert len({m.heads.numpy().tobytes() for m in draws}) == 50
    assert len({m.mlps.numpy().tobytes() for m in draws}) > 10


def test_random_mode_is_checked():
    with pytest.raises(BertLotteryError, match="random mode 'uniform'"):
        random_mask(exact_mask(10, 2, 0), mode="uniform", generator=gen())


def test_size_matched_random_copies_the_reference_size():
    ref = exact_mask(67, 10, seed=3)
    out = size_matched_random(ref, generator=gen(5))
    assert (out.heads_kept, out.mlps_kept) == (67, 10) and out != ref


# --- s bad --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads,mlps", [(116, 11), (95, 8), (73, 7)])
def test_bad_takes_all_pruned_away_units_when_more_survive(heads, mlps):
    good = exact_mask(heads, mlps, seed=heads)
    for i in range(5):
        bad = bad_mask(good, generator=gen(i))
        assert (bad.heads_kept, bad.mlps_kept) == (heads, mlps)
        assert bool((~good.heads <= bad.heads).all()) and bool((~good.mlps <= bad.mlps).all())


@pytest.mark.parametrize("heads,mlps", [(18, 2), (67, 5), (72, 6)])
def test_bad_takes_only_pruned_away_units_when_fewer_survive(heads, mlps):
    good = exact_mask(heads, mlps, seed=heads)
    bad = bad_mask(good, generator=gen(1))
    assert (bad.heads_kept, bad.mlps_kept) == (heads, mlps)
    assert not bool((bad.heads & good.heads).any()) and not bool((bad.mlps & good.mlps).any())
    if heads == L * H // 2:  # G == B: the bad mask is exactly the complement
        assert bad == ~good


def test_bad_draws_are_random_but_seeded():
    good = exact_mask(40, 3, seed=9)
    assert bad_mask(good, generator=gen(1)) == bad_mask(good, generator=gen(1))
    assert bad_mask(good, generator=gen(1)) != bad_mask(good, generator=gen(2))


def test_full_good_mask_gives_full_derived_masks():
    full = HeadMlpMask.full(L, H)
    assert bad_mask(full, generator=gen()) == full  # B = 0: a sample of all G good units
    for mode in ("bernoulli", "exact"):
        assert random_mask(full, mode=mode, generator=gen()) == full


def test_empty_good_mask_gives_empty_derived_masks():
    empty = ~HeadMlpMask.full(L, H)  # WNLI: everything pruned
    derived = derive_s_masks(empty, "WNLI", 1337, "bernoulli")
    assert set(derived) == {"random", "bad", "random_like_bad"}
    for mask, _ in derived.values():
        assert (mask.heads_kept, mask.mlps_kept) == (0, 0)
    assert random_mask(empty, mode="exact", generator=gen()) == empty


def test_derive_s_masks_sizes_and_reproducibility():
    good = exact_mask(95, 11, seed=2)
    first = derive_s_masks(good, "CoLA", 1337, "exact")
    again = derive_s_masks(good, "CoLA", 1337, "exact")
    other_seed = derive_s_masks(good, "CoLA", 42, "exact")
    for kind in first:
        assert first[kind][0] == again[kind][0]
        assert (first[kind][0].heads_kept, first[kind][0].mlps_kept) == (95, 11)
        assert first[kind][1]["rng_seed"] == str(derive_seed("CoLA", 1337, kind.replace("_", "-"), recipe=S_MASKS))
    assert first["random"][0] != other_seed["random"][0]
    assert first["random_like_bad"][0] != first["random"][0]


# --- super-survivors ----------------------------------------------------------------------------------


# Per-seed (heads, MLPs) of the original's joint masks (paper_results.yaml s_counts).
COLA = [(95, 11), (81, 12), (116, 10), (102, 11), (67, 10)]
SST2 = [(88, 8), (74, 7), (67, 8), (60, 9), (46, 7)]


def correlated_goods(sizes=COLA) -> list[HeadMlpMask]:
    """Five good masks of the given sizes that share an importance ranking plus per-seed noise, as real
    seeds do: CoLA gives 37 super / 3 never-surviving heads, SST-2 17 / 21; both have MLP super > never."""
    n = L * H + L
    base = torch.rand(n, generator=gen(0))
    goods = []
    for (heads, mlps), seed in zip(sizes, SEEDS):
        score = base + torch.rand(n, generator=gen(seed))
        h = torch.zeros(L * H, dtype=torch.bool)
        h[score[: L * H].topk(heads).indices] = True
        m = torch.zeros(L, dtype=torch.bool)
        m[score[L * H:].topk(mlps).indices] = True
        goods.append(HeadMlpMask(h.reshape(L, H), m))
    return goods


def never(goods, part: str) -> torch.Tensor:
    return ~torch.stack([getattr(g, part) for g in goods]).any(0)


def test_super_good_is_the_intersection():
    goods = correlated_goods()
    good, _, _ = super_masks(goods, task="CoLA", seeds=SEEDS)
    expected = goods[0]
    for g in goods[1:]:
        expected = expected & g
    assert good == expected
    assert good.heads_kept > 0 and good.mlps_kept > 0


def test_super_bad_is_trimmed_from_never_surviving_units():
    goods = correlated_goods(SST2)
    good, bad, _ = super_masks(goods, task="SST-2", seeds=SEEDS)
    assert int(never(goods, "heads").sum()) > good.heads_kept  # enough never-surviving heads: pure trim
    assert bad.heads_kept == good.heads_kept
    assert bool((bad.heads <= never(goods, "heads")).all())


@pytest.mark.parametrize("sizes,part", [(COLA, "heads"), (SST2, "mlps")])
def test_super_bad_is_topped_up_from_non_super_units(sizes, part):
    goods = correlated_goods(sizes)
    good, bad, _ = super_masks(goods, task="T", seeds=SEEDS)
    good_units, bad_units, never_units = getattr(good, part), getattr(bad, part), never(goods, part)
    assert int(never_units.sum()) < int(good_units.sum())  # too few never-surviving units: top-up
    assert int(bad_units.sum()) == int(good_units.sum())
    assert bool((never_units <= bad_units).all()) and not bool((bad_units & good_units).any())


def test_super_bad_non_super_first_takes_every_non_super_unit_when_more_than_half_survive():
    goods = [exact_mask(100, 9, seed=0)] * 3  # identical seeds: super = 100 of 144, never = 44
    for topup in ("uniform", "non_super_first"):
        good, bad, randoms = super_masks(goods, task="X", seeds=[1, 2, 3], topup=topup)
        assert (bad.heads_kept, bad.mlps_kept) == (100, 9)
        assert all((r.heads_kept, r.mlps_kept) == (100, 9) for r in randoms.values())
    # non_super_first: all 44 non-super heads and 3 non-super MLPs, then super-survivors
    assert bool((~good.heads <= bad.heads).all()) and bool((~good.mlps <= bad.mlps).all())
    # the same with realistic CoLA MLPs: 7 of 12 survive every seed, none is pruned by all
    goods = correlated_goods(COLA)
    good, bad, _ = super_masks(goods, task="CoLA", seeds=SEEDS, topup="non_super_first")
    assert good.mlps_kept == 7 and int(never(goods, "mlps").sum()) == 0
    assert bad.mlps_kept == 7 and bool((~good.mlps <= bad.mlps).all())


# Four MLPs, three seeds: MLPs 0-2 survive every seed, MLP 3 one seed (so no MLP is never-surviving).
# Topping super-bad up to 3 MLPs, only MLP 3 is neither super nor chosen: too few.
SMALL_POOL = [torch.tensor([1, 1, 1, 0]), torch.tensor([1, 1, 1, 0]), torch.tensor([1, 1, 1, 1])]


@pytest.mark.parametrize("topup,expected", [("uniform", [0.75] * 4), ("non_super_first", [2 / 3] * 3 + [1.0])])
def test_super_bad_top_up_when_the_non_super_pool_is_too_small(topup, expected):
    good, never_units = super_units(SMALL_POOL)
    assert good.tolist() == [True, True, True, False] and not bool(never_units.any())
    draws = torch.stack([super_bad_units(good, never_units, gen(i), topup) for i in range(2000)])
    assert bool((draws.sum(1) == 3).all())
    # uniform (the original): 3 of all 4 MLPs, each chosen with probability 3/4; non_super_first: MLP 3
    # always, then 2 of the 3 super-survivors
    assert draws.float().mean(0).tolist() == pytest.approx(expected, abs=0.04)


def test_super_bad_top_ups_agree_when_the_non_super_pool_is_enough():
    # 2 x 4 heads: 2 super-survivors, 1 never-surviving unit, 5 neither: a top-up of 1 is drawn from the 5
    goods = [torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]]), torch.tensor([[1, 1, 0, 1], [0, 0, 1, 0]]),
             torch.tensor([[1, 1, 1, 0], [0, 0, 0, 1]])]
    good, never_units = super_units(goods)
    assert (int(good.sum()), int(never_units.sum())) == (2, 1)
    for i in range(50):
        a = super_bad_units(good, never_units, gen(i), "uniform")
        assert torch.equal(a, super_bad_units(good, never_units, gen(i), "non_super_first"))
        assert bool((never_units <= a).all()) and not bool((a & good).any())
    # whole super masks: SST-2-like seeds trim heads and top MLPs up from non-super ones alone
    goods = correlated_goods(SST2)
    good, _, _ = super_masks(goods, task="SST-2", seeds=SEEDS)
    assert int((~good.mlps).sum()) >= good.mlps_kept  # enough non-super MLPs
    a = super_masks(goods, task="SST-2", seeds=SEEDS, topup="uniform")
    b = super_masks(goods, task="SST-2", seeds=SEEDS, topup="non_super_first")
    assert a[1] == b[1] and all(a[2][s] == b[2][s] for s in SEEDS)


def test_super_bad_top_up_is_checked():
    with pytest.raises(BertLotteryError, match="non_super_first"):
        super_masks(correlated_goods(), task="CoLA", seeds=SEEDS, topup="super_first")


def test_super_random_avoids_super_good_and_bad_and_varies_per_seed():
    goods = correlated_goods()
    good, bad, randoms = super_masks(goods, task="CoLA", seeds=SEEDS)
    assert set(randoms) == set(SEEDS)
    for r in randoms.values():
        assert r.heads_kept == good.heads_kept and r.mlps_kept == good.mlps_kept
        # 144 - 2 * 37 heads are free; MLPs: 12 - 2 * 7 < 0, so random is topped up from the rest
        assert not bool((r.heads & (good.heads | bad.heads)).any())
        assert bool((~(good.mlps | bad.mlps) <= r.mlps).all())
    assert len({r.heads.numpy().tobytes() for r in randoms.values()}) == len(SEEDS)


def test_super_masks_are_deterministic_and_task_seeded():
    a = super_masks(correlated_goods(), task="CoLA", seeds=SEEDS)
    b = super_masks(correlated_goods(), task="CoLA", seeds=SEEDS)
    c = super_masks(correlated_goods(), task="RTE", seeds=SEEDS)
    assert a[1] == b[1] and all(a[2][s] == b[2][s] for s in SEEDS)
    assert a[1] != c[1]


def test_super_masks_of_wnli_are_empty():
    empty = ~HeadMlpMask.full(L, H)
    goods = [empty, empty, HeadMlpMask(torch.ones(L, H, dtype=torch.bool), torch.zeros(L)), empty, empty]
    good, bad, randoms = super_masks(goods, task="WNLI", seeds=SEEDS)
    for mask in (good, bad, *randoms.values()):
        assert (mask.heads_kept, mask.mlps_kept) == (0, 0)


def test_super_masks_reject_mismatched_inputs():
    with pytest.raises(BertLotteryError, match="2 good masks for 3 seeds"):
        super_masks(correlated_goods()[:2], task="CoLA", seeds=[1, 2, 3])
    odd = HeadMlpMask(torch.ones(6, 12), torch.ones(6))
    with pytest.raises(BertLotteryError, match="different shapes"):
        super_masks([correlated_goods()[0], odd], task="CoLA", seeds=[1, 2])


# --- CLIs: files, metadata, determinism across processes ----------------------------------------------


def run_cli(*args, in_process: bool) -> None:
    """Run a command in a fresh interpreter or in this one: two runs compare two separate processes."""
    argv = [str(a) for a in args]
    if in_process:
        from bertlottery.cli import main

        main(argv)
    else:
        subprocess.run([sys.executable, "-m", "bertlottery", *argv], check=True, capture_output=True)


def read(path) -> tuple[dict[str, bytes], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}, f.metadata()


def test_derive_s_masks_cli_is_reproducible_across_processes(tmp_path):
    good_path = tmp_path / "good.safetensors"
    exact_mask(95, 11, seed=4).save(good_path, task="CoLA", seed="1337", family="s", kind="good")
    for out, in_process in (("a", False), ("b", True)):
        run_cli("derive-s-masks", "--task", "CoLA", "--seed", 1337, "--good", good_path,
                "--mode", "bernoulli", "--out-dir", tmp_path / out, in_process=in_process)
    for kind in ("random", "bad", "random_like_bad"):
        tensors_a, meta_a = read(tmp_path / "a" / f"{kind}.safetensors")
        tensors_b, meta_b = read(tmp_path / "b" / f"{kind}.safetensors")
        assert tensors_a == tensors_b and meta_a == meta_b
        assert meta_a["task"] == "CoLA" and meta_a["seed"] == "1337" and meta_a["family"] == "s"
        assert meta_a["kind"] == kind and meta_a["method"] and meta_a["heads_total"] == "144"
    _, meta = read(tmp_path / "a" / "random.safetensors")
    assert meta["mode"] == "bernoulli" and meta["method"].startswith("s-random-bernoulli")
    bad = HeadMlpMask.load(tmp_path / "a" / "bad.safetensors")
    assert (bad.heads_kept, bad.mlps_kept) == (95, 11)
    assert read(tmp_path / "a" / "bad.safetensors")[1]["heads_kept"] == "95"


def test_derive_s_masks_cli_rejects_another_tasks_mask(tmp_path):
    from bertlottery.cli import main

    good_path = tmp_path / "good.safetensors"
    exact_mask(95, 11, seed=4).save(good_path, task="RTE", seed="1337")
    with pytest.raises(SystemExit, match="task='RTE'"):
        main(["derive-s-masks", "--task", "CoLA", "--seed", "1337", "--good", str(good_path),
              "--out-dir", str(tmp_path / "out")])


def test_super_masks_cli_writes_every_seed_and_a_summary(tmp_path):
    paths = []
    for seed, mask in zip(SEEDS, correlated_goods()):
        paths.append(mask.save(tmp_path / "s" / f"seed{seed}" / "good.safetensors", task="CoLA", seed=seed))
    for out, in_process in (("a", False), ("b", True)):
        run_cli("super-masks", "--task", "CoLA", "--seeds", *SEEDS, "--goods", *paths,
                "--out-root", tmp_path / out, in_process=in_process)
    good, bad, randoms = super_masks(correlated_goods(), task="CoLA", seeds=SEEDS)
    for seed in SEEDS:
        for kind, expected in (("good", good), ("bad", bad), ("random", randoms[seed])):
            path = tmp_path / "a" / f"seed{seed}" / f"{kind}.safetensors"
            assert read(path)[0] == read(tmp_path / "b" / f"seed{seed}" / f"{kind}.safetensors")[0]
            assert read(path)[0] == read(tmp_path / "a" / f"seed{SEEDS[0]}" / f"{kind}.safetensors")[0] \
                or kind == "random"  # good and bad are the same file content for every seed
            loaded = HeadMlpMask.load(path)
            assert loaded == expected
            assert loaded.meta["family"] == "super" and loaded.meta["kind"] == kind
            assert loaded.meta["seed"] == str(seed) and loaded.meta["seeds"] == ",".join(map(str, SEEDS))
            assert loaded.meta["super_bad_topup"] == "uniform"
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["super_heads"] == good.heads_kept and summary["super_mlps"] == good.mlps_kept
    never = ~torch.stack([g.heads for g in correlated_goods()]).any(0)
    assert summary["never_heads"] == int(never.sum())
    assert summary["per_seed_heads"]["1337"] == 95
    # 7 super MLPs, only 5 that are neither: the original's top-up draws 7 of all 12 MLPs
    assert summary["super_bad_topup"] == "uniform"
    assert summary["bad_mlps_from_super"] == int((bad.mlps & good.mlps).sum()) >= 7 - 5


def test_super_masks_cli_non_super_first(tmp_path):
    paths = [mask.save(tmp_path / "s" / f"seed{seed}" / "good.safetensors", task="CoLA", seed=seed)
             for seed, mask in zip(SEEDS, correlated_goods())]
    run_cli("super-masks", "--task", "CoLA", "--seeds", *SEEDS, "--goods", *paths, "--out-root", tmp_path / "o",
            "--bad-topup", "non_super_first", in_process=True)
    _, bad, _ = super_masks(correlated_goods(), task="CoLA", seeds=SEEDS, topup="non_super_first")
    loaded = HeadMlpMask.load(tmp_path / "o" / f"seed{SEEDS[0]}" / "bad.safetensors")
    assert loaded == bad and loaded.meta["super_bad_topup"] == "non_super_first"
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["super_bad_topup"] == "non_super_first"
    assert summary["bad_mlps_from_super"] == 7 - 5  # all 5 non-super MLPs, then 2 super-survivors


def test_super_masks_cli_needs_one_good_per_seed(tmp_path):
    from bertlottery.cli import main

    path = exact_mask(10, 2, 0).save(tmp_path / "g.safetensors")
    with pytest.raises(SystemExit, match="1 paths for 2 --seeds"):
        main(["super-masks", "--task", "CoLA", "--seeds", "1", "2", "--goods", str(path),
              "--out-root", str(tmp_path / "o")])
