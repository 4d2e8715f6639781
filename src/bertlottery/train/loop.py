"""Fine-tuning: one explicit loop (data, model, optimizer, step, eval), resumable after a kill.

Follows the original's run_glue.py (docs/protocol.md §Fine-tuning): AdamW, linear decay to 0 after an optional
warm-up, gradient clipping, seed set before the classifier is built and again before the loop. The
same command fine-tunes full models and retrains masked subnetworks (mask applied to pre-trained weights).
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from bertlottery.errors import BertLotteryError
from bertlottery.glue.splits import TokenizedSplit, load_split
from bertlottery.glue.tasks import TaskSpec, get_task
from bertlottery.io import atomic_directory, atomic_path, file_sha256, write_json
from bertlottery.families import VARIANTS, variant
from bertlottery.layout import DATA_CARD, MODEL_DIR, TRAIN_LOG, TRAIN_SUMMARY
from bertlottery.masks.types import WeightMask, load_mask_for
from bertlottery.modeling.apply import apply_mask
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.unpadded import PackedBatch, check_supported, classify
from bertlottery.modeling.weight_masks import remove_weight_mask
from bertlottery.progress import tqdm
from bertlottery.runtime import autocast, configure_torch, pick_device, set_seed
from bertlottery.settings import TrainingSettings, config_hash
from bertlottery.train.evaluation import evaluate_and_write, to_device

LOG_FIELDS = ["step", "epoch", "loss", "learning_rate", "examples_per_s", "tokens_per_s", "elapsed_s"]
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")  # the original's no-weight-decay groups


@dataclass
class Plan:
    """How many optimizer steps and which examples each step sees (fixed by seed and data size)."""

    batches_per_epoch: int
    total_steps: int

    @classmethod
    def for_split(cls, n_examples: int, batch_size: int, epochs: float) -> "Plan":
        batches = math.ceil(n_examples / batch_size)
        return cls(batches, max(1, int(batches * epochs)))


def epoch_order(n: int, seed: int, epoch: int, lengths: np.ndarray | None, batch_size: int) -> np.ndarray:
    """The example order of one epoch: a seeded permutation, regenerated identically on resume.

    With `lengths` (length grouping), chunks of 50 batches are sorted by length so batches hold
    similar lengths, then the batch order is shuffled; this changes the order, so it is opt-in.
    """
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(n, generator=generator).numpy()
    if lengths is None:
        return order
    chunk = 50 * batch_size
    grouped = [c[np.argsort(-lengths[c], kind="stable")] for c in np.split(order, range(chunk, n, chunk))]
    batches = np.split(np.concatenate(grouped), range(batch_size, n, batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).numpy()
    return np.concatenate([batches[i] for i in shuffle])


def make_batch(split: TokenizedSplit, indices: np.ndarray, pad_to: int | None, padding_free: bool,
               device: torch.device) -> dict[str, torch.Tensor] | PackedBatch:
    """One training batch on `device`: padded (the model's own forward) or packed (padding-free)."""
    batch = split.collate(indices, pad_to=pad_to)
    if padding_free:
        packed = PackedBatch.from_padded(batch)
        return packed.to(device, non_blocking=True) if device.type != "cpu" else packed
    if device.type == "cuda":
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return to_device(batch, device)


def build_optimizer(model: torch.nn.Module, settings: TrainingSettings, device: torch.device) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    # every LayerNorm's parameters by module type too: DistilBERT's are sa_layer_norm/output_layer_norm
    # (for BERT-style names the same set as the original's name rule)
    norms = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if id(param) in norms or any(nd in name for nd in NO_DECAY) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=settings.learning_rate,
        betas=(settings.adam_beta1, settings.adam_beta2),
        eps=settings.adam_epsilon,
        # torch >= 2.4 has the fused kernel on CPU too: ~5x cheaper steps than foreach there (MiniLM: 0.1 s
        # vs 0.5-0.8 s of CPU time per step); same update to rounding
        fused=bool(settings.fused_adamw and device.type in ("cuda", "cpu")),
    )


