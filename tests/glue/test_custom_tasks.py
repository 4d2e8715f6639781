"""Tasks of one's own (config custom_tasks; glue/tasks.py, glue/reading.py): every key of an entry checked,
files read by column name (CSV, TSV, JSON Lines) or from a hub dataset, and bad files refused with the
file, the line and what was expected, as GLUE files are. The whole DAG on the committed example:
tests/test_workflow_custom_task.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from bertlottery.errors import BertLotteryError
from bertlottery.glue.metrics import reported, stop_score, task_metrics
from bertlottery.glue.prepare import prepare_data
from bertlottery.glue.reading import custom_examples_from_dataset, read_split
from bertlottery.glue.tasks import (
    CUSTOM_TASKS_ENV,
    check_task_names,
    custom_task_spec,
    custom_tasks_json,
    get_task,
)

EXAMPLE = REPO / "tests" / "data" / "custom"


def example_section() -> dict:
    return yaml.safe_load((EXAMPLE / "custom.yaml").read_text())["custom_tasks"]


@pytest.fixture
def registered(monkeypatch):
    """The example's tasks handed to this process as the workflow hands them to every job."""
    monkeypatch.setenv(CUSTOM_TASKS_ENV, custom_tasks_json(example_section(), base_dir=REPO))


def register(monkeypatch, name: str, entry: dict, base_dir: Path) -> None:
    monkeypatch.setenv(CUSTOM_TASKS_ENV, custom_tasks_json({name: entry}, base_dir=base_dir))


def test_the_example_reads_by_column_name(registered):
    reviews = get_task("Reviews")
    assert reviews.labels == ("negative", "neutral", "positive") and reviews.num_labels == 3
    assert (reviews.reported_metric, reviews.stop_metric) == ("accuracy", "mcc")
    train = read_split("Reviews", "train")
    assert len(train.examples) == 64 and train.rows_in_source == 64 and train.sha256
    first = train.examples[0]  # a quoted CSV field with commas and doubled quotes
    assert first.text_a.startswith('"My friend looked bad near the sea, and') and first.text_b is None
    assert (first.label, first.line) == (0, 2)
    similarity = get_task("Similarity")
    assert similarity.is_regression and similarity.num_labels == 1 and similarity.score_range is None
    dev = read_split("Similarity", "dev", glue_dir="/no/such/folder")  # glue_dir does not apply
    assert len(dev.examples) == 32 and dev.examples[0].text_b and isinstance(dev.examples[0].label, float)


def test_prepare_data_writes_the_card(registered, tmp_path, tiny_model_dir):
    card = prepare_data("Reviews", str(tiny_model_dir), tmp_path, max_seq_length=32)
    assert card["labels"] == ["negative", "neutral", "positive"] and card["num_labels"] == 3
    assert card["source"].startswith("files:") and card["source"].endswith("reviews_dev.csv")
    assert card["splits"]["train"]["label_counts"] == {"negative": 22, "neutral": 21, "positive": 21}
    assert (tmp_path / "splits" / "dev.safetensors").is_file()


def test_metrics_of_a_three_class_and_a_regression_task(registered):
    import numpy as np

    reviews = get_task("Reviews")
    metrics = task_metrics(reviews, np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, 1]))
    assert reported(reviews, metrics) == 0.75 and "f1" not in metrics
    assert stop_score(reviews, metrics) == metrics["mcc"]
    similarity = get_task("Similarity")
    assert reported(similarity, task_metrics(similarity, np.array([0.1, 0.5, 0.9]), np.array([0.0, 0.4, 1.0]))) > 0.99


