"""Dev-set evaluation: predictions, metrics, and the metrics JSON of full and pruned models."""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from bertlottery.errors import BertLotteryError
from bertlottery.families import VARIANTS
from bertlottery.glue import metrics as M
from bertlottery.glue.predictions import PREDICTIONS_FIELD, encode_split
from bertlottery.glue.splits import TokenizedSplit, load_split
from bertlottery.glue.tasks import TaskSpec, get_task
from bertlottery.io import write_json
from bertlottery.masks.types import load_mask_for
from bertlottery.modeling.apply import apply_mask
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.unpadded import PackedBatch, check_supported, classify
from bertlottery.progress import tqdm
from bertlottery.runtime import autocast, configure_torch, device_name, pick_device
from bertlottery.settings import TrainingSettings, provenance


@dataclass
class Predictions:
    logits: np.ndarray  # [n, num_labels] (regression: [n, 1])
    labels: np.ndarray
    loss: float  # mean task loss over examples


def iterate_batches(
    split: TokenizedSplit, batch_size: int, *, order: np.ndarray | None = None, pad_to: int | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches in `order` (default: file order), padded to the batch's longest or to `pad_to`."""
    order = np.arange(len(split)) if order is None else order
    for start in range(0, len(order), batch_size):
        yield split.collate(order[start : start + batch_size], pad_to=pad_to)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    split: TokenizedSplit,
    *,
    batch_size: int = 64,
    device: torch.device | None = None,
    precision: str = "fp32",
    pad_to: int | None = None,
    padding_free: bool = True,
    progress: bool = False,
) -> Predictions:
    """Logits over a split in file order, in eval mode (no dropout); padding_free packs each batch's real
    tokens (same logits to float rounding, modeling/unpadded.py), else the model's own padded forward."""
    device = device or next(model.parameters()).device
    model.eval()
    if padding_free:
        check_supported(model)
    logits, losses = [], []
    batches = iterate_batches(split, batch_size, pad_to=pad_to)
    total = -(-len(split) // batch_size)
    for batch in tqdm(batches, total=total, desc="eval", disable=not progress, leave=False):
        n = len(batch["labels"])
        batch = PackedBatch.from_padded(batch).to(device) if padding_free else to_device(batch, device)
        with autocast(device, precision):
            out = classify(model, batch)
        logits.append(out.logits.float())
        losses.append(out.loss.float() * n)
    all_logits = torch.cat(logits).cpu().numpy()
    loss = float(torch.stack(losses).sum().cpu()) / max(len(split), 1)
    return Predictions(all_logits, split.labels.numpy(), loss)


def split_evaluation(
    model: torch.nn.Module,
    spec: TaskSpec,
    split: TokenizedSplit,
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    padding_free: bool = True,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, str]]:
    """The task's metrics and mean loss on one split, and its per-example predictions (glue/predictions.py)."""
    pred = predict(model, split, batch_size=batch_size, precision=precision, padding_free=padding_free,
                   progress=progress)
    values = M.task_metrics(spec, pred.logits, pred.labels) | {"loss": pred.loss}
    return values, encode_split(spec, pred.logits, pred.labels)


def evaluate_splits(
    model: torch.nn.Module,
    spec: TaskSpec,
    data_dir: str | Path,
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    padding_free: bool = True,
    progress: bool = True,
) -> tuple[dict[str, float], int, dict[str, dict[str, str]]]:
    """Flat metrics over the task's dev splits (MNLI's mismatched split gets an `_mm` suffix), the number
    of dev examples, and each split's per-example predictions (keyed by split name)."""
    out: dict[str, float] = {}
    kept: dict[str, dict[str, str]] = {}
    n_examples = 0
    for split_name in spec.dev_splits:
        split = load_split(data_dir, split_name)
        values, kept[split_name] = split_evaluation(model, spec, split, batch_size=batch_size, precision=precision,
                                                    padding_free=padding_free, progress=progress)
        suffix = "" if split_name == "dev" else "_" + split_name.removeprefix("dev_")
        out |= {key + suffix: value for key, value in values.items()}
        if split_name == "dev":
            n_examples = len(split)
    return out, n_examples, kept