class Checkpointer:
    """Resumable state in `<out_dir>/.resume/`: model, optimizer, scheduler, RNG, step, log rows.

    The state carries the fingerprint of the job that wrote it (`job_fingerprint`); a state of another
    job (other settings, model, data, mask, seed or variant) or an unreadable one is discarded with a
    message, and the run starts over."""

    def __init__(self, directory: Path, every: int, fingerprint: str = ""):
        self.directory = directory
        self.every = every
        self.fingerprint = fingerprint
        self.path = directory / "state.pt"

    def due(self, step: int, total: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < total

    def save(self, model, optimizer, scheduler, step: int, log_rows: list[dict]) -> None:
        state = {
            "fingerprint": self.fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda_rng_states(),
            "log_rows": log_rows,
        }
        with atomic_path(self.path) as tmp:  # a kill mid-save leaves the previous state intact
            torch.save(state, tmp)

    def load(self, model, optimizer, scheduler) -> tuple[int, list[dict]]:
        if not self.path.exists():
            return 0, []
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged state is not worth failing the job for: start over
            print(f"finetune: discarding unreadable resume state {self.path} ({str(exc).splitlines()[0]}); "
                  "starting over")
            self.clear()
            return 0, []
        if state.get("fingerprint") != self.fingerprint:
            print(f"finetune: discarding resume state {self.path}: made by another job (settings, model, "
                  "data, mask, seed or variant changed); starting over")
            self.clear()
            return 0, []
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        restore_cuda_rng(state["cuda_rng"])
        return state["step"], state["log_rows"]

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def cuda_rng_states() -> list[torch.Tensor]:
    """The CUDA RNG state of the job's own device only ([] without CUDA): a state saved with several
    visible GPUs then resumes with fewer (before: every device's state, and an IndexError on resume)."""
    return [torch.cuda.get_rng_state()] if torch.cuda.is_available() else []


def restore_cuda_rng(states: list[torch.Tensor]) -> None:
    """Restore the current device's CUDA RNG state; the first entry is the job's device (cuda:0 after
    with-gpu), also in states of older versions that saved every device's."""
    if states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states[0])


def optimizer_step(model: torch.nn.Module, batch, optimizer: torch.optim.Optimizer, settings: TrainingSettings,
                   device: torch.device, forward: torch.nn.Module | None = None) -> torch.Tensor:
    """One training step on a batch: forward (autocast), backward, gradient clipping, optimizer step, gradients
    cleared; returns the loss. `forward` is the module to call when it wraps `model` (torch.compile)."""
    with autocast(device, settings.precision):
        loss = classify(forward or model, batch).loss
    loss.backward()
    if settings.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def job_fingerprint(model: torch.nn.Module, train_split: TokenizedSplit, settings: TrainingSettings, seed: int,
                    **job) -> str:
    """What determines a fine-tuning job's result: its settings, seed, the starting weights (pre-trained or
    random encoder, seeded classifier, pruned shapes; summed, so a few ms even for BERT-base), the
    training data, and whatever the caller adds (`job`: model path, data card and mask hashes, variant)."""
    with torch.no_grad():
        tensors = model.state_dict()
        weights = sum(float(t.double().abs().sum()) for t in tensors.values() if t.is_floating_point())
        shapes = [[name, list(t.shape)] for name, t in tensors.items()]
    data = [len(train_split), int(train_split.input_ids.long().sum()), float(train_split.labels.double().sum())]
    return config_hash({"settings": settings.to_dict(), "seed": seed, "weights": f"{weights:.12e}",
                        "shapes": shapes, "data": data, "job": job})


