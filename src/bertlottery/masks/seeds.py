"""Generator seeds of the derived masks: one stable 63-bit seed per (task, seed, kind).

Python's hash() is salted per process, so seeds come from sha256 of "task<sep>seed<sep>kind". The
s-masks (subnetworks) and the m-masks (m-search) were given two different recipes; both are kept so
every mask stays bit for bit what it was, and each caller names the one it uses:

* `S_MASKS`: "task/seed/kind", the digest's first 8 bytes big-endian, shifted right by one bit;
* `M_MASKS`: "task|seed|kind", the digest's first 8 bytes little-endian, the top bit cleared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class SeedRecipe:
    separator: str  # between task, seed and kind
    byteorder: Literal["big", "little"]  # of the digest's first 8 bytes
    drop_bit: Literal["lowest", "highest"]  # how 64 bits become 63: shift right, or clear the top bit


S_MASKS = SeedRecipe("/", "big", "lowest")  # s random / bad / random-like-bad and super masks
M_MASKS = SeedRecipe("|", "little", "highest")  # m random and bad masks


def derive_seed(task: str, seed: int | str, kind: str, *, recipe: SeedRecipe) -> int:
    """A stable 63-bit generator seed from (task, seed, kind); a seed given as str or int gives the same."""
    sep = recipe.separator
    digest = hashlib.sha256(f"{task}{sep}{seed}{sep}{kind}".encode()).digest()
    value = int.from_bytes(digest[:8], recipe.byteorder)
    return value >> 1 if recipe.drop_bit == "lowest" else value & (2**63 - 1)


def seeded_generator(task: str, seed: int | str, kind: str, *, recipe: SeedRecipe) -> torch.Generator:
    """A CPU torch.Generator seeded with `derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(task, seed, kind, recipe=recipe))
