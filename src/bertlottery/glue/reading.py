"""GLUE reading: one split's examples from the classic TSV files (validated against GLUE's headers and label
values) or from the hub (labels mapped by name), with what the data card says about their source.
A custom task's (glue/tasks.py) come from its CSV, TSV or JSON Lines files or its hub dataset, by column name.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertlottery.errors import BertLotteryError
from bertlottery.glue.tasks import TaskSpec, file_format, get_task

HUB_DATASET = "nyu-mll/glue"
MAX_SKIPPED_LINES_LISTED = 20

# GLUE's header lines (download_glue_data.py layout). CoLA has none.
_PAIR4 = ("index", "sentence1", "sentence2", "label")
_MNLI = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
         "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1")
_MNLI_DEV = _MNLI + ("label2", "label3", "label4", "label5", "gold_label")
GLUE_HEADERS: dict[str, dict[str, tuple[str, ...]]] = {
    "SST-2": {"train": ("sentence", "label"), "dev": ("sentence", "label")},
    "MRPC": dict.fromkeys(("train", "dev"), ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")),
    "QQP": dict.fromkeys(("train", "dev"), ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")),
    "STS-B": dict.fromkeys(("train", "dev"), ("index", "genre", "filename", "year", "old_index", "source1",
                                              "source2", "sentence1", "sentence2", "score")),
    "MNLI": {"train": _MNLI + ("gold_label",), "dev": _MNLI_DEV, "dev_mm": _MNLI_DEV},
    "QNLI": dict.fromkeys(("train", "dev"), ("index", "question", "sentence", "label")),
    "RTE": dict.fromkeys(("train", "dev"), _PAIR4),
    "WNLI": dict.fromkeys(("train", "dev"), _PAIR4),
}

# Hub ClassLabel names that differ from the TSV label values (those TSVs store 0/1). Mapping by name,
# not by integer, is what keeps MNLI right: the hub orders entailment/neutral/contradiction.
HUB_LABEL_ALIASES: dict[str, dict[str, str]] = {
    "cola": {"unacceptable": "0", "acceptable": "1"},
    "sst2": {"negative": "0", "positive": "1"},
    "mrpc": {"not_equivalent": "0", "equivalent": "1"},
    "qqp": {"not_duplicate": "0", "duplicate": "1"},
    "wnli": {"not_entailment": "0", "entailment": "1"},
}


@dataclass(frozen=True, slots=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float  # class index into spec.labels; STS-B: similarity score 0..5
    line: int  # 1-based line of the TSV file, or 1-based row of the hub split


@dataclass
class SplitSource:
    """The examples of one split plus what the data card says about where they came from."""

    examples: list[Example]
    source: str
    rows_in_source: int
    rows_skipped_malformed: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    sha256: str | None = None


# ----------------------------------------------------------------------------------------------------
# Reading


def read_examples(task: str, split: str, glue_dir: str | Path | None = None) -> list[Example]:
    """One split's examples, from `glue_dir` (GLUE TSV layout) when given, else from the hub."""
    return read_split(task, split, glue_dir).examples


def check_glue_dir(glue_dir: str | Path, tasks: Iterable[str]) -> None:
    """Every split file of every GLUE task in `glue_dir`, checked before any job (prepare_data would fail
    late). A custom task's files are its own (read_custom_file names a missing one)."""
    glue = [spec for spec in map(get_task, tasks) if spec.custom is None]
    missing = [f"{spec.name}/{spec.tsv.files[split]}" for spec in glue for split in spec.splits
               if not (Path(glue_dir) / spec.name / spec.tsv.files[split]).is_file()]
    if missing:
        raise BertLotteryError(f"config key glue_dir: {glue_dir} lacks {', '.join(missing)} (from {Path.cwd()}); "
                               "add those files (layout <glue_dir>/<TASK>/{train,dev}.tsv) or remove the task "
                               "from `tasks`")


def read_split(task: str, split: str, glue_dir: str | Path | None = None) -> SplitSource:
    spec = get_task(task)
    if split not in spec.splits:
        raise BertLotteryError(f"task {task}: unknown split {split!r}; expected one of {', '.join(spec.splits)}")
    if spec.custom is not None:  # its own files or hub dataset; glue_dir does not apply
        return read_custom_hub(spec, split) if spec.custom.dataset else read_custom_file(spec, split)
    if glue_dir:
        return read_tsv(spec, split, Path(glue_dir) / spec.name / spec.tsv.files[split])
    return read_hub(spec, split)


