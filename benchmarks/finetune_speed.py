"""Fine-tuning speed: a plain HuggingFace Trainer fine-tune against bertlottery's own loop.

In one process, on the same examples, device and seed, this runs
  (a) `transformers.Trainer` in fp32 with every example padded to 128 tokens (what a user would write),
  (b) `bertlottery.train.loop.train` with bertlottery's defaults (schema defaults, optionally --training JSON),
  (c) (b) again on a physically pruned s-subnetwork that keeps a seeded random 50 % of the heads,
and reports examples/s, real (non-pad) tokens/s, peak memory, wall time, achieved TFLOP/s and, on a GPU
with a known peak, MFU against the device's dense bf16 peak; the dev score of each run; and a cost model
(device-hours of the study's fine-tunes at the measured throughput). Results go to a JSON file, a Markdown
table is printed, and the last line is `speedup_vs_trainer=<(b) examples/s / (a) examples/s>
fraction_of_matmul_peak=<(b) TFLOP/s / the fp32 matmul rate of its own linear shapes>` (that rate is
measured in the same process and threads right after each run of (b) and (c), on the run's mean tokens
per batch).

    python benchmarks/finetune_speed.py --quick --model PATH --glue-dir PATH --task RTE

See docs/benchmarks.md for the measured numbers and the GPU command (`--random-init-config bert-base`).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from bertlottery.errors import BertLotteryError
from bertlottery.glue.metrics import reported, task_metrics
from bertlottery.glue.prepare import prepare_data, subsample_indices
from bertlottery.glue.reading import read_examples
from bertlottery.glue.splits import load_split
from bertlottery.glue.tasks import get_task
from bertlottery.io import write_json
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.apply import apply_mask
from bertlottery.modeling.fit import full_head_mlp_mask
from bertlottery.runtime import configure_torch, device_name, pick_device, set_seed
from bertlottery.settings import (
    TrainingSettings,
    library_versions,
    parse_json_arg,
    resolve_training,
)
from bertlottery.train.loop import Plan, epoch_order, train

MAX_SEQ_LENGTH = 128
# Training settings (a) shares with (b): --training may not change them (that would compare different training).
SHARED_WITH_TRAINER = {"epochs", "learning_rate", "batch_size", "warmup_steps", "weight_decay", "adam_epsilon",
                       "adam_beta1", "adam_beta2", "max_grad_norm", "max_seq_length"}
QUICK = {"train_examples": 256, "dev_examples": 128, "epochs": 1}

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s. First match of the
# name in torch.cuda.get_device_name wins, so longer names come before their prefixes.
PEAK_BF16_TFLOPS = [
    ("GH200", 989.4), ("H200", 989.4), ("H100 PCIe", 756.5), ("H100 NVL", 835.5), ("H100", 989.4),
    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0),
]

# Architectures for --random-init-config (random weights; the tokenizer still comes from --model).
ARCHITECTURES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}

# Cost model inputs, per GLUE task: training rows (the GLUE train sets) and the mean padded length per example
# of a batch of 32 drawn at random (mean over batches of the batch's longest row, bert-base-uncased
# WordPiece, truncation at 128). Measured with bertlottery.glue.prepare on the GLUE TSVs of ../shared where
# present; QNLI from its dev set (train not shared); QQP and MNLI (not shared) are estimates [I].
GLUE_TRAIN = {
    "CoLA": (8551, 23.1, "measured"), "SST-2": (67349, 40.1, "measured"), "MRPC": (3668, 79.9, "measured"),
    "QQP": (363846, 75.0, "estimate"), "STS-B": (5749, 69.5, "measured"), "MNLI": (392702, 90.0, "estimate"),
    "QNLI": (104743, 103.6, "measured on dev"), "RTE": (2490, 127.9, "measured"), "WNLI": (635, 81.8, "measured"),
}
# Epochs of training per task in each set (docs/protocol.md §Evaluation and retraining): 5 seeds x (1 full + 9 retrains) x 3 epochs;
# paper-complete adds 5 s-bad retrains x 6 epochs and 5 random-init retrains x 3 epochs.
EPOCHS_PER_TASK = {"core_450": 5 * 10 * 3, "paper_complete_540": 5 * 10 * 3 + 5 * 6 + 5 * 3}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="pre-trained encoder dir (its tokenizer is always used)")
    p.add_argument("--glue-dir", required=True, help="GLUE TSV root (<dir>/<TASK>/{train,dev}.tsv)")
    p.add_argument("--task", default="RTE")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['train_examples']} train / {QUICK['dev_examples']} dev examples, 1 epoch")
    p.add_argument("--train-examples", type=int, help="subsample train (default: all; --quick: 256)")
    p.add_argument("--dev-examples", type=int, help="subsample dev (default: all; --quick: 128)")
    p.add_argument("--epochs", type=int, help="default 3 (the paper's); --quick: 1")
    p.add_argument("--learning-rate", type=float, default=2e-5,
                   help="for (a), (b) and (c); default 2e-5 (the paper's). A larger one lets short "
                        "CPU runs leave the majority class, so dev scores can be compared")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--repeats", type=int, default=1, help="interleaved repetitions; medians are reported")
    p.add_argument("--random-init-config", choices=sorted(ARCHITECTURES),
                   help="random weights of this shape instead of --model's (no weights download)")
    p.add_argument("--training", default="{}", help="JSON overrides of bertlottery's defaults for (b), (c)")
    p.add_argument("--no-subnetwork", action="store_true", help="skip (c), the 50 %%-heads s-subnetwork")
    p.add_argument("--trainer-eval-batch-size", type=int, default=8, help="Trainer's default is 8")
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--output", help="JSON path (default benchmarks/results/finetune_speed-<task>-<device>.json)")
    p.add_argument("--markdown", help="also write the Markdown table here")
    p.add_argument("--work-dir", help="keep prepared data and run outputs here (default: a temp dir)")
    p.add_argument("--progress", action="store_true", help="progress bars")
    args = p.parse_args(argv)
    quick = QUICK if args.quick else {"train_examples": None, "dev_examples": None, "epochs": 3}
    for key, value in quick.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.epochs < 1 or args.repeats < 1:
        p.error("--epochs and --repeats must be >= 1")
    return args


# ----------------------------------------------------------------------------------------------------
# measuring


class PeakMemory:
    """Peak memory of one phase: CUDA max_memory_allocated, or on CPU the process RSS sampled every 10 ms
    (psutil; ru_maxrss, the lifetime peak, when psutil is missing)."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self.start = device, 0, 0
        self._stop = threading.Event()
        self._thread = None
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:
            self._process = None

    def _rss(self) -> int:
        if self._process is not None:
            return self._process.memory_info().rss
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak = self._rss()
            if self._process is not None:  # ru_maxrss only grows: one reading at exit is enough
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak = max(self.peak, self._rss())


