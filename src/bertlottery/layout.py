"""The results tree of the workflow: every path it writes, spelled once, and the parser that reads the
task / seed / family / kind / variant back from a path.

    <root>/data/<task>/{data_card.json, splits/}
    <root>/finetune/<task>/seed<S>/{model/config.json, train_log.csv, train_summary.json, metrics.json}
    <root>/masks/<family>/<task>/seed<S>/{<kind>.safetensors, search.json, trace.json, trace.safetensors}
    <root>/masks/m/<task>/seed<S>/<kind>.summary.json          (a study bundle's summary of an m-mask)
    <root>/masks/super/<task>/summary.json
    <root>/eval/<family>/<kind>/<task>/seed<S>/pruned.json
    <root>/retrain/<family>/<variant>/<task>/seed<S>/{train_log.csv, train_summary.json, metrics.json}
    <root>/speed/<task>/seed<S>/speed.json
    <root>/patterns/cnn/<pkind>/{model.safetensors, card.json}
    <root>/patterns/counts/<pconfig>/<task>/seed<S>.safetensors
    <root>/{analysis, tables, figures}/<name>.<ext>
    <root>/logs/<step>/.../<job>.log and <root>/benchmarks/<step>/.../<job>.tsv

`kind` is a mask kind (the file a run reads) and `variant` a retraining (bertlottery.families names both).
The file names inside a run's folder (the leaf names below) are spelled here too: the jobs that write
them and bundle export import them.
The Snakemake rules build their inputs and outputs with `Layout`: wildcards such as "{task}" pass through
its methods unchanged, as format strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from bertlottery.errors import BertLotteryError
from bertlottery.families import MASK_KINDS, SUPER

RESULTS_ROOT = "results"

# Leaf names: the files a job writes into its own folder.
DATA_CARD = "data_card.json"
SPLITS_DIR = "splits"
MODEL_DIR = "model"
MODEL_CONFIG = "config.json"        # inside a saved model folder (transformers' name)
TRAIN_LOG = "train_log.csv"
TRAIN_SUMMARY = "train_summary.json"
RUN_METRICS = "metrics.json"        # a full model's or a retraining's evaluation
PRUNED_METRICS = "pruned.json"
SEARCH_RECORD = "search.json"
SEARCH_TRACE = "trace.json"
SEARCH_TRACE_TENSORS = "trace.safetensors"
SUPER_SUMMARY = "summary.json"
SPEED_RECORD = "speed.json"

SEED_DIR = "seed{seed}"
MASK_FILE = "{kind}.safetensors"
# What a study bundle keeps of a weight mask in its place (`bundle export --m-masks summary`): per-block
# kept counts, size and the sha256 of the mask file (bertlottery.masks.summary).
MASK_SUMMARY = "{kind}.summary.json"
_RUN = "{task}/" + SEED_DIR
_MASK_DIR = "masks/{family}/" + _RUN
_FINETUNE_DIR = "finetune/" + _RUN
_RETRAIN_DIR = "retrain/{family}/{variant}/" + _RUN
_SUPER_DIR = f"masks/{SUPER}/{{task}}"

# name -> path under the root; the methods of Layout below fill them, `parse` reads them back.
# Order matters only to `parse`: the first template that matches wins.
TEMPLATES = {
    "data_dir": "data/{task}",
    "data_card": "data/{task}/" + DATA_CARD,
    "data_splits": "data/{task}/" + SPLITS_DIR,
    "finetune_dir": _FINETUNE_DIR,
    "finetuned_model": f"{_FINETUNE_DIR}/{MODEL_DIR}",
    "finetuned_model_config": f"{_FINETUNE_DIR}/{MODEL_DIR}/{MODEL_CONFIG}",
    "train_log": f"{_FINETUNE_DIR}/{TRAIN_LOG}",
    "train_summary": f"{_FINETUNE_DIR}/{TRAIN_SUMMARY}",
    "full_metrics": f"{_FINETUNE_DIR}/{RUN_METRICS}",
    "mask_dir": _MASK_DIR,
    "search_record": f"{_MASK_DIR}/{SEARCH_RECORD}",
    "search_trace": f"{_MASK_DIR}/{SEARCH_TRACE}",
    "search_trace_tensors": f"{_MASK_DIR}/{SEARCH_TRACE_TENSORS}",
    "mask_file": _MASK_DIR + "/" + MASK_FILE,
    "mask_summary": _MASK_DIR + "/" + MASK_SUMMARY,
    "super_dir": _SUPER_DIR,
    "super_summary": f"{_SUPER_DIR}/{SUPER_SUMMARY}",
    "pruned_metrics": "eval/{family}/{kind}/" + _RUN + "/" + PRUNED_METRICS,
    "retrain_dir": _RETRAIN_DIR,
    "retrain_train_log": f"{_RETRAIN_DIR}/{TRAIN_LOG}",
    "retrain_train_summary": f"{_RETRAIN_DIR}/{TRAIN_SUMMARY}",
    "retrain_metrics": f"{_RETRAIN_DIR}/{RUN_METRICS}",
    "speed_record": "speed/" + _RUN + "/" + SPEED_RECORD,
    "patterns_cnn_root": "patterns/cnn",
    "patterns_cnn_dir": "patterns/cnn/{pkind}",
    "patterns_cnn_model": "patterns/cnn/{pkind}/model.safetensors",
    "patterns_cnn_card": "patterns/cnn/{pkind}/card.json",
    "pattern_counts": "patterns/counts/{pconfig}/{task}/" + SEED_DIR + ".safetensors",
    "analysis_dir": "analysis",
    "analysis_file": "analysis/{name}.{ext}",
    "tables_dir": "tables",
    "table_file": "tables/{name}.{ext}",
    "figures_dir": "figures",
    "figure_file": "figures/{name}.{ext}",
    "figure_stem": "figures/{name}",
    "log": "logs/{job}.log",
    "benchmark": "benchmarks/{job}.tsv",
}

_FIELD_PATTERNS = {
    "task": r"[^/]+",
    "seed": r"\d+",
    "family": r"[^/]+",
    "kind": "|".join(MASK_KINDS),
    "variant": r"[^/]+",
    "pkind": r"[^/]+",
    "pconfig": r"[^/]+",
    "name": r"[^/]+",  # a file name without its extension
    "ext": r"[A-Za-z0-9]+",
    "job": r"[^.]+",  # <step>/.../<job>, without the extension
}


def _regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            pattern = r"[^/.]+" if part == "name" and template.endswith("{name}") else _FIELD_PATTERNS[part]
            out.append(f"(?P<{part}>{pattern})")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


_REGEXES = {name: _regex(template) for name, template in TEMPLATES.items()}
# A per-run file anywhere: .../<task>/seed<S>/<file>, also the original study's seed_<S> directories.
_RUN_TAIL = re.compile(r"([^/]+)/seed_?(\d+)/[^/]+$")
_SEED_DIR = re.compile(r"seed_?(\d+)")


@dataclass(frozen=True)
class ResultPath:
    """What `parse` reads from a results path: the template's name and its fields (None where absent)."""

    what: str
    task: str | None = None
    seed: int | None = None
    family: str | None = None
    kind: str | None = None
    variant: str | None = None
    pkind: str | None = None
    pconfig: str | None = None
    name: str | None = None
    ext: str | None = None
    job: str | None = None

    def fields(self) -> dict:
        """The fields the path has (the template's placeholders), seed as an int."""
        return {k: v for k, v in vars(self).items() if k != "what" and v is not None}


