"""Pattern counts per head over sampled dev examples (`patterns extract`), and the counts files.

Sampling: per (task, seed) `n_examples` dev examples with at least `min_tokens` tokens, drawn with numpy's
generator seeded by (sample_seed, seed): each seed gets its own draw (as the original's single RNG stream did),
and the fine-tuned and pre-trained models of one (task, seed) see the same examples.

Counts file (one per task, seed, model): safetensors with int64 "all/raw", "all/normed", "super/raw",
"super/normed" [layers, heads, 5] = number of maps of each type (types in PATTERN_TYPES order; heads outside the
selection count 0) and uint8 "super/heads" [layers, heads]; metadata names task, seed, model config,
classifiers, network and examples.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertlottery.errors import BertLotteryError
from bertlottery.glue.splits import load_split
from bertlottery.glue.tasks import get_task
from bertlottery.families import SUPER
from bertlottery.io import save_tensors
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.soft_masks import attach_soft_masks, detach_soft_masks
from bertlottery.patterns.attention import KINDS, attention_maps, strip_padding
from bertlottery.patterns.cnn import load_cnn
from bertlottery.patterns.rules import PATTERN_TYPES, RuleClassifier
from bertlottery.progress import tqdm
from bertlottery.runtime import configure_torch, pick_device

MODEL_CONFIGS = ("finetuned", "pretrained")
SELECTIONS = (SUPER, "all")  # the task's super-survivor heads (in the model pruned to them), and every head
# Tasks the paper leaves out of the pattern analysis, with the reason.
LEFT_OUT_TASKS = {"WNLI": "the paper leaves WNLI out: its good masks share no super-survivor heads"}


def pattern_tasks(tasks) -> list[str]:
    """The tasks of the pattern analysis: the run's, less those the paper leaves out (LEFT_OUT_TASKS)."""
    return [task for task in tasks if task not in LEFT_OUT_TASKS]


# --------------------------------------------------------------------------------------------------
# extraction: label counts per head


def sample_examples(lengths: np.ndarray, n_examples: int, min_tokens: int, sample_seed: int, seed: int) -> np.ndarray:
    """Indices of up to n_examples examples with >= min_tokens tokens, in random order (as the original)."""
    eligible = np.flatnonzero(np.asarray(lengths) >= min_tokens)
    rng = np.random.default_rng([sample_seed, seed])
    return rng.permutation(eligible)[:n_examples]


Classifier = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def count_patterns(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                   classifiers: dict[str, Classifier], heads: torch.Tensor | None = None,
                   progress: bool = False, total: int | None = None) -> dict[str, torch.Tensor]:
    """Counts of each type per head, {"raw", "normed"} -> int64 [layers, heads, 5], over every example
    of `batches`. Heads outside `heads` (bool [layers, heads]; None = all) count 0."""
    model.eval()
    device = next(model.parameters()).device
    counts: dict[str, torch.Tensor] = {}
    for batch in tqdm(batches, desc="patterns", total=total, disable=not progress, leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        raw, normed = attention_maps(model, batch)
        for kind, maps in (("raw", raw), ("normed", normed)):
            layers, n_heads = maps.shape[1:3]
            selected = torch.ones(layers, n_heads, dtype=torch.bool) if heads is None else heads.bool().cpu()
            slot = counts.setdefault(kind, torch.zeros(layers, n_heads, len(PATTERN_TYPES), dtype=torch.long))
            for example in strip_padding(maps, batch["attention_mask"]) if selected.any() else []:
                labels = classifiers[kind](example[selected.to(example.device)]).cpu()  # [selected heads]
                slot[selected] += F.one_hot(labels, len(PATTERN_TYPES))
    if not counts:
        raise BertLotteryError("count_patterns: no examples to classify")
    return counts


def save_counts(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    save_tensors(path, tensors, {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})


def load_counts(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BertLotteryError(f"{path}: pattern counts file not found")
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata() or {})
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    missing = {"all/raw", "all/normed"} - set(tensors)
    if missing or meta.get("types") != json.dumps(list(PATTERN_TYPES)):
        raise BertLotteryError(f"{path}: missing {sorted(missing)} or types {meta.get('types')}; "
                               "expected a counts file written by `patterns extract`")
    return tensors, meta


def _classifiers(cnn_dir: str | None, device: torch.device) -> dict[str, Classifier]:
    """The CNN of each kind that has one under cnn_dir (<cnn_dir>/<kind>/card.json), else the rules."""
    chosen: dict[str, Classifier] = {}
    for kind in KINDS:
        folder = Path(cnn_dir) / kind if cnn_dir else None
        chosen[kind] = load_cnn(folder).to(device) if folder and (folder / "card.json").is_file() else RuleClassifier()
    return chosen


@dataclass(frozen=True)
class ExtractJob:
    """One `patterns extract` command (its options, typed)."""

    task: str
    seed: int
    config: str               # MODEL_CONFIGS: fine-tuned or pre-trained
    model: str
    data_dir: str
    output: str
    n_examples: int = 100
    min_tokens: int = 16
    sample_seed: int = 1337
    super_mask: str | None = None
    super_network: str = "pruned"
    cnn_dir: str | None = None
    batch_size: int = 8


def extract(job: ExtractJob) -> None:
    started = time.time()
    configure_torch()
    device = pick_device()
    spec = get_task(job.task)
    split = load_split(job.data_dir, "dev")
    chosen = sample_examples(split.lengths.numpy(), job.n_examples, job.min_tokens, job.sample_seed, job.seed)
    if len(chosen) == 0:
        raise BertLotteryError(f"{job.data_dir}: no dev example has >= {job.min_tokens} tokens (--min-tokens)")
    model = load_classifier(job.model, spec.num_labels, attn_implementation="eager").to(device).eval()
    classifiers = _classifiers(job.cnn_dir, device)

    def batches():
        for start in range(0, len(chosen), job.batch_size):
            batch = split.collate(chosen[start:start + job.batch_size])
            yield {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

    total = -(-len(chosen) // job.batch_size)
    full = count_patterns(model, batches(), classifiers, progress=True, total=total)
    tensors = {f"all/{k}": v for k, v in full.items()}
    meta = {"task": job.task, "seed": str(job.seed), "config": job.config, "model": job.model,
            "types": list(PATTERN_TYPES), "n_examples": str(len(chosen)), "min_tokens": str(job.min_tokens),
            "classifier_raw": classifiers["raw"].name, "classifier_normed": classifiers["normed"].name}
    if job.super_mask:
        mask = HeadMlpMask.load(job.super_mask)
        if job.super_network == "pruned" and mask.heads_kept:
            attach_soft_masks(model, mask)  # checks that the mask fits the model
            sub = count_patterns(model, batches(), classifiers, heads=mask.heads, progress=True, total=total)
            detach_soft_masks(model)
        else:
            check_fits(mask, model)
            sub = {k: v * mask.heads[:, :, None] for k, v in full.items()}
        tensors |= {f"super/{k}": v for k, v in sub.items()} | {"super/heads": mask.heads.to(torch.uint8)}
        meta |= {"super_mask": job.super_mask, "super_network": job.super_network}
    meta["wall_time_s"] = f"{time.time() - started:.1f}"
    save_counts(job.output, {k: v.contiguous() for k, v in tensors.items()}, meta)
    print(f"patterns extract: {job.task} seed {job.seed} {job.config}: {len(chosen)} examples -> {job.output}")
