"""Measured speed of every structured subnetwork of one fine-tuned model (`speed`; beyond the paper).

Each head/MLP mask is applied physically (modeling/pruning.py), so the subnetwork really is a smaller
dense model; it is timed against the full model on the same machine and the same batches:

* inference: one pass (padding-free; padded with training.padding_free: false) over the first
  `speed.max_dev_examples` dev examples (eval mode, no gradients, the evaluation's batch size);
* training: `speed.train_steps` optimizer steps (forward, backward, gradient clipping, AdamW, as the
  fine-tuning loop) on the first batches of the seed's epoch-0 training order, after one untimed step
  (the optimizer's state is allocated there, not in the timed steps).

Timings are interleaved: every round times the full model, then each subnetwork in turn, so slow drifts
of a shared machine (other jobs, clock changes) hit all of them alike; `speed.warmup` rounds come first
and are not kept. The speedup of a round is t_full / t_subnetwork of that round; its median and spread
over `speed.repeats` rounds are reported. On CUDA, torch.cuda.synchronize brackets every timing.
Weight masks (m-pruning) prune single weights: a dense kernel does the same work on a matrix with zeros,
so they get no timing, only their sparsity.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bertlottery.devices import jobs_per_gpu
from bertlottery.errors import BertLotteryError
from bertlottery.glue.splits import TokenizedSplit, load_split
from bertlottery.glue.tasks import get_task
from bertlottery.io import write_json
from bertlottery.masks.types import HeadMlpMask, load_mask_for
from bertlottery.modeling.apply import apply_mask
from bertlottery.modeling.flops import model_cost
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.unpadded import PackedBatch, check_supported, classify
from bertlottery.progress import tqdm
from bertlottery.runtime import (
    autocast,
    configure_torch,
    cpu_model,
    device_name,
    pick_device,
    set_seed,
)
from bertlottery.settings import (
    SpeedSettings,
    TrainingSettings,
    provenance,
)
from bertlottery.train.loop import (
    build_optimizer,
    epoch_order,
    make_batch,
    optimizer_step,
)

FULL = ("full", "none")  # (family, kind) of the full model's row, as `aggregate` names it


def machine_facts(device: torch.device) -> dict:
    """What the timings depend on: CPU model, threads, torch version, device."""
    facts = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
             "torch_interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
             "device": device_name(device), "device_type": device.type, "platform": platform.platform()}
    if device.type == "cuda":
        facts["cuda"] = torch.version.cuda
        # with-gpu slots: up to this many jobs ran on the GPU at once, so timings may include their load
        facts["jobs_per_gpu"] = jobs_per_gpu()
    return facts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(runs: list[Callable[[], None]], *, repeats: int, warmup: int,
                      device: torch.device, progress: bool = False, desc: str = "rounds") -> np.ndarray:
    """Seconds [repeats, len(runs)]: each round calls every run once, in order; warm-up rounds dropped."""
    times = np.empty((repeats, len(runs)))
    for round_ in tqdm(range(warmup + repeats), desc=desc, disable=not progress, leave=False):
        for i, run in enumerate(runs):
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            if round_ >= warmup:
                times[round_ - warmup, i] = time.perf_counter() - start
    return times


def inference_run(model: torch.nn.Module, batches: list, precision: str, device: torch.device):
    """One pass over `batches` in eval mode without gradients (the evaluation's forward)."""
    def run() -> None:
        model.eval()
        with torch.no_grad(), autocast(device, precision):
            for batch in batches:
                classify(model, batch)
    return run


def training_run(model: torch.nn.Module, batches: list, settings: TrainingSettings, device: torch.device):
    """batches[0] untimed (allocates the optimizer's state), then one timed optimizer step per further batch,
    as the fine-tuning loop's step. A fresh optimizer per call: one model's state in memory at a time."""
    def step(optimizer, batch) -> None:
        optimizer_step(model, batch, optimizer, settings, device)

    def run() -> float:
        model.train()
        optimizer = build_optimizer(model, settings, device)
        step(optimizer, batches[0])
        _sync(device)
        start = time.perf_counter()
        for batch in batches[1:]:
            step(optimizer, batch)
        _sync(device)
        return time.perf_counter() - start
    return run


def timed_training(models: list[torch.nn.Module], batches: list, settings: TrainingSettings, speed: SpeedSettings,
                   device: torch.device, progress: bool = False) -> np.ndarray:
    """Seconds per optimizer step [repeats, models], interleaved like `interleaved_times` (only the timed
    steps of each call count: the untimed first step and the optimizer's construction are left out)."""
    runs = [training_run(model, batches, settings, device) for model in models]
    times = np.empty((speed.repeats, len(runs)))
    for round_ in tqdm(range(speed.warmup + speed.repeats), desc="train rounds", disable=not progress, leave=False):
        for i, run in enumerate(runs):
            seconds = run()
            if round_ >= speed.warmup:
                times[round_ - speed.warmup, i] = seconds / (len(batches) - 1)
    return times


def spread(values) -> dict:
    """Median and spread of per-round values (min, max, quartiles)."""
    values = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "min": float(values.min()), "max": float(values.max()), "q1": float(q1),
            "q3": float(q3)}


