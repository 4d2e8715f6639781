"""`bundle export`: a chunk's small artifacts copied out of a results tree, in the same layout.

What goes in (README "Sharing a study: bundles"): data cards, every metrics JSON with the training summaries and
logs, every s-family mask, the m-masks of the chosen kinds (`--m-masks full`: bit-packed; `--m-masks
summary`: only each mask's summary, bertlottery.masks.summary, beside the mask's path), search records and
traces, super summaries, attention-pattern counts, each fine-tuned model's config.json, the per-job
benchmarks, and bundle.json (resolved config, versions, hardware, tasks and seeds covered, which m-mask
form). Never models, optimizer states, splits or logs.

A results tree restored from a summary bundle (`bundle unpack`: each m-mask's summary, not the mask) can be
exported again with `--m-masks summary`, its summaries copied as they are: how a chunk continued on another
machine from its partial bundle is exported whole (docs/results/minilm/README.md)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from bertlottery.bundle.config import FULL, M_MASK_FORMS, SUMMARY, check_run_config, rebuilt_config, resolved_config
from bertlottery.bundle.manifest import BUNDLE_INFO, MANIFEST, write_manifest
from bertlottery.bundle.packing import pack_weight_mask
from bertlottery.bundle.system import hardware, now_utc
from bertlottery.errors import BertLotteryError
from bertlottery.families import EVALUATED_KINDS, WEIGHTS, family, variant
from bertlottery.io import atomic_path, file_sha256, write_json
from bertlottery.layout import RESULTS_ROOT, Layout, ResultPath, mask_of_summary, parse
from bertlottery.masks.summary import write_summary
from bertlottery.modeling.loading import model_of_config_file
from bertlottery.modeling.mask_blocks import summarize_weight_mask
from bertlottery.settings import library_versions

M_KINDS = EVALUATED_KINDS
# The layout's files a bundle copies (the m-masks are bit-packed or summarized instead; see _classify).
_COPIED = {"data_card", "finetuned_model_config", "full_metrics", "train_log", "train_summary", "pruned_metrics",
           "retrain_train_log", "retrain_train_summary", "retrain_metrics", "search_record", "search_trace",
           "search_trace_tensors", "super_summary", "pattern_counts", "speed_record", "benchmark"}


def _classify(relative: str) -> tuple[str, ResultPath | None] | None:
    """('copy' | 'pack', the parsed path) for a file that belongs in a bundle ('pack': an m-mask, bit-packed
    or summarized); None otherwise."""
    try:
        parsed = parse(f"{RESULTS_ROOT}/{relative}")
    except BertLotteryError:
        return None
    if parsed.what in _COPIED:
        return "copy", parsed
    if parsed.what == "mask_file":
        return ("pack" if family(parsed.family).mask_type == WEIGHTS else "copy"), parsed
    if parsed.what == "mask_summary":  # a restored summary bundle's; see select_files
        return "restored", parsed
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
    present = set(files)
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
        if action in ("pack", "restored") and parsed.kind not in m_kinds:
            continue
        if action == "restored" and mask_of_summary(relative) in present:
            continue  # the mask is here: summarized or packed from it, as after the original run
        chosen.append((relative, action, parsed))
    if not chosen:
        raise BertLotteryError(f"{results}: nothing to export for tasks {sorted(wanted)}")
    return chosen


def _ordered(values: set, preferred: list) -> list:
    """`values` in the config's order, others after (sorted)."""
    return [v for v in preferred if v in values] + sorted(values - set(preferred))


def regenerate_command(target: str, configfiles: list[str], overrides: list[str]) -> str:
    """The Snakemake call that writes `target` (a results path) again, with the run's config as given to
    `bundle export` (the targets before --config, which takes every following word)."""
    files = " ".join(map(shlex.quote, configfiles)) if configfiles else "<the run's config file>"
    command = f"snakemake {shlex.quote(target)} --cores 1 --configfile {files}"
    return command + (" --config " + " ".join(map(shlex.quote, overrides)) if overrides else "")


def _summarize(results: Path, relative: str, parsed: ResultPath, target: Path, configfiles: list[str],
               overrides: list[str], models: dict) -> None:
    """Write the summary of the m-mask `relative` to `target`, its blocks counted on its run's model."""
    config = Path(Layout(str(results)).finetuned_model_config(parsed.task, parsed.seed))
    if not config.is_file():
        raise BertLotteryError(f"{config}: not found; `--m-masks {SUMMARY}` counts each m-mask's blocks on its "
                               "run's model config (finetune/<task>/seed<S>/model/config.json); export the run "
                               f"before removing its models, or use --m-masks {FULL}")
    digest = file_sha256(config)
    if digest not in models:
        models[digest] = model_of_config_file(config)
    mask_target = Layout().mask_file(parsed.family, parsed.task, parsed.seed, parsed.kind)
    summary = summarize_weight_mask(
        results / relative, models[digest], mask=relative,
        model_config={"path": config.relative_to(results).as_posix(), "sha256": digest},
        regenerate=regenerate_command(mask_target, list(configfiles), list(overrides)))
    write_summary(target, summary)


