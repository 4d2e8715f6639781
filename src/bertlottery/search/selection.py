"""Which heads and MLPs an s-pruning step removes (docs/protocol.md §s-pruning): the phases of each
search mode and the lowest-importance selection. The search loop is in search/spruning.py.

The original's heads-only masks (find_head_masks.py, Appendix B) never remove a layer's last head (its
rule: no head is masked in a layer with one head left), so a heads-only step skips such heads
(`s_pruning.heads_only_empty_layers: false`); the joint search's phases may empty a layer, as the original's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bertlottery.errors import BertLotteryError

MODES = ("joint", "heads", "mlps")


@dataclass(frozen=True)
class Phase:
    name: str
    heads_per_step: int  # 0: heads are not pruned in this phase
    mlps_per_step: int
    keep_last_head: bool = False  # never remove a layer's last kept head


def phases_for(mode: str, n_layers: int, n_heads: int, amount: float,
               heads_only_empty_layers: bool = False) -> list[Phase]:
    """The original's phases; 14 = max(1, int(0.1 * 144)) heads per step for bert-base."""
    n = max(1, int(n_layers * n_heads * amount))
    if mode == "joint":
        return [Phase("joint", n, 1), Phase("heads", n // 2, 0), Phase("mlps", 0, 1)]
    if mode == "heads":  # keyed on the mode: the joint search's phase 2 is also named "heads"
        return [Phase("heads", n, 0, keep_last_head=not heads_only_empty_layers)]
    if mode == "mlps":
        return [Phase("mlps", 0, 1)]
    raise BertLotteryError(f"s-pruning mode {mode!r}: expected one of {', '.join(MODES)}")


def lowest_unmasked(importance: torch.Tensor, kept: torch.Tensor, n: int) -> torch.Tensor:
    """Flat indices of up to n kept elements with the lowest importance (ties: lower index first)."""
    scores = importance.reshape(-1).clone().float()
    live = kept.reshape(-1)
    if torch.isnan(scores[live]).any():
        raise BertLotteryError(f"importance scores: {int(torch.isnan(scores[live]).sum())} of the {int(live.sum())} "
                               "kept units are NaN (a diverged model?); no unit is pruned by them")
    scores[~live] = float("inf")
    order = torch.sort(scores, stable=True).indices[:n]
    return order[torch.isfinite(scores[order])]


def lowest_keeping_one_per_layer(importance: torch.Tensor, kept: torch.Tensor, n: int) -> torch.Tensor:
    """Like lowest_unmasked, in the same order, but skipping any head whose layer would be left with no
    kept head (the heads picked earlier in this step count): fewer than n when too few are eligible."""
    candidates = lowest_unmasked(importance, kept, kept.numel())
    left = kept.sum(-1).tolist()  # kept heads per layer
    picked = []
    for index in candidates.tolist():
        layer = index // kept.shape[-1]
        if left[layer] > 1:
            left[layer] -= 1
            picked.append(index)
            if len(picked) == n:
                break
    return torch.tensor(picked, dtype=torch.long)


def propose(phase: Phase, heads: torch.Tensor, mlps: torch.Tensor, head_imp: torch.Tensor,
            mlp_imp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The next candidate masks of a phase, or None when the phase has nothing left to prune."""
    new_heads, new_mlps = heads.clone(), mlps.clone()
    prunes_heads = phase.name in ("joint", "heads")
    if prunes_heads:
        select = lowest_keeping_one_per_layer if phase.keep_last_head else lowest_unmasked
        picked = select(head_imp, heads, phase.heads_per_step)
        if len(picked) == 0:  # nothing left (or nothing eligible) to prune
            return None
        new_heads.view(-1)[picked] = False
    if phase.mlps_per_step:
        picked = lowest_unmasked(mlp_imp, mlps, phase.mlps_per_step)
        if len(picked) == 0:
            return None
        new_mlps[picked] = False
    return new_heads, new_mlps
