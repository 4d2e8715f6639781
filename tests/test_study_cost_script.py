"""benchmarks/study_cost.py: the exact CPU-seconds of every job (its shell's `times`, recorded by the
BASH_ENV exit trap, and a job server's forks from the server's log) summed per command, and the
side-by-side table. (The script's runs of the real workflow are measurements, not tests.)"""

import importlib.util
import os
import subprocess
import sys

from conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("study_cost", REPO / "benchmarks" / "study_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_exit_trap_records_each_jobs_cpu_seconds_per_command(tmp_path):
    """Real bash shells as Snakemake starts them (`bash -c 'set -euo pipefail; ...'`), with the script's
    BASH_ENV: a job that burns CPU in a child process is counted with its child's time."""
    bench = load_script()
    timer, log = tmp_path / "timer.sh", tmp_path / "log"
    timer.write_text(bench.JOB_TIMER)
    log.mkdir()
    env = os.environ | {"BASH_ENV": str(timer), "STUDY_COST_LOG": str(log)}
    burn = f"{sys.executable} -c 'sum(range(3_000_000))'"
    for command in (f"set -euo pipefail; {burn} # -m bertlottery with-gpu -- python -m bertlottery finetune --mask m",
                    f"set -euo pipefail; {burn} # python -m bertlottery find-s-mask --task X",
                    "echo not a job"):
        subprocess.run(["bash", "-c", command], env=env, check=True, capture_output=True)
    rules = bench.cpu_seconds_per_command(log)
    assert set(rules) == {"finetune --mask (retrain)", "find-s-mask"}
    assert all(r["jobs"] == 1 and r["cpu_s"] > 0.01 for r in rules.values())


def test_a_job_servers_forks_are_counted_from_its_log(tmp_path):
    log = tmp_path / "job-server.log"
    log.write_text('job server 7: listening on /tmp/x/jobs.sock\n'
                   'job 11: ["finetune", "--task", "RTE", "--mask", "m.safetensors"]\n'
                   'job 12: ["find-m-mask", "--task", "RTE"]\n'
                   'job 12: exit 0, cpu 2.500 s\n'
                   'job 11: exit 1, cpu 10.250 s\n'
                   'job 13: ["finetune", "--task", "RTE"]\n')  # still running: not counted
    assert load_script().forked_cpu_seconds(log) == {"finetune --mask (retrain)": 10.25, "find-m-mask": 2.5}


def test_the_table_puts_the_commits_side_by_side_with_their_ratio():
    bench = load_script()
    base = {"commit": "a" * 40, "wall_s": 600.0, "all_cpu_s": 320.0, "cpu_s": 300.0, "jobs": 3,
            "rules": {"retrain": {"cpu_s": 200.0, "jobs": 2}, "finetune": {"cpu_s": 100.0, "jobs": 1}}}
    new = {"commit": "b" * 40, "wall_s": 300.0, "all_cpu_s": 170.0, "cpu_s": 150.0, "jobs": 3, "same_results": True,
           "rules": {"retrain": {"cpu_s": 80.0, "jobs": 2}, "finetune": {"cpu_s": 70.0, "jobs": 1}}}
    table = bench.markdown([base, new]).splitlines()
    assert table[2] == "| finetune | 100 (1) | 70 (1) | 0.70 |"
    assert table[3] == "| retrain | 200 (2) | 80 (2) | 0.40 |"
    assert table[4] == "| total | 300 (3) | 150 (3) | 0.50 |"
    assert "results equal to aaaaaaaa's: True" in table[-1]


def test_the_chunk_target_is_the_workflows():
    assert load_script().chunk_target("SST-2") == "task_SST2"


def test_a_chunks_cost_table_has_a_row_per_job_record_named_by_its_log(tmp_path):
    """benchmarks/chunk_cost.py: the timer file it writes records real bash jobs; the table names each job
    by its Snakemake log, keeps a rerun job's two records, and the printed total is the rows' sum."""
    timer, records, table = tmp_path / "timer.sh", tmp_path / "job_cpu", tmp_path / "cost" / "X.tsv"
    script = [sys.executable, str(REPO / "benchmarks" / "chunk_cost.py")]
    subprocess.run([*script, "--timer", str(timer)], check=True)
    records.mkdir()
    env = os.environ | {"BASH_ENV": str(timer), "STUDY_COST_LOG": str(records)}
    burn = f"{sys.executable} -c 'sum(range(2_000_000))'"
    for log in ("results/logs/retrain/m/good/X/seed1.log", "results/logs/retrain/m/good/X/seed1.log",
                "results/logs/find_m_mask/X/seed1.log"):
        rule = "finetune --mask m.safetensors" if "retrain" in log else "find-m-mask"
        subprocess.run(["bash", "-c", f"set -euo pipefail; {burn} > {tmp_path / 'out'} 2>&1 "
                        f"# python -m bertlottery {rule} > {log} 2>&1"], env=env, check=True)
    printed = subprocess.run([*script, str(records), "--output", str(table)], check=True, capture_output=True,
                             text=True).stdout
    assert "over 3 job records" in printed
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    assert rows[0] == ["log", "command", "cpu_s"]
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("results/logs/find_m_mask/X/seed1.log", "find-m-mask"),
        ("results/logs/retrain/m/good/X/seed1.log", "finetune --mask (retrain)"),
        ("results/logs/retrain/m/good/X/seed1.log", "finetune --mask (retrain)")]
    assert all(float(r[2]) > 0.01 for r in rows[1:])
    assert f"total: {sum(float(r[2]) for r in rows[1:]):,.0f} CPU-s over 3 job records" in printed
