"""Derived-mask seeds: stable across processes, and exactly the values each caller got before the two
recipes were folded into one function (so no derived mask changes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bertlottery.masks.seeds import M_MASKS, S_MASKS, derive_seed

# Pinned from subnetworks.derive.derive_seed and search.mpruning.derive_seed as they were.
S_PINNED = [
    (("CoLA", 1337, "bad"), 8979538661285399997),
    (("CoLA", "1337", "bad"), 8979538661285399997),
    (("RTE", 42, "random"), 5804081580925572863),
    (("RTE", 42, "random-like-bad"), 6804461443076831378),
    (("SST-2", "super", "bad"), 3401088161463524987),
    (("MNLI", 5, "super-random"), 5332901284393879620),
]
M_PINNED = [
    (("RTE", 42, "random"), 2821697897064451330),
    (("RTE", 42, "bad"), 701456073780720033),
    (("CoLA", 1337, "random"), 3558510631076740358),
    (("STS-B", 7, "bad"), 1373206372155772400),
]


@pytest.mark.parametrize("args, expected", S_PINNED)
def test_s_mask_seeds_are_unchanged(args, expected):
    assert derive_seed(*args, recipe=S_MASKS) == expected


@pytest.mark.parametrize("args, expected", M_PINNED)
def test_m_mask_seeds_are_unchanged(args, expected):
    assert derive_seed(*args, recipe=M_MASKS) == expected


def test_derive_seed_is_stable_across_processes_and_distinct_per_kind():
    here = derive_seed("CoLA", 1337, "bad", recipe=S_MASKS)
    code = ("from bertlottery.masks.seeds import S_MASKS, derive_seed; "
            "print(derive_seed('CoLA', 1337, 'bad', recipe=S_MASKS))")
    # str hashes differ between this process and one with another PYTHONHASHSEED; the seed must not
    env = {**os.environ, "PYTHONHASHSEED": str(hash("CoLA") % 1000 + 1)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == here
    assert 0 <= here < 2**63
    others = {derive_seed("CoLA", 1337, "random", recipe=S_MASKS), derive_seed("CoLA", 42, "bad", recipe=S_MASKS),
              derive_seed("RTE", 1337, "bad", recipe=S_MASKS)}
    assert here not in others and len(others) == 3
    assert derive_seed("CoLA", "1337", "bad", recipe=S_MASKS) == here  # seeds from argv (str) and config (int) agree


def test_the_two_recipes_differ():
    assert all(0 <= derive_seed(*args, recipe=M_MASKS) < 2**63 for args, _ in S_PINNED)
    assert derive_seed("RTE", 42, "random", recipe=S_MASKS) != derive_seed("RTE", 42, "random", recipe=M_MASKS)
