"""GLUE dev metrics (docs/protocol.md §Data and metrics): what the paper reports and what the 90 % stop rule uses."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from bertlottery.glue.tasks import TaskSpec


def classification_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, MCC and binary F1 (positive class 1) of class-index predictions."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    out = {
        "accuracy": float((predictions == labels).mean()),
        # sklearn returns 0.0 for a constant predictor, as the original's evaluator did.
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }
    if labels.max(initial=0) <= 1 and predictions.max(initial=0) <= 1:
        out["f1"] = float(f1_score(labels, predictions, zero_division=0.0))
    return out


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman and their mean (STS-B's stop-rule metric). Constant predictions give 0."""
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        pearson = spearman = 0.0
    else:
        pearson = float(pearsonr(predictions, labels)[0])
        spearman = float(spearmanr(predictions, labels)[0])
    return {"pearson": pearson, "spearman": spearman, "pearson_spearman": (pearson + spearman) / 2}


def task_metrics(spec: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of one dev split from raw model outputs ([n, num_labels] logits or [n] / [n,1] scores)."""
    logits = np.asarray(logits)
    if spec.is_regression:
        return regression_metrics(logits.reshape(-1), labels)
    return classification_metrics(logits.argmax(axis=-1), labels)


def reported(spec: TaskSpec, metrics: dict[str, float]) -> float:
    return metrics[spec.reported_metric]


def stop_score(spec: TaskSpec, metrics: dict[str, float]) -> float:
    return metrics[spec.stop_metric]