def _check_new_folder(out_dir: Path) -> None:
    """A bundle is written into a new (or empty) folder, never over another bundle."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BertLotteryError(f"{out_dir}: folder exists and is not empty; a bundle is written into a new folder")


def export(results: str, out: str, *, tasks: list[str] | None = None, m_kinds: list[str] = list(M_KINDS),
           m_masks: str = FULL, configfiles: list[str] = (), overrides: list[str] = ()) -> dict:
    """Write the bundle of `tasks` (default: every task with results) into `out`; returns bundle.json.
    `m_masks`: FULL (each m-mask bit-packed) or SUMMARY (only its summary, beside its path)."""
    results_dir, out_dir = Path(results), Path(out)
    bad = sorted(set(m_kinds) - set(M_KINDS))
    if bad:
        raise BertLotteryError(f"--m-kinds {' '.join(bad)}: expected some of {' '.join(M_KINDS)}")
    if m_masks not in M_MASK_FORMS:
        raise BertLotteryError(f"--m-masks {m_masks}: expected one of {' '.join(M_MASK_FORMS)}")
    _check_new_folder(out_dir)
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
    restored = next((relative for relative, action, _ in chosen if action == "restored"), None)
    if restored and m_masks != SUMMARY:  # before anything is written
        raise BertLotteryError(f"{results_dir / restored}: only the summary of this m-mask is here (restored from "
                               f"a summary bundle), not the mask; export with --m-masks {SUMMARY}")
    models: dict = {}  # config.json sha256 -> its model (on the meta device), for the summaries
    for relative, action, parsed in chosen:
        target = out_dir / relative
        if action == "pack" and m_masks == SUMMARY:
            target = Path(Layout(str(out_dir)).mask_summary(parsed.family, parsed.task, parsed.seed, parsed.kind))
            _summarize(results_dir, relative, parsed, target, configfiles, overrides, models)
        elif action == "pack":
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
        "m_masks": m_masks,
        "pattern_counts": any(p.what == "pattern_counts" for _, _, p in chosen),
        "speed_records": any(p.what == "speed_record" for _, _, p in chosen),
        "config_source": source,
        "config": config,
        "files": len(chosen),
    }
    write_json(out_dir / BUNDLE_INFO, info)
    write_manifest(out_dir)
    return info


def weight_masks_read_by(runs: list[str]) -> list[str]:
    """The weight masks (paths under a results root, sorted) that the retrainings `runs` read; `runs` are their
    metrics paths, as a partial bundle's <TASK>.remaining.txt lists them."""
    masks = set()
    for run in runs:
        parsed = parse(run)
        if parsed.what != "retrain_metrics":
            raise BertLotteryError(f"{run}: not a retraining's metrics path (results/retrain/<family>/<variant>/"
                                   "<task>/seed<S>/metrics.json); expected the runs of a <TASK>.remaining.txt")
        if family(parsed.family).mask_type == WEIGHTS:
            mask = Layout().mask_file(parsed.family, parsed.task, parsed.seed, variant(parsed.variant).mask_kind)
            masks.add(mask.removeprefix(f"{RESULTS_ROOT}/"))
    return sorted(masks)


def export_run_masks(results: str, masks: list[str], out: str) -> dict:
    """Write the weight masks `masks` (from `weight_masks_read_by`) bit-packed into the bundle `out`: what a
    summary bundle lacks for a chunk's unfinished retrainings to go on on another machine. A bundle like any
    other (manifest, bundle.json); `bundle unpack` checks each packed mask against the manifest and unpacks it
    to the same bytes. Returns bundle.json."""
    out_dir = Path(out)
    _check_new_folder(out_dir)
    for relative in masks:
        pack_weight_mask(Path(results) / relative, out_dir / relative)
    info = {"format": 1, "bertlottery": library_versions().get("bertlottery"), "created": now_utc(),
            "content": "weight masks that unfinished retrainings read, bit-packed", "masks": list(masks),
            "files": len(masks)}
    write_json(out_dir / BUNDLE_INFO, info)
    write_manifest(out_dir)
    return info


__all__ = ["export", "export_run_masks", "weight_masks_read_by", "select_files", "M_KINDS", "M_MASK_FORMS", "MANIFEST"]
