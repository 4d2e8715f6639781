"""A real one-node SLURM on localhost (tests/slurm/*.sh): the slurm and generic profiles end to end.

The cluster is Debian's slurm-wlm with accounting off and four fake GPUs (character devices), so
SLURM hands each GPU job its own CUDA_VISIBLE_DEVICES. Needs root (daemons, mknod, apt) and the opt-in
BERTLOTTERY_TEST_SLURM=1; CI runs as root and sets it. Accounting off means no `sacct`: the slurm plugin is told to poll with `squeue`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, tiny_command

SCRIPTS = REPO / "tests" / "slurm"
PROBE = SCRIPTS / "gpu_probe" / "Snakefile"
SKIP = 3  # the scripts' exit code for "cannot run here"

pytestmark = pytest.mark.slurm

# Options for the test cluster on top of the profile: no accounting (squeue, not sacct), quick
# first status check, no retries (a failure should fail the test at once).
SLURM_TEST_OPTS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1", "--retries", "0"]


@pytest.fixture(scope="module")
def cluster_env():
    if os.environ.get("BERTLOTTERY_TEST_SLURM") != "1":  # never install packages or start daemons unasked
        pytest.skip("installs slurm-wlm and munge with apt and starts SLURM daemons: opt in with "
                    "BERTLOTTERY_TEST_SLURM=1 (CI does; root needed)")
    if os.geteuid() != 0:
        pytest.skip("needs root: installs slurm-wlm/munge, starts the daemons, makes device nodes")
    install = subprocess.run(["bash", str(SCRIPTS / "install.sh")], capture_output=True, text=True, timeout=1800)
    if install.returncode == SKIP:
        pytest.skip(install.stderr.strip())
    assert install.returncode == 0, install.stderr
    # Short path: the MUNGE socket lives in it (108-byte limit on socket paths).
    state = Path(tempfile.mkdtemp(prefix="bls-", dir="/tmp"))
    # 16 CPUs and 64 GB as SLURM sees them (not enforced): room for 4 GPU jobs with the profile's
    # cpus_per_gpu and mem_mb.
    start = subprocess.run(
        ["bash", str(SCRIPTS / "start_cluster.sh"), str(state)],
        env=os.environ | {"CPUS": "16", "MEM_MB": "64000"}, capture_output=True, text=True, timeout=300,
    )
    try:
        if start.returncode == SKIP:
            pytest.skip(start.stderr.strip())
        assert start.returncode == 0, start.stderr
        env = {k: v for k, v in os.environ.items() if k not in {"CUDA_VISIBLE_DEVICES", "BERTLOTTERY_GPUS"}}
        yield env | {"SLURM_CONF": str(state / "slurm.conf")}
    finally:
        stop = subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh"), str(state)], capture_output=True, text=True, timeout=300)
        shutil.rmtree(state, ignore_errors=True)
        assert stop.returncode == 0, stop.stderr


def _snakemake(args: list[str], env: dict[str, str], timeout: int) -> None:
    run = subprocess.run([sys.executable, "-m", "snakemake", *args], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"snakemake {' '.join(args)} failed:\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"


def _overlapping_pairs(runs: list[dict], key: str) -> int:
    """Count pairs of runs that overlap in time, asserting each such pair saw different devices."""
    pairs = 0
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a[key] != b[key], f"concurrent jobs shared a GPU: {a} {b}"
                pairs += 1
    return pairs


def _check_probe(workdir: Path) -> None:
    runs = json.loads((workdir / "probe/all.json").read_text())
    assert len(runs) == 4
    assert all(r["SLURM_JOB_ID"] for r in runs), runs  # really ran as SLURM jobs
    assert {r["CUDA_VISIBLE_DEVICES"] for r in runs} <= {"0", "1", "2", "3"}, runs
    assert _overlapping_pairs(runs, "CUDA_VISIBLE_DEVICES") >= 1, f"no two GPU jobs overlapped: {runs}"
    logs = [p.read_text() for p in (workdir / "probe/logs/gpu_probe").glob("*.log")]
    assert len(logs) == 4 and all("(already set; left as is)" in log for log in logs)
    assert len(list((workdir / "probe/benchmarks/gpu_probe").glob("*.tsv"))) == 4


@pytest.mark.slow
def test_slurm_profile_gives_concurrent_gpu_jobs_distinct_devices(cluster_env, tmp_path):
    _snakemake(["-s", str(PROBE), "-d", str(tmp_path), "--profile", str(REPO / "workflow/profiles/slurm"),
                *SLURM_TEST_OPTS, "--config", "probe_seconds=6"], cluster_env, timeout=900)
    _check_probe(tmp_path)


@pytest.mark.slow
def test_generic_profile_submits_through_its_scripts(cluster_env, tmp_path):
    env = cluster_env | {"BERTLOTTERY_SCHEDULER": "slurm"}
    _snakemake(["-s", str(PROBE), "-d", str(tmp_path), "--profile", str(REPO / "workflow/profiles/generic"),
                "--retries", "0", "--config", "probe_seconds=6"], env, timeout=900)
    _check_probe(tmp_path)
    assert len(list((tmp_path / "results/logs/cluster").glob("*.out"))) == 5  # 4 probes + gather


# --- the tiny workflow: SLURM against a local run -------------------------------------------------

# Metric files of the shared contract, and the fields that legitimately differ between runs.
METRIC_GLOBS = ["finetune/*/seed*/metrics.json", "eval/*/*/*/seed*/pruned.json", "retrain/*/*/*/seed*/metrics.json"]
RUN_FIELDS = {"wall_time_s", "device", "versions", "train_time_s", "examples_per_s"}


def _metric_files(results: Path) -> dict[str, dict]:
    files = sorted(p for pattern in METRIC_GLOBS for p in results.glob(pattern))
    return {str(p.relative_to(results)): json.loads(p.read_text()) for p in files}


def _without_run_fields(doc: dict, prefix: str = "") -> dict:
    """Flattened (dotted keys, so pytest.approx can compare) without the fields that vary per run."""
    flat = {}
    for key, value in doc.items():
        if key in RUN_FIELDS:
            continue
        if isinstance(value, dict):
            flat |= _without_run_fields(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def _gpu_runs(results: Path) -> list[dict]:
    """From every rule log: when `with-gpu` started the job, its device, and the log's last write."""
    runs = []
    for log in (results / "logs").rglob("*.log"):
        match = re.search(r"with-gpu: start=([\d.]+) .*?CUDA_VISIBLE_DEVICES=(\S*) \(already set", log.read_text())
        if match:
            runs.append({"log": str(log), "start": float(match[1]), "end": log.stat().st_mtime, "dev": match[2]})
    return runs


