"""The rule-based pattern classifier (thresholds in `RuleThresholds`) and synthetic maps of each type.

The rules look only at the row-normalised image (no token ids), so they apply to the original's labelled
.npy maps too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bertlottery.errors import BertLotteryError

PATTERN_TYPES = ("heterogeneous", "block", "diagonal", "vertical", "vertical+diagonal")


# --------------------------------------------------------------------------------------------------
# rule-based classifier


@dataclass(frozen=True)
class RuleThresholds:
    """Thresholds of the rule classifier. Masses are fractions of a row-normalised map's total mass
    (each query row sums to 1, so "mass" = average share of a query's attention)."""

    stripe_min_mass: float = 0.08
    """A column (key) is a vertical stripe if its mean attention over queries is at least this ..."""
    stripe_uniform_ratio: float = 1.5
    """... and at least this many times the uniform share 1/n (guards short sequences) ..."""
    stripe_min_median: float = 0.05
    """... and at least half of the queries give it this much or more (a stripe spans the map) ..."""
    max_stripes: int = 6
    """... and it is among the `max_stripes` heaviest columns ([CLS], [SEP]s, a few punctuation marks)."""
    diagonal_width: int = 2
    """The diagonal band: keys j with |i - j| <= width (previous, own and next token)."""
    vertical_min: float = 0.4
    """vertical: at least this mass on the stripes."""
    diagonal_min: float = 0.4
    """diagonal: at least this mass in the band (stripe columns excluded)."""
    mixed_min_each: float = 0.15
    """vertical+diagonal: at least this on the stripes and at least this in the band ..."""
    mixed_min_total: float = 0.5
    """... and at least this on both together."""
    block_min_mass: float = 0.8
    """block: the best split into two contiguous segments keeps at least this mass inside the segments ..."""
    block_min_uniformity: float = 0.8
    """... and within its segment a query's attention has normalised entropy at least this (1 = uniform)."""
    min_block_tokens: int = 3
    """Smallest segment of a split, in tokens ..."""
    min_block_fraction: float = 0.2
    """... and as a fraction of the sequence (the larger of the two applies)."""


def row_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum 1 (raw maps already do; normed maps do not). All-zero rows stay zero."""
    maps = maps.float()
    return maps / maps.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def map_features(maps: torch.Tensor, th: RuleThresholds = RuleThresholds()) -> dict[str, torch.Tensor]:
    """Per map of a [M, n, n] stack: vertical, diagonal, block_mass, block_uniformity (each [M]) and
    the split position of the best two-block segmentation (0 when n is too short to split)."""
    p = row_normalize(maps)
    m, n, _ = p.shape
    col = p.mean(dim=1)
    top = col.topk(min(th.max_stripes, n), dim=1)
    cutoff = max(th.stripe_min_mass, th.stripe_uniform_ratio / n)
    broad = p.median(dim=1).values >= th.stripe_min_median
    heavy = torch.zeros_like(col, dtype=torch.bool).scatter_(1, top.indices, top.values >= cutoff)
    stripes = heavy & broad
    vertical = (col * stripes).sum(dim=1)  # = mean over queries of the mass on stripe columns
    diagonal = torch.zeros_like(vertical)
    for offset in range(-th.diagonal_width, th.diagonal_width + 1):
        if abs(offset) < n:  # cells (i, i + offset), counted unless their column is a stripe
            cells = p.diagonal(offset=offset, dim1=1, dim2=2)
            keys = stripes[:, max(offset, 0):n + min(offset, 0)]
            diagonal += (cells * ~keys).sum(dim=1) / n
    mass, uniformity, split = _two_blocks(p, th)
    return {"vertical": vertical, "diagonal": diagonal, "block_mass": mass,
            "block_uniformity": uniformity, "split": split}


def _two_blocks(p: torch.Tensor, th: RuleThresholds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The split s maximising the mass in [0,s)x[0,s) + [s,n)x[s,n), via 2-D prefix sums."""
    m, n, _ = p.shape
    low = max(th.min_block_tokens, math.ceil(th.min_block_fraction * n))
    zeros = torch.zeros(m, device=p.device)
    if n < 2 * low:
        return zeros, zeros, zeros.long()
    c = p.cumsum(1).cumsum(2)
    s = torch.arange(low, n - low + 1, device=p.device)
    total = c[:, -1, -1, None]
    top_left = c[:, s - 1, s - 1]
    bottom_right = total - c[:, s - 1, -1] - c[:, -1, s - 1] + top_left
    best = ((top_left + bottom_right) / total.clamp_min(1e-12)).max(dim=1)
    split = s[best.indices]
    idx = torch.arange(n, device=p.device)
    segment = idx[None, :] >= split[:, None]
    same = segment[:, :, None] == segment[:, None, :]
    inside = p * same
    q = inside / inside.sum(-1, keepdim=True).clamp_min(1e-12)
    entropy = -(q * q.clamp_min(1e-12).log()).sum(-1)
    size = same.sum(-1).float()
    uniformity = (entropy / size.log().clamp_min(1e-12)).mean(dim=1)
    return best.values, uniformity, split


def classify_features(f: dict[str, torch.Tensor], th: RuleThresholds = RuleThresholds()) -> torch.Tensor:
    """Type indices (PATTERN_TYPES). Precedence: vertical+diagonal > vertical > block > diagonal >
    heterogeneous (block before diagonal: a uniform small block also fills the diagonal band)."""
    v, d = f["vertical"], f["diagonal"]
    labels = torch.full_like(v, PATTERN_TYPES.index("heterogeneous"), dtype=torch.long)
    rules = [  # lowest precedence first: later rules overwrite
        ("diagonal", d >= th.diagonal_min),
        ("block", (f["block_mass"] >= th.block_min_mass) & (f["block_uniformity"] >= th.block_min_uniformity)),
        ("vertical", v >= th.vertical_min),
        ("vertical+diagonal", (v >= th.mixed_min_each) & (d >= th.mixed_min_each) & (v + d >= th.mixed_min_total)),
    ]
    for name, hit in rules:
        labels[hit] = PATTERN_TYPES.index(name)
    return labels


@dataclass(frozen=True)
class RuleClassifier:
    """Maps [M, n, n] -> type indices [M] by `RuleThresholds`."""

    thresholds: RuleThresholds = RuleThresholds()
    name: str = "rules"

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        return classify_features(map_features(maps, self.thresholds), self.thresholds)


# --------------------------------------------------------------------------------------------------
# synthetic maps (tests, Figure 4a, CNN checks)


def synthetic_map(pattern: str, n: int, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """A row-stochastic n x n map of one type, mixed with a share `noise` of Dirichlet(1) rows."""
    i = np.arange(n)
    if pattern == "vertical":
        p = _stripes(n, rng)
    elif pattern == "diagonal":
        p = _diagonal(n, rng)
    elif pattern == "vertical+diagonal":
        p = 0.5 * _stripes(n, rng) + 0.5 * _diagonal(n, rng)
    elif pattern == "block":
        split = int(rng.integers(round(0.3 * n), round(0.7 * n) + 1))
        segment = i >= split
        p = (segment[:, None] == segment[None, :]).astype(float)
    elif pattern == "heterogeneous":
        p = np.zeros((n, n))
        for row in range(n):
            allowed = np.flatnonzero(np.abs(i - row) > 2)  # off the diagonal band
            cols = rng.choice(allowed, size=min(int(rng.integers(2, 5)), len(allowed)), replace=False)
            p[row, cols] = rng.dirichlet(np.ones(len(cols)))
    else:
        raise BertLotteryError(f"synthetic_map: pattern {pattern!r}; expected one of {PATTERN_TYPES}")
    p = p / p.sum(axis=1, keepdims=True)
    return (1 - noise) * p + noise * rng.dirichlet(np.ones(n), size=n)


def _stripes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Attention to [CLS] (0), final [SEP] (n-1) and/or a middle [SEP]: most mass on 1-3 columns."""
    options = [[0], [n - 1], [0, n - 1], [0, n // 2, n - 1]]
    cols = options[int(rng.integers(len(options)))]
    p = np.full((n, n), 0.05 / n)
    p[:, cols] += 0.95 * rng.dirichlet(np.full(len(cols), 2.0), size=n)
    return p


def _diagonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Attention to the previous or the next token (plus some to itself)."""
    i = np.arange(n)
    p = np.zeros((n, n))
    p[i, np.clip(i + int(rng.choice([-1, 1])), 0, n - 1)] += 0.8
    p[i, i] += 0.2
    return p
