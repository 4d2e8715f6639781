import numpy as np
import pytest

from bertlottery.glue import metrics as M
from bertlottery.glue.tasks import get_task


def test_accuracy_mcc_f1_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    preds = np.array([1, 1, 0, 0, 0, 1, 1, 0])
    # tp=3 fn=1 fp=1 tn=3: acc 6/8, f1 = 2*3/(2*3+1+1) = 0.75, mcc = (9-1)/sqrt(4*4*4*4) = 0.5
    out = M.classification_metrics(preds, labels)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["f1"] == pytest.approx(0.75)
    assert out["mcc"] == pytest.approx(0.5)


def test_constant_predictor_has_zero_mcc():
    labels = np.array([0, 1, 1, 0, 1])
    out = M.classification_metrics(np.ones(5, dtype=int), labels)
    assert out["mcc"] == 0.0
    assert out["accuracy"] == pytest.approx(0.6)


def test_regression_pearson_spearman_by_hand():
    labels = np.array([1.0, 2.0, 3.0, 4.0])
    preds = np.array([1.0, 3.0, 2.0, 4.0])
    out = M.regression_metrics(preds, labels)
    # pearson: centred x=(-1.5,-.5,.5,1.5), y=(-1.5,.5,-.5,1.5): sum xy=4, sum x^2=sum y^2=5 -> 0.8
    assert out["pearson"] == pytest.approx(0.8)
    # spearman on ranks: d = (0,1,-1,0) -> 1 - 6*2/(4*15) = 0.8
    assert out["spearman"] == pytest.approx(0.8)
    assert out["pearson_spearman"] == pytest.approx(0.8)


def test_constant_regression_is_zero_not_nan():
    out = M.regression_metrics(np.full(4, 2.5), np.array([1.0, 2.0, 3.0, 4.0]))
    assert out == {"pearson": 0.0, "spearman": 0.0, "pearson_spearman": 0.0}


@pytest.mark.parametrize(
    "task, reported, stop",
    [("CoLA", "mcc", "mcc"), ("STS-B", "pearson", "pearson_spearman"), ("MRPC", "accuracy", "accuracy"),
     ("QQP", "accuracy", "accuracy"), ("MNLI", "accuracy", "accuracy"), ("RTE", "accuracy", "accuracy")],
)
def test_task_metric_choice_follows_the_spec(task, reported, stop):
    spec = get_task(task)
    assert (spec.reported_metric, spec.stop_metric) == (reported, stop)


def test_task_metrics_from_logits():
    spec = get_task("RTE")
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    out = M.task_metrics(spec, logits, np.array([0, 1, 1]))
    assert out["accuracy"] == pytest.approx(2 / 3)
    sts = get_task("STS-B")
    out = M.task_metrics(sts, np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.0, 3.0]))
    assert out["pearson"] == pytest.approx(1.0)


def _cases():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64, 1000):
        for classes in (2, 3):
            for p_one in (0.0, 0.1, 0.5, 1.0):
                labels = rng.integers(0, classes, n)
                preds = np.where(rng.random(n) < p_one, labels, rng.integers(0, classes, n))
                yield labels, preds
    yield np.array([0, 1, 1, 0]), np.ones(4, dtype=int)
    yield np.array([1, 1, 1]), np.array([1, 1, 0])
    yield np.array([0, 1, 2, 2]), np.array([2, 2, 2, 2])


def test_mcc_and_f1_equal_sklearn_exactly():
    """The numpy MCC and F1 give sklearn's float64 values bit for bit (metrics JSONs stay identical)."""
    from sklearn.metrics import f1_score, matthews_corrcoef

    checked = 0
    for labels, preds in _cases():
        out = M.classification_metrics(preds, labels)
        assert out["mcc"] == float(matthews_corrcoef(labels, preds)), (labels, preds)
        if labels.max() <= 1 and preds.max() <= 1:
            assert out["f1"] == float(f1_score(labels, preds, zero_division=0.0)), (labels, preds)
            checked += 1
    assert checked >= 20
