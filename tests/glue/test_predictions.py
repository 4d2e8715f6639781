"""Per-example predictions in a metrics record: compact, exact, and enough to recompute every metric."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertlottery.errors import BertLotteryError
from bertlottery.glue import metrics as M
from bertlottery.glue.predictions import (
    PREDICTIONS_FIELD,
    decode_split,
    encode_split,
    metrics_of_predictions,
    record_predictions,
)
from bertlottery.glue.tasks import get_task


@pytest.mark.parametrize("task, num_labels", [("CoLA", 2), ("MRPC", 2), ("MNLI", 3)])
def test_class_predictions_recompute_the_metrics_exactly(task, num_labels):
    spec = get_task(task)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(301, num_labels)).astype(np.float32)
    labels = rng.integers(0, num_labels, size=301)
    entry = encode_split(spec, logits, labels)
    assert len(entry["predicted"]) == len(entry["labels"]) == 301  # one character per example
    predicted, decoded_labels = decode_split(spec, json.loads(json.dumps(entry)), "here")
    assert (predicted == logits.argmax(-1)).all() and (decoded_labels == labels).all()
    assert metrics_of_predictions(spec, predicted, decoded_labels) == M.task_metrics(spec, logits, labels)


def test_regression_scores_round_trip_as_exact_float32():
    spec = get_task("STS-B")
    rng = np.random.default_rng(1)
    scores = (rng.normal(size=(257, 1)) * 2 + 2.5).astype(np.float32)
    labels = np.round(rng.uniform(0, 5, size=257), 2).astype(np.float32)
    entry = encode_split(spec, scores, labels)
    predicted, decoded_labels = decode_split(spec, json.loads(json.dumps(entry)), "here")
    assert predicted.dtype == np.float32 and (predicted == scores[:, 0]).all() and (decoded_labels == labels).all()
    assert metrics_of_predictions(spec, predicted, decoded_labels) == M.task_metrics(spec, scores, labels)
    assert max(map(len, entry["predicted"].split())) <= 15  # shortest round-trip decimals, not float64 repr


def test_equal_outputs_give_equal_strings():
    spec = get_task("STS-B")
    scores = np.array([[0.1], [3.0], [-0.25]], dtype=np.float32)
    assert encode_split(spec, scores, scores[:, 0]) == encode_split(spec, scores.copy(), scores[:, 0].copy())
    assert encode_split(spec, scores, scores[:, 0])["predicted"] == "0.1 3 -0.25"


def test_records_without_predictions_still_read():
    assert record_predictions({"task": "RTE", "metrics": {}}, get_task("RTE"), "old.json") is None


@pytest.mark.parametrize("kept, message", [
    ([1, 2], "'predictions' is list, expected an object"),
    ({"dev": {"predicted": "01"}}, r"old.json \[predictions\]\[dev\]: predictions are not"),
    ({"dev": {"predicted": "01", "labels": "011"}}, "2 predictions but 3 labels"),
    ({"dev": {"predicted": "0x", "labels": "01"}}, "digits 0-9"),
])
def test_malformed_predictions_are_named_errors(kept, message):
    with pytest.raises(BertLotteryError, match=message):
        record_predictions({PREDICTIONS_FIELD: kept}, get_task("RTE"), "old.json")


def test_class_indices_beyond_one_digit_are_refused():
    with pytest.raises(BertLotteryError, match="class indices must be 0..9"):
        encode_split(get_task("RTE"), np.zeros((2, 2)), np.array([0, 12]))
