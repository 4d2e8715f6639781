"""The results layout: every path round-trips through the parser, and the workflow writes only such paths."""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import REPO, tiny_command

from bertlottery import layout
from bertlottery.analysis.aggregate import PAPER_RESULTS_PATH
from bertlottery.errors import BertLotteryError
from bertlottery.layout import TEMPLATES, Layout, ResultPath

# One example value per field; the seed as the workflow spells it (a string) and as parse returns it.
FIELDS = {"task": "STS-B", "seed": 1337, "family": "s-heads", "kind": "random_like_bad", "variant": "bad_6ep",
          "pkind": "normed", "pconfig": "finetuned", "name": "overlaps_super_heads", "ext": "parquet",
          "job": "retrain/s/bad_6ep/STS-B/seed1337"}


def example(what: str) -> dict:
    return {name: FIELDS[name] for name in re.findall(r"\{(\w+)\}", TEMPLATES[what])}


# Today's paths, spelled out: no output file may move.
KNOWN = {
    "results/data/CoLA/data_card.json": ("data_card", {"task": "CoLA"}),
    "results/data/CoLA/splits": ("data_splits", {"task": "CoLA"}),
    "results/finetune/SST-2/seed42/model": ("finetuned_model", {"task": "SST-2", "seed": 42}),
    "results/finetune/SST-2/seed42/metrics.json": ("full_metrics", {"task": "SST-2", "seed": 42}),
    "results/finetune/SST-2/seed42/train_log.csv": ("train_log", {"task": "SST-2", "seed": 42}),
    "results/finetune/SST-2/seed42/train_summary.json": ("train_summary", {"task": "SST-2", "seed": 42}),
    "results/masks/m/MRPC/seed71/bad.safetensors": ("mask_file", {"family": "m", "task": "MRPC", "seed": 71,
                                                                  "kind": "bad"}),
    "results/masks/s/MRPC/seed71/search.json": ("search_record", {"family": "s", "task": "MRPC", "seed": 71}),
    "results/masks/s/MRPC/seed71/trace.json": ("search_trace", {"family": "s", "task": "MRPC", "seed": 71}),
    "results/masks/s/MRPC/seed71/trace.safetensors": ("search_trace_tensors",
                                                      {"family": "s", "task": "MRPC", "seed": 71}),
    "results/masks/super/RTE/summary.json": ("super_summary", {"task": "RTE"}),
    "results/eval/super/good/QNLI/seed86/pruned.json": ("pruned_metrics", {"family": "super", "kind": "good",
                                                                           "task": "QNLI", "seed": 86}),
    "results/retrain/s/randinit_random/WNLI/seed166/metrics.json": (
        "retrain_metrics", {"family": "s", "variant": "randinit_random", "task": "WNLI", "seed": 166}),
    "results/speed/MRPC/seed42/speed.json": ("speed_record", {"task": "MRPC", "seed": 42}),
    "results/patterns/cnn/raw/card.json": ("patterns_cnn_card", {"pkind": "raw"}),
    "results/patterns/counts/pretrained/QQP/seed1337.safetensors": (
        "pattern_counts", {"pconfig": "pretrained", "task": "QQP", "seed": 1337}),
    "results/analysis/claims.md": ("analysis_file", {"name": "claims", "ext": "md"}),
    "results/tables/appendix_c_s.tex": ("table_file", {"name": "appendix_c_s", "ext": "tex"}),
    "results/figures/fig1_CoLA.png": ("figure_file", {"name": "fig1_CoLA", "ext": "png"}),
    "results/figures/fig1_CoLA": ("figure_stem", {"name": "fig1_CoLA"}),
    "results/logs/report/figure5/good_heads.log": ("log", {"job": "report/figure5/good_heads"}),
    "results/benchmarks/analysis/aggregate.tsv": ("benchmark", {"job": "analysis/aggregate"}),
}


@pytest.mark.parametrize("what", list(TEMPLATES))
@pytest.mark.parametrize("root", ["results", "some/where", "/abs/out"])
def test_every_path_round_trips(what, root):
    fields = example(what)
    out = Layout(root)
    path = out.path(what, **fields)
    assert path.startswith(f"{root}/")
    assert out.parse(path) == ResultPath(what, **fields)
    assert out.parse(path).fields() == fields


@pytest.mark.parametrize("what", [w for w in TEMPLATES if w not in ("log", "benchmark")])
def test_every_template_has_its_method(what):
    fields = example(what)
    assert getattr(Layout(), what)(**fields) == Layout().path(what, **fields)


@pytest.mark.parametrize("path", list(KNOWN))
def test_todays_paths_are_kept(path):
    what, fields = KNOWN[path]
    assert layout.parse(path) == ResultPath(what, **fields)
    assert Layout().path(what, **fields) == path


def test_logs_and_benchmarks_of_a_job():
    out = Layout()
    assert out.log("evaluate_pruned", "s", "bad", "CoLA", seed=42) == "results/logs/evaluate_pruned/s/bad/CoLA/seed42.log"
    assert out.benchmark("patterns_summarize") == "results/benchmarks/patterns_summarize.tsv"
    assert out.log("report", "figure1", "{task}") == "results/logs/report/figure1/{task}.log"