@dataclass(frozen=True)
class Layout:
    """The results tree under `root` (default `results`, relative to the workflow's directory)."""

    root: str = RESULTS_ROOT

    def path(self, what: str, **fields) -> str:
        """The path of template `what` with these fields (strings such as "{task}" pass through)."""
        relative = TEMPLATES[what].format(**fields)
        return f"{self.root}/{relative}"

    # -- data and full models
    def data_dir(self, task) -> str:
        return self.path("data_dir", task=task)

    def data_card(self, task) -> str:
        return self.path("data_card", task=task)

    def data_splits(self, task) -> str:
        return self.path("data_splits", task=task)

    def finetune_dir(self, task, seed) -> str:
        return self.path("finetune_dir", task=task, seed=seed)

    def finetuned_model(self, task, seed) -> str:
        return self.path("finetuned_model", task=task, seed=seed)

    def finetuned_model_config(self, task, seed) -> str:
        return self.path("finetuned_model_config", task=task, seed=seed)

    def train_log(self, task, seed) -> str:
        return self.path("train_log", task=task, seed=seed)

    def train_summary(self, task, seed) -> str:
        return self.path("train_summary", task=task, seed=seed)

    def full_metrics(self, task, seed) -> str:
        return self.path("full_metrics", task=task, seed=seed)

    # -- masks and searches
    def mask_dir(self, family, task, seed) -> str:
        return self.path("mask_dir", family=family, task=task, seed=seed)

    def mask_file(self, family, task, seed, kind) -> str:
        return self.path("mask_file", family=family, task=task, seed=seed, kind=kind)

    def mask_summary(self, family, task, seed, kind) -> str:
        return self.path("mask_summary", family=family, task=task, seed=seed, kind=kind)

    def search_record(self, family, task, seed) -> str:
        return self.path("search_record", family=family, task=task, seed=seed)

    def search_trace(self, family, task, seed) -> str:
        return self.path("search_trace", family=family, task=task, seed=seed)

    def search_trace_tensors(self, family, task, seed) -> str:
        return self.path("search_trace_tensors", family=family, task=task, seed=seed)

    def super_dir(self, task) -> str:
        return self.path("super_dir", task=task)

    def super_summary(self, task) -> str:
        return self.path("super_summary", task=task)

    # -- pruned and retrained runs
    def pruned_metrics(self, family, kind, task, seed) -> str:
        return self.path("pruned_metrics", family=family, kind=kind, task=task, seed=seed)

    def retrain_dir(self, family, variant, task, seed) -> str:
        return self.path("retrain_dir", family=family, variant=variant, task=task, seed=seed)

    def retrain_train_log(self, family, variant, task, seed) -> str:
        return self.path("retrain_train_log", family=family, variant=variant, task=task, seed=seed)

    def retrain_train_summary(self, family, variant, task, seed) -> str:
        return self.path("retrain_train_summary", family=family, variant=variant, task=task, seed=seed)

    def retrain_metrics(self, family, variant, task, seed) -> str:
        return self.path("retrain_metrics", family=family, variant=variant, task=task, seed=seed)

    # -- measured subnetwork speed (beyond the paper)
    def speed_record(self, task, seed) -> str:
        return self.path("speed_record", task=task, seed=seed)

    # -- attention patterns
    def patterns_cnn_root(self) -> str:
        return self.path("patterns_cnn_root")

    def patterns_cnn_dir(self, pkind) -> str:
        return self.path("patterns_cnn_dir", pkind=pkind)

    def patterns_cnn_model(self, pkind) -> str:
        return self.path("patterns_cnn_model", pkind=pkind)

    def patterns_cnn_card(self, pkind) -> str:
        return self.path("patterns_cnn_card", pkind=pkind)

    def pattern_counts(self, pconfig, task, seed) -> str:
        return self.path("pattern_counts", pconfig=pconfig, task=task, seed=seed)

    # -- analysis tables, paper tables, figures
    def analysis_dir(self) -> str:
        return self.path("analysis_dir")

    def analysis_file(self, name, ext) -> str:
        return self.path("analysis_file", name=name, ext=ext)

    def tables_dir(self) -> str:
        return self.path("tables_dir")

    def table_file(self, name, ext) -> str:
        return self.path("table_file", name=name, ext=ext)

    def figures_dir(self) -> str:
        return self.path("figures_dir")

    def figure_file(self, name, ext) -> str:
        return self.path("figure_file", name=name, ext=ext)

    def figure_stem(self, name) -> str:
        """A figure's path without extension (the figure commands write <stem>.png and <stem>.pdf)."""
        return self.path("figure_stem", name=name)

    # -- a job's log and benchmark: <step>/<key>/.../seed<S>
    @staticmethod
    def job(step: str, *keys, seed=None) -> str:
        parts = [step, *map(str, keys)] + ([SEED_DIR.format(seed=seed)] if seed is not None else [])
        return "/".join(parts)

    def log(self, step: str, *keys, seed=None) -> str:
        return self.path("log", job=self.job(step, *keys, seed=seed))

    def benchmark(self, step: str, *keys, seed=None) -> str:
        return self.path("benchmark", job=self.job(step, *keys, seed=seed))

    # -- reading paths back
    def parse(self, path) -> ResultPath:
        """Which results path `path` is, with its task, seed, family, kind, variant, ... .

        Raises BertLotteryError naming the path and the expected patterns when it is not one."""
        text = PurePosixPath(path).as_posix()
        prefix = f"{PurePosixPath(self.root).as_posix()}/"
        if text.startswith(prefix):
            relative = text[len(prefix):]
            for what, regex in _REGEXES.items():
                match = regex.fullmatch(relative)
                if match:
                    fields = match.groupdict()
                    if "seed" in fields:
                        fields["seed"] = int(fields["seed"])
                    return ResultPath(what, **fields)
        expected = ", ".join(f"{prefix}{t}" for t in TEMPLATES.values())
        raise BertLotteryError(f"{path}: not a path of the results layout; expected one of {expected}")


