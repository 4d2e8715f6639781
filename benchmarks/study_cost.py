"""What one study chunk costs at each of several commits: CPU-seconds per rule, side by side.

For each commit, one after the other on the same machine, this checks the commit out into a temporary
`git worktree`, runs the workflow's chunk target of one (task, seed) with that commit's own code
(`task_<TASK>`, one of the config's tasks, with `seeds` narrowed to the one seed), and counts the
CPU-seconds of every job exactly: each job's shell (Snakemake runs `bash -c`) reads a `BASH_ENV` file
whose EXIT trap appends bash's `times` (the user + system time of the job's shell and all the processes
it waited for) and the job's command to a log, and the jobs are summed per bertlottery command (one per
rule). Snakemake's own benchmark files sample a job's CPU time only every 30 seconds and undercount short
jobs, so they are not used. Then it compares the results trees of the first commit with each other one
(scripts/compare_results.py: same masks and metrics), prints a Markdown table and writes a JSON file.

    python benchmarks/study_cost.py --commits c6484e8 HEAD --task SST-2 --seed 1337 \\
        --model ../shared/models/all-MiniLM-L6-v2-fp16 --glue-dir ../shared/data/glue

A relative `--configfile` is each commit's own copy, so two commits whose study configs differ run
different jobs (the table then compares unlike chunks). To run one file at every commit, pass an absolute
path or `COMMIT:PATH` (that commit's copy, e.g. `c6484e8:config/minilm.yaml`, the first edition's study),
if every commit's schema accepts it. `--overrides FILE` (a YAML config file read after the study's)
and `--config key=value` pairs go to every run, e.g. a file with
`data: {max_train_examples: 200, max_dev_examples: 200, subsample_seed: 0}` for a short check of the
script itself. With `--work-dir`, a commit's run is kept (`run<i>/measured.json`) and reused by a later
call with the same commits in the same order, so the baseline is measured once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
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
                   help="relative: each commit's own copy (their studies may differ); absolute or COMMIT:PATH "
                        "(that commit's copy): one file for all")
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


def study_config(configfile: str, work: Path) -> Path | None:
    """`COMMIT:PATH` written out of git into `work` (one file for every commit); an absolute path as it is;
    None for a relative path (each commit's own copy)."""
    if ":" in configfile:
        commit, path = configfile.split(":", 1)
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{path}"], capture_output=True,
                              text=True, check=True).stdout
        out = work / f"config-{commit}-{Path(path).name}"
        out.write_text(text)
        return out
    return Path(configfile).resolve() if Path(configfile).is_absolute() else None


# Sourced by every job's non-interactive bash (BASH_ENV): on exit, the job's command and bash's `times`
# (two lines: the shell's own user/system time, then its waited-for children's) go to a file of their own
# in $STUDY_COST_LOG. Builtins in the shell itself: a $(...) subshell would time only itself.
JOB_TIMER = """trap '{ printf "%s\\0" "$BASH_EXECUTION_STRING"; times; } > "$STUDY_COST_LOG/$$"' EXIT
"""