class LogWindow:
    """The loss, examples and tokens since the last row of the training log; the loss summed on the device, so
    there is no host sync per step."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.examples = self.tokens = 0
        self.start = time.time()

    def add(self, loss: torch.Tensor, examples: int, tokens: int) -> None:
        self.loss += loss.detach().float()
        self.examples += examples
        self.tokens += tokens

    def row(self, step: int, plan: Plan, previous_step: int, learning_rate: float, started: float) -> dict:
        """The log row of the window ending at `step` (the last row was at `previous_step`); starts a new one."""
        now = time.time()
        seconds = max(now - self.start, 1e-9)
        row = {
            "step": step,
            "epoch": round(step / plan.batches_per_epoch, 4),
            "loss": round(float(self.loss) / max(step - previous_step, 1), 6),
            "learning_rate": learning_rate,
            "examples_per_s": round(self.examples / seconds, 2),
            "tokens_per_s": round(self.tokens / seconds, 1),
            "elapsed_s": round(now - started, 2),
        }
        self.loss.zero_()
        self.examples = self.tokens = 0
        self.start = now
        return row


def train(
    model: torch.nn.Module,
    train_split: TokenizedSplit,
    settings: TrainingSettings,
    seed: int,
    *,
    out_dir: Path,
    device: torch.device,
    progress: bool = True,
    job: dict | None = None,
) -> dict:
    """Fine-tune `model` in place; writes the training log (TRAIN_LOG) and resumes from `<out_dir>/.resume` if present
    and made by the same job (see `job_fingerprint`; `job` adds the caller's identity of the inputs)."""
    plan = Plan.for_split(len(train_split), settings.batch_size, settings.epochs)
    fingerprint = job_fingerprint(model, train_split, settings, seed, **(job or {}))
    optimizer = build_optimizer(model, settings, device)
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, plan.total_steps)
    checkpointer = Checkpointer(out_dir / ".resume", settings.checkpoint_every_steps, fingerprint)
    set_seed(seed)  # again just before the loop, as the original: dropout and data order start here
    step, log_rows = checkpointer.load(model, optimizer, scheduler)
    if step:
        print(f"resuming from step {step}/{plan.total_steps}")
    if settings.compile and settings.padding_free:
        raise BertLotteryError("training.compile compiles the padded forward: set training.padding_free: false "
                               "with it")
    if settings.padding_free:
        check_supported(model)
    step_model = torch.compile(model, dynamic=True) if settings.compile else model
    pad_to = None if settings.dynamic_padding else settings.max_seq_length
    lengths = train_split.lengths.numpy() if settings.length_grouping else None
    bs = settings.batch_size

    model.train()
    window = LogWindow(device)
    started = time.time()
    bar = tqdm(total=plan.total_steps, initial=step, desc="train", disable=not progress, unit="step")
    while step < plan.total_steps:
        epoch, position = divmod(step, plan.batches_per_epoch)
        order = epoch_order(len(train_split), seed, epoch, lengths, bs)
        for start in range(position * bs, len(order), bs):
            indices = order[start : start + bs]
            batch = make_batch(train_split, indices, pad_to, settings.padding_free, device)
            loss = optimizer_step(model, batch, optimizer, settings, device, forward=step_model)
            scheduler.step()
            step += 1
            bar.update()
            window.add(loss, len(indices), int(train_split.lengths[indices].sum()))
            if step % settings.log_every == 0 or step == plan.total_steps:
                previous = log_rows[-1]["step"] if log_rows else 0
                log_rows.append(window.row(step, plan, previous, scheduler.get_last_lr()[0], started))
                bar.set_postfix(loss=log_rows[-1]["loss"], ex_s=log_rows[-1]["examples_per_s"])
            if checkpointer.due(step, plan.total_steps):
                checkpointer.save(model, optimizer, scheduler, step, log_rows)
            if step >= plan.total_steps:
                break
    bar.close()
    write_log(out_dir / TRAIN_LOG, log_rows)
    checkpointer.clear()
    seconds = time.time() - started
    return {
        "steps": plan.total_steps,
        "epochs": settings.epochs,
        "train_examples": len(train_split),
        "final_loss": log_rows[-1]["loss"] if log_rows else None,
        "train_time_s": round(seconds, 2),
        "examples_per_s": round(plan.total_steps * bs / max(seconds, 1e-9), 2),
    }


def write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class FinetuneJob:
    """One `finetune` command: a full fine-tune, or (with `mask`) a retraining of the pre-trained model."""

    task: TaskSpec
    seed: int
    model: str                  # hub id or local folder of the pre-trained encoder
    data_dir: Path
    settings: TrainingSettings
    out_dir: Path
    mask: str | None = None
    family: str = "full"
    variant: str | None = None  # a retraining's variant (bertlottery.families.VARIANTS)
    random_init: bool = False
    eval_output: str | None = None
    save: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FinetuneJob:
        settings = TrainingSettings.from_arg(args.training, "training")
        return cls(get_task(args.task), args.seed, args.model, Path(args.data_dir), settings, Path(args.out_dir),
                   mask=args.mask, family=args.family, variant=args.variant, random_init=args.random_init,
                   eval_output=args.eval_output, save=not args.no_save)

    @property
    def mask_kind(self) -> str | None:
        """The mask kind the variant reads (the 6-epoch bad variant: bad, ...)."""
        return variant(self.variant).mask_kind if self.variant else None