def expected_header(spec: TaskSpec, split: str) -> tuple[str, ...] | None:
    return GLUE_HEADERS[spec.name][split] if spec.tsv.has_header else None


def _layout_text(spec: TaskSpec, split: str) -> str:
    header = expected_header(spec, split)
    head = f"header {' | '.join(header)}" if header else "no header line"
    return (f"<glue_dir>/{spec.name}/{spec.tsv.files[split]}, {spec.tsv.n_columns[split]} tab-separated "
            f"columns, {head}")


def read_tsv(spec: TaskSpec, split: str, path: Path) -> SplitSource:
    """Read a GLUE TSV with quoting off (stray `"` must not merge rows), checking every row."""
    if not path.is_file():
        raise BertLotteryError(f"{path}: file not found; expected the download_glue_data.py layout "
                               f"({_layout_text(spec, split)})")
    layout, n_columns = spec.tsv, spec.tsv.n_columns[split]
    label_of = _label_parser(spec)
    out = SplitSource([], source=str(path), rows_in_source=0, sha256=_sha256(path))
    # utf-8-sig reads plain UTF-8 too, and drops a byte-order mark (Excel and Windows editors write one)
    encoding = "utf-8-sig" if layout.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else layout.encoding
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                line = reader.line_num
                if line == 1 and layout.has_header:
                    _check_header(spec, split, path, row)
                    continue
                out.rows_in_source += 1
                if len(row) != n_columns:
                    if layout.skip_malformed:  # QQP: the original processor drops such rows
                        out.rows_skipped_malformed += 1
                        if len(out.skipped_lines) < MAX_SKIPPED_LINES_LISTED:
                            out.skipped_lines.append(line)
                        continue
                    raise BertLotteryError(f"{path}:{line}: expected {n_columns} tab-separated columns, "
                                           f"found {len(row)}")
                text_b = row[layout.text_b] if layout.text_b is not None else None
                label = label_of(row[layout.label], f"{path}:{line}")
                out.examples.append(Example(row[layout.text_a], text_b, label, line))
        except UnicodeDecodeError:
            raise BertLotteryError(_decode_error(path, layout.encoding)) from None
        except csv.Error as exc:
            raise BertLotteryError(f"{path}:{reader.line_num}: unreadable TSV row ({exc})") from None
    if not out.examples:
        what = "no data rows" if out.rows_in_source == 0 else "no well-formed rows"
        raise BertLotteryError(f"{path}: {what}; expected {_layout_text(spec, split)}")
    return out


