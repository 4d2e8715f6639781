"""All metrics JSONs into one tidy table, and the mean and Bessel-corrected std over seeds.

One row per (task, seed, family, kind, evaluated): the metrics JSON contract of the package (full models,
pruned evaluations, retrained models). The summary groups the seeds: mean and std with ddof = 1, the
convention of the published numbers. The published numbers (the package's resources/paper_results.yaml)
are loaded here too, so tables, stats and figures share one reader.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bertlottery.analysis.dev_bootstrap import dev_bootstrap
from bertlottery.errors import BertLotteryError
from bertlottery.families import FAMILIES
from bertlottery.glue.tasks import GLUE_TASKS
from bertlottery.io import read_json
from bertlottery.layout import TRAIN_SUMMARY, Layout
from bertlottery.settings import resource_path
from bertlottery.train.evaluation import upgrade_record

PAPER_RESULTS_PATH = resource_path("paper_results.yaml")  # carried by the package
KEYS = ["task", "seed", "family", "kind", "evaluated"]
REQUIRED = ["task", "seed", "family", "evaluated", "metrics", "reported_metric", "reported"]
MASK_SIZE_KEYS = ["heads_kept", "heads_total", "mlps_kept", "mlps_total", "params_kept", "params_total",
                  "prunable_kept", "prunable_total", "paper_fraction"]
# A retraining counts as not converged when its final training loss exceeds its full model's by this factor
NONCONVERGED_RATIO = 2.0
NO_KIND = "none"  # the full model has no mask kind; a string keeps group-bys and CSV round trips simple
FAMILY_ORDER = ["full", *FAMILIES]
KIND_ORDER = [NO_KIND, "good", "random", "bad"]
EVALUATED_ORDER = ["full", "pruned", "retrained"]


def task_order(tasks) -> list[str]:
    """Tasks in the paper's column order (Table 2), unknown names last in the given order."""
    tasks = list(dict.fromkeys(tasks))
    known = [t for t in GLUE_TASKS if t in tasks]
    return known + [t for t in tasks if t not in known]


def run_keys(record: dict) -> dict:
    """The key columns (KEYS) of a metrics record; `kind` is a mask kind (pruned runs) or a variant
    (retrained runs): the runs' one axis in the tables."""
    return {"task": record["task"], "seed": int(record["seed"]), "family": record["family"],
            "kind": record.get("variant") or record.get("kind") or NO_KIND, "evaluated": record["evaluated"]}


def train_loss(record: dict, source: str) -> float:
    """The final training loss of the run: a retraining's record carries it; a full model's is in the
    training summary beside its metrics record (NaN where neither is found)."""
    loss = (record.get("train") or {}).get("final_loss")
    if loss is None and record.get("evaluated") == "full":
        summary = Path(source).with_name(TRAIN_SUMMARY)
        loss = read_json(summary).get("final_loss") if summary.is_file() else None
    return np.nan if loss is None else float(loss)


def metric_row(record: dict, source: str) -> dict:
    """One tidy row of a metrics JSON: keys, reported metric, every flat metric, mask sizes."""
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise BertLotteryError(f"{source}: metrics JSON lacks key(s) {missing}; expected the package contract")
    if not isinstance(record["metrics"], dict):
        raise BertLotteryError(f"{source}: 'metrics' is {type(record['metrics']).__name__}, expected an object")
    row = run_keys(record) | {
        "reported_metric": record["reported_metric"],
        "reported": float(record["reported"]),
        "stop_metric": record.get("stop_metric"),
        "stop": record.get("stop"),
        "n_examples": record.get("n_examples"),
    }
    row |= {f"metric_{name}": float(value) for name, value in record["metrics"].items()}
    size = record.get("mask_size") or {}
    row |= {key: size.get(key, np.nan) for key in MASK_SIZE_KEYS}
    row |= {key: record.get(key) for key in ("wall_time_s", "device", "config_hash")}
    row["train_final_loss"] = train_loss(record, source)
    row["source"] = source
    return row


def collect(paths, records: list[dict] | None = None) -> pd.DataFrame:
    """The tidy table of the given metrics JSON files (one row each, read here unless `records` are the
    files' contents), sorted for stable output; each retraining flagged when it did not converge."""
    records = [read_json(path) for path in paths] if records is None else records
    rows = [metric_row(upgrade_record(record), str(path)) for record, path in zip(records, paths)]
    if not rows:
        raise BertLotteryError("no metrics JSON files given; expected at least the full models' metrics.json")
    table = pd.DataFrame(rows)
    duplicated = table.duplicated(KEYS, keep=False)
    if duplicated.any():
        clash = table.loc[duplicated, KEYS + ["source"]].to_string(index=False)
        raise BertLotteryError(f"two metrics files describe the same run:\n{clash}")
    return sort_table(flag_nonconverged(table))


