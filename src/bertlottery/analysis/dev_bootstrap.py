"""Bootstrap over dev examples: each run's reported metric on resampled dev sets, from the per-example
predictions its metrics record keeps (glue/predictions.py).

Every run of a task is resampled with the same example indices (replicate r draws the same examples for
every seed, family and kind), so a difference between two runs, or a mean over seeds, is bootstrapped
as a paired statistic. The metrics are computed for all replicates at once, with the formulas of
glue/metrics.py (the identity resample gives the record's number: tests/analysis/test_dev_bootstrap.py).
Records without predictions (older runs) are skipped: their claims carry the interval over seeds only.
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats as sps

from bertlottery.errors import BertLotteryError
from bertlottery.glue.predictions import record_predictions
from bertlottery.glue.tasks import get_task

DEV_RESAMPLES = 1000  # replicates per run: a 95 % percentile interval to about ±0.1 of its width
DEV_SPLIT = "dev"  # the split of the reported metric (MNLI: matched)


def resample_indices(task: str, n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, n] example indices drawn with replacement, the same for every run of `task`."""
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    return rng.integers(0, n, size=(resamples, n), dtype=np.int64)


def _mcc(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Matthews correlation of each row (sklearn's multiclass formula, 0 where undefined)."""
    classes = np.unique(np.concatenate([labels.ravel(), predicted.ravel()]))
    k, rows = len(classes), labels.shape[0]
    codes = np.searchsorted(classes, labels) * k + np.searchsorted(classes, predicted)
    flat = (codes + (np.arange(rows) * k * k)[:, None]).ravel()
    confusion = np.bincount(flat, minlength=rows * k * k).reshape(rows, k, k).astype(np.float64)
    t_sum, p_sum = confusion.sum(axis=2), confusion.sum(axis=1)
    correct = np.trace(confusion, axis1=1, axis2=2)
    n = p_sum.sum(axis=1)
    cov_tp = correct * n - (t_sum * p_sum).sum(axis=1)
    cov_pp = n**2 - (p_sum * p_sum).sum(axis=1)
    cov_tt = n**2 - (t_sum * t_sum).sum(axis=1)
    denom = cov_pp * cov_tt
    return np.where(denom == 0, 0.0, cov_tp / np.sqrt(np.where(denom == 0, 1.0, denom)))


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    return np.where(denom == 0, 0.0, (x * y).sum(axis=1) / np.where(denom == 0, 1.0, denom))


def resampled_metric(metric: str, predicted: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The named metric (accuracy, mcc, f1, pearson, spearman, pearson_spearman) on each resample."""
    pred, gold = predicted[idx], labels[idx]
    if metric == "accuracy":
        return (pred == gold).mean(axis=1)
    if metric == "mcc":
        return _mcc(gold, pred)
    if metric == "f1":
        tp = ((gold == 1) & (pred == 1)).sum(axis=1).astype(float)
        denom = (gold == 1).sum(axis=1) + (pred == 1).sum(axis=1)
        return np.where(denom == 0, 0.0, 2 * tp / np.where(denom == 0, 1, denom))
    pred, gold = pred.astype(np.float64), gold.astype(np.float64)
    pearson = _pearson(pred, gold)
    if metric == "pearson":
        return pearson
    spearman = _pearson(sps.rankdata(pred, axis=1), sps.rankdata(gold, axis=1))
    if metric == "spearman":
        return spearman
    if metric == "pearson_spearman":
        return (pearson + spearman) / 2
    raise BertLotteryError(f"dev bootstrap: unknown metric {metric!r}")


def dev_bootstrap(records: list[tuple[dict, str]], run_keys: Callable[[dict], dict], resamples: int = DEV_RESAMPLES,
                  seed: int = 0) -> pd.DataFrame:
    """One row per (run, replicate): the run's reported metric on the replicate's resampled dev set.
    `records` are (metrics record, source path), `run_keys` gives a record's key columns (aggregate's);
    records without predictions are skipped."""
    frames, indices, labels_of = [], {}, {}
    for record, source in records:
        spec = get_task(record["task"])
        kept = record_predictions(record, spec, source)
        if not kept or DEV_SPLIT not in kept:
            continue
        predicted, labels = kept[DEV_SPLIT]
        if spec.name not in indices:
            indices[spec.name] = resample_indices(spec.name, len(labels), resamples, seed)
            labels_of[spec.name] = (labels, source)
        elif not np.array_equal(labels_of[spec.name][0], labels):
            raise BertLotteryError(f"{source}: its dev labels differ from those of {labels_of[spec.name][1]}; "
                                   "a paired dev bootstrap needs every run of a task on the same dev set")
        values = resampled_metric(record["reported_metric"], predicted, labels, indices[spec.name])
        frames.append(pd.DataFrame(run_keys(record) | {"replicate": np.arange(resamples), "value": values}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["replicate", "value"])