def starting_model(model: str, task: TaskSpec, seed: int, settings: TrainingSettings, *, random_init: bool = False):
    """The model a fine-tune with this seed starts from: the pre-trained (or random) encoder and a classifier
    initialised from the seed, as in the original (IMP rewinds to exactly this model every round)."""
    set_seed(seed)  # the classifier's init comes from this seed, as in the original
    return load_classifier(model, task.num_labels, random_init=random_init, attn_implementation=settings.attention)


def build_model(job: FinetuneJob, device: torch.device):
    """Pre-trained (or random) encoder + seeded classifier, with the mask applied if one is given."""
    model = starting_model(job.model, job.task, job.seed, job.settings, random_init=job.random_init)
    # a mask checked against the job: the mask kind the variant reads (bertlottery.families)
    mask = load_mask_for(job.mask, task=job.task.name, seed=job.seed,
                         family=None if job.family == "full" else job.family, kind=job.mask_kind) if job.mask else None
    size = apply_mask(model, mask)
    return model.to(device), mask, size


def run_job(job: FinetuneJob) -> None:
    spec, settings = job.task, job.settings
    configure_torch(settings.tf32, settings.deterministic)
    started = time.time()
    device = pick_device()
    train_split = load_split(job.data_dir, "train")
    model, mask, size = build_model(job, device)
    identity = {"task": spec.name, "model_path": str(job.model), "random_init": job.random_init,
                "family": job.family, "variant": job.variant, "data_card": _sha256_or_none(job.data_dir / DATA_CARD),
                "mask": _sha256_or_none(job.mask)}
    summary = train(model, train_split, settings, job.seed, out_dir=job.out_dir, device=device, job=identity)
    summary |= {"task": spec.name, "seed": job.seed, "family": job.family, "variant": job.variant,
                "mask": job.mask, "mask_size": size, "device": str(device)}
    if job.eval_output:
        record = evaluate_and_write(
            model, spec, job.data_dir, job.eval_output, seed=job.seed, settings=settings, family=job.family,
            kind=job.mask_kind, variant=job.variant, evaluated="retrained", mask_size=size, started=started,
            device=device, extra={"train": summary},
        )
        print(f"{spec.name} seed {job.seed} {job.family}/{job.variant}: {spec.reported_metric} = {record['reported']:.4f}")
    if job.save:
        save_model(model, mask, job.model, job.out_dir / MODEL_DIR)
    write_json(job.out_dir / TRAIN_SUMMARY, summary)


def _sha256_or_none(path) -> str | None:
    return file_sha256(path) if path and Path(path).is_file() else None


def save_model(model, mask, tokenizer_source: str, directory: Path) -> None:
    """save_pretrained (safetensors) plus the tokenizer, so the directory loads on its own."""
    from transformers import AutoTokenizer

    if isinstance(mask, WeightMask):
        remove_weight_mask(model)  # bake the zeros in: a plain checkpoint with exact zeros
    with atomic_directory(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(tmp)


def main_finetune(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery finetune", description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--model", required=True, help="hub id or local dir of the pre-trained encoder")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--training", required=True, help="resolved training settings (JSON)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--mask", help="a mask file: HeadMlpMask (s, super) or WeightMask (m)")
    parser.add_argument("--random-init", action="store_true", help="random weights instead of pre-trained")
    parser.add_argument("--no-save", action="store_true", help="do not keep the weights")
    parser.add_argument("--eval-output", help="also evaluate on dev and write this metrics JSON")
    parser.add_argument("--family", default="full")
    parser.add_argument("--variant", choices=list(VARIANTS),
                        help="the retraining (bertlottery.families.VARIANTS): the metrics' `variant`")
    run_job(FinetuneJob.from_args(parser.parse_args(argv)))