@contextmanager
def timed(device: torch.device, out: dict):
    """Wall seconds, and the process's CPU seconds (user + system): on a shared machine the CPU time per
    example moves less with other processes' load than the wall time does."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
    out["seconds"], out["cpu_seconds"] = time.perf_counter() - start, time.process_time() - cpu


def peak_bf16_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def flop_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(encoder parameters, total attention width over layers): a training step costs about
    6 * params * tokens for the dense layers plus 12 * width * sum(len^2) for the attention scores
    and the weighted sum (forward 2 matmuls of 2 * len^2 * width, backward twice that)."""
    from bertlottery.modeling.structure import encoder_layers, head_counts

    layers = encoder_layers(model)
    params = sum(p.numel() for layer in layers for p in layer.parameters())
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    return params, sum(head_counts(model)) * head_dim


def train_flops(params: int, width: int, lengths: np.ndarray) -> float:
    """Useful training FLOPs of an encoder with `params` weights and attention `width` (flop_counts) over
    these real (non-pad) sequence lengths, one entry per example seen."""
    lengths = lengths.astype(np.float64)
    return 6.0 * params * lengths.sum() + 12.0 * width * (lengths**2).sum()


def linear_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(in, out) features of every linear layer of the encoder (a pruned model's own, smaller shapes)."""
    from bertlottery.modeling.structure import encoder_layers

    return [(m.in_features, m.out_features) for layer in encoder_layers(model) for m in layer.modules()
            if isinstance(m, torch.nn.Linear)]


def matmul_tflops(shapes: list[tuple[int, int]], tokens: int, device: torch.device, passes: int = 5) -> float:
    """The fp32 matmul rate (TFLOP/s) of a training step's matmuls of these linear layers on `tokens` rows:
    forward Y = X W^T and backward dX = dY W, dW = dY^T X, each 2 * tokens * in * out FLOPs. The fastest of
    `passes` passes over all shapes: the rate the machine's matmul library reaches on exactly these shapes,
    the ceiling of a step that is nothing but its matmuls."""
    generator = torch.Generator().manual_seed(0)
    tensors = [[torch.randn(*shape, generator=generator).to(device) for shape in
                ((tokens, n_in), (n_out, n_in), (tokens, n_out))] for n_in, n_out in shapes]
    flops = sum(3 * 2 * tokens * n_in * n_out for n_in, n_out in shapes)
    seconds = []
    for _ in range(passes + 1):  # the first pass warms up (allocation, library dispatch) and is dropped
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x, w, dy in tensors:
            x @ w.t(), dy @ w, dy.t() @ x
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    best = min(seconds[1:])
    return flops / best / 1e12


# ----------------------------------------------------------------------------------------------------
# data


def prepare(args: argparse.Namespace, work: Path) -> dict:
    """bertlottery's prepared splits (tokenized once) and the Trainer's padded datasets, same examples."""
    data_dir = work / "data"
    clock: dict = {}
    with timed(torch.device("cpu"), clock):
        prepare_data(args.task, args.model, data_dir, glue_dir=args.glue_dir,
                     max_train_examples=args.train_examples, max_dev_examples=args.dev_examples,
                     subsample_seed=0, max_seq_length=MAX_SEQ_LENGTH)
    train_split, dev_split = load_split(data_dir, "train"), load_split(data_dir, "dev")
    hf_clock: dict = {}
    with timed(torch.device("cpu"), hf_clock):
        hf_train = trainer_dataset(args, "train", args.train_examples)
        hf_dev = trainer_dataset(args, "dev", args.dev_examples)
    for name, split, ds in (("train", train_split, hf_train), ("dev", dev_split, hf_dev)):
        hf_lengths = np.asarray(ds["attention_mask"]).sum(axis=1)
        if not np.array_equal(hf_lengths, split.lengths.numpy()):
            raise BertLotteryError(f"{name}: the Trainer dataset's token lengths differ from prepare_data's; "
                                   "the two paths would not see the same inputs")
    return {"train": train_split, "dev": dev_split, "hf_train": hf_train,
            "hf_dev": hf_dev, "prepare_s": clock["seconds"], "hf_tokenize_s": hf_clock["seconds"]}


def trainer_dataset(args: argparse.Namespace, split: str, limit: int | None):
    """The usual recipe: a datasets.Dataset tokenized with padding="max_length" to 128."""
    import datasets
    from transformers import AutoTokenizer

    spec = get_task(args.task)
    examples = read_examples(args.task, split, args.glue_dir)
    examples = [examples[i] for i in subsample_indices(len(examples), limit, 0)]
    table = {"text_a": [e.text_a for e in examples], "label": [e.label for e in examples]}
    if examples[0].text_b is not None:
        table["text_b"] = [e.text_b for e in examples]
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(batch):
        return tokenizer(batch["text_a"], batch.get("text_b"), padding="max_length", truncation=True,
                         max_length=MAX_SEQ_LENGTH)

    ds = datasets.Dataset.from_dict(table).map(encode, batched=True, remove_columns=list(table))
    labels = [float(e.label) for e in examples] if spec.is_regression else [e.label for e in examples]
    return ds.add_column("labels", labels)


def bertlottery_tokens(split, settings: dict, seed: int) -> tuple[np.ndarray, int]:
    """Real lengths of every example `train` will see (its own plan and order) and the padded tokens."""
    plan = Plan.for_split(len(split), settings["batch_size"], settings["epochs"])
    lengths = split.lengths.numpy()
    grouping = lengths if settings["length_grouping"] else None
    bs, seen, padded = settings["batch_size"], [], 0
    for step in range(plan.total_steps):
        epoch, position = divmod(step, plan.batches_per_epoch)
        if position == 0:
            order = epoch_order(len(split), seed, epoch, grouping, bs)
        batch = lengths[order[position * bs:(position + 1) * bs]]
        seen.append(batch)
        if settings["padding_free"]:  # only the real tokens are computed
            padded += int(batch.sum())
        else:
            padded += len(batch) * (int(batch.max()) if settings["dynamic_padding"] else settings["max_seq_length"])
    return np.concatenate(seen), padded


# ----------------------------------------------------------------------------------------------------
# models


def build_model(args: argparse.Namespace, num_labels: int, attention: str | None, *, plain: bool):
    """Seeded model: plain = the Trainer user's from_pretrained call; else bertlottery's load_classifier."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    from bertlottery.modeling.loading import load_classifier

    set_seed(args.seed)  # same classifier init for every path
    if args.random_init_config:
        config = BertConfig(**ARCHITECTURES[args.random_init_config], num_labels=num_labels,
                            problem_type="regression" if num_labels == 1 else "single_label_classification")
        kwargs = {} if plain else {"attn_implementation": attention}
        return AutoModelForSequenceClassification.from_config(config, **kwargs).float()
    if plain:
        return AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=num_labels,
                                                                  dtype=torch.float32)
    return load_classifier(args.model, num_labels, attn_implementation=attention)


def model_config(args: argparse.Namespace):
    from transformers import AutoConfig, BertConfig

    if args.random_init_config:
        return BertConfig(**ARCHITECTURES[args.random_init_config])
    return AutoConfig.from_pretrained(args.model)


def half_heads_mask(model_or_config, seed: int) -> HeadMlpMask:
    """A seeded random mask keeping exactly half of all heads (anywhere in the model) and every MLP."""
    mask = full_head_mlp_mask(model_or_config)
    flat = torch.zeros(mask.heads.numel(), dtype=torch.bool)
    keep = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))[: flat.numel() // 2]
    flat[keep] = True
    return HeadMlpMask(flat.view_as(mask.heads), mask.mlps, {"kind": "random", "heads_kept": "50%"})


# ----------------------------------------------------------------------------------------------------
# the runs


def run_trainer(args, data, spec, device, settings: dict, work: Path, index: int) -> dict:
    """(a) HF Trainer, fp32, padding to 128, with (b)'s optimisation settings (SHARED_WITH_TRAINER: the
    paper's lr 2e-5 unless --learning-rate, batch 32, linear decay, no warm-up, clip 1.0)."""
    from transformers import Trainer, TrainingArguments

    model = build_model(args, spec.num_labels, None, plain=True)
    targs = TrainingArguments(
        output_dir=str(work / f"trainer{index}"), per_device_train_batch_size=settings["batch_size"],
        per_device_eval_batch_size=args.trainer_eval_batch_size, learning_rate=settings["learning_rate"],
        num_train_epochs=settings["epochs"], warmup_steps=settings["warmup_steps"], lr_scheduler_type="linear",
        weight_decay=settings["weight_decay"], max_grad_norm=settings["max_grad_norm"],
        adam_epsilon=settings["adam_epsilon"], adam_beta1=settings["adam_beta1"], adam_beta2=settings["adam_beta2"],
        seed=args.seed, eval_strategy="no", save_strategy="no", report_to="none",
        logging_strategy="no", bf16=False, fp16=False, tf32=False if device.type == "cuda" else None,
        disable_tqdm=not args.progress, dataloader_pin_memory=device.type == "cuda",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=data["hf_train"])
    train_lengths = np.tile(data["train"].lengths.numpy(), settings["epochs"])
    result = {"path": "trainer", "padded_tokens": len(train_lengths) * MAX_SEQ_LENGTH}
    with PeakMemory(device) as memory, timed(device, clock := {}):
        trainer.train()
    result |= measured(model, train_lengths, clock, memory)
    with timed(device, eval_clock := {}):
        output = trainer.predict(data["hf_dev"])
    result |= dev_scores(spec, output.predictions, data["dev"], eval_clock["seconds"])
    return result


def run_bertlottery(args, data, spec, device, settings: dict, work: Path, name: str, mask=None) -> dict:
    """(b) bertlottery's loop with `settings`; (c) the same after physically pruning with `mask`."""
    from bertlottery.train.evaluation import predict

    configure_torch(settings["tf32"])
    model = build_model(args, spec.num_labels, settings["attention"], plain=False)
    size = apply_mask(model, mask)
    model.to(device)
    lengths, padded = bertlottery_tokens(data["train"], settings, args.seed)
    result = {"path": name, "padded_tokens": padded, "mask_size": size}
    with PeakMemory(device) as memory, timed(device, clock := {}):
        train(model, data["train"], TrainingSettings.from_dict(settings, where="--training"), args.seed,
              out_dir=work / name, device=device, progress=args.progress)
    result |= measured(model, lengths, clock, memory)
    # the matmul rate right after the run, in the same process and threads: the two see the same load
    steps = -(-len(lengths) // settings["batch_size"])
    result["matmul_tflops"] = matmul_tflops(linear_shapes(model), round(lengths.sum() / steps), device)
    result["fraction_of_matmul_peak"] = result["achieved_tflops"] / result["matmul_tflops"]
    with timed(device, eval_clock := {}):
        pred = predict(model, data["dev"], batch_size=settings["eval_batch_size"], device=device,
                       precision=settings["precision"], padding_free=settings["padding_free"])
    result |= dev_scores(spec, pred.logits, data["dev"], eval_clock["seconds"])
    configure_torch(False)
    return result


def measured(model, lengths: np.ndarray, clock: dict, memory: PeakMemory) -> dict:
    params, width = flop_counts(model)
    seconds, flops = clock["seconds"], train_flops(params, width, lengths)
    return {
        "train_examples": int(len(lengths)), "train_wall_s": seconds,
        "train_cpu_s": round(clock["cpu_seconds"], 3), "examples_per_s": len(lengths) / seconds,
        "examples_per_cpu_s": len(lengths) / clock["cpu_seconds"], "real_tokens": int(lengths.sum()),
        "real_tokens_per_s": float(lengths.sum()) / seconds, "train_flops": flops,
        "achieved_tflops": flops / seconds / 1e12, "peak_memory_bytes": int(memory.peak),
        "memory_added_bytes": int(memory.peak - memory.start),
        "encoder_params": params, "attention_width": width,
    }


def dev_scores(spec, logits, dev_split, seconds: float) -> dict:
    values = task_metrics(spec, np.asarray(logits), dev_split.labels.numpy())
    return {"dev_metrics": values, "dev_reported": reported(spec, values), "eval_wall_s": round(seconds, 3),
            "eval_examples_per_s": len(dev_split) / seconds}


def warm_up(args, data, spec, device, settings: dict) -> None:
    """One untimed forward/backward at full length, so neither timed path pays one-off kernel set-up."""
    model = build_model(args, spec.num_labels, settings["attention"], plain=False).to(device)
    batch = {k: v.to(device) for k, v in data["train"].collate(np.arange(min(32, len(data["train"]))),
                                                                pad_to=MAX_SEQ_LENGTH).items()}
    model(**batch).loss.backward()
    if settings["padding_free"]:
        from bertlottery.modeling.unpadded import PackedBatch, unpadded_forward

        unpadded_forward(model, PackedBatch.from_padded(batch)).loss.backward()
    del model


def run_all(args, data, spec, device, settings: dict, work: Path) -> list[dict]:
    """(a), (b) and (c) interleaved `repeats` times (the machine's load drifts; medians are reported)."""
    mask = None if args.no_subnetwork else half_heads_mask(model_config(args), args.seed)
    runs = []
    for i in range(args.repeats):
        jobs = [lambda: run_trainer(args, data, spec, device, settings, work, i),
                lambda: run_bertlottery(args, data, spec, device, settings, work, f"bertlottery{i}")]
        if mask is not None:
            jobs.append(lambda: run_bertlottery(args, data, spec, device, settings, work, f"subnetwork{i}", mask))
        for job in jobs:
            result = job() | {"repeat": i}
            gc.collect()  # the finished run's model and optimizer must not count in the next run's peak
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(f"  {result['path']:<14} repeat {i}: {result['examples_per_s']:.2f} ex/s, "
                  f"{result['train_wall_s']:.1f} s, dev {spec.reported_metric} {result['dev_reported']:.4f}",
                  file=sys.stderr)
            runs.append(result)
    return runs


# ----------------------------------------------------------------------------------------------------
# summary, cost model, output


def median_run(runs: list[dict], prefix: str) -> dict | None:
    """The run of this path with the median examples/s (its own numbers stay consistent)."""
    chosen = sorted((r for r in runs if r["path"].rstrip("0123456789") == prefix),
                    key=lambda r: r["examples_per_s"])
    return chosen[(len(chosen) - 1) // 2] if chosen else None


def summarize(runs: list[dict], peak: float | None) -> dict:
    out = {}
    for key in ("trainer", "bertlottery", "subnetwork"):
        run = median_run(runs, key)
        if run is not None:
            run = dict(run)
            run["mfu"] = run["achieved_tflops"] / peak if peak else None
            out[key] = run
    a, b, c = out["trainer"], out["bertlottery"], out.get("subnetwork")
    out["speedup_vs_trainer"] = b["examples_per_s"] / a["examples_per_s"]
    out["speedup_vs_trainer_cpu_time"] = b["examples_per_cpu_s"] / a["examples_per_cpu_s"]
    out["fraction_of_matmul_peak"] = b["fraction_of_matmul_peak"]
    out["dev_reported_difference"] = b["dev_reported"] - a["dev_reported"]
    if c is not None:
        out["subnetwork_speedup"] = c["examples_per_s"] / b["examples_per_s"]
        out["subnetwork_speedup_cpu_time"] = c["examples_per_cpu_s"] / b["examples_per_cpu_s"]
        out["subnetwork_flop_ratio"] = b["train_flops"] / c["train_flops"]
    return out


def cost_model(summary: dict, settings: dict) -> dict:
    """Device-hours of the study's fine-tunes at (b)'s measured padded-token throughput.

    Time per example ~ padded tokens per example / padded tokens per second: the dense layers dominate at
    length <= 128, so step time grows with the padded batch size. s/super subnetworks train faster than
    this (they are smaller); the model is costed at full size, so the hours are an upper bound there.
    Padding-free, (b)'s "padded" tokens are its real tokens while the per-task lengths below are padded
    ones: the hours are an upper bound then too."""
    b, a = summary["bertlottery"], summary["trainer"]
    padded_per_s = b["padded_tokens"] / b["train_wall_s"]
    hours = study_hours(padded_per_s, settings["dynamic_padding"], settings["max_seq_length"])
    scale = bert_base_scale(b)
    return {
        "padded_tokens_per_s": padded_per_s, "device_hours": hours,
        "device_hours_trainer_baseline": study_hours(a["padded_tokens"] / a["train_wall_s"], False,
                                                     MAX_SEQ_LENGTH),
        "bert_base_flop_scale": scale,
        "device_hours_bert_base": {k: v * scale for k, v in hours.items()},
        "per_task_inputs": {t: {"train_rows": n, "mean_padded_tokens_batch32": m, "source": s}
                            for t, (n, m, s) in GLUE_TRAIN.items()},
        "epochs_per_task": EPOCHS_PER_TASK,
        "note": "device_hours: (b) with the measured model on the measured device (trainer_baseline: (a), "
                "padding to 128). device_hours_bert_base: (b) "
                "scaled by bert-base's training FLOPs per token over the measured model's (same FLOP/s assumed)",
    }


def study_hours(padded_tokens_per_s: float, dynamic_padding: bool, max_seq_length: int) -> dict[str, float]:
    tokens = sum(n * (padded if dynamic_padding else max_seq_length) for n, padded, _ in GLUE_TRAIN.values())
    return {name: epochs * tokens / padded_tokens_per_s / 3600 for name, epochs in EPOCHS_PER_TASK.items()}


def bert_base_scale(run: dict) -> float:
    """bert-base's training FLOPs per token over the measured model's, at the run's mean padded length."""
    from transformers import BertConfig, BertForSequenceClassification

    with torch.device("meta"):
        base = BertForSequenceClassification(BertConfig(**ARCHITECTURES["bert-base"]))
    length = run["padded_tokens"] / run["train_examples"]
    base_params, base_width = flop_counts(base)
    measured = 6.0 * run["encoder_params"] + 12.0 * run["attention_width"] * length
    return (6.0 * base_params + 12.0 * base_width * length) / measured


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def markdown(report: dict) -> str:
    s, head = report["summary"], report["setup"]
    metric = head["reported_metric"]
    lines = [
        f"Device: **{report['device']}** ({report['host_cpu']}, {report['torch_threads']} threads), "
        f"{report['date']}. Model {head['model']} ({head['architecture']}), {head['task']} "
        f"{head['train_examples']} train / {head['dev_examples']} dev examples, {head['epochs']} epoch(s), "
        f"lr {head['learning_rate']:g}, "
        f"seed {head['seed']}, median of {head['repeats']} interleaved repeat(s).",
        "",
        f"| run | examples/s | non-pad tokens/s | pad share | peak memory | train wall | TFLOP/s | MFU "
        f"| dev {metric} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    changed = report["bertlottery_overrides"]
    b_label = "(b) bertlottery defaults" + (f" + {json.dumps(changed)}" if changed else "")
    names = {"trainer": "(a) HF Trainer, fp32, pad 128", "bertlottery": b_label,
             "subnetwork": "(c) (b) on 50 %-heads s-subnetwork"}
    for key, label in names.items():
        r = s.get(key)
        if r is None:
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a"
        pad = 1 - r["real_tokens"] / r["padded_tokens"]
        lines.append(f"| {label} | {r['examples_per_s']:.2f} | {r['real_tokens_per_s']:.0f} | {100 * pad:.0f} % "
                     f"| {gib(r['peak_memory_bytes'])} | {r['train_wall_s']:.1f} s | {r['achieved_tflops']:.3f} "
                     f"| {mfu} | {r['dev_reported']:.4f} |")
    lines.append("")
    lines.append(f"Speed-up (b)/(a): **{s['speedup_vs_trainer']:.2f}x** examples/s "
                 f"({s['speedup_vs_trainer_cpu_time']:.2f}x per process CPU-second); "
                 f"dev {metric} (b) - (a) = {s['dev_reported_difference']:+.4f}.")
    b = s["bertlottery"]
    lines.append(f"(b) reaches **{s['fraction_of_matmul_peak']:.2f}** of the fp32 matmul rate of its own linear "
                 f"shapes measured right after it in the same process ({b['matmul_tflops']:.3f} TFLOP/s).")
    if "subnetwork_speedup" in s:
        lines.append(f"50 %-heads s-subnetwork vs full model: {s['subnetwork_speedup']:.2f}x examples/s "
                     f"({s['subnetwork_speedup_cpu_time']:.2f}x per CPU-second; training FLOPs ratio "
                     f"{s['subnetwork_flop_ratio']:.2f}x).")
    return "\n".join(lines)


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or 'cpu'} x {os.cpu_count()}"


def default_output(task: str, device: torch.device) -> Path:
    tag = device_name(device).replace("NVIDIA ", "").replace(" ", "-").lower()
    return Path(__file__).resolve().parent / "results" / f"finetune_speed-{task}-{tag}.json"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = get_task(args.task)
    device = pick_device()
    overrides = parse_json_arg(args.training, "training")
    shared = sorted(set(overrides) & SHARED_WITH_TRAINER)
    if shared:
        raise BertLotteryError(f"--training: {shared} must be the same for (a) and (b); set them with the "
                               "command-line options (--epochs, --learning-rate) or leave them at the defaults")
    # validated against the config schema: unknown keys and bad values stop here, naming the key
    settings = resolve_training({"training": overrides | {"epochs": args.epochs, "checkpoint_every_steps": 0,
                                                          "learning_rate": args.learning_rate}}, args.task)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        data = prepare(args, work)
        warm_up(args, data, spec, device, settings)
        runs = run_all(args, data, spec, device, settings, work)
    peak = peak_bf16_tflops(device, args.peak_tflops)
    summary = summarize(runs, peak)
    report = {
        "benchmark": "finetune_speed", "date": datetime.date.today().isoformat(),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "device": device_name(device), "host_cpu": host_cpu(), "torch_threads": torch.get_num_threads(),
        "peak_bf16_tflops": peak,
        "setup": {"task": spec.name, "reported_metric": spec.reported_metric, "model": args.model,
                  "architecture": args.random_init_config or "pre-trained", "seed": args.seed,
                  "train_examples": len(data["train"]), "dev_examples": len(data["dev"]),
                  "epochs": args.epochs, "learning_rate": args.learning_rate, "repeats": args.repeats,
                  "quick": args.quick,
                  "prepare_data_s": round(data["prepare_s"], 2),
                  "trainer_tokenize_s": round(data["hf_tokenize_s"], 2)},
        "bertlottery_settings": settings, "bertlottery_overrides": overrides,
        "summary": summary, "runs": runs,
        "cost_model": cost_model(summary, settings), "total_wall_s": round(time.time() - started, 1),
        "versions": library_versions(),
    }
    output = Path(args.output) if args.output else default_output(spec.name, device)
    write_json(output, report)
    table = markdown(report)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    print(table)
    print(f"results: {output}")
    print(f"speedup_vs_trainer={summary['speedup_vs_trainer']:.2f} "
          f"fraction_of_matmul_peak={summary['fraction_of_matmul_peak']:.2f}")
    return report


if __name__ == "__main__":
    main()
