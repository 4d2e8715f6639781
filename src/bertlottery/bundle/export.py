"""`bundle export`: a chunk's small artifacts copied out of a results tree, in the same layout.

What goes in (README "Sharing a study: bundles"): data cards, every metrics JSON with the training summaries and
logs, every s-family mask, the m-masks of the chosen kinds bit-packed, search records and traces, super
summaries, attention-pattern counts, each fine-tuned model's config.json, the per-job benchmarks, and
bundle.json (resolved config, versions, hardware, tasks and seeds covered). Never models, optimizer
states, splits or logs."""

from __future__ import annotations

import shutil
from pathlib import Path

from bertlottery.bundle.config import check_run_config, rebuilt_config, resolved_config
from bertlottery.bundle.manifest import BUNDLE_INFO, MANIFEST, write_manifest
from bertlottery.bundle.packing import pack_weight_mask
from bertlottery.bundle.system import hardware, now_utc
from bertlottery.errors import BertLotteryError
from bertlottery.families import EVALUATED_KINDS, WEIGHTS, family
from bertlottery.io import atomic_path, write_json
from bertlottery.layout import RESULTS_ROOT, ResultPath, parse
from bertlottery.settings import library_versions

M_KINDS = EVALUATED_KINDS
# The layout's files a bundle copies (the m-masks are bit-packed instead; see _classify).
_COPIED = {"data_card", "finetuned_model_config", "full_metrics", "train_log", "train_summary", "pruned_metrics",
           "retrain_train_log", "retrain_train_summary", "retrain_metrics", "search_record", "search_trace",
           "search_trace_tensors", "super_summary", "pattern_counts", "speed_record", "benchmark"}


def _classify(relative: str) -> tuple[str, ResultPath | None] | None:
    """('copy' | 'pack' | 'mask', the parsed path) for a file that belongs in a bundle; None otherwise."""
    try:
        parsed = parse(f"{RESULTS_ROOT}/{relative}")
    except BertLotteryError:
        return None
    if parsed.what in _COPIED:
        return "copy", parsed
    if parsed.what == "mask_file":
        return ("pack" if family(parsed.family).mask_type == WEIGHTS else "copy"), parsed
    return None


# Benchmarks of the analysis jobs are not a chunk's: the bundles workflow reruns those jobs.
_ANALYSIS_STEPS = {"analysis", "report", "patterns_summarize", "bundle_unpack"}


def _task_of(relative: str, parsed: ResultPath, known: set[str]) -> str | None:
    if parsed.what == "benchmark":  # benchmarks/<step>/<keys...>[.tsv]: a task is one of the keys
        step, *keys = Path(parsed.job).parts
        return None if step in _ANALYSIS_STEPS else next((key for key in keys if key in known), None)
    return parsed.task


def select_files(results: Path, tasks: list[str] | None, m_kinds: list[str]) -> list[tuple[str, str, ResultPath]]:
    """(path under the root, action, parsed) of every file to export, sorted."""
    if not results.is_dir():
        raise BertLotteryError(f"{results}: results folder not found (expected the workflow's results/)")
    files = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    files = [f for f in files if not Path(f).name.startswith(".")]  # temporaries of atomic writes
    known = {p.split("/")[1] for p in files if p.startswith("data/") and p.count("/") >= 2}
    known |= {p.split("/")[1] for p in files if p.startswith("finetune/") and p.count("/") >= 2}
    wanted = set(tasks) if tasks else known
    missing = sorted(wanted - known)
    if missing:
        raise BertLotteryError(f"{results}: no results of task(s) {', '.join(missing)} (found {sorted(known)})")
    chosen = []
    for relative in files:
        found = _classify(relative)
        if found is None:
            continue
        action, parsed = found
        task = _task_of(relative, parsed, known)
        if task not in wanted:
            continue
        if action == "pack" and parsed.kind not in m_kinds:
            continue
        chosen.append((relative, action, parsed))
    if not chosen:
        raise BertLotteryError(f"{results}: nothing to export for tasks {sorted(wanted)}")
    return chosen


def _ordered(values: set, preferred: list) -> list:
    """`values` in the config's order, others after (sorted)."""
    return [v for v in preferred if v in values] + sorted(values - set(preferred))


def export(results: str, out: str, *, tasks: list[str] | None = None, m_kinds: list[str] = list(M_KINDS),
           configfiles: list[str] = (), overrides: list[str] = ()) -> dict:
    """Write the bundle of `tasks` (default: every task with results) into `out`; returns bundle.json."""
    results_dir, out_dir = Path(results), Path(out)
    bad = sorted(set(m_kinds) - set(M_KINDS))
    if bad:
        raise BertLotteryError(f"--m-kinds {' '.join(bad)}: expected some of {' '.join(M_KINDS)}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BertLotteryError(f"{out_dir}: folder exists and is not empty; a bundle is written into a new folder")
    chosen = select_files(results_dir, tasks, m_kinds)
    covered = {p.task for _, _, p in chosen if p.what == "full_metrics"}
    seeds = {p.seed for _, _, p in chosen if p.what == "full_metrics"}
    if not covered:
        raise BertLotteryError(f"{results_dir}: no fine-tuned metrics (finetune/<task>/seed<S>/metrics.json) "
                               "to export; run the full models first")
    if configfiles:
        config, source = resolved_config(configfiles, overrides), "configfile"
        check_run_config(config, results_dir, chosen)
    else:
        config, source = rebuilt_config(results_dir, chosen), "rebuilt from the data cards and the results files"
    for relative, action, _ in chosen:
        target = out_dir / relative
        if action == "pack":
            pack_weight_mask(results_dir / relative, target)
        else:
            with atomic_path(target) as tmp:
                shutil.copyfile(results_dir / relative, tmp)
    info = {
        "format": 1,
        "bertlottery": library_versions().get("bertlottery"),
        "libraries": library_versions(),
        "hardware": hardware(),
        "created": now_utc(),
        "tasks": _ordered(covered, config.get("tasks", [])),
        "seeds": _ordered(seeds, config.get("seeds", [])),
        "m_kinds": [k for k in M_KINDS if k in m_kinds],
        "pattern_counts": any(p.what == "pattern_counts" for _, _, p in chosen),
        "speed_records": any(p.what == "speed_record" for _, _, p in chosen),
        "config_source": source,
        "config": config,
        "files": len(chosen),
    }
    write_json(out_dir / BUNDLE_INFO, info)
    write_manifest(out_dir)
    return info


__all__ = ["export", "select_files", "M_KINDS", "MANIFEST"]