def test_snakemake_wildcards_pass_through():
    out = Layout()
    assert out.mask_file("{family}", "{task}", "{seed}", "{kind}") == \
        "results/masks/{family}/{task}/seed{seed}/{kind}.safetensors"
    assert out.retrain_metrics("{family}", "{variant}", "{task}", "{seed}") == \
        "results/retrain/{family}/{variant}/{task}/seed{seed}/metrics.json"
    assert out.log("finetune", "{task}", seed="{seed}") == "results/logs/finetune/{task}/seed{seed}.log"
    assert out.mask_file("s", "{{task}}", "{seed}", "good") == "results/masks/s/{{task}}/seed{seed}/good.safetensors"


@pytest.mark.parametrize("path", [
    "results/masks/s/CoLA/good.safetensors",          # no seed directory
    "results/masks/s/CoLA/seed1/best.safetensors",    # not a mask kind
    "results/eval/s/good/CoLA/seedX/pruned.json",     # seed not a number
    "elsewhere/finetune/CoLA/seed1/metrics.json",     # not under the root
    "results",
])
def test_a_path_outside_the_layout_is_named(path):
    with pytest.raises(BertLotteryError, match="not a path of the results layout") as info:
        layout.parse(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "results/eval/{family}/{kind}/{task}/seed{seed}/pruned.json" in message


def test_run_of_and_seed_of_dir():
    assert layout.run_of("anywhere/CoLA/seed42/good.safetensors") == ("CoLA", 42)
    assert layout.run_of("orig/SST-2/seed_7/head_mask.npy") == ("SST-2", 7)
    assert layout.run_of("CoLA/good.safetensors") is None
    assert layout.seed_of_dir("seed_007") == "007"
    assert layout.seed_of_dir("seed42") == "42"
    assert layout.seed_of_dir("seeds") is None
    assert layout.seed_dir(42) == "seed42" and layout.mask_name("bad") == "bad.safetensors"


def _dry_run_paths(tmp_path, model_dir) -> list[tuple[dict, str, str]]:
    """(wildcards, directive, path) of every file the dry run of the whole DAG lists (the tiny config:
    every rule, nothing from outside the repository)."""
    out = subprocess.run(tiny_command(tmp_path, model_dir, "--dry-run", "--printshellcmds"), cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-4000:]
    jobs = re.split(r"\n(?:local)?rule \S+:\n", out.stdout)[1:]
    assert len(jobs) == 98  # evaluate_pruned and speed: one job per (task, seed) for all its masks
    listed = []
    for job in jobs:
        lines = dict(line.strip().split(": ", 1) for line in job.splitlines()
                     if re.match(r"\s+(input|output|log|benchmark|wildcards): ", line))
        wildcards = dict(p.split("=", 1) for p in lines.get("wildcards", "").split(", ") if "=" in p)
        for directive in ("input", "output", "log", "benchmark"):
            listed += [(wildcards, directive, p) for p in lines.get(directive, "").split(", ") if p]
    return listed


def test_every_path_of_the_dry_run_parses(tmp_path, tiny_model_dir):
    listed = _dry_run_paths(tmp_path, tiny_model_dir)
    outside = set()
    seen = set()
    for wildcards, directive, path in listed:
        if not path.startswith("results/"):
            outside.add(path)
            continue
        parsed = layout.parse(path)
        seen.add(parsed.what)
        assert (directive in ("log", "benchmark")) == (parsed.what in ("log", "benchmark")), path
        if directive == "output":  # a job's outputs carry its wildcards
            for key in ("task", "family", "kind", "variant", "pconfig"):
                if key in wildcards and getattr(parsed, key) is not None:
                    assert getattr(parsed, key) == wildcards[key], (path, wildcards)
            if "seed" in wildcards and parsed.seed is not None:
                assert parsed.seed == int(wildcards["seed"]), (path, wildcards)
    # Outside the results tree: only the paper's published numbers (an input of the tables and figures).
    assert outside == {str(PAPER_RESULTS_PATH)}
    assert {"data_card", "finetuned_model", "full_metrics", "mask_file", "search_record", "pruned_metrics",
            "retrain_metrics", "pattern_counts", "super_summary", "analysis_file", "table_file",
            "figure_file", "log", "benchmark"} <= seen


def test_a_task_chunk_runs_only_that_tasks_jobs(tmp_path, tiny_model_dir):
    """`snakemake task_SST2`: one task's per-run jobs (a chunk of a long study), no other task's, no analyses."""
    out = subprocess.run(tiny_command(tmp_path, tiny_model_dir, "task_SST2", "--dry-run", "--printshellcmds"),
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-4000:]
    rules = re.findall(r"\n(?:local)?rule (\S+):\n", out.stdout)
    assert "task_SST2" in rules and "finetune" in rules and "retrain" in rules and "patterns_extract" in rules
    assert not {"aggregate", "claims", "tables", "patterns_summarize"} & set(rules)
    tasks = set(re.findall(r"wildcards: .*?task=([\w-]+)", out.stdout))
    assert tasks == {"SST-2"}
