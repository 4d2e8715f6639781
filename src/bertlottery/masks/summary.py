"""The summary of an m-mask (a WeightMask file): what a study bundle keeps of the mask when the mask itself
stays out (`bundle export --m-masks summary`). It lies beside the mask's path, `<kind>.summary.json`
(layout.MASK_SUMMARY), and holds what the analyses of a bundle read and what identifies the mask:

- `blocks`: kept and total prunable values per head ([layers][heads]) and per MLP ([layers]), counted by
  the m-block analysis' own code (`modeling.mask_blocks.block_fractions`) on the run's model config;
- `kept`, `total`, `sparsity`: the mask's size; `parameters`: its parameter names and shapes; `meta`: its
  metadata (task, seed, family, kind, ...);
- `sha256` and `bytes` of the mask file as the run wrote it, and `regenerate`: the Snakemake command that
  writes it again from the run (the masks are byte-reproducible; `sha256sum` checks the result).

A summary comes in a bundle, from anyone: it is read size-bounded and schema-checked, its counts checked
for consistency. An analysis that needs a full mask which is not there, only its summary, fails with an
error naming the mask, the command that regenerates it and the sha256 to check it against
(`missing_mask_error`)."""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema

from bertlottery.errors import BertLotteryError
from bertlottery.io import read_regular_json, write_json
from bertlottery.layout import mask_of_summary, summary_of_mask

SUMMARY_FORMAT = 1
SUMMARY_OF = "WeightMask"
MAX_SUMMARY_BYTES = 4 * 2**20  # a MiniLM m-mask's summary: 8.7 KB; bert-base's: 16.6 KB
_COUNT = {"type": "integer", "minimum": 0}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["format", "summary_of", "mask", "sha256", "bytes", "meta", "kept", "total", "parameters",
                 "blocks", "model_config", "regenerate"],
    "properties": {
        "format": {"const": SUMMARY_FORMAT},
        "summary_of": {"const": SUMMARY_OF},
        "mask": {"type": "string", "minLength": 1, "maxLength": 1024},
        "sha256": _SHA256,
        "bytes": _COUNT,
        "meta": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 4096}},
        "kept": _COUNT,
        "total": _COUNT,
        "sparsity": {"type": "number", "minimum": 0, "maximum": 1},
        "parameters": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "array", "items": _COUNT, "maxItems": 8}},
        "blocks": {
            "type": "object",
            "required": ["head_kept", "head_total", "mlp_kept", "mlp_total"],
            "properties": {
                **{key: {"type": "array", "minItems": 1, "maxItems": 4096,
                         "items": {"type": "array", "minItems": 1, "maxItems": 4096, "items": _COUNT}}
                   for key in ("head_kept", "head_total")},
                **{key: {"type": "array", "minItems": 1, "maxItems": 4096, "items": _COUNT}
                   for key in ("mlp_kept", "mlp_total")},
            },
        },
        "model_config": {"type": "object", "required": ["path", "sha256"], "properties": {
            "path": {"type": "string", "maxLength": 1024}, "sha256": _SHA256}},
        "regenerate": {"type": "string", "maxLength": 8192},
    },
}


def is_summary(path: str | os.PathLike) -> bool:
    """Whether `path` is named as a mask summary (<kind>.summary.json)."""
    return mask_of_summary(Path(path).as_posix()) is not None


def write_summary(path: str | os.PathLike, summary: dict) -> None:
    """Write a summary (checked against the schema first: what is written can be read back)."""
    _check(summary, str(path))
    write_json(path, summary)


def _bounded_json(path: Path):
    return read_regular_json(path, MAX_SUMMARY_BYTES, name=f"{path}: mask summary",
                             missing=f"{path}: mask summary not found")


def _check(summary, where: str) -> None:
    """The schema, then what it cannot say: rectangular head counts, one MLP per layer, kept <= total."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SUMMARY_SCHEMA).iter_errors(summary))
    if error is not None:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        raise BertLotteryError(f"{where}: mask summary key {key or '(top level)'}: {message}")
    blocks = summary["blocks"]
    shape = [len(row) for row in blocks["head_total"]]
    problems = []
    if [len(row) for row in blocks["head_kept"]] != shape or len(set(shape)) != 1:
        problems.append("blocks.head_kept and blocks.head_total are not the same [layers][heads] grid")
    elif not len(blocks["mlp_kept"]) == len(blocks["mlp_total"]) == len(shape):
        problems.append(f"blocks.mlp_kept and blocks.mlp_total do not have one count per layer ({len(shape)})")
    else:
        pairs = [(k, t) for kr, tr in zip(blocks["head_kept"], blocks["head_total"]) for k, t in zip(kr, tr)]
        pairs += list(zip(blocks["mlp_kept"], blocks["mlp_total"])) + [(summary["kept"], summary["total"])]
        if any(k > t for k, t in pairs):
            problems.append("a kept count exceeds its total")
    if problems:
        raise BertLotteryError(f"{where}: mask summary: {problems[0]}")


def read_summary(path: str | os.PathLike) -> dict:
    """A mask summary: size-bounded, schema- and consistency-checked."""
    summary = _bounded_json(Path(path))
    _check(summary, str(path))
    return summary


def missing_mask_error(path: str | os.PathLike) -> BertLotteryError:
    """The error for a mask file that is not there: when its summary lies beside it (a study bundle that
    kept only the summary), naming the command that regenerates the mask and the sha256 to check."""
    summary_path = summary_of_mask(Path(path).as_posix())
    if summary_path is None or not Path(summary_path).is_file():
        return BertLotteryError(f"{path}: mask file not found")
    try:
        summary = read_summary(summary_path)
    except BertLotteryError as exc:
        return BertLotteryError(f"{path}: mask file not found; its summary beside it is unusable ({exc})")
    return BertLotteryError(
        f"{path}: mask file not found: the study bundle it came from kept only its summary ({summary_path}: "
        f"per-block counts, size, sha256), which the m-block analysis reads in its place. To regenerate the "
        f"mask, run the study's run again with the study's config: `{summary['regenerate']}` (from the "
        f"repository; it fine-tunes and searches that task and seed), then check `sha256sum {path}` "
        f"prints {summary['sha256']}")