def run_chunk(args: argparse.Namespace, source: Path, workdir: Path, config: Path | None) -> dict:
    """The chunk of (task, seed) with the code of `source`; returns its wall seconds, the CPU-seconds of
    all its processes (getrusage of the children) and the log of its jobs' CPU times."""
    workdir.mkdir(parents=True, exist_ok=True)
    timer, log = workdir / "job_timer.sh", workdir / "job_cpu"
    timer.write_text(JOB_TIMER)
    log.mkdir(exist_ok=True)
    for old in log.iterdir():
        old.unlink()
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(source / "Snakefile"),
               "--directory", str(workdir), "--cores", str(args.cores), chunk_target(args.task),
               "--configfile", str(config or source / args.configfile),
               *([str(Path(args.overrides).resolve())] if args.overrides else []), "--config",
               f"model={Path(args.model).resolve()}", f"glue_dir={Path(args.glue_dir).resolve()}",
               f"seeds=[{args.seed}]", *args.config]
    env = os.environ | {"PYTHONPATH": str(source / "src"),  # this commit's package, in every job too
                        "BASH_ENV": str(timer), "STUDY_COST_LOG": str(log)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    result = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True)
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"study_cost: the chunk failed at {source.name}:\n{result.stderr[-4000:]}")
    rules = cpu_seconds_per_command(log)
    for name, cpu_s in forked_cpu_seconds(workdir / ".snakemake" / "bertlottery" / "job-server.log").items():
        rules.setdefault(name, {"cpu_s": 0.0, "jobs": 0})["cpu_s"] += cpu_s
    return {"wall_s": wall, "all_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "rules": rules}


TIMES = re.compile(r"(\d+)m([\d.]+)s")


def command_name(command: str) -> str:
    """The bertlottery subcommand a job ran (one per rule; a retraining is `finetune --mask`), else the
    job's first word."""
    names = [name for name in re.findall(r"-m bertlottery\s+([\w-]+)", command) if name != "with-gpu"]
    if not names:
        return (command.split() or ["?"])[0]
    return "finetune --mask (retrain)" if names[0] == "finetune" and " --mask " in command else names[0]


def forked_cpu_seconds(server_log: Path) -> dict[str, float]:
    """{command: CPU-seconds} of the jobs a job server ran (bertlottery/jobserver.py): their work is done
    in a fork of the server, not in the job's shell, and the server's log has each fork's CPU time."""
    argv: dict[str, list[str]] = {}
    seconds: dict[str, float] = defaultdict(float)
    for line in server_log.read_text().splitlines() if server_log.exists() else []:
        started = re.fullmatch(r"job (\d+): (\[.*\])", line)
        ended = re.fullmatch(r"job (\d+): exit -?\d+, cpu ([\d.]+) s", line)
        if started:
            argv[started.group(1)] = json.loads(started.group(2))
        elif ended and ended.group(1) in argv:
            args = argv.pop(ended.group(1))
            seconds[command_name(" ".join(["-m bertlottery", *args]))] += float(ended.group(2))
    return dict(seconds)


JOB_LOG = re.compile(r"> (\S+\.log) 2>&1")


def cpu_seconds_per_job(log: Path) -> list[dict]:
    """One {"command", "log", "cpu_s"} per job record in the EXIT-trap files (JOB_TIMER); a job run twice
    (cut short, then rerun) has a record for each run whose trap ran (a SIGKILL skips it). Only the
    outermost bash of a job counts: shells that the job's own scripts start are its children and already in
    its `times`. "log" is the job's Snakemake log (which names the job: rule, family, kind, task, seed), ""
    for a job without one."""
    records = []
    for path in sorted(log.iterdir()):
        command, _, times = path.read_text().partition("\0")
        if "set -euo pipefail" not in command:  # not a Snakemake job's shell
            continue
        job_log = JOB_LOG.search(command)
        records.append({"command": command_name(command), "log": job_log.group(1) if job_log else "",
                        "cpu_s": sum(int(m) * 60 + float(s) for m, s in TIMES.findall(times))})
    return records


def per_command(records: list[dict]) -> dict[str, dict]:
    """{command: {"cpu_s", "jobs"}}: job records summed per bertlottery command."""
    rules: dict[str, dict] = defaultdict(lambda: {"cpu_s": 0.0, "jobs": 0})
    for record in records:
        rule = rules[record["command"]]
        rule["cpu_s"] += record["cpu_s"]
        rule["jobs"] += 1
    return dict(rules)


def cpu_seconds_per_command(log: Path) -> dict[str, dict]:
    """{command: {"cpu_s", "jobs"}} from the jobs' EXIT-trap files (JOB_TIMER)."""
    return per_command(cpu_seconds_per_job(log))


def run_key(args: argparse.Namespace) -> list:
    return [args.task, args.seed, args.configfile, args.cores, args.overrides, args.config]


def earlier_run(workdir: Path, sha: str, args: argparse.Namespace) -> dict | None:
    """The measurement a previous call with the same --work-dir took of this commit and chunk (so a
    baseline is measured once and new commits are compared with it later)."""
    path = workdir / "measured.json"
    if not path.exists():
        return None
    earlier = json.loads(path.read_text())
    if earlier.pop("commit") != sha or earlier.pop("key") != run_key(args):
        sys.exit(f"study_cost: {workdir} holds another commit's or chunk's run; use another --work-dir")
    print(f"study_cost: {sha[:8]} measured before, in {workdir}", file=sys.stderr)
    return earlier


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
    lines = ["| command (rule) | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
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
    lines += [f"{run['commit'][:8]}: wall {run['wall_s'] / 60:.1f} min, all processes {run['all_cpu_s']:.0f} CPU-s"
              " (Snakemake included)" + (
        "" if run is base else f", results equal to {base['commit'][:8]}'s: {run['same_results']}") for run in runs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        config = study_config(args.configfile, work)
        runs = []
        for index, commit in enumerate(args.commits):
            source, workdir = work / f"source{index}", work / f"run{index}"
            sha = checkout(commit, source)
            try:
                measured = earlier_run(workdir, sha, args) or run_chunk(args, source, workdir, config)
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(source)],
                               capture_output=True)
            (workdir / "measured.json").write_text(json.dumps({"commit": sha, "key": run_key(args), **measured}))
            rules = measured["rules"]
            runs.append({"commit": sha, "asked": commit, **measured,
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
