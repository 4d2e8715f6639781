"""GLUE task registry: file layout, columns, labels and the metrics of docs/protocol.md §Data and metrics.

Beyond GLUE, a config's `custom_tasks` names tasks of one's own (files or a hub dataset, columns, labels,
metric; docs/protocol.md §Your own task). The workflow checks them and hands them to every job in the
environment variable CUSTOM_TASKS_ENV (JSON, paths made absolute), where `get_task` finds them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertlottery.errors import BertLotteryError


@dataclass(frozen=True)
class TsvLayout:
    """Where the fields sit in the classic `download_glue_data.py` TSV files."""

    has_header: bool
    n_columns: dict[str, int]  # split -> expected number of tab-separated columns
    text_a: int
    text_b: int | None
    label: int  # column index; negative counts from the end (MNLI's gold_label)
    encoding: str = "utf-8"
    files: dict[str, str] = field(default_factory=lambda: {"train": "train.tsv", "dev": "dev.tsv"})
    skip_malformed: bool = False  # QQP: the original processor skips rows with missing fields


@dataclass(frozen=True)
class HubLayout:
    """Where the fields sit in HuggingFace `nyu-mll/glue`."""

    config: str
    text_a: str
    text_b: str | None
    splits: dict[str, str]  # our split -> hub split


@dataclass(frozen=True)
class CustomSource:
    """Where a custom task's examples are: files per split (CSV, TSV or JSON Lines, with named columns) or
    a hub dataset id; and the names of its columns."""

    text_a: str
    text_b: str | None
    label: str
    files: dict[str, str] | None = None  # split -> path (absolute once registered)
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation"})


@dataclass(frozen=True)
class TaskSpec:
    name: str
    labels: tuple[str, ...] | None  # None for regression (STS-B); order = class index
    reported_metric: str  # what the paper's tables and figures show
    stop_metric: str  # what the 90 % stop rule of the mask searches uses
    tsv: TsvLayout | None
    hub: HubLayout | None
    dev_splits: tuple[str, ...] = ("dev",)
    score_range: tuple[float, float] | None = None  # a regression label outside it is refused (STS-B: 0..5)
    custom: CustomSource | None = None  # a task of the config's custom_tasks (not GLUE)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.dev_splits)


def _pair_hub(config: str, a: str = "sentence1", b: str = "sentence2") -> HubLayout:
    return HubLayout(config, a, b, {"train": "train", "dev": "validation"})


# Label orders follow the original code's processors (transformers 2.5.1), so class indices match it.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec(
            "CoLA", ("0", "1"), "mcc", "mcc",
            TsvLayout(False, {"train": 4, "dev": 4}, text_a=3, text_b=None, label=1),
            HubLayout("cola", "sentence", None, {"train": "train", "dev": "validation"}),
        ),
        TaskSpec(
            "SST-2", ("0", "1"), "accuracy", "accuracy",
            TsvLayout(True, {"train": 2, "dev": 2}, text_a=0, text_b=None, label=1),
            HubLayout("sst2", "sentence", None, {"train": "train", "dev": "validation"}),
        ),
        TaskSpec(
            "MRPC", ("0", "1"), "accuracy", "accuracy",
            TsvLayout(True, {"train": 5, "dev": 5}, text_a=3, text_b=4, label=0, encoding="utf-8-sig"),
            _pair_hub("mrpc"),
        ),
        TaskSpec(
            "QQP", ("0", "1"), "accuracy", "accuracy",
            TsvLayout(True, {"train": 6, "dev": 6}, text_a=3, text_b=4, label=5, skip_malformed=True),
            _pair_hub("qqp", "question1", "question2"),
        ),
        TaskSpec(
            "STS-B", None, "pearson", "pearson_spearman",
            TsvLayout(True, {"train": 10, "dev": 10}, text_a=7, text_b=8, label=9),
            _pair_hub("stsb"), score_range=(0.0, 5.0),
        ),
        TaskSpec(
            "MNLI", ("contradiction", "entailment", "neutral"), "accuracy", "accuracy",
            TsvLayout(
                True, {"train": 12, "dev": 16, "dev_mm": 16}, text_a=8, text_b=9, label=-1,
                files={"train": "train.tsv", "dev": "dev_matched.tsv", "dev_mm": "dev_mismatched.tsv"},
            ),
            HubLayout("mnli", "premise", "hypothesis",
                      {"train": "train", "dev": "validation_matched", "dev_mm": "validation_mismatched"}),
            dev_splits=("dev", "dev_mm"),
        ),
        TaskSpec(
            "QNLI", ("entailment", "not_entailment"), "accuracy", "accuracy",
            TsvLayout(True, {"train": 4, "dev": 4}, text_a=1, text_b=2, label=3),
            _pair_hub("qnli", "question", "sentence"),
        ),
        TaskSpec(
            "RTE", ("entailment", "not_entailment"), "accuracy", "accuracy",
            TsvLayout(True, {"train": 4, "dev": 4}, text_a=1, text_b=2, label=3),
            _pair_hub("rte"),
        ),
        TaskSpec(
            "WNLI", ("0", "1"), "accuracy", "accuracy",
            TsvLayout(True, {"train": 4, "dev": 4}, text_a=1, text_b=2, label=3),
            _pair_hub("wnli"),
        ),
    ]
}

GLUE_TASKS: tuple[str, ...] = tuple(TASKS)


CUSTOM_TASKS_ENV = "BERTLOTTERY_CUSTOM_TASKS"
CLASSIFICATION_METRICS = ("accuracy", "mcc", "f1")
REGRESSION_METRICS = ("pearson", "spearman", "pearson_spearman")
CUSTOM_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
CUSTOM_KEYS = ("train", "dev", "dataset", "dataset_config", "splits", "text", "text_pair", "label", "labels",
               "metric", "stop_metric")


def file_format(path: str) -> str:
    """csv, tsv or jsonl, from the file name's extension."""
    return CUSTOM_FORMATS.get(Path(path).suffix.lower(), "")