def dev_batches(split: TokenizedSplit, speed: SpeedSettings, settings: TrainingSettings,
                device: torch.device) -> tuple[list, np.ndarray]:
    """The inference batches (first max_dev_examples dev examples, file order) and their real lengths."""
    n = len(split) if speed.max_dev_examples is None else min(len(split), speed.max_dev_examples)
    pad_to = None if settings.dynamic_padding else settings.max_seq_length
    bs = settings.eval_batch_size
    batches = [make_batch(split, np.arange(start, min(start + bs, n)), pad_to, settings.padding_free, device)
               for start in range(0, n, bs)]
    return batches, split.lengths[:n].numpy()


def train_batches(split: TokenizedSplit, speed: SpeedSettings, settings: TrainingSettings, seed: int,
                  device: torch.device) -> list:
    """1 + train_steps batches of the seed's epoch-0 order (the fine-tuning's first batches)."""
    bs = settings.batch_size
    lengths = split.lengths.numpy() if settings.length_grouping else None
    order = epoch_order(len(split), seed, 0, lengths, bs)
    pad_to = None if settings.dynamic_padding else settings.max_seq_length
    batches = [make_batch(split, order[i * bs:(i + 1) * bs], pad_to, settings.padding_free, device)
               for i in range(speed.train_steps + 1) if i * bs < len(order)]
    if len(batches) < 2:
        raise BertLotteryError(f"speed: the training split has {len(split)} examples: fewer than two batches of "
                               f"{bs} (one untimed, one timed)")
    return batches


def _row(family: str, kind: str, model: torch.nn.Module, size: dict | None, lengths: np.ndarray) -> dict:
    cost = model_cost(model)
    return {"family": family, "kind": kind, "structured": True, "params": cost.parameters,
            "flops_per_token": cost.flops_per_token(lengths), "flops_dev": cost.flops(lengths),
            "per_token_weights": cost.per_token_weights, "attention_width": cost.attention_width,
            "per_sequence_weights": cost.per_sequence_weights,
            "heads_kept": None if size is None else size["heads_kept"],
            "mlps_kept": None if size is None else size["mlps_kept"]}


