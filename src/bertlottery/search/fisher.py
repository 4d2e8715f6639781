"""f-masks: Fisher-based structured masks (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for
Transformers"; docs/protocol.md §f-pruning), sized like the s-good mask of the same task and seed.

One pass over `n_examples` training examples (eval mode, no dropout) with every head and MLP soft mask at
1: each batch's mean loss is differentiated with respect to the mask variables, and the squared
gradients are summed over batches. This is the diagonal of the empirical Fisher information of the
masks as the reference code computes it (prune/fisher.py: one gradient per batch of 32, squared, summed
over batches; the examples drawn with replacement). `batch_size: 1` gives the per-example sum
(1/|D|) sum_i (dL_i/dm)^2 of the paper's formula, up to the constant 1/|D|, which no ranking sees.

The mask keeps the heads (ranked over all layers x heads) and the MLPs (ranked over layers) with the
highest Fisher information, as many of each as the s-good mask: under the diagonal approximation the
loss increase of removing a set of units is half the sum of their Fisher values, so the top-k units
minimise it for a given count. Ties: the lower flat index is kept. Kwon et al.'s unit of the MLP is a
neuron; here it is the whole MLP block (the paper's unit), so an MLP's score is the squared gradient
of its block multiplier. Their later steps (mask rearrangement with the block-diagonal Fisher, mask
tuning by least squares) give non-binary or latency-constrained masks and are not part of family f.
The pass costs about one epoch of `n_examples` forward+backward passes: it is not resumable.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from bertlottery.errors import BertLotteryError
from bertlottery.glue.splits import TokenizedSplit, load_split
from bertlottery.glue.tasks import TaskSpec
from bertlottery.families import FISHER
from bertlottery.io import write_json
from bertlottery.layout import SEARCH_RECORD, mask_name
from bertlottery.masks.seeds import S_MASKS, derive_seed
from bertlottery.masks.types import HeadMlpMask, load_mask_for
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.soft_masks import attach_soft_masks, detach_soft_masks
from bertlottery.modeling.structure import encoder_layers, layer_parts
from bertlottery.modeling.unpadded import PackedBatch, classify
from bertlottery.progress import tqdm
from bertlottery.runtime import device_name
from bertlottery.search.inputs import SearchJob, load_search_inputs, search_parser
from bertlottery.search.spruning import task_loss
from bertlottery.settings import provenance
from bertlottery.train.evaluation import iterate_batches, to_device

SAMPLE_KIND = "fisher-sample"  # the (task, seed, kind) of the example draw's seed (masks.seeds)


def sample_examples(n_rows: int, n_examples: int, *, replacement: bool, seed: int) -> np.ndarray:
    """Row indices of the training examples of the Fisher pass. With replacement (the reference code's
    np.random.choice) any count works; without, the count is capped at the split's size."""
    if n_rows < 1:
        raise BertLotteryError("f-pruning: the training split is empty")
    rng = np.random.default_rng(seed)
    if replacement:
        return rng.integers(0, n_rows, size=n_examples)
    return rng.permutation(n_rows)[: min(n_examples, n_rows)]


class FisherPass(NamedTuple):
    """The diagonal Fisher information of the head ([L, H]) and MLP ([L]) masks, and the per-batch
    gradients it is summed from ([batches, L, H], [batches, L]: the rearrangement's block-diagonal Fisher)."""

    heads: torch.Tensor
    mlps: torch.Tensor
    head_grads: torch.Tensor
    mlp_grads: torch.Tensor


def fisher_information(model: torch.nn.Module, spec: TaskSpec, split: TokenizedSplit, order: np.ndarray, *,
                       batch_size: int = 32, padding_free: bool = True,
                       progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over batches of the squared gradient of the batch's mean loss with respect to each head
    ([L, H]) and MLP ([L]) mask variable, all masks at 1 (CPU float32). Only the masks get gradients."""
    result = fisher_pass(model, spec, split, order, batch_size=batch_size, padding_free=padding_free,
                         progress=progress)
    return result.heads, result.mlps


def fisher_pass(model: torch.nn.Module, spec: TaskSpec, split: TokenizedSplit, order: np.ndarray, *,
                batch_size: int = 32, padding_free: bool = True, progress: bool = False) -> FisherPass:
    """fisher_information with the per-batch gradients kept (CPU float32)."""
    soft = attach_soft_masks(model)
    head_grads, mlp_grads = [], []
    try:
        model.eval()  # no dropout, as the reference code
        device = soft.heads.device
        soft.requires_grad_(True)
        heads, mlps = torch.zeros_like(soft.heads), torch.zeros_like(soft.mlps)
        total = -(-len(order) // batch_size)
        for batch in tqdm(iterate_batches(split, batch_size, order=order), total=total, desc="fisher",
                          disable=not progress, leave=False):
            labels = batch.pop("labels").to(device)
            batch = PackedBatch.from_padded(batch).to(device) if padding_free else to_device(batch, device)
            loss = task_loss(spec, classify(model, batch).logits, labels)
            g_heads, g_mlps = torch.autograd.grad(loss, [soft.heads, soft.mlps], allow_unused=True)
            # None: the loss never reached those mask variables (a hook did not fire); zeros would give a
            # plausible but arbitrary mask.
            for name, grad in (("head", g_heads), ("MLP", g_mlps)):
                if grad is None:
                    raise BertLotteryError(f"Fisher scores: the loss does not depend on the {name} mask variables "
                                           "(its mask hooks did not run); is this a supported encoder?")
            heads += g_heads.detach().pow(2)
            mlps += g_mlps.detach().pow(2)
            head_grads.append(g_heads.detach().cpu().float())
            mlp_grads.append(g_mlps.detach().cpu().float())
    finally:
        detach_soft_masks(model)
    return FisherPass(heads.cpu().float(), mlps.cpu().float(), torch.stack(head_grads), torch.stack(mlp_grads))


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A bool tensor shaped like scores with the k highest True (ties: the lower flat index first)."""
    flat = scores.reshape(-1)
    if not torch.isfinite(flat).all():
        raise BertLotteryError(f"Fisher scores: {int((~torch.isfinite(flat)).sum())} of {flat.numel()} are NaN or "
                               "infinite (a diverged model?); no mask is chosen from them")
    if not 0 <= k <= flat.numel():
        raise BertLotteryError(f"cannot keep {k} of {flat.numel()} units")
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.sort(-flat, stable=True).indices[:k]] = True
    return keep.reshape(scores.shape)


