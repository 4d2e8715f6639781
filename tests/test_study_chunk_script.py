"""scripts/study_chunk.sh start: its first Snakemake call must hold every job of the chunk that reads the
fine-tuned weights and no job the chunk does not have, so that `save` (which refuses while such a job is
unfinished) works once that call is done; `resume` runs the m-retrainings first, a continued chunk's
too. Checked on the real configuration's dry runs (DRY_RUN=1)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, SHARED

pytestmark = pytest.mark.slow  # two dry runs of a chunk's DAG each (about 20 s)


def job_stats(segment: str) -> dict[str, int]:
    """The first "Job stats" table of one Snakemake call's output, rule -> count (the total left out)."""
    table = segment.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = (re.fullmatch(r"(\S+)\s+(\d+)", line.strip()) for line in table.splitlines()[3:])
    return {m[1]: int(m[2]) for m in rows if m and m[1] != "total"}


def new_study(tmp_path):
    """A fresh study folder: the workflow and its configuration, no results."""
    study = tmp_path / "study"
    study.mkdir()
    for part in ("Snakefile", "workflow", "config"):
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, study / part)
    return study


def dry_run(verb: str, task: str, study) -> subprocess.CompletedProcess:
    """`DRY_RUN=1 study_chunk.sh VERB TASK STUDY`: each Snakemake call it makes, as a dry run."""
    env = os.environ | {"DRY_RUN": "1", "BERTLOTTERY_SHARED": str(SHARED),
                        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "scripts/study_chunk.sh", verb, task, str(study)], cwd=REPO, env=env,
                          capture_output=True, text=True)


def dry_run_calls(verb: str, task: str, tmp_path) -> list[dict[str, int]]:
    """The job stats of each Snakemake call `study_chunk.sh VERB TASK` makes in a fresh study folder."""
    run = dry_run(verb, task, new_study(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    return [job_stats(s) for s in (run.stdout + run.stderr).split("Building DAG of jobs...")[1:]]


@pytest.mark.parametrize("task", ["MRPC", "WNLI"])  # WNLI: left out of the pattern analysis
def test_start_runs_every_job_that_reads_the_fine_tuned_weights_first(task, tmp_path, glue_dir, minilm_dir):
    first, chunk = dry_run_calls("start", task, tmp_path)
    chunk.pop("task_" + "".join(ch for ch in task if ch.isalnum()))
    assert set(first) <= set(chunk), f"the first call runs jobs the chunk does not have: {set(first) - set(chunk)}"
    for rule, count in chunk.items():
        if rule != "retrain":
            assert first.get(rule) == count, f"{rule}: {first.get(rule)} in the first call, {count} in the chunk"
    seeds = yaml.safe_load((REPO / "config" / "minilm.yaml").read_text())["seeds"]
    assert first["retrain"] == 3 * len(seeds)  # the m-retrainings (good, random, bad), whose masks are large


def test_resume_runs_the_m_retrainings_before_the_rest(tmp_path, glue_dir, minilm_dir):
    """So that a save soon after carries no m-masks (1.3 MB each): the first call's only retrainings are m's."""
    first, chunk = dry_run_calls("resume", "MRPC", tmp_path)
    seeds = yaml.safe_load((REPO / "config" / "minilm.yaml").read_text())["seeds"]
    assert first["retrain"] == 3 * len(seeds) < chunk["retrain"]


def test_a_continued_chunk_asks_for_its_m_retrainings_first(tmp_path, glue_dir, minilm_dir):
    """A chunk continued from a partial bundle runs the retrainings on its list (TASK.remaining.txt); the
    m-retrainings among them, wherever they stand on the list, go in the first Snakemake call, alone."""
    study = new_study(tmp_path)
    m_runs = ["results/retrain/m/good/MRPC/seed42/metrics.json", "results/retrain/m/bad/MRPC/seed71/metrics.json"]
    others = ["results/retrain/s/good/MRPC/seed42/metrics.json", "results/retrain/s-heads/random/MRPC/seed86/metrics.json"]
    (study / "MRPC.remaining.txt").write_text("\n".join([others[0], m_runs[0], others[1], m_runs[1]]) + "\n")
    run = dry_run("resume", "MRPC", study)
    # Without restored masks the first call stops at its missing inputs, which is as far as it needs to go.
    command = re.search(r"Command: (.*)", run.stdout + run.stderr)
    assert command, run.stdout + run.stderr
    assert [word for word in command[1].split() if word.startswith("results/")] == m_runs
