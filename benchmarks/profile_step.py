"""Where a padding-free training step spends its time on the CPU: torch.profiler over a few steps of
bertlottery's own loop (`optimizer_step`, the default training settings), operators summed by kind.

    python benchmarks/profile_step.py --model ../shared/models/all-MiniLM-L6-v2-fp16 \\
        --glue-dir ../shared/data/glue --task RTE --steps 8 --threads 2

Prints one row per kind (linear matmuls, attention, dropout, LayerNorm, GELU, optimizer, row gather and
scatter, copies and fills, other operators) with its share of the operators' self CPU time, then the 15
largest operators. The time outside any operator (Python) is the step's wall time minus theirs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bertlottery.glue.prepare import prepare_data
from bertlottery.glue.splits import load_split
from bertlottery.glue.tasks import get_task
from bertlottery.modeling.loading import load_classifier
from bertlottery.settings import TrainingSettings, training_defaults
from bertlottery.train.loop import build_optimizer, epoch_order, make_batch, optimizer_step

KINDS = {  # operator name (aten::...) -> kind; the rest is "other"
    "linear matmuls": ("mm", "addmm", "linear", "matmul"),
    "attention": ("bmm", "_softmax", "_softmax_backward_data", "_scaled_dot_product_attention_math",
                  "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward",
                  "baddbmm", "isneginf", "all", "where", "masked_fill"),
    "dropout": ("bernoulli_", "native_dropout", "native_dropout_backward"),
    "LayerNorm": ("native_layer_norm", "native_layer_norm_backward"),
    "GELU": ("gelu", "gelu_backward"),
    "optimizer": ("_fused_adamw_", "_foreach_norm", "linalg_vector_norm", "_foreach_mul_", "clamp"),
    "row gather/scatter": ("index_select", "index_copy", "index_copy_", "scatter_add_", "index_add_",
                           "embedding_dense_backward", "embedding"),
    "copies and fills": ("copy_", "fill_", "zero_", "clone", "contiguous"),
}
KIND_OF = {f"aten::{name}": kind for kind, names in KINDS.items() for name in names}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--task", default="RTE")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--training", default="{}", help="JSON overrides of the training defaults")
    return p.parse_args(argv)


def batches(args, work: Path, settings: TrainingSettings) -> list:
    examples = settings.batch_size * (args.steps + 1)
    prepare_data(args.task, args.model, work, glue_dir=args.glue_dir, max_train_examples=examples,
                 max_dev_examples=8, subsample_seed=0, max_seq_length=settings.max_seq_length)
    split = load_split(work, "train")
    order = epoch_order(len(split), 1, 0, None, settings.batch_size)
    return [make_batch(split, order[i:i + settings.batch_size], None, settings.padding_free, torch.device("cpu"))
            for i in range(0, len(order), settings.batch_size)]


def by_kind(prof) -> tuple[dict[str, float], list]:
    seconds: dict[str, float] = defaultdict(float)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    for event in events:
        seconds[KIND_OF.get(event.key, "other")] += event.self_cpu_time_total / 1e6
    return dict(seconds), sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]


def main(argv=None) -> None:
    import json

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = TrainingSettings.from_dict(training_defaults() | {"checkpoint_every_steps": 0}
                                          | json.loads(args.training), where="--training")
    with tempfile.TemporaryDirectory() as tmp:
        steps = batches(args, Path(tmp), settings)
    model = load_classifier(args.model, get_task(args.task).num_labels).train()
    optimizer = build_optimizer(model, settings, torch.device("cpu"))
    optimizer_step(model, steps[0], optimizer, settings, torch.device("cpu"))  # warm-up, not profiled
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in steps[1:]:
            optimizer_step(model, batch, optimizer, settings, torch.device("cpu"))
    wall = time.perf_counter() - started
    seconds, largest = by_kind(prof)
    total = sum(seconds.values())
    print(f"{args.task}, {len(steps) - 1} steps, {args.threads} threads: {wall / (len(steps) - 1):.2f} s wall per step "
          f"(profiled); operators' self CPU time {total:.1f} s")
    print("| kind | share of operator time |\n|---|---:|")
    for kind, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {100 * value / total:.1f} % |")
    print("\nlargest operators:")
    for event in largest:
        print(f"  {event.key:<45} {event.self_cpu_time_total / 1e6:8.2f} s  {event.count:6d} calls")


if __name__ == "__main__":
    main()