def _decode_error(path: Path, encoding: str) -> str:
    """Locate the first undecodable line (text files are decoded in blocks, so the reader can't tell)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return f"{path}:{number}: not valid {encoding} text ({exc.reason} at byte {exc.start + 1})"
    return f"{path}: not valid {encoding} text"


def _check_header(spec: TaskSpec, split: str, path: Path, row: list[str]) -> None:
    expected = expected_header(spec, split)
    if tuple(row) != expected:
        raise BertLotteryError(f"{path}:1: expected the GLUE header {list(expected)}, found {row}")


def _label_parser(spec: TaskSpec):
    """A function (raw label text, location) -> class index, or score for STS-B; raises on bad values."""
    if spec.is_regression:
        low, high = spec.score_range or (-math.inf, math.inf)

        def parse(raw: str, where: str) -> float:
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not (low <= value <= high and math.isfinite(value)):  # also rejects nan
                expected = f"a similarity score in [{low}, {high}]" if spec.score_range else "a finite number"
                raise BertLotteryError(f"{where}: label {raw!r} is not {expected}")
            return value
        return parse

    index = {name: i for i, name in enumerate(spec.labels)}

    def parse_class(raw: str, where: str) -> int:
        try:
            return index[raw]
        except KeyError:
            raise BertLotteryError(f"{where}: label {raw!r} is not one of "
                                   f"{', '.join(spec.labels)} ({spec.name})") from None
    return parse_class


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_hub(spec: TaskSpec, split: str) -> SplitSource:
    """One split of `nyu-mll/glue` through `datasets` (downloads on first use, then the HF cache)."""
    import datasets

    hub_split = spec.hub.splits[split]
    try:
        dataset = datasets.load_dataset(HUB_DATASET, spec.hub.config, split=hub_split)
    except Exception as exc:  # network, auth, cache: all mean "no hub data here"
        raise BertLotteryError(
            f"could not load {HUB_DATASET} config {spec.hub.config!r} split {hub_split!r} from the "
            f"HuggingFace hub ({type(exc).__name__}: {exc}); set glue_dir (--glue-dir) to read local "
            "GLUE TSV files instead") from None
    return examples_from_dataset(spec, split, dataset)


def examples_from_dataset(spec: TaskSpec, split: str, dataset: Any) -> SplitSource:
    """Examples from a `datasets.Dataset` with nyu-mll/glue's columns; labels mapped by class name."""
    source = f"hub:{HUB_DATASET}/{spec.hub.config}:{spec.hub.splits[split]}"
    columns = [c for c in (spec.hub.text_a, spec.hub.text_b, "label") if c is not None]
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise BertLotteryError(f"{source}: missing columns {missing}; found {dataset.column_names}")
    if len(dataset) == 0:
        raise BertLotteryError(f"{source}: the split has no rows")
    texts_a = list(dataset[spec.hub.text_a])
    texts_b = list(dataset[spec.hub.text_b]) if spec.hub.text_b else [None] * len(texts_a)
    raw_labels = list(dataset["label"])
    if spec.is_regression:
        parse = _label_parser(spec)
        labels = [parse(str(v), f"{source} row {i + 1}") for i, v in enumerate(raw_labels)]
    else:
        mapping = hub_label_mapping(spec, dataset.features["label"])
        labels = [_map_hub_label(mapping, v, f"{source} row {i + 1}") for i, v in enumerate(raw_labels)]
    examples = [Example(a, b, y, i + 1) for i, (a, b, y) in enumerate(zip(texts_a, texts_b, labels))]
    return SplitSource(examples, source=source, rows_in_source=len(examples))


def hub_label_mapping(spec: TaskSpec, feature: Any) -> dict[int, int]:
    """Hub class id -> our class index, matched by the hub ClassLabel's names."""
    names = getattr(feature, "names", None)
    if spec.is_regression or names is None:
        raise BertLotteryError(f"{HUB_DATASET}/{spec.hub.config}: 'label' is {feature!r}, expected a "
                               f"ClassLabel for the classification task {spec.name}")
    aliases = HUB_LABEL_ALIASES.get(spec.hub.config, {})
    mapping = {}
    for hub_id, name in enumerate(names):
        ours = aliases.get(name, name)
        if ours not in spec.labels:
            raise BertLotteryError(f"{HUB_DATASET}/{spec.hub.config}: hub class {name!r} has no counterpart "
                                   f"among {spec.name}'s labels {list(spec.labels)}")
        mapping[hub_id] = spec.labels.index(ours)
    if sorted(mapping.values()) != list(range(spec.num_labels)):
        raise BertLotteryError(f"{HUB_DATASET}/{spec.hub.config}: hub classes {list(names)} do not map one "
                               f"to one onto {list(spec.labels)}")
    return mapping


def _map_hub_label(mapping: dict[int, int], value: int, where: str) -> int:
    if value == -1:
        raise BertLotteryError(f"{where}: label -1 (missing); only labelled splits can be used")
    try:
        return mapping[value]
    except KeyError:
        raise BertLotteryError(f"{where}: label {value!r} is not a class id {sorted(mapping)}") from None


# ----------------------------------------------------------------------------------------------------
# Custom tasks (glue/tasks.py CustomSource): columns by name


def _custom_layout(spec: TaskSpec) -> str:
    source = spec.custom
    columns = [c for c in (source.text_a, source.text_b, source.label) if c]
    labels = f"labels {', '.join(spec.labels)}" if spec.labels else "numeric labels (regression)"
    return f"columns {', '.join(columns)} ({labels})"