def metrics_record(
    spec: TaskSpec,
    seed: int,
    values: dict[str, float],
    n_examples: int,
    *,
    family: str,
    kind: str | None,
    evaluated: str,
    mask_size: dict | None,
    started: float,
    device: torch.device,
    settings: TrainingSettings,
    variant: str | None = None,
) -> dict:
    """The metrics JSON every evaluation writes (metrics, sizes, time, device, versions, hash; docs/protocol.md
    §Evaluation and retraining). `kind` is the mask kind evaluated, `variant` the retraining (None otherwise)."""
    return {
        "task": spec.name,
        "seed": seed,
        "family": family,
        "kind": kind,
        "variant": variant,
        "evaluated": evaluated,
        "metrics": values,
        "reported_metric": spec.reported_metric,
        "reported": M.reported(spec, values),
        "stop_metric": spec.stop_metric,
        "stop": M.stop_score(spec, values),
        "n_examples": n_examples,
        "mask_size": mask_size,
        **provenance(started, settings, device_name(device)),
    }


def upgrade_record(record: dict) -> dict:
    """A metrics record or training summary of an older bertlottery in today's contract. Until `variant`
    was added, a retraining's variant was stored under `kind`: it moves there, and `kind` becomes the mask
    kind the variant reads (bertlottery.families.VARIANTS). Today's records come back unchanged."""
    if not isinstance(record, dict) or "variant" in record or "kind" not in record:
        return record
    out = dict(record)
    if "evaluated" not in out:  # a training summary
        out["variant"] = out.pop("kind")
        return out
    retrained = out["evaluated"] == "retrained"
    out["variant"] = out["kind"] if retrained else None
    if retrained and out["kind"] in VARIANTS:
        out["kind"] = VARIANTS[out["kind"]].mask_kind
    if isinstance(out.get("train"), dict):
        out["train"] = upgrade_record(out["train"])
    return out


def evaluate_and_write(
    model: torch.nn.Module,
    spec: TaskSpec,
    data_dir: str | Path,
    output: str | Path,
    *,
    seed: int,
    settings: TrainingSettings,
    family: str,
    kind: str | None,
    evaluated: str,
    mask_size: dict | None,
    started: float,
    device: torch.device,
    extra: dict | None = None,
    variant: str | None = None,
) -> dict:
    """Dev metrics of `model` as a metrics record (plus the `extra` keys and the per-example predictions a
    dev-set bootstrap needs), written to `output`: the one evaluation of evaluate-full, evaluate-pruned
    and retraining."""
    values, n, kept = evaluate_splits(
        model, spec, data_dir, batch_size=settings.eval_batch_size, precision=settings.precision,
        padding_free=settings.padding_free,
    )
    record = metrics_record(
        spec, seed, values, n, family=family, kind=kind, evaluated=evaluated,
        mask_size=mask_size, started=started, device=device, settings=settings, variant=variant,
    )
    record |= extra or {}
    record[PREDICTIONS_FIELD] = kept  # last: the long strings after every number a reader looks for
    write_json(output, record)
    return record


def _common_args(parser: argparse.ArgumentParser, *, outputs: str = "one") -> None:
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--training", required=True, help="resolved training settings (JSON)")
    if outputs == "one":
        parser.add_argument("--output", required=True)
    else:
        parser.add_argument("--output", required=True, action="append", help="one per --mask, in the same order")


