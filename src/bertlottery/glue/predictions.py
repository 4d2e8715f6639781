"""Per-example dev predictions kept in a metrics record: what a bootstrap over dev examples needs to
recompute every task metric (accuracy, MCC, F1, Pearson, Spearman) without the model or the data.

A record's `predictions` field maps each dev split ("dev", MNLI's "dev_mm") to its predictions and gold
labels, each one compact string, so a record stays small and its bytes depend only on the numbers:

- classification: one digit per example, the predicted class (argmax of the logits) and the label;
- regression (STS-B): the scores as float32 in their shortest round-trip decimal, space-separated, so
  decoding gives back the exact float32 values and the metrics equal the record's bit for bit.

Records written before the field existed have none: `record_predictions` returns None for them.
"""

from __future__ import annotations

import numpy as np

from bertlottery.errors import BertLotteryError
from bertlottery.glue import metrics as M
from bertlottery.glue.tasks import TaskSpec

PREDICTIONS_FIELD = "predictions"  # the metrics record's key
_MAX_CLASSES = 10  # one digit per class index


def _encode_classes(values: np.ndarray, what: str) -> str:
    values = np.asarray(values).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= _MAX_CLASSES):
        raise BertLotteryError(f"{what}: class indices must be 0..{_MAX_CLASSES - 1} to be kept as digits; "
                               f"got {values.min()}..{values.max()}")
    return "".join(map(str, values.tolist()))


def _encode_scores(values: np.ndarray) -> str:
    scores = np.asarray(values, dtype=np.float32).reshape(-1)
    return " ".join(np.format_float_positional(v, unique=True, trim="-") for v in scores)


def encode_split(spec: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """One split's {"predicted", "labels"} strings from the model's raw outputs and the gold labels."""
    logits = np.asarray(logits)
    if spec.is_regression:
        return {"predicted": _encode_scores(logits), "labels": _encode_scores(labels)}
    where = f"{spec.name} predictions"
    return {"predicted": _encode_classes(logits.argmax(axis=-1), where), "labels": _encode_classes(labels, where)}


def decode_split(spec: TaskSpec, entry: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, labels) arrays of one split's entry: class indices, or float32 scores (STS-B)."""
    try:
        predicted, labels = entry["predicted"], entry["labels"]
        if spec.is_regression:
            arrays = (np.array(predicted.split(), dtype=np.float32), np.array(labels.split(), dtype=np.float32))
        else:
            arrays = (np.frombuffer(predicted.encode("ascii"), np.uint8).astype(np.int64) - ord("0"),
                      np.frombuffer(labels.encode("ascii"), np.uint8).astype(np.int64) - ord("0"))
    except (KeyError, TypeError, AttributeError, ValueError, UnicodeEncodeError) as exc:
        raise BertLotteryError(f"{where}: predictions are not {{'predicted': str, 'labels': str}} of "
                               f"{'scores' if spec.is_regression else 'class digits'} ({exc})") from None
    if len(arrays[0]) != len(arrays[1]):
        raise BertLotteryError(f"{where}: {len(arrays[0])} predictions but {len(arrays[1])} labels")
    if not spec.is_regression and any(((a < 0) | (a > 9)).any() for a in arrays):
        raise BertLotteryError(f"{where}: class predictions must be digits 0-9")
    return arrays


def metrics_of_predictions(spec: TaskSpec, predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics of decoded predictions (the same numbers as glue.metrics.task_metrics)."""
    if spec.is_regression:
        return M.regression_metrics(predicted, labels)
    return M.classification_metrics(predicted, labels)


def record_predictions(record: dict, spec: TaskSpec, source: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """{split: (predicted, labels)} of a metrics record; None when the record has none (older runs)."""
    kept = record.get(PREDICTIONS_FIELD)
    if kept is None:
        return None
    if not isinstance(kept, dict):
        raise BertLotteryError(f"{source}: '{PREDICTIONS_FIELD}' is {type(kept).__name__}, expected an object")
    return {split: decode_split(spec, entry, f"{source} [{PREDICTIONS_FIELD}][{split}]")
            for split, entry in kept.items()}
