"""The exact CPU-seconds of one study chunk, job by job: a table to commit beside the chunk's bundle.

Snakemake's benchmark files sample a job's CPU time every 30 seconds and keep only a job's last run, so a
chunk's cost is recorded as benchmarks/study_cost.py does it: every job's
shell reads a BASH_ENV file whose EXIT trap writes the job's command and bash's `times` (the job's user +
system time, its children's included) into a folder. Write that file, run the chunk with it, then
tabulate the folder:

    python benchmarks/chunk_cost.py --timer job_timer.sh
    mkdir -p job_cpu/RTE
    BASH_ENV=$PWD/job_timer.sh STUDY_COST_LOG=$PWD/job_cpu/RTE nohup snakemake task_RTE ... &
    python benchmarks/chunk_cost.py job_cpu/RTE --output docs/results/minilm-complete/cost/RTE.tsv

The table has one row per job record (log, command, cpu_s), sorted by the job's log path; a job cut short
and run again has a row for each run whose trap ran. A run killed by SIGKILL (the end of a session) skips
the trap and leaves no row, so the rows add up to every finished job's exact cost plus what was recorded
of the others: a lower bound on the chunk's. The per-command sums and the total are printed.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from study_cost import JOB_TIMER, cpu_seconds_per_job, per_command


def write_table(records: list[dict], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["log", "command", "cpu_s"])
        for r in sorted(records, key=lambda r: (r["log"], r["command"], r["cpu_s"])):
            writer.writerow([r["log"], r["command"], f"{r['cpu_s']:.3f}"])


def summary(records: list[dict]) -> str:
    rules = sorted(per_command(records).items(), key=lambda kv: -kv[1]["cpu_s"])
    lines = [f"{name}: {r['cpu_s']:,.0f} CPU-s over {r['jobs']} records ({r['cpu_s'] / r['jobs']:,.0f} each)"
             for name, r in rules]
    total = sum(r["cpu_s"] for r in records)
    return "\n".join([*lines, f"total: {total:,.0f} CPU-s over {len(records)} job records"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="?", type=Path, help="the chunk's STUDY_COST_LOG folder")
    p.add_argument("--output", type=Path, help="the TSV to write (default: print the summary only)")
    p.add_argument("--timer", type=Path, help="write the BASH_ENV file that records the jobs, and stop")
    args = p.parse_args(argv)
    if args.timer:
        args.timer.write_text(JOB_TIMER)
        return
    if args.records is None or not args.records.is_dir():
        p.error(f"{args.records}: expected the folder of a chunk's job records (STUDY_COST_LOG)")
    records = cpu_seconds_per_job(args.records)
    if not records:
        p.error(f"{args.records}: no job records (was the chunk run with BASH_ENV set to the timer file?)")
    if args.output:
        write_table(records, args.output)
    print(summary(records))


if __name__ == "__main__":
    main()