def test_tsv_files_and_a_hub_dataset(monkeypatch, tmp_path):
    (tmp_path / "train.tsv").write_text('sentence\tgold\n"an unbalanced quote\tyes\nplain\tno\n\n', encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("sentence\tgold\nthird\tyes\n", encoding="utf-8")
    entry = {"train": "train.tsv", "dev": "dev.tsv", "text": "sentence", "label": "gold", "labels": ["no", "yes"],
             "metric": "f1"}
    register(monkeypatch, "Mine", entry, tmp_path)
    examples = read_split("Mine", "train").examples
    assert [(e.text_a, e.label, e.line) for e in examples] == [('"an unbalanced quote', 1, 2), ("plain", 0, 3)]

    import datasets

    labels = datasets.ClassLabel(names=["no", "yes"])
    dataset = datasets.Dataset.from_dict({"s": ["a", "b"], "y": [1, 0]},
                                         features=datasets.Features({"s": datasets.Value("string"), "y": labels}))
    spec = custom_task_spec("Hubbed", {"dataset": "someone/data", "text": "s", "label": "y", "labels": ["no", "yes"]})
    source = custom_examples_from_dataset(spec, "dev", dataset)
    assert [(e.text_a, e.label) for e in source.examples] == [("a", 1), ("b", 0)]
    assert source.source == "hub:someone/data:validation"
    with pytest.raises(BertLotteryError, match=r"hub:someone/data:validation row 1: no column 'y'"):
        custom_examples_from_dataset(spec, "dev", dataset.rename_column("y", "z"))


@pytest.mark.parametrize("entry, message", [
    ({"train": "a.csv", "dev": "b.csv", "text": "t", "label": "y", "labels": ["x"]},
     r"custom_tasks.T.labels: \['x'\]; expected a list of two or more distinct"),
    ({"train": "a.csv", "dev": "b.csv", "text": "t", "label": "y", "labels": ["a", "b", "c"], "metric": "f1"},
     r"custom_tasks.T.metric: 'f1'; expected one of accuracy, mcc, f1 for classification \(f1: two labels"),
    ({"train": "a.csv", "dev": "b.csv", "text": "t", "label": "y", "labels": None, "metric": "accuracy"},
     r"custom_tasks.T.metric: 'accuracy'; expected one of pearson, spearman, pearson_spearman for regression"),
    ({"train": "a.xlsx", "dev": "b.csv", "text": "t", "label": "y"},
     r"custom_tasks.T.train: 'a.xlsx'; expected a .csv, .tsv or .jsonl file"),
    ({"dataset": "x/y", "train": "a.csv", "text": "t", "label": "y"},
     r"custom_tasks.T: expected either files \(train: and dev:\) or a hub dataset id"),
    ({"dataset": "x/y", "text": "t", "label": "y", "splits": {"train": "train"}},
     r"custom_tasks.T.splits: .*expected \{train: <hub split>, dev: <hub split>\}"),
    ({"train": "a.csv", "dev": "b.csv", "label": "y"}, r"custom_tasks.T.text: None; expected a column name"),
    ({"train": "a.csv", "dev": "b.csv", "text": "t", "label": "y", "colour": 1},
     r"custom_tasks.T: unknown key\(s\) \['colour'\]"),
])
def test_bad_entries_name_the_key(entry, message):
    with pytest.raises(BertLotteryError, match=message):
        custom_task_spec("T", entry)


def test_task_names(monkeypatch):
    with pytest.raises(BertLotteryError, match="custom_tasks.RTE: RTE is a GLUE task"):
        custom_task_spec("RTE", {"dataset": "x/y", "text": "t", "label": "y"})
    check_task_names(["RTE", "Mine"], {"Mine": {}})
    with pytest.raises(BertLotteryError, match="config key tasks: Yours is neither a GLUE task .* nor a name of "
                                               r"custom_tasks \(Mine\)"):
        check_task_names(["RTE", "Yours"], {"Mine": {}})
    monkeypatch.delenv(CUSTOM_TASKS_ENV, raising=False)
    with pytest.raises(BertLotteryError, match=f"unknown task 'Mine'.*none given to this process in {CUSTOM_TASKS_ENV}"):
        get_task("Mine")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, text, message", [
    ("bad.csv", "review,rating\ngood film,positive,extra\n", r"bad.csv:2: expected 2 CSV columns \(as the header"),
    ("bad.csv", "text,rating\ngood film,positive\n", r"bad.csv:2: no column 'review' \(found text, rating\); "
                                                      r"expected columns review, rating \(labels negative, neutral"),
    ("bad.csv", "review,rating\ngood film,great\n", r"bad.csv:2: label 'great' is not one of negative, neutral, positive"),
    ("bad.csv", "review,rating\n", r"bad.csv: no data rows; expected columns review, rating"),
    ("bad.csv", "", r"bad.csv: no data rows"),
    ("bad.jsonl", '{"review": "a", "rating": "neutral"}\n{"review": "b", "rating"\n', r"bad.jsonl:2: not a JSON object"),
    ("bad.jsonl", '["a", "neutral"]\n', r"bad.jsonl:1: a JSON list, expected an object"),
    ("bad.jsonl", '{"review": 3, "rating": "neutral"}\n', r"bad.jsonl:1: a text column holds \[3, None\]; expected strings"),
])
def test_bad_files_name_the_file_the_line_and_what_was_expected(monkeypatch, tmp_path, name, text, message):
    path = _write(tmp_path / name, text)
    entry = {"train": str(path), "dev": str(path), "text": "review", "label": "rating",
             "labels": ["negative", "neutral", "positive"]}
    register(monkeypatch, "Reviews", entry, tmp_path)
    with pytest.raises(BertLotteryError, match=message):
        read_split("Reviews", "train")


def test_bad_regression_labels_and_missing_and_undecodable_files(monkeypatch, tmp_path):
    entry = {"train": "t.jsonl", "dev": "d.jsonl", "text": "a", "label": "y", "labels": None}
    register(monkeypatch, "Scores", entry, tmp_path)
    with pytest.raises(BertLotteryError, match=r"t.jsonl: file not found; expected the train split of Scores as a "
                                               r"JSONL file with columns a, y \(numeric labels \(regression\)\)"):
        read_split("Scores", "train")
    _write(tmp_path / "t.jsonl", json.dumps({"a": "x", "y": "nan"}) + "\n")
    with pytest.raises(BertLotteryError, match=r"t.jsonl:1: label 'nan' is not a finite number"):
        read_split("Scores", "train")
    (tmp_path / "t.jsonl").write_bytes(b'{"a": "x", "y": 1}\n{"a": "\xff", "y": 2}\n')
    with pytest.raises(BertLotteryError, match=r"t.jsonl:2: not valid utf-8 text"):
        read_split("Scores", "train")