def _custom_rows(path: Path, fmt: str):
    """(line, {column: value}) of a CSV/TSV file with a header line or of a JSON Lines file."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        if fmt == "jsonl":
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except ValueError as exc:
                    raise BertLotteryError(f"{path}:{number}: not a JSON object ({exc})") from None
                if not isinstance(row, dict):
                    raise BertLotteryError(f"{path}:{number}: a JSON {type(row).__name__}, expected an object")
                yield number, row
            return
        reader = csv.reader(handle, delimiter="\t" if fmt == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        header = next(reader, None)
        for row in reader if header else ():
            if not row:  # a blank line
                continue
            if len(row) != len(header):
                raise BertLotteryError(f"{path}:{reader.line_num}: expected {len(header)} {fmt.upper()} columns "
                                       f"(as the header {header}), found {len(row)}")
            yield reader.line_num, dict(zip(header, row))


def read_custom_file(spec: TaskSpec, split: str) -> SplitSource:
    """One split of a custom task from its file, every row checked (columns present, label valid)."""
    source = spec.custom
    path = Path(source.files[split])
    fmt = file_format(str(path))
    if not path.is_file():
        raise BertLotteryError(f"{path}: file not found; expected the {split} split of {spec.name} as a "
                               f"{fmt.upper()} file with {_custom_layout(spec)}")
    label_of = _label_parser(spec)
    out = SplitSource([], source=str(path), rows_in_source=0, sha256=_sha256(path))
    try:
        for line, row in _custom_rows(path, fmt):
            out.rows_in_source += 1
            out.examples.append(_custom_example(spec, row, label_of, f"{path}:{line}", line))
    except UnicodeDecodeError:
        raise BertLotteryError(_decode_error(path, "utf-8")) from None
    except csv.Error as exc:
        raise BertLotteryError(f"{path}: unreadable {fmt.upper()} ({exc})") from None
    if not out.examples:
        raise BertLotteryError(f"{path}: no data rows; expected {_custom_layout(spec)}")
    return out


def _custom_example(spec: TaskSpec, row: dict, label_of, where: str, line: int) -> Example:
    source = spec.custom
    missing = [c for c in (source.text_a, source.text_b, source.label) if c and c not in row]
    if missing:
        raise BertLotteryError(f"{where}: no column {missing[0]!r} (found {', '.join(map(str, row))}); "
                               f"expected {_custom_layout(spec)}")
    texts = [row[source.text_a], row[source.text_b] if source.text_b else None]
    if not all(isinstance(t, str) or t is None for t in texts):
        raise BertLotteryError(f"{where}: a text column holds {texts!r}; expected strings")
    return Example(texts[0], texts[1], label_of(str(row[source.label]), where), line)


def read_custom_hub(spec: TaskSpec, split: str) -> SplitSource:
    """One split of a custom task's hub dataset through `datasets` (downloads on first use)."""
    import datasets

    source = spec.custom
    hub_split = source.dataset_splits[split]
    try:
        dataset = datasets.load_dataset(source.dataset, source.dataset_config, split=hub_split)
    except Exception as exc:  # network, auth, cache: all mean "no hub data here"
        raise BertLotteryError(f"custom task {spec.name}: could not load {source.dataset} split {hub_split!r} "
                               f"from the HuggingFace hub ({type(exc).__name__}: {exc}); give its files "
                               "(train:, dev:) instead") from None
    return custom_examples_from_dataset(spec, split, dataset)


def custom_examples_from_dataset(spec: TaskSpec, split: str, dataset: Any) -> SplitSource:
    """A custom task's examples from a `datasets.Dataset`; a ClassLabel column is read by class name."""
    source = spec.custom
    where = f"hub:{source.dataset}:{source.dataset_splits[split]}"
    feature = dataset.features.get(source.label)
    names = getattr(feature, "names", None)
    label_of = _label_parser(spec)
    examples = []
    for i, row in enumerate(dataset):
        if names is not None and isinstance(row.get(source.label), int) and row[source.label] >= 0:
            row = {**row, source.label: names[row[source.label]]}
        examples.append(_custom_example(spec, row, label_of, f"{where} row {i + 1}", i + 1))
    if not examples:
        raise BertLotteryError(f"{where}: the split has no rows")
    return SplitSource(examples, source=where, rows_in_source=len(examples))
