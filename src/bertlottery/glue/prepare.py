"""The prepare-data step: read, validate, subsample and tokenize every split of a task once.

`prepare_data` writes `<out_dir>/splits/<split>.safetensors` (flat token ids + offsets + labels), a readable
`<split>.jsonl` copy and `<out_dir>/data_card.json` (row counts, label counts, majority baseline, token
lengths).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from bertlottery.errors import BertLotteryError
from bertlottery.glue.reading import HUB_DATASET, Example, SplitSource, read_split
from bertlottery.glue.tasks import TaskSpec, get_task
from bertlottery.io import atomic_path, check_model_source, write_json
from bertlottery.layout import DATA_CARD, SPLITS_DIR
from bertlottery.settings import DataSettings

MAJORITY_STSB_SEED = 1337  # protocol.md §Data and metrics: predictions ~ N(mean, sd of dev labels), numpy seed 1337


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

    check_model_source(model)  # a missing path or a folder that is not a model says so (not tokenizer errors)
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
    from bertlottery.progress import tqdm

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


def _types(encoded) -> list:
    """Token types; zeros from a tokenizer that writes none (the models that take none ignore them)."""
    if "token_type_ids" in encoded:
        return list(encoded["token_type_ids"])
    return [[0] * len(row) for row in encoded["input_ids"]]


def _tokenize_chunk(tokenizer, chunk: Sequence[Example], max_len: int):
    """Token ids/types of a chunk; tokenizes untruncated first so truncations are counted exactly."""
    texts_a = [ex.text_a for ex in chunk]
    texts_b = [ex.text_b for ex in chunk] if chunk and chunk[0].text_b is not None else None
    kwargs = dict(padding=False, return_attention_mask=False, return_token_type_ids=True, verbose=False)
    full = tokenizer(texts_a, texts_b, truncation=False, **kwargs)
    ids, types = list(full["input_ids"]), _types(full)
    longest = max(map(len, ids), default=0)
    over = [i for i, row in enumerate(ids) if len(row) > max_len]
    if over:  # only these need the tokenizer's own longest-first truncation
        cut = tokenizer([texts_a[i] for i in over], [texts_b[i] for i in over] if texts_b else None,
                        truncation="longest_first", max_length=max_len, **kwargs)
        for j, i in enumerate(over):
            ids[i], types[i] = cut["input_ids"][j], _types(cut)[j]
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
    with atomic_path(path) as tmp:  # also gives the usual umask-based mode (safetensors makes owner-only files)
        save_file(tensors, str(tmp), metadata=metadata)


def write_jsonl(path: Path, spec: TaskSpec, examples: Iterable[Example]) -> None:
    """A human-readable copy of the kept rows (label by name; STS-B: the score)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for ex in examples:
            row = {"line": ex.line, "text_a": ex.text_a, "text_b": ex.text_b}
            if spec.is_regression:
                row["label"] = ex.label
            else:
                row["label"], row["label_id"] = spec.labels[ex.label], ex.label
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------------
# Data card


def majority_baseline(spec: TaskSpec, labels: np.ndarray) -> dict[str, Any]:
    """protocol.md §Data and metrics: predict the most frequent label; STS-B: random N(mean, sd) scores, seed 1337."""
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
    # The majority baseline is a dev-set number (as the paper's), computed on the rows kept.
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
    source = _source_name(spec, glue_dir)
    # Read and validate every split before the (slow) tokenization, so a bad file fails fast.
    sources = {split: read_split(task, split, glue_dir) for split in spec.splits}
    splits = {}
    for split, src in sources.items():
        limit = max_train_examples if split == "train" else max_dev_examples
        kept = [src.examples[i] for i in subsample_indices(len(src.examples), limit, subsample_seed)]
        arrays = tokenize_examples(tokenizer, kept, max_seq_length, desc=f"{task} {split}")
        labels = labels_array(spec, kept)  # float32 scores for STS-B; the card uses float64 below
        write_split(out_dir / SPLITS_DIR / f"{split}.safetensors", spec, split, arrays, labels, model,
                    max_seq_length)
        write_jsonl(out_dir / SPLITS_DIR / f"{split}.jsonl", spec, kept)
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
    write_json(out_dir / DATA_CARD, card)
    return card


def _source_name(spec, glue_dir: str | Path | None) -> str:
    if spec.custom is not None:
        files = spec.custom.files
        return f"files:{files['train']},{files['dev']}" if files else f"hub:{spec.custom.dataset}"
    return f"tsv:{Path(glue_dir) / spec.name}" if glue_dir else f"hub:{HUB_DATASET}/{spec.hub.config}"


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
    data = DataSettings.from_arg(args.data, "data")
    card = prepare_data(args.task, args.model, args.out_dir, glue_dir=args.glue_dir or None,
                        max_seq_length=args.max_seq_length, max_train_examples=data.max_train_examples,
                        max_dev_examples=data.max_dev_examples, subsample_seed=data.subsample_seed)
    print(summarize_card(card))