def parse(path, root: str = RESULTS_ROOT) -> ResultPath:
    """`Layout(root).parse(path)`."""
    return Layout(root).parse(path)


def seed_dir(seed) -> str:
    """The directory of one seed's files of a run: seed<S>."""
    return SEED_DIR.format(seed=seed)


def mask_name(kind) -> str:
    """The file name of a mask of this kind inside a seed directory: <kind>.safetensors."""
    return MASK_FILE.format(kind=kind)


def mask_summary_name(kind) -> str:
    """The file name of the summary of a mask of this kind, beside it: <kind>.summary.json."""
    return MASK_SUMMARY.format(kind=kind)


def summary_of_mask(path) -> str | None:
    """The path of a mask file's summary (the same folder, `mask_summary_name`); None when `path` is not
    named as a mask file (<kind>.safetensors)."""
    path = PurePosixPath(path)
    kind = next((k for k in MASK_KINDS if path.name == mask_name(k)), None)
    return None if kind is None else str(path.with_name(mask_summary_name(kind)))


def mask_of_summary(path) -> str | None:
    """The path of the mask file a summary stands for; None when `path` is not named as a summary."""
    path = PurePosixPath(path)
    kind = next((k for k in MASK_KINDS if path.name == mask_summary_name(k)), None)
    return None if kind is None else str(path.with_name(mask_name(kind)))


def run_of(path) -> tuple[str, int] | None:
    """(task, seed) of a per-run file anywhere, from its tail .../<task>/seed<S>/<file> (the original
    study's seed_<S> directories too); None when the path does not end so."""
    match = _RUN_TAIL.search(PurePosixPath(path).as_posix())
    return (match.group(1), int(match.group(2))) if match else None


def seed_of_dir(name: str) -> str | None:
    """The seed digits, as written, of a seed directory name (seed<S>, or the original study's
    seed_<S>); None for any other name."""
    match = _SEED_DIR.fullmatch(name)
    return match.group(1) if match else None
