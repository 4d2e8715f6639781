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


def fisher_information(model: torch.nn.Module, spec: TaskSpec, split: TokenizedSplit, order: np.ndarray, *,
                       batch_size: int = 32, padding_free: bool = True,
                       progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over batches of the squared gradient of the batch's mean loss with respect to each head
    ([L, H]) and MLP ([L]) mask variable, all masks at 1 (CPU float32). Only the masks get gradients."""
    soft = attach_soft_masks(model)
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
    finally:
        detach_soft_masks(model)
    return heads.cpu().float(), mlps.cpu().float()


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


def fisher_mask(head_fisher: torch.Tensor, mlp_fisher: torch.Tensor, reference: HeadMlpMask) -> HeadMlpMask:
    """Heads and MLPs of highest Fisher information, as many of each as `reference` keeps."""
    if tuple(head_fisher.shape) != tuple(reference.heads.shape):
        raise BertLotteryError(f"Fisher scores of heads {list(head_fisher.shape)} do not fit the reference "
                               f"mask's heads {list(reference.heads.shape)}")
    return HeadMlpMask(top_k(head_fisher, reference.heads_kept), top_k(mlp_fisher, reference.mlps_kept), meta={},
                       head_importance=head_fisher, mlp_importance=mlp_fisher)


# ----------------------------------------------------------------------------------------------
# Command line


def main_find_f_mask(argv: list[str]) -> None:
    parser = search_parser("bertlottery find-f-mask", __doc__.split("\n")[0], "f_pruning")
    parser.add_argument("--reference", required=True,
                        help="the s-good mask of the same task and seed: how many heads and MLPs to keep")
    args = parser.parse_args(argv)
    reference = load_mask_for(args.reference, task=args.task, seed=args.seed, family="s", kind="good")
    inputs = load_search_inputs(SearchJob.from_args(args, "f_pruning"))
    spec, settings, model = inputs.spec, inputs.settings, inputs.model
    check_fits(reference, model)
    train = load_split(args.data_dir, "train")
    sample_seed = derive_seed(spec.name, args.seed, SAMPLE_KIND, recipe=S_MASKS)
    order = sample_examples(len(train), settings.n_examples, replacement=settings.replacement, seed=sample_seed)
    heads, mlps = fisher_information(model, spec, train, order, batch_size=settings.batch_size,
                                     padding_free=args.padding_free, progress=True)
    mask = fisher_mask(heads, mlps, reference)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mask.save(out / mask_name("good"), task=spec.name, seed=str(args.seed), family=FISHER, kind="good",
              method="f-pruning: highest diagonal Fisher information of the head/MLP masks (Kwon et al. 2022), "
                     "as many heads and MLPs as the s-good mask",
              reference=str(args.reference), heads_total=str(mask.heads.numel()), mlps_total=str(mask.mlps.numel()))
    write_json(out / SEARCH_RECORD, {
        "task": spec.name, "seed": args.seed, "family": FISHER, "method": "fisher",
        "n_examples": int(len(order)), "n_distinct_examples": int(len(np.unique(order))),
        "train_rows": len(train), "sample_seed": sample_seed, "reference": str(args.reference),
        "heads_kept": mask.heads_kept, "mlps_kept": mask.mlps_kept,
        "mask_size": size_of(model.config, mask), "settings": settings.to_dict(),
        **provenance(inputs.started, settings, device_name(inputs.device)),
    })
    print(f"{spec.name} seed {args.seed} f: heads {mask.heads_kept}, MLPs {mask.mlps_kept} "
          f"(Fisher over {len(order)} training examples, batches of {settings.batch_size})")
