"""GLUE task registry: file layout, columns, labels and the metrics of docs/protocol.md §Data and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

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
class TaskSpec:
    name: str
    labels: tuple[str, ...] | None  # None for regression (STS-B); order = class index
    reported_metric: str  # what the paper's tables and figures show
    stop_metric: str  # what the 90 % stop rule of the mask searches uses
    tsv: TsvLayout
    hub: HubLayout
    dev_splits: tuple[str, ...] = ("dev",)

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
            _pair_hub("stsb"),
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


def get_task(name: str) -> TaskSpec:
    """Look a task up by its GLUE name (case-sensitive, as in the paper: 'SST-2', 'STS-B')."""
    try:
        return TASKS[name]
    except KeyError:
        raise BertLotteryError(
            f"unknown task {name!r}; expected one of the GLUE tasks {', '.join(GLUE_TASKS)}"
        ) from None