def fisher_mask(head_fisher: torch.Tensor, mlp_fisher: torch.Tensor, reference: HeadMlpMask,
                counts: tuple[int, int] | None = None) -> HeadMlpMask:
    """Heads and MLPs of highest Fisher information, as many of each as `reference` keeps (or `counts`)."""
    if tuple(head_fisher.shape) != tuple(reference.heads.shape):
        raise BertLotteryError(f"Fisher scores of heads {list(head_fisher.shape)} do not fit the reference "
                               f"mask's heads {list(reference.heads.shape)}")
    heads_kept, mlps_kept = counts or (reference.heads_kept, reference.mlps_kept)
    return HeadMlpMask(top_k(head_fisher, heads_kept), top_k(mlp_fisher, mlps_kept), meta={},
                       head_importance=head_fisher, mlp_importance=mlp_fisher)


# ----------------------------------------------------------------------------------------------
# Kwon et al.'s mask rearrangement and FLOPs-constrained split


def rearrange_layer(keep: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Kwon et al.'s greedy mask rearrangement of one layer: keep [units] bool, grads [batches, units].

    The layer's pruned count n stays. Under the block-diagonal Fisher the loss increase of pruning a set Z
    is proportional to sum over batches of (sum over Z of the units' gradients)^2 = ||sum_Z g_i||^2 with
    g_i a unit's vector of per-batch gradients. Start from the n units of lowest diagonal Fisher
    ||g_i||^2; then for each other unit, in ascending order of it, add it to Z and drop from Z the unit
    whose removal leaves the smallest ||sum_Z g||^2 (which may be the one just added). Ties: the first."""
    n_pruned = int((~keep).sum())
    if n_pruned in (0, keep.numel()):
        return keep.clone()
    vectors = grads.T.double()  # [units, batches]
    order = torch.sort(vectors.pow(2).sum(1), stable=True).indices.tolist()
    pruned = order[:n_pruned]
    for unit in order[n_pruned:]:
        pruned.append(unit)
        chosen = vectors[pruned]
        without_each = chosen.sum(0) - chosen  # row j: the sum over Z without its j-th unit
        del pruned[int(without_each.pow(2).sum(1).argmin())]
    result = torch.ones_like(keep)
    result[pruned] = False
    return result


def rearrange_heads(mask: HeadMlpMask, head_grads: torch.Tensor) -> HeadMlpMask:
    """The mask with each layer's heads rearranged (rearrange_layer); MLPs and scores unchanged."""
    heads = torch.stack([rearrange_layer(mask.heads[i], head_grads[:, i]) for i in range(mask.heads.shape[0])])
    return HeadMlpMask(heads, mask.mlps.clone(), meta={}, head_importance=mask.head_importance,
                       mlp_importance=mask.mlp_importance)


def unit_flops(model: torch.nn.Module, seq_length: int) -> tuple[float, float]:
    """Multiply-accumulates of one head and of one MLP block over a sequence of seq_length tokens, from the
    (unpruned) model's first layer: a head's rows of Q, K, V (and of DeBERTa's position projections) and
    its columns of the output projection per token, plus its attention product 2 n^2 d; an MLP's two
    dense layers per token. For BERT these are Kwon et al.'s mac_per_head and intermediate x mac_per_neuron."""
    parts = layer_parts(encoder_layers(model)[0])
    per_token = sum(lin.weight.numel() for lin in parts.head_projections) / parts.num_heads
    per_token += parts.head_size * parts.attn_dense.weight.shape[0]
    head = seq_length * per_token + 2 * seq_length**2 * parts.head_size
    mlp = seq_length * (parts.intermediate_dense.weight.numel() + parts.output_dense.weight.numel())
    return float(head), float(mlp)


def flops_split(head_fisher: torch.Tensor, mlp_fisher: torch.Tensor, budget: float, head_flops: float,
                mlp_flops: float) -> tuple[int, int]:
    """Kwon et al.'s FLOPs-constrained search: for each count of heads h >= 1 whose FLOPs fit the budget,
    the MLPs filling the rest (floor((budget - h * head) / mlp), at most all); keep the (h, MLP count) whose
    top-ranked units have the largest summed Fisher information (the first such h on ties)."""
    heads = torch.sort(head_fisher.reshape(-1).double(), descending=True, stable=True).values
    mlps = torch.sort(mlp_fisher.reshape(-1).double(), descending=True, stable=True).values
    best, best_total = None, -1.0
    for n_heads in range(1, heads.numel() + 1):
        left = budget - n_heads * head_flops
        if left < 0:  # the reference code scores these too (MLPs floored at 0); they break the budget
            break
        n_mlps = min(int(left // mlp_flops), mlps.numel())
        total = float(heads[:n_heads].sum() + mlps[:n_mlps].sum())
        if total > best_total:
            best, best_total = (n_heads, n_mlps), total
    if best is None:
        raise BertLotteryError(f"f-pruning: a FLOPs budget of {budget:.4g} does not fit one head "
                               f"({head_flops:.4g}); raise f_pruning.flops_fraction")
    return best


# ----------------------------------------------------------------------------------------------
# Command line


def choose_mask(model: torch.nn.Module, fisher: FisherPass, reference: HeadMlpMask,
                settings) -> tuple[HeadMlpMask, dict]:
    """The f-good mask by the settings' counts rule and rearrangement, and what the search record says of it."""
    record: dict = {"counts": settings.counts, "rearranged": settings.rearrange}
    counts = None
    if settings.counts == "flops":
        head, mlp = unit_flops(model, settings.flops_seq_length)
        full = reference.heads.numel() * head + reference.mlps.numel() * mlp
        fraction = settings.flops_fraction
        if fraction is None:  # the s-good mask's share of the heads' and MLPs' FLOPs
            fraction = (reference.heads_kept * head + reference.mlps_kept * mlp) / full
        counts = flops_split(fisher.heads, fisher.mlps, fraction * full, head, mlp)
        record.update(flops_fraction=fraction, head_flops=head, mlp_flops=mlp, flops_seq_length=settings.flops_seq_length)
    mask = fisher_mask(fisher.heads, fisher.mlps, reference, counts)
    if settings.rearrange:
        before = mask.heads.clone()
        mask = rearrange_heads(mask, fisher.head_grads)
        record["heads_moved_by_rearrangement"] = int((before & ~mask.heads).sum())
    return mask, record


def main_find_f_mask(argv: list[str]) -> None:
    parser = search_parser("bertlottery find-f-mask", __doc__.split("\n")[0], "f_pruning")
    parser.add_argument("--reference", required=True,
                        help="the s-good mask of the same task and seed: how many heads and MLPs to keep "
                             "(f_pruning.counts: flops: their FLOPs)")
    args = parser.parse_args(argv)
    reference = load_mask_for(args.reference, task=args.task, seed=args.seed, family="s", kind="good")
    inputs = load_search_inputs(SearchJob.from_args(args, "f_pruning"))
    spec, settings, model = inputs.spec, inputs.settings, inputs.model
    check_fits(reference, model)
    train = load_split(args.data_dir, "train")
    sample_seed = derive_seed(spec.name, args.seed, SAMPLE_KIND, recipe=S_MASKS)
    order = sample_examples(len(train), settings.n_examples, replacement=settings.replacement, seed=sample_seed)
    fisher = fisher_pass(model, spec, train, order, batch_size=settings.batch_size,
                         padding_free=args.padding_free, progress=True)
    mask, choice = choose_mask(model, fisher, reference, settings)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = "as many heads and MLPs as the s-good mask" if settings.counts == "s_good" else \
        "heads and MLPs split under a FLOPs budget (Kwon et al.)"
    mask.save(out / mask_name("good"), task=spec.name, seed=str(args.seed), family=FISHER, kind="good",
              method=f"f-pruning: highest diagonal Fisher information of the head/MLP masks (Kwon et al. 2022), "
                     f"{counts}{', heads rearranged per layer' if settings.rearrange else ''}",
              reference=str(args.reference), heads_total=str(mask.heads.numel()), mlps_total=str(mask.mlps.numel()))
    write_json(out / SEARCH_RECORD, {
        "task": spec.name, "seed": args.seed, "family": FISHER, "method": "fisher",
        "n_examples": int(len(order)), "n_distinct_examples": int(len(np.unique(order))),
        "train_rows": len(train), "sample_seed": sample_seed, "reference": str(args.reference),
        "heads_kept": mask.heads_kept, "mlps_kept": mask.mlps_kept, **choice,
        "mask_size": size_of(model.config, mask), "settings": settings.to_dict(),
        **provenance(inputs.started, settings, device_name(inputs.device)),
    })
    print(f"{spec.name} seed {args.seed} f: heads {mask.heads_kept}, MLPs {mask.mlps_kept} "
          f"(Fisher over {len(order)} training examples, batches of {settings.batch_size})")
