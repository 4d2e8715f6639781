"""dev_bootstrap.py: each run's metric on resampled dev sets, from the predictions its record keeps."""

from __future__ import annotations

import numpy as np
import pytest

from bertlottery.analysis.aggregate import run_keys
from bertlottery.analysis.dev_bootstrap import dev_bootstrap, resample_indices, resampled_metric
from bertlottery.errors import BertLotteryError
from bertlottery.glue import metrics as M
from bertlottery.glue.predictions import encode_split
from bertlottery.glue.tasks import get_task


@pytest.mark.parametrize("metric", ["accuracy", "mcc", "f1"])
def test_the_identity_resample_gives_the_tasks_metric(metric):
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    idx = np.stack([np.arange(500), rng.integers(0, 500, 500)])
    values = resampled_metric(metric, predicted, labels, idx)
    assert values[0] == pytest.approx(M.classification_metrics(predicted, labels)[metric], abs=1e-12)
    resampled = M.classification_metrics(predicted[idx[1]], labels[idx[1]])[metric]
    assert values[1] == pytest.approx(resampled, abs=1e-12)


@pytest.mark.parametrize("metric", ["pearson", "spearman", "pearson_spearman"])
def test_the_identity_resample_gives_the_regression_metrics(metric):
    rng = np.random.default_rng(1)
    labels = np.round(rng.uniform(0, 5, 300), 1).astype(np.float32)  # ties, as STS-B has
    predicted = (labels + rng.normal(0, 1, 300)).astype(np.float32)
    idx = np.stack([np.arange(300), rng.integers(0, 300, 300)])
    values = resampled_metric(metric, predicted, labels, idx)
    assert values[0] == pytest.approx(M.regression_metrics(predicted, labels)[metric], abs=1e-9)
    assert values[1] == pytest.approx(M.regression_metrics(predicted[idx[1]], labels[idx[1]])[metric], abs=1e-9)


def test_constant_predictions_give_zero_mcc_as_the_metric_does():
    labels = np.array([0, 1, 1, 0])
    assert resampled_metric("mcc", np.zeros(4, int), labels, np.arange(4)[None])[0] == 0.0


def record(task, seed, kind, logits, labels):
    spec = get_task(task)
    return {"task": task, "seed": seed, "family": "s", "kind": kind, "evaluated": "pruned",
            "reported_metric": spec.reported_metric, "predictions": {"dev": encode_split(spec, logits, labels)}}


def test_runs_of_a_task_share_their_resamples_and_old_records_are_skipped():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    good = np.eye(2)[labels] + rng.normal(0, 0.8, (200, 2))
    runs = [(record("RTE", 1, "good", good, labels), "a.json"), (record("RTE", 1, "bad", good, labels), "b.json"),
            ({"task": "RTE", "seed": 2, "family": "s", "kind": "good", "evaluated": "pruned"}, "old.json")]
    table = dev_bootstrap(runs, run_keys, resamples=50)
    assert len(table) == 100 and set(table["kind"]) == {"good", "bad"}
    by_kind = table.pivot(index="replicate", columns="kind", values="value")
    assert (by_kind["good"] == by_kind["bad"]).all()  # same predictions, same resamples: identical replicates
    assert by_kind["good"].std() > 0
    assert dev_bootstrap(runs, run_keys, resamples=50).equals(table)  # deterministic
    assert (resample_indices("RTE", 10, 3) == resample_indices("RTE", 10, 3)).all()


def test_different_dev_labels_within_a_task_are_an_error():
    labels = np.array([0, 1, 1, 0])
    other = np.array([1, 1, 1, 0])
    runs = [(record("RTE", 1, "good", np.eye(2)[labels], labels), "a.json"),
            (record("RTE", 2, "good", np.eye(2)[labels], other), "b.json")]
    with pytest.raises(BertLotteryError, match="b.json: its dev labels differ from those of a.json"):
        dev_bootstrap(runs, run_keys, resamples=5)
