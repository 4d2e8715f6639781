"""GLUE data: read (hub or classic TSV), validate, subsample, tokenize once, and batch for training.

`prepare_data` writes `<out_dir>/splits/<split>.safetensors` (flat token ids + offsets + labels), a readable
`<split>.jsonl` copy and `<out_dir>/data_card.json` (row counts, label counts, majority baseline, token
lengths). Training and evaluation load a split with `load_split` and build padded batches with
`TokenizedSplit.collate`, which slices the flat arrays without Python loops over tokens.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from bertlottery.errors import BertLotteryError
from bertlottery.glue.tasks import TaskSpec, get_task
from bertlottery.settings import parse_json_arg, read_json, write_json

HUB_DATASET = "nyu-mll/glue"
STSB_RANGE = (0.0, 5.0)
MAJORITY_STSB_SEED = 1337  # PAPER_SPEC 2.1: predictions ~ N(mean, sd of dev labels), numpy seed 1337
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


def read_split(task: str, split: str, glue_dir: str | Path | None = None) -> SplitSource:
    spec = get_task(task)
    if split not in spec.splits:
        raise BertLotteryError(f"task {task}: unknown split {split!r}; expected one of {', '.join(spec.splits)}")
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
    with open(path, encoding=layout.encoding, newline="") as handle:
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
        def parse(raw: str, where: str) -> float:
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not STSB_RANGE[0] <= value <= STSB_RANGE[1]:  # also rejects nan
                raise BertLotteryError(f"{where}: label {raw!r} is not a similarity score in "
                                       f"[{STSB_RANGE[0]}, {STSB_RANGE[1]}]")
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
# Subsampling


def subsample_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Row indices to keep: all, or `limit` drawn without replacement (seeded), in file order."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))


# ----------------------------------------------------------------------------------------------------
# Tokenization


@dataclass
class TokenizedArrays:
    input_ids: np.ndarray  # int32, all examples concatenated
    token_type_ids: np.ndarray  # uint8, same length
    offsets: np.ndarray  # int64 [n + 1]; example i is [offsets[i], offsets[i + 1])
    n_truncated: int
    max_tokens_untruncated: int

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception as exc:
        raise BertLotteryError(f"model {model!r}: could not load its tokenizer ({type(exc).__name__}: {exc}); "
                               "expected a hub id or a local save_pretrained directory") from None
    if not tokenizer.is_fast:
        raise BertLotteryError(f"model {model!r}: {type(tokenizer).__name__} is not a fast tokenizer")
    return tokenizer


def tokenize_examples(tokenizer, examples: Sequence[Example], max_seq_length: int,
                      batch_size: int = 4096, desc: str = "tokenize") -> TokenizedArrays:
    """[CLS] A [SEP] (B [SEP]), longest-first truncation at max_seq_length, no padding."""
    from tqdm import tqdm

    ids_parts, type_parts, length_parts = [], [], []
    n_truncated, max_untruncated = 0, 0
    with tqdm(total=len(examples), desc=desc, unit="ex", mininterval=5) as bar:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            ids, types, longest, truncated = _tokenize_chunk(tokenizer, chunk, max_seq_length)
            n_truncated += truncated
            max_untruncated = max(max_untruncated, longest)
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            total = int(lengths.sum())
            ids_parts.append(np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=total))
            type_parts.append(np.fromiter(chain.from_iterable(types), dtype=np.uint8, count=total))
            length_parts.append(lengths)
            bar.update(len(chunk))
    lengths = np.concatenate(length_parts) if length_parts else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenizedArrays(
        input_ids=np.concatenate(ids_parts) if ids_parts else np.zeros(0, dtype=np.int32),
        token_type_ids=np.concatenate(type_parts) if type_parts else np.zeros(0, dtype=np.uint8),
        offsets=offsets, n_truncated=n_truncated, max_tokens_untruncated=max_untruncated)


def _tokenize_chunk(tokenizer, chunk: Sequence[Example], max_len: int):
    """Token ids/types of a chunk; tokenizes untruncated first so truncations are counted exactly."""
    texts_a = [ex.text_a for ex in chunk]
    texts_b = [ex.text_b for ex in chunk] if chunk and chunk[0].text_b is not None else None
    kwargs = dict(padding=False, return_attention_mask=False, return_token_type_ids=True, verbose=False)
    full = tokenizer(texts_a, texts_b, truncation=False, **kwargs)
    ids, types = list(full["input_ids"]), list(full["token_type_ids"])
    longest = max(map(len, ids), default=0)
    over = [i for i, row in enumerate(ids) if len(row) > max_len]
    if over:  # only these need the tokenizer's own longest-first truncation
        cut = tokenizer([texts_a[i] for i in over], [texts_b[i] for i in over] if texts_b else None,
                        truncation="longest_first", max_length=max_len, **kwargs)
        for j, i in enumerate(over):
            ids[i], types[i] = cut["input_ids"][j], cut["token_type_ids"][j]
    return ids, types, longest, len(over)


# ----------------------------------------------------------------------------------------------------
# Writing one split


def labels_array(spec: TaskSpec, examples: Sequence[Example]) -> np.ndarray:
    dtype = np.float32 if spec.is_regression else np.int64
    return np.fromiter((ex.label for ex in examples), dtype=dtype, count=len(examples))


def write_split(path: Path, spec: TaskSpec, split: str, arrays: TokenizedArrays, labels: np.ndarray,
                tokenizer_name: str, max_seq_length: int) -> None:
    from safetensors.numpy import save_file

    tensors = {"input_ids": arrays.input_ids, "token_type_ids": arrays.token_type_ids,
               "offsets": arrays.offsets, "labels": labels}
    metadata = {"task": spec.name, "split": split, "tokenizer": tokenizer_name,
                "max_seq_length": str(max_seq_length), "n_examples": str(len(labels)),
                "labels": json.dumps(spec.labels)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    _readable(tmp)
    os.replace(tmp, path)


def _readable(path: Path) -> None:
    """safetensors creates owner-only files; give them the usual umask-based mode like other outputs."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_jsonl(path: Path, spec: TaskSpec, examples: Iterable[Example]) -> None:
    """A human-readable copy of the kept rows (label by name; STS-B: the score)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for ex in examples:
            row = {"line": ex.line, "text_a": ex.text_a, "text_b": ex.text_b}
            if spec.is_regression:
                row["label"] = ex.label
            else:
                row["label"], row["label_id"] = spec.labels[ex.label], ex.label
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------
# Data card


def majority_baseline(spec: TaskSpec, labels: np.ndarray) -> dict[str, Any]:
    """PAPER_SPEC 2.1: predict the most frequent label; STS-B: random N(mean, sd) scores, seed 1337."""
    if spec.is_regression:
        from scipy.stats import pearsonr

        y = labels.astype(np.float64)
        # The legacy global-seed stream (np.random.seed), which gives the paper's 0.024 on STS-B dev.
        predictions = np.random.RandomState(MAJORITY_STSB_SEED).normal(y.mean(), y.std(), len(y))
        score = float(pearsonr(predictions, y)[0]) if len(y) > 1 and np.ptp(y) > 0 else 0.0
        return {"metric": "pearson", "score": score,
                "prediction": f"N({y.mean():.3f}, {y.std():.3f}) with numpy seed {MAJORITY_STSB_SEED}"}
    counts = np.bincount(labels, minlength=spec.num_labels)
    top = int(np.argmax(counts))
    if spec.reported_metric == "mcc":
        score = 0.0  # a constant predictor has Matthews correlation 0
    else:
        score = float(counts[top] / counts.sum())
    return {"metric": spec.reported_metric, "score": score, "prediction": spec.labels[top]}


def split_card(spec: TaskSpec, split: str, src: SplitSource, kept: Sequence[Example],
               arrays: TokenizedArrays, labels: np.ndarray) -> dict[str, Any]:
    lengths = arrays.lengths
    card: dict[str, Any] = {
        "source": src.source, "sha256": src.sha256,
        "rows_in_source": src.rows_in_source,
        "rows_skipped_malformed": src.rows_skipped_malformed,
        "skipped_lines": src.skipped_lines,
        "rows_valid": len(src.examples),
        "rows_kept": len(kept),
        "subsampled": len(kept) < len(src.examples),
    }
    if spec.is_regression:
        card["label_counts"] = None
        card["label_stats"] = {"mean": float(labels.mean()), "sd": float(labels.std()),
                               "min": float(labels.min()), "max": float(labels.max())}
    else:
        counts = np.bincount(labels, minlength=spec.num_labels)
        card["label_counts"] = {name: int(c) for name, c in zip(spec.labels, counts)}
    # The majority baseline is a dev-set number (PAPER_SPEC 2.1), computed on the rows kept.
    card["majority_baseline"] = majority_baseline(spec, labels) if split != "train" else None
    card.update({
        "n_truncated": arrays.n_truncated,
        "mean_tokens": float(lengths.mean()),
        "max_tokens": int(lengths.max()),
        "max_tokens_untruncated": arrays.max_tokens_untruncated,
        "files": {"tokens": f"splits/{split}.safetensors", "text": f"splits/{split}.jsonl"},
    })
    return card


# ----------------------------------------------------------------------------------------------------
# The prepare-data step


def prepare_data(task: str, model: str, out_dir: str | Path, glue_dir: str | Path | None = None,
                 max_train_examples: int | None = None, max_dev_examples: int | None = None,
                 subsample_seed: int = 0, max_seq_length: int = 128) -> dict[str, Any]:
    """Read, validate, subsample and tokenize every split of `task`; write splits and the data card."""
    spec = get_task(task)
    _check_subsampling(max_train_examples, max_dev_examples, subsample_seed, max_seq_length)
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(model)
    source = (f"tsv:{Path(glue_dir) / spec.name}" if glue_dir else f"hub:{HUB_DATASET}/{spec.hub.config}")
    # Read and validate every split before the (slow) tokenization, so a bad file fails fast.
    sources = {split: read_split(task, split, glue_dir) for split in spec.splits}
    splits = {}
    for split, src in sources.items():
        limit = max_train_examples if split == "train" else max_dev_examples
        kept = [src.examples[i] for i in subsample_indices(len(src.examples), limit, subsample_seed)]
        arrays = tokenize_examples(tokenizer, kept, max_seq_length, desc=f"{task} {split}")
        labels = labels_array(spec, kept)  # float32 scores for STS-B; the card uses float64 below
        write_split(out_dir / "splits" / f"{split}.safetensors", spec, split, arrays, labels, model,
                    max_seq_length)
        write_jsonl(out_dir / "splits" / f"{split}.jsonl", spec, kept)
        exact = np.array([ex.label for ex in kept], dtype=np.float64) if spec.is_regression else labels
        splits[split] = split_card(spec, split, src, kept, arrays, exact)
    card = {
        "task": spec.name, "source": source, "labels": list(spec.labels) if spec.labels else None,
        "num_labels": spec.num_labels, "is_regression": spec.is_regression,
        "tokenizer": model, "tokenizer_class": type(tokenizer).__name__, "max_seq_length": max_seq_length,
        "subsampling": {"max_train_examples": max_train_examples, "max_dev_examples": max_dev_examples,
                        "subsample_seed": subsample_seed,
                        "method": "numpy default_rng(seed).choice without replacement, per split; "
                                  "file order kept"},
        "splits": splits,
    }
    write_json(out_dir / "data_card.json", card)
    return card


def _check_subsampling(max_train: Any, max_dev: Any, seed: Any, max_seq_length: Any) -> None:
    for key, value in (("max_train_examples", max_train), ("max_dev_examples", max_dev)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BertLotteryError(f"data.{key}: {value!r}; expected null or an integer >= 1")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BertLotteryError(f"data.subsample_seed: {seed!r}; expected an integer >= 0")
    if not isinstance(max_seq_length, int) or max_seq_length < 8:
        raise BertLotteryError(f"max_seq_length: {max_seq_length!r}; expected an integer >= 8")


def summarize_card(card: dict[str, Any]) -> str:
    lines = [f"{card['task']} from {card['source']} (tokenizer {card['tokenizer']}, "
             f"max_seq_length {card['max_seq_length']})"]
    for split, info in card["splits"].items():
        labels = info["label_counts"] or info["label_stats"]
        text = (f"  {split}: {info['rows_kept']} kept of {info['rows_in_source']} rows "
                f"({info['rows_skipped_malformed']} malformed skipped), labels {labels}, "
                f"tokens mean {info['mean_tokens']:.1f} max {info['max_tokens']}, "
                f"{info['n_truncated']} truncated")
        if info["majority_baseline"]:
            base = info["majority_baseline"]
            text += f", majority baseline {base['metric']} {base['score']:.3f}"
        lines.append(text)
    return "\n".join(lines)


def main_prepare_data(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery prepare-data",
                                     description="Load, validate, subsample and tokenize one GLUE task.")
    parser.add_argument("--task", required=True, help="GLUE task name, e.g. RTE, SST-2, STS-B")
    parser.add_argument("--model", required=True, help="hub id or local dir whose tokenizer to use")
    parser.add_argument("--glue-dir", default="",
                        help="GLUE TSV directory (<dir>/<TASK>/train.tsv ...); empty = HuggingFace hub")
    parser.add_argument("--data", default="{}",
                        help="JSON of the config 'data' section: max_train_examples, max_dev_examples, "
                             "subsample_seed")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    data = parse_json_arg(args.data, "data")
    allowed = {"max_train_examples", "max_dev_examples", "subsample_seed"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BertLotteryError(f"--data: unknown keys {unknown}; expected some of {sorted(allowed)}")
    card = prepare_data(args.task, args.model, args.out_dir, glue_dir=args.glue_dir or None,
                        max_seq_length=args.max_seq_length, **data)
    print(summarize_card(card))


# ----------------------------------------------------------------------------------------------------
# Loading for training and evaluation


@dataclass
class TokenizedSplit:
    """A prepared split held as flat token arrays; `collate` builds right-padded batches."""

    input_ids: "torch.Tensor"  # noqa: F821  int32, flat
    token_type_ids: "torch.Tensor"  # noqa: F821  uint8, flat
    offsets: "torch.Tensor"  # noqa: F821  int64 [n + 1]
    labels: "torch.Tensor"  # noqa: F821  int64 class indices, or float32 scores (STS-B)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lengths = self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels.is_floating_point()

    def collate(self, indices: Any, pad_to: int | None = None) -> dict[str, "torch.Tensor"]:  # noqa: F821
        """input_ids, token_type_ids, attention_mask (all long) and labels of these rows, right-padded
        with 0 to the longest row (or to `pad_to`, the fixed-length mode)."""
        import torch

        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        starts, lengths = self.offsets[idx], self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        if pad_to is not None:
            if pad_to < width:
                raise BertLotteryError(f"collate: pad_to={pad_to} is shorter than a row of {width} tokens "
                                       f"(prepared with max_seq_length {self.metadata.get('max_seq_length')})")
            width = pad_to
        positions = torch.arange(width)
        mask = positions[None, :] < lengths[:, None]
        gather = torch.where(mask, starts[:, None] + positions[None, :], 0)
        return {
            "input_ids": torch.where(mask, self.input_ids[gather].long(), 0),
            "token_type_ids": torch.where(mask, self.token_type_ids[gather].long(), 0),
            "attention_mask": mask.long(),
            "labels": self.labels[idx],
        }


def split_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / "splits" / f"{split}.safetensors"


def load_split(data_dir: str | Path, split: str) -> TokenizedSplit:
    """A split written by prepare-data (`<data_dir>/splits/<split>.safetensors`)."""
    from safetensors import safe_open

    path = split_path(data_dir, split)
    if not path.is_file():
        raise BertLotteryError(f"{path}: prepared split not found; run `python -m bertlottery prepare-data "
                               f"--out-dir {data_dir} ...` (Snakemake rule prepare_data) first")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise BertLotteryError(f"{path}: not a readable safetensors file ({exc})") from None
    missing = {"input_ids", "token_type_ids", "offsets", "labels"} - set(tensors)
    if missing:
        raise BertLotteryError(f"{path}: missing tensors {sorted(missing)}; rerun prepare-data")
    return TokenizedSplit(tensors["input_ids"], tensors["token_type_ids"], tensors["offsets"],
                          tensors["labels"], metadata)


def read_card(data_dir: str | Path) -> dict[str, Any]:
    path = Path(data_dir) / "data_card.json"
    if not path.is_file():
        raise BertLotteryError(f"{path}: data card not found; run prepare-data for this task first")
    return read_json(path)
