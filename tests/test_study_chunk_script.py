"""scripts/study_chunk.sh start: its first Snakemake call must hold every job of the chunk that reads the
fine-tuned weights and no job the chunk does not have, so that `save` (which refuses while such a job is
unfinished) works once that call is done; `resume` runs the m-retrainings first. Checked on the real
configuration's dry runs (DRY_RUN=1)."""

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


def dry_run_calls(verb: str, task: str, tmp_path) -> list[dict[str, int]]:
    """The job stats of each Snakemake call `study_chunk.sh VERB TASK` makes in a fresh study folder."""
    study = tmp_path / "study"
    study.mkdir()
    for part in ("Snakefile", "workflow", "config"):
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, study / part)
    env = os.environ | {"DRY_RUN": "1", "BERTLOTTERY_SHARED": str(SHARED),
                        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", "scripts/study_chunk.sh", verb, task, str(study)], cwd=REPO, env=env,
                         capture_output=True, text=True)
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