def custom_task_spec(name: str, entry: Any, base_dir: str | Path = ".") -> TaskSpec:
    """The TaskSpec of one `custom_tasks` entry, every key checked (files relative to base_dir made absolute)."""
    where = f"config key custom_tasks.{name}"
    if name in TASKS:
        raise BertLotteryError(f"{where}: {name} is a GLUE task; give your own task another name")
    if not isinstance(entry, dict):
        raise BertLotteryError(f"{where}: expected a mapping with keys {', '.join(CUSTOM_KEYS)}")
    unknown = sorted(set(entry) - set(CUSTOM_KEYS))
    if unknown:
        raise BertLotteryError(f"{where}: unknown key(s) {unknown}; expected some of {', '.join(CUSTOM_KEYS)}")
    labels = entry.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels)):
        raise BertLotteryError(f"{where}.labels: {labels!r}; expected a list of two or more distinct class "
                               "labels, or null for regression")
    labels = None if labels is None else tuple(str(v) for v in labels)
    allowed = REGRESSION_METRICS if labels is None else CLASSIFICATION_METRICS
    metric = entry.get("metric", "pearson" if labels is None else "accuracy")
    stop = entry.get("stop_metric", metric)
    for key, value in (("metric", metric), ("stop_metric", stop)):
        if value not in allowed or (value == "f1" and len(labels) != 2):
            raise BertLotteryError(f"{where}.{key}: {value!r}; expected one of {', '.join(allowed)} for "
                                   f"{'regression' if labels is None else 'classification'} (f1: two labels, "
                                   "the second positive)")
    return TaskSpec(name, labels, metric, stop, tsv=None, hub=None, custom=_custom_source(where, entry, base_dir))


def _custom_source(where: str, entry: dict, base_dir: str | Path) -> CustomSource:
    for key in ("text", "label"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise BertLotteryError(f"{where}.{key}: {entry.get(key)!r}; expected a column name")
    pair = entry.get("text_pair")
    if pair is not None and not isinstance(pair, str):
        raise BertLotteryError(f"{where}.text_pair: {pair!r}; expected a column name or null")
    columns = dict(text_a=entry["text"], text_b=pair, label=entry["label"])
    has_files, dataset = "train" in entry or "dev" in entry, entry.get("dataset")
    if has_files == bool(dataset):
        raise BertLotteryError(f"{where}: expected either files (train: and dev:) or a hub dataset id (dataset:)")
    if dataset:
        splits = entry.get("splits") or {"train": "train", "dev": "validation"}
        if not isinstance(splits, dict) or set(splits) != {"train", "dev"}:
            raise BertLotteryError(f"{where}.splits: {splits!r}; expected {{train: <hub split>, dev: <hub split>}}")
        return CustomSource(**columns, dataset=str(dataset), dataset_config=entry.get("dataset_config"),
                            dataset_splits={k: str(v) for k, v in splits.items()})
    files = {}
    for split in ("train", "dev"):
        path = entry.get(split)
        if not isinstance(path, str) or not file_format(path):
            raise BertLotteryError(f"{where}.{split}: {path!r}; expected a .csv, .tsv or .jsonl file")
        files[split] = str((Path(base_dir) / Path(path).expanduser()).resolve())
    return CustomSource(**columns, files=files)


def custom_tasks_json(section: dict | None, base_dir: str | Path = ".") -> str:
    """The config's custom_tasks, checked, as the JSON every job reads from CUSTOM_TASKS_ENV."""
    entries = {}
    for name, entry in (section or {}).items():
        spec = custom_task_spec(name, entry, base_dir)
        source = spec.custom
        entries[name] = {**entry, **({"train": source.files["train"], "dev": source.files["dev"]}
                                     if source.files else {})}
    return json.dumps(entries, sort_keys=True)


def check_task_names(tasks: list[str], section: dict | None) -> None:
    """Every task of the config is a GLUE task or one of its custom_tasks."""
    unknown = [t for t in tasks if t not in TASKS and t not in (section or {})]
    if unknown:
        raise BertLotteryError(f"config key tasks: {', '.join(unknown)} is neither a GLUE task "
                               f"({', '.join(GLUE_TASKS)}) nor a name of custom_tasks "
                               f"({', '.join(section or {}) or 'none given'})")


def custom_tasks() -> dict[str, TaskSpec]:
    """The custom tasks handed to this process (CUSTOM_TASKS_ENV), by name."""
    text = os.environ.get(CUSTOM_TASKS_ENV, "")
    if not text:
        return {}
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise BertLotteryError(f"environment variable {CUSTOM_TASKS_ENV}: not JSON ({exc})") from None
    return {name: custom_task_spec(name, entry) for name, entry in entries.items()}


def get_task(name: str) -> TaskSpec:
    """Look a task up by its GLUE name (case-sensitive, as in the paper: 'SST-2', 'STS-B'), or among the
    config's custom tasks."""
    if name in TASKS:
        return TASKS[name]
    custom = custom_tasks()
    if name in custom:
        return custom[name]
    raise BertLotteryError(
        f"unknown task {name!r}; expected one of the GLUE tasks {', '.join(GLUE_TASKS)} or a task of the "
        f"config's custom_tasks ({', '.join(custom) or f'none given to this process in {CUSTOM_TASKS_ENV}'})")