def measure(pristine: torch.nn.Module, masks: list[tuple[str, str, object]], dev_split: TokenizedSplit,
            train_split: TokenizedSplit, settings: TrainingSettings, speed: SpeedSettings, seed: int,
            device: torch.device, progress: bool = True) -> dict:
    """Rows of the full model and of every mask (family, kind, mask): sizes, FLOPs per token and, for the
    head/MLP masks, the interleaved timings and speedups against the full model."""
    if settings.padding_free:
        check_supported(pristine)
    batches, lengths = dev_batches(dev_split, speed, settings, device)
    steps = train_batches(train_split, speed, settings, seed, device)
    full_size = size_of(pristine, None)
    rows, models = [_row(*FULL, pristine, full_size, lengths)], [copy.deepcopy(pristine).to(device)]
    for family, kind, mask in masks:
        model = copy.deepcopy(pristine)
        if isinstance(mask, HeadMlpMask):
            size = apply_mask(model, mask)  # physically: Q/K/V/MLP matrices really smaller
            rows.append(_row(family, kind, model, size, lengths))
            models.append(model.to(device))
        else:  # a weight mask: the same dense shapes, zeros inside
            size = size_of(pristine, mask)
            cost = model_cost(pristine)
            rows.append({"family": family, "kind": kind, "structured": False, "params": cost.parameters,
                         "flops_per_token": cost.flops_per_token(lengths), "flops_dev": cost.flops(lengths),
                         "sparsity_prunable": 1 - size["prunable_kept"] / size["prunable_total"],
                         "sparsity_all": 1 - size["params_kept"] / size["params_total"],
                         "params_nonzero": size["params_kept"], "heads_kept": None, "mlps_kept": None})
    timed = [row for row in rows if row["structured"]]
    set_seed(seed)  # a seeded run: the timed training steps draw their dropout from a known state
    infer = interleaved_times([inference_run(m, batches, settings.precision, device) for m in models],
                              repeats=speed.repeats, warmup=speed.warmup, device=device, progress=progress,
                              desc="inference rounds")
    train = timed_training(models, steps, settings, speed, device, progress=progress)
    tokens, examples = float(lengths.sum()), len(lengths)
    for i, row in enumerate(timed):
        row |= {"infer_s": infer[:, i].tolist(), "train_step_s": train[:, i].tolist(),
                "infer_tokens_per_s": spread(tokens / infer[:, i]),
                "infer_examples_per_s": spread(examples / infer[:, i]),
                "infer_speedup": spread(infer[:, 0] / infer[:, i]),
                "train_speedup": spread(train[:, 0] / train[:, i])}
    for row in rows:
        row["params_total"] = full_size["params_total"]
        row["flops_fraction"] = row["flops_per_token"] / rows[0]["flops_per_token"]
    return {"rows": rows, "dev_examples": examples, "dev_tokens": int(tokens),
            "train_batches_timed": len(steps) - 1, "train_tokens_timed": sum(map(_tokens, steps[1:]))}


def _tokens(batch) -> int:
    return batch.n_tokens if isinstance(batch, PackedBatch) else int(batch["attention_mask"].sum())


def main_speed(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--model-dir", required=True, help="the fine-tuned model of this task and seed")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--training", required=True, help="resolved training settings (JSON)")
    parser.add_argument("--speed", default="{}", help="the `speed` config section (JSON)")
    parser.add_argument("--mask", action="append", default=[], help="a mask file (repeat for several)")
    parser.add_argument("--family", action="append", default=[], help="the mask's family, one per --mask")
    parser.add_argument("--kind", action="append", default=[], help="the mask's kind, one per --mask")
    parser.add_argument("--output", required=True, help="the speed JSON")
    args = parser.parse_args(argv)
    if not len(args.mask) == len(args.family) == len(args.kind):
        raise BertLotteryError(f"speed: expected one --family and --kind per --mask; got --mask x{len(args.mask)}, "
                               f"--family x{len(args.family)}, --kind x{len(args.kind)}")
    spec = get_task(args.task)
    settings = TrainingSettings.from_arg(args.training, "training")
    speed = SpeedSettings.from_arg(args.speed, "speed")
    configure_torch(settings.tf32, settings.deterministic)
    missing = [path for path in args.mask if not Path(path).is_file()]
    if missing:
        raise BertLotteryError(f"speed: mask file(s) not found: {', '.join(missing)}")
    masks = [(family, kind, load_mask_for(path, task=spec.name, seed=args.seed, family=family, kind=kind))
             for path, family, kind in zip(args.mask, args.family, args.kind)]
    started = time.time()
    device = pick_device()
    pristine = load_classifier(args.model_dir, spec.num_labels, attn_implementation=settings.attention)
    result = measure(pristine, masks, load_split(args.data_dir, spec.dev_splits[0]),
                     load_split(args.data_dir, "train"), settings, speed, args.seed, device)
    record = {"task": spec.name, "seed": args.seed, "machine": machine_facts(device), "speed": speed.to_dict(),
              "training": {key: getattr(settings, key) for key in (
                  "batch_size", "eval_batch_size", "precision", "padding_free", "attention", "max_grad_norm")},
              **result, **provenance(started, speed)}  # the device is in `machine`
    write_json(args.output, record)
    for row in result["rows"]:
        if row["structured"] and "infer_speedup" in row:
            print(f"{spec.name} seed {args.seed} {row['family']}/{row['kind']}: params {row['params']:,}, "
                  f"FLOPs/token {row['flops_per_token']:.3g}, inference x{row['infer_speedup']['median']:.2f}, "
                  f"training step x{row['train_speedup']['median']:.2f}", flush=True)
