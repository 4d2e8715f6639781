"""GLUE dev metrics (docs/protocol.md §Data and metrics): what the paper reports and what the 90 % stop rule uses."""

from __future__ import annotations

import numpy as np

from bertlottery.glue.tasks import TaskSpec

# MCC and F1 are sklearn's formulas written out in numpy, operation for operation (so the same float64
# numbers, checked against sklearn in tests/glue): importing sklearn.metrics (and the scipy.stats it
# pulls in) costs 1-2 s, paid by every model job. STS-B's correlations import scipy when needed.


def matthews_corrcoef(labels: np.ndarray, predictions: np.ndarray) -> float:
    """sklearn.metrics.matthews_corrcoef (multiclass; 0.0 when undefined, e.g. a constant predictor)."""
    classes, codes = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    k, n = len(classes), len(labels)
    confusion = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k)
    t_sum = confusion.sum(axis=1, dtype=np.float64)
    p_sum = confusion.sum(axis=0, dtype=np.float64)
    n_correct = np.trace(confusion, dtype=np.float64)
    n_samples = p_sum.sum()
    cov_ytyp = n_correct * n_samples - np.dot(t_sum, p_sum)
    cov_ypyp = n_samples**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n_samples**2 - np.dot(t_sum, t_sum)
    cov_ypyp_ytyt = cov_ypyp * cov_ytyt
    return 0.0 if cov_ypyp_ytyt == 0 else float(cov_ytyp / np.sqrt(cov_ypyp_ytyt))


def binary_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """sklearn.metrics.f1_score, positive class 1, zero_division=0: 2 tp / (true + predicted positives)."""
    tp = float(np.sum((labels == 1) & (predictions == 1)))
    denom = float(np.sum(labels == 1)) + float(np.sum(predictions == 1))
    return 0.0 if denom == 0 else float((2.0 * tp) / denom)


def classification_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, MCC and binary F1 (positive class 1) of class-index predictions."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    out = {
        "accuracy": float((predictions == labels).mean()),
        # 0.0 for a constant predictor, as sklearn and the original's evaluator give.
        "mcc": matthews_corrcoef(labels, predictions),
    }
    if labels.max(initial=0) <= 1 and predictions.max(initial=0) <= 1:
        out["f1"] = binary_f1(labels, predictions)
    return out


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman and their mean (STS-B's stop-rule metric). Constant predictions give 0."""
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    from scipy.stats import pearsonr, spearmanr

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
