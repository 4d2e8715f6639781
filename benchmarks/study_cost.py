"""What one study chunk costs at each of several commits: CPU-seconds per rule, side by side.

For each commit, one after the other on the same machine, this checks the commit out into a temporary
`git worktree`, runs the workflow's chunk target of one (task, seed) with that commit's own code
(`task_<TASK>`, one of the config's tasks, with `seeds` narrowed to the one seed), and sums the
`cpu_time` column of the jobs' Snakemake benchmark files per rule. Then it compares the results trees
of the first commit with each other one (scripts/compare_results.py: same masks and metrics), prints a
Markdown table and writes a JSON file.

    python benchmarks/study_cost.py --commits c6484e8 HEAD --task SST-2 --seed 1337 \\
        --model ../shared/models/all-MiniLM-L6-v2-fp16 --glue-dir ../shared/data/glue

A relative `--configfile` is each commit's own copy, so two commits whose study configs differ run
different jobs (the table then compares unlike chunks: pass an absolute path to run one file at both, if
the older commit's schema accepts it). `--overrides FILE` (a YAML config file read after the study's)
and `--config key=value` pairs go to every run, e.g. a file with
`data: {max_train_examples: 200, max_dev_examples: 200, subsample_seed: 0}` for a short check of the
script itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commits", nargs="+", required=True, help="commits to compare; the first is the baseline")
    p.add_argument("--task", default="SST-2")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--configfile", default="config/minilm.yaml",
                   help="relative: each commit's own copy (their studies may differ); absolute: one file for all")
    p.add_argument("--model", required=True, help="the pre-trained encoder (a local dir)")
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--overrides", help="a YAML config file read after --configfile, for every run")
    p.add_argument("--config", nargs="*", default=[], help="extra key=value config for every run")
    p.add_argument("--work-dir", help="keep the checkouts and results here (default: a temp dir)")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "study_cost.json"))
    return p.parse_args(argv)


def chunk_target(task: str) -> str:
    """The workflow's per-task target rule (as common.smk's chunk_rule_name: task_SST2 for SST-2)."""
    return "task_" + "".join(ch for ch in task if ch.isalnum())


def checkout(commit: str, where: Path) -> str:
    """A detached worktree of `commit` at `where`; returns the full hash."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), sha], check=True,
                   capture_output=True)
    return sha


def run_chunk(args: argparse.Namespace, source: Path, workdir: Path) -> float:
    """The chunk of (task, seed) with the code of `source`; returns the wall seconds."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(source / "Snakefile"),
               "--directory", str(workdir), "--cores", str(args.cores), chunk_target(args.task),
               "--configfile", str(source / args.configfile),
               *([str(Path(args.overrides).resolve())] if args.overrides else []), "--config",
               f"model={Path(args.model).resolve()}", f"glue_dir={Path(args.glue_dir).resolve()}",
               f"seeds=[{args.seed}]", *args.config]
    env = os.environ | {"PYTHONPATH": str(source / "src")}  # this commit's package, in every job too
    started = time.time()
    result = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"study_cost: the chunk failed at {source.name}:\n{result.stderr[-4000:]}")
    return time.time() - started


def cpu_seconds_per_rule(results: Path) -> dict[str, dict]:
    """{rule: {"cpu_s", "wall_s", "jobs"}} from results/benchmarks/<rule>/.../*.tsv (Snakemake's benchmark
    files: one row per job, `cpu_time` in seconds)."""
    rules: dict[str, dict] = defaultdict(lambda: {"cpu_s": 0.0, "wall_s": 0.0, "jobs": 0})
    root = results / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                rule = rules[path.relative_to(root).parts[0]]
                rule["cpu_s"] += float(row["cpu_time"])
                rule["wall_s"] += float(row["s"])
                rule["jobs"] += 1
    return dict(rules)


def same_results(a: Path, b: Path) -> bool:
    compare = subprocess.run([sys.executable, str(REPO / "scripts" / "compare_results.py"), str(a), str(b)],
                             capture_output=True, text=True)
    print(compare.stdout[-3000:], file=sys.stderr)
    return compare.returncode == 0


def markdown(runs: list[dict]) -> str:
    """Rules as rows, one CPU-seconds column per commit, then each commit's ratio to the first."""
    rules = sorted({rule for run in runs for rule in run["rules"]})
    base = runs[0]
    heads = [f"{run['commit'][:8]} CPU-s (jobs)" for run in runs] + [f"{run['commit'][:8]} / {base['commit'][:8]}"
                                                                       for run in runs[1:]]
    lines = ["| rule | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for rule in [*rules, "total"]:
        cells = []
        for run in runs:
            entry = run["rules"].get(rule) if rule != "total" else {"cpu_s": run["cpu_s"], "jobs": run["jobs"]}
            cells.append(f"{entry['cpu_s']:.0f} ({entry['jobs']})" if entry else "-")
        for run in runs[1:]:
            a = base["rules"].get(rule, {}).get("cpu_s") if rule != "total" else base["cpu_s"]
            b = run["rules"].get(rule, {}).get("cpu_s") if rule != "total" else run["cpu_s"]
            cells.append(f"{b / a:.2f}" if a and b is not None else "-")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"{run['commit'][:8]}: wall {run['wall_s'] / 60:.1f} min" + (
        "" if run is base else f", results equal to {base['commit'][:8]}'s: {run['same_results']}") for run in runs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp).resolve()
        runs = []
        for index, commit in enumerate(args.commits):
            source, workdir = work / f"source{index}", work / f"run{index}"
            sha = checkout(commit, source)
            try:
                wall = run_chunk(args, source, workdir)
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(source)],
                               capture_output=True)
            rules = cpu_seconds_per_rule(workdir / "results")
            runs.append({"commit": sha, "asked": commit, "wall_s": wall, "rules": rules,
                         "cpu_s": sum(r["cpu_s"] for r in rules.values()),
                         "jobs": sum(r["jobs"] for r in rules.values())})
            if index:
                runs[-1]["same_results"] = same_results(work / "run0" / "results", workdir / "results")
    report = {"task": args.task, "seed": args.seed, "configfile": args.configfile, "cores": args.cores,
              "overrides": args.overrides, "config": args.config, "runs": runs}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(runs))
    print(f"results: {args.output}")
    return runs


if __name__ == "__main__":
    main()
