"""Compare two results trees of the workflow (before and after a change, or two machines).

    python scripts/compare_results.py RESULTS_A RESULTS_B

Equal means: every JSON equal after dropping run-time-only keys (wall times, throughput, the speed job's
timings and speedups) and reading metrics records and training summaries of older versions in today's
contract (`variant`; a record from before per-example predictions is compared without them, and the
count of such records is printed); every
safetensors file's tensors bit-equal, with the same dtypes and the same metadata (run-time keys dropped);
CSV and parquet tables equal after dropping run-time columns; every other file (md, tex, html, tsv,
jsonl) equal byte for byte. Logs, benchmarks and figures (PNG/PDF carry timestamps) are not compared.
Exit status 1 when anything differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import safe_open

from bertlottery.glue.predictions import PREDICTIONS_FIELD
from bertlottery.train.evaluation import upgrade_record

RUN_TIME = {"wall_time_s", "elapsed_s", "examples_per_s", "tokens_per_s", "seconds"}
NOT_COMPARED_DIRS = {"logs", "benchmarks", ".snakemake"}
FIGURES = {".png", ".pdf", ".svg"}


def _run_time(key: str) -> bool:
    # measured times, rates and the speed job's speedups: they differ from run to run by nature
    return key in RUN_TIME or key.endswith(("_seconds", "_s", "_speedup"))


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not _run_time(k)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, _strip(f.metadata() or {})


def _frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if _run_time(c)])


WITHOUT_PREDICTIONS: list[Path] = []  # records compared without predictions: one side predates them


def _records(a: Path, b: Path) -> tuple:
    ra, rb = (_strip(upgrade_record(json.loads(p.read_text()))) for p in (a, b))
    if isinstance(ra, dict) and isinstance(rb, dict) and (PREDICTIONS_FIELD in ra) != (PREDICTIONS_FIELD in rb):
        ra, rb = ({k: v for k, v in r.items() if k != PREDICTIONS_FIELD} for r in (ra, rb))
        WITHOUT_PREDICTIONS.append(a)
    return ra, rb


def _same(a: Path, b: Path) -> bool:
    ext = a.suffix
    if ext == ".json":
        ra, rb = _records(a, b)
        return ra == rb
    if ext == ".safetensors":
        (ta, ma), (tb, mb) = _tensors(a), _tensors(b)
        return ma == mb and set(ta) == set(tb) and all(
            ta[k].dtype == tb[k].dtype and np.array_equal(ta[k], tb[k]) for k in ta)
    if ext == ".parquet":
        return _frame(pd.read_parquet(a)).equals(_frame(pd.read_parquet(b)))
    if ext == ".csv":
        return _frame(pd.read_csv(a)).equals(_frame(pd.read_csv(b)))
    return a.read_bytes() == b.read_bytes()


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")
            if p.is_file() and not NOT_COMPARED_DIRS & set(p.relative_to(root).parts) and p.suffix not in FIGURES}


def compare(a: Path, b: Path) -> list[str]:
    files_a, files_b = _files(a), _files(b)
    diffs = [f"only in {'A' if rel in files_a else 'B'}: {rel}" for rel in sorted(files_a ^ files_b)]
    diffs += [f"differs: {rel}" for rel in sorted(files_a & files_b) if not _same(a / rel, b / rel)]
    counts: dict[str, int] = {}
    for rel in files_a & files_b:
        counts[rel.suffix or rel.name] = counts.get(rel.suffix or rel.name, 0) + 1
    print("compared:", ", ".join(f"{n} {ext}" for ext, n in sorted(counts.items())))
    if WITHOUT_PREDICTIONS:
        print(f"{len(WITHOUT_PREDICTIONS)} metrics record(s) compared without per-example predictions "
              "(one side was written before records kept them)")
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit(__doc__)
    diffs = compare(Path(argv[0]), Path(argv[1]))
    print(f"{len(diffs)} difference(s)")
    for line in diffs:
        print("  " + line)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