def flag_nonconverged(table: pd.DataFrame) -> pd.DataFrame:
    """`nonconverged`: a retraining whose final training loss is more than NONCONVERGED_RATIO times its
    full model's (same task and seed); False where either loss is unknown (docs/protocol.md §Statistics)."""
    full = table[table["evaluated"] == "full"].set_index(["task", "seed"])["train_final_loss"]
    reference = pd.Series([full.get((t, s), np.nan) for t, s in zip(table["task"], table["seed"])], index=table.index)
    ratio = table["train_final_loss"] / reference
    return table.assign(train_loss_ratio=ratio,
                        nonconverged=(table["evaluated"] == "retrained") & (ratio > NONCONVERGED_RATIO))


def sort_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in the paper's order: task columns order, family, kind, evaluated, then seed."""
    order = {
        "task": task_order(table["task"]),
        "family": FAMILY_ORDER + sorted(set(table["family"]) - set(FAMILY_ORDER)),
        "kind": KIND_ORDER + sorted(set(table["kind"]) - set(KIND_ORDER)),
        "evaluated": EVALUATED_ORDER + sorted(set(table["evaluated"]) - set(EVALUATED_ORDER)),
    }
    table = table.copy()
    for column, levels in order.items():
        table[column] = pd.Categorical(table[column], categories=levels, ordered=True)
    by = [c for c in ["task", "family", "kind", "evaluated", "seed"] if c in table]
    table = table.sort_values(by).reset_index(drop=True)
    for column in order:
        table[column] = table[column].astype(str)
    return table


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and Bessel-corrected std (ddof=1) over seeds of every numeric column, per run type.

    n_seeds says how many seeds went in; with one seed the std is NaN (undefined), not 0.
    """
    group = ["task", "family", "kind", "evaluated"]
    values = [c for c in table.columns
              if c.startswith("metric_") or c in MASK_SIZE_KEYS or c in ("reported", "train_final_loss")]
    grouped = table.groupby(group, sort=False)
    means = grouped[values].mean().add_suffix("_mean")
    stds = grouped[values].std(ddof=1).add_suffix("_std")
    parts = [grouped["seed"].count().rename("n_seeds"),
             grouped["seed"].agg(lambda s: " ".join(map(str, sorted(s)))).rename("seeds"),
             grouped["reported_metric"].first(), means, stds]
    if "nonconverged" in table:
        parts.append(grouped["nonconverged"].sum().astype(int).rename("n_nonconverged"))
    out = pd.concat(parts, axis=1).reset_index()
    return sort_table(out)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by this module (Parquet or CSV) with the string columns as strings."""
    path = Path(path)
    if not path.exists():
        raise BertLotteryError(f"{path}: table not found")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={"task": str, "family": str, "kind": str, "evaluated": str})


def write_frame(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """A tidy table as `stem`.csv and `stem`.parquet (no formatting: see table_format.write_report_table
    for the md/tex/html tables of the report); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, parquet = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    table.to_csv(csv, index=False)
    table.to_parquet(parquet, index=False)
    return [csv, parquet]


def lookup(summary: pd.DataFrame, task: str, family: str, kind: str, evaluated: str) -> pd.Series | None:
    """The summary row of one run type, or None when it was not run."""
    hit = summary[(summary["task"] == task) & (summary["family"] == family)
                  & (summary["kind"] == kind) & (summary["evaluated"] == evaluated)]
    return None if hit.empty else hit.iloc[0]


# --- the published numbers -------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _load_yaml(path: str) -> dict:
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise BertLotteryError(f"{path}: paper results file not found") from None


def load_paper(path: str | Path | None = None) -> dict:
    """The packaged paper_results.yaml (or another file of the same layout)."""
    return _load_yaml(str(path or PAPER_RESULTS_PATH))


def paper_performance(paper: dict, family: str, kind: str, evaluated: str, task: str):
    """(mean, std) the paper reports for one run type and task, or None where it reports none."""
    try:
        mean, std = paper["performance"][family][kind][evaluated][task]
    except (KeyError, TypeError):
        return None
    return float(mean), float(std)


def paper_majority(paper: dict, task: str) -> float | None:
    value = paper.get("majority_baseline", {}).get(task)
    return None if value is None else float(value)


# --- CLI -------------------------------------------------------------------------------------------


def main_aggregate(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="bertlottery aggregate",
        description="All metrics JSONs into results/analysis/metrics.{csv,parquet} (one row per run) and "
                    "summary.{csv,parquet} (mean and ddof=1 std over seeds).",
    )
    parser.add_argument("--inputs", nargs="*", default=[], help="metrics JSON files")
    parser.add_argument("--out-dir", default=Layout().analysis_dir())
    args = parser.parse_args(argv)
    records = [upgrade_record(read_json(path)) for path in args.inputs]
    table = collect(args.inputs, records)
    summary = summarize(table)
    boot = dev_bootstrap(list(zip(records, args.inputs)), run_keys)
    written = write_frame(table, Path(args.out_dir) / "metrics") + write_frame(summary, Path(args.out_dir) / "summary")
    boot.to_parquet(Path(args.out_dir) / "dev_bootstrap.parquet", index=False)
    written.append(Path(args.out_dir) / "dev_bootstrap.parquet")
    print(f"{len(table)} runs, {len(summary)} run types -> " + ", ".join(map(str, written)))