@pytest.mark.slow
def test_workflow_on_slurm_matches_local_run(cluster_env, tiny_run, tiny_model_dir, tmp_path):
    """The tiny workflow (tests/data/tiny.yaml) through the slurm profile: the same metrics as the local
    run (conftest's session `tiny_run`), and GPU jobs that ran at the same time on different devices.

    SLURM runs a slice of the DAG: one task's full models (data, two seeds' fine-tuning, evaluation) plus one
    s-search, its pruned evaluation and its retraining (each SLURM job is a process of its own and waits for
    the plugin's status checks, so every job costs seconds: two fine-tunes are enough to overlap)."""
    # The test cluster hands out GPU gres (CUDA_VISIBLE_DEVICES) on a machine without CUDA: the model jobs
    # would refuse a GPU they cannot use (runtime.pick_device), so they are told to run on the CPU on purpose.
    env = cluster_env | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BERTLOTTERY_DEVICE": "cpu"}
    targets = [f"results/finetune/SST-2/seed{seed}/metrics.json" for seed in (1337, 42)]
    targets += ["results/eval/s/good/SST-2/seed1337/pruned.json", "results/retrain/s/good/SST-2/seed1337/metrics.json"]
    command = tiny_command(tmp_path, tiny_model_dir, *targets, "--profile", str(REPO / "workflow/profiles/slurm"),
                           *SLURM_TEST_OPTS)
    run = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, f"tiny workflow on SLURM failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"

    expected, got = _metric_files(tiny_run / "results"), _metric_files(tmp_path / "results")
    # the targets, plus what their jobs wrote beside them (evaluate_pruned scores every mask of a task and seed)
    assert {t.removeprefix("results/") for t in targets} <= set(got)
    assert all(name.startswith("eval/") for name in set(got) - {t.removeprefix("results/") for t in targets})
    for name, doc in got.items():
        want, have = _without_run_fields(expected[name]), _without_run_fields(doc)
        assert sorted(have) == sorted(want), name
        numbers = {k for k, v in want.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert {k: have[k] for k in numbers} == pytest.approx({k: want[k] for k in numbers}, rel=1e-6, abs=1e-9), name
        assert {k: have[k] for k in want.keys() - numbers} == {k: want[k] for k in want.keys() - numbers}, name

    runs = _gpu_runs(tmp_path / "results")
    assert runs, "no rule log has a `with-gpu` line: GPU rules must run through `python -m bertlottery with-gpu --`"
    assert {r["dev"] for r in runs} <= {"0", "1", "2", "3"}
    assert _overlapping_pairs(runs, "dev") >= 1, "no two GPU jobs overlapped on SLURM"