def main_evaluate_full(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery evaluate-full", description=__doc__)
    _common_args(parser)
    parser.add_argument("--model-dir", required=True)
    args = parser.parse_args(argv)
    spec = get_task(args.task)
    settings = TrainingSettings.from_arg(args.training, "training")
    configure_torch(settings.tf32, settings.deterministic)
    started = time.time()
    device = pick_device()
    model = load_classifier(args.model_dir, spec.num_labels, attn_implementation=settings.attention)
    record = evaluate_and_write(model.to(device), spec, args.data_dir, args.output, seed=args.seed,
                                settings=settings, family="full", kind=None, evaluated="full", mask_size=None,
                                started=started, device=device)
    print(f"{spec.name} seed {args.seed}: {spec.reported_metric} = {record['reported']:.4f}")


@dataclass(frozen=True)
class PrunedRun:
    mask: str
    family: str
    kind: str
    output: str


def pruned_runs(args: argparse.Namespace) -> list[PrunedRun]:
    """The i-th --mask with the i-th --family, --kind and --output; a count mismatch is an error."""
    counts = {flag: len(getattr(args, flag)) for flag in ("mask", "family", "kind", "output")}
    if len(set(counts.values())) != 1:
        given = ", ".join(f"--{flag} x{n}" for flag, n in counts.items())
        raise BertLotteryError(f"evaluate-pruned: expected one --family, --kind and --output per --mask; got {given}")
    outputs = [str(Path(out).resolve()) for out in args.output]
    if len(set(outputs)) != len(outputs):
        raise BertLotteryError(f"evaluate-pruned: an --output is given twice: {args.output}")
    return [PrunedRun(*row) for row in zip(args.mask, args.family, args.kind, args.output)]


def main_evaluate_pruned(argv: list[str]) -> None:
    """Each mask applied to the fine-tuned model of one (task, seed), one metrics JSON per mask.

    The model is read from disk once (the rule runs one job per task and seed, so imports and loading are
    paid once, not once per mask). Physical pruning mutates the model, so every mask starts from a fresh
    deep copy of the untouched CPU model: each output is the same, byte for byte apart from
    `wall_time_s`, as a job evaluating that mask alone.
    """
    parser = argparse.ArgumentParser(prog="bertlottery evaluate-pruned", description=main_evaluate_pruned.__doc__)
    _common_args(parser, outputs="many")
    parser.add_argument("--model-dir", required=True, help="the fine-tuned model of this task and seed")
    parser.add_argument("--mask", required=True, action="append", help="a mask file (repeat for several)")
    parser.add_argument("--family", required=True, action="append", help="the mask's family, one per --mask")
    parser.add_argument("--kind", required=True, action="append", help="the mask's kind, one per --mask")
    args = parser.parse_args(argv)
    runs = pruned_runs(args)
    spec = get_task(args.task)
    settings = TrainingSettings.from_arg(args.training, "training")
    configure_torch(settings.tf32, settings.deterministic)
    started = time.time()
    device = pick_device()
    missing = [run.mask for run in runs if not Path(run.mask).is_file()]
    if missing:  # before the model is loaded
        raise BertLotteryError(f"evaluate-pruned: mask file(s) not found: {', '.join(missing)}")
    # every mask checked against the job (task, seed, family, kind) before the model is loaded
    masks = [load_mask_for(run.mask, task=spec.name, seed=args.seed, family=run.family, kind=run.kind)
             for run in runs]
    pristine = load_classifier(args.model_dir, spec.num_labels, attn_implementation=settings.attention)
    for i, run in enumerate(runs):
        if i:
            started = time.time()  # the first mask's wall time includes loading, as a one-mask job's does
        model = copy.deepcopy(pristine)
        size = apply_mask(model, masks[i])  # s-masks physically: really smaller
        record = evaluate_and_write(model.to(device), spec, args.data_dir, run.output, seed=args.seed,
                                    settings=settings, family=run.family, kind=run.kind, evaluated="pruned",
                                    mask_size=size, started=started, device=device)
        del model
        print(f"{spec.name} seed {args.seed} {run.family}/{run.kind} pruned: "
              f"{spec.reported_metric} = {record['reported']:.4f}", flush=True)
