"""Fault injection: SIGKILL the whole Snakemake process group at every stage of a one-task, one-seed slice
of the workflow (fine-tuning, the s-search, the m-search, a retraining, an analysis), each time followed by
`--unlock` and `--rerun-incomplete`; the results must equal an uninterrupted run's, byte for byte where
the outputs are deterministic (masks, tables) and value for value in the metrics records."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import FIXTURE_GLUE, REPO, TINY_CONFIG
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

TASK, SEED = "RTE", 42
UNIT = f"{TASK}/seed{SEED}"
TARGETS = ["aggregate", "mask_stats", "tables"]  # rule names: every stage up to the analyses
# Each stage is seen running when its file appears: a resume state (training, both searches) or the log
# of an analysis job (written from the job's first line).
STAGES = {
    "fine-tuning": lambda r: (r / f"finetune/{UNIT}/.resume/state.pt").exists(),
    "s-search": lambda r: (r / f"masks/s/{UNIT}/search_state/s_search_state.safetensors").exists(),
    "m-search": lambda r: (r / f"masks/m/{UNIT}/search_state/m_search_state.safetensors").exists(),
    "retraining": lambda r: any(r.glob(f"retrain/*/*/{UNIT}/.resume/state.pt")),
    "analysis": lambda r: any(r.glob("logs/analysis/*.log")),
}


def _config(tmp_path: Path, model_dir: Path) -> Path:
    config = yaml.safe_load(TINY_CONFIG.read_text())  # the tiny model and the fixture GLUE rows
    config.update(tasks=[TASK], seeds=[SEED], model=str(model_dir), glue_dir=str(FIXTURE_GLUE))
    config["retrain"]["kinds"] = ["good", "bad"]  # fewer jobs; every family still retrains
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _command(workdir: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", "1", *extra, "--configfile", str(config)]  # last: --configfile takes every word after it


def _run(workdir: Path, config: Path, *extra: str) -> None:
    out = subprocess.run(_command(workdir, config, *TARGETS, "--rerun-incomplete", *extra), cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]


def _run_with_kills(workdir: Path, config: Path) -> list[str]:
    """Run the slice, killing the whole process group as soon as a stage not yet killed is running;
    return the stages killed, in order."""
    killed: list[str] = []
    results = workdir / "results"
    for _ in range(3 * len(STAGES)):
        proc = subprocess.Popen(_command(workdir, config, *TARGETS, "--rerun-incomplete"), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        hit = None
        while hit is None and proc.poll() is None:
            hit = next((name for name, running in STAGES.items() if name not in killed and running(results)), None)
            time.sleep(0.02)
        if hit is None:  # the run finished: every stage it had left ran without a kill
            assert proc.returncode == 0, f"the run failed after the kills {killed}"
            return killed
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed.append(hit)
        subprocess.run(_command(workdir, config, "--unlock"), cwd=REPO, check=True, capture_output=True)
    raise AssertionError(f"the run did not finish after the kills {killed}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _records(results: Path) -> dict[str, dict]:
    """Every metrics record's numbers (not its timings)."""
    out = {}
    for path in sorted([*results.glob("finetune/**/metrics.json"), *results.glob("eval/**/pruned.json"),
                        *results.glob("retrain/**/metrics.json")]):
        record = json.loads(path.read_text())
        out[str(path.relative_to(results))] = {k: record.get(k) for k in ("metrics", "reported", "mask_size",
                                                                         "config_hash")}
    return out


def test_kills_at_every_stage_leave_the_results_of_an_uninterrupted_run(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir)
    straight, killed_dir = tmp_path / "straight", tmp_path / "killed"
    _run(straight, config)

    killed = _run_with_kills(killed_dir, config)
    assert len(killed) >= 5 and set(killed) == set(STAGES), killed
    _run(killed_dir, config)  # nothing left to do, or the tail the last kill left

    a, b = straight / "results", killed_dir / "results"
    assert _records(a) == _records(b) and len(_records(a)) >= 10
    masks = sorted(p.relative_to(a) for p in a.glob("masks/**/*.safetensors"))
    assert len(masks) >= 9
    assert {str(m): _sha256(a / m) for m in masks} == {str(m): _sha256(b / m) for m in masks}
    weights_a = load_file(a / f"finetune/{UNIT}/model/model.safetensors")
    weights_b = load_file(b / f"finetune/{UNIT}/model/model.safetensors")
    assert all((weights_a[k] == weights_b[k]).all() for k in weights_a)
    tables = sorted(p.relative_to(a) for p in a.glob("tables/*.csv"))
    assert tables and all((a / t).read_text() == (b / t).read_text() for t in tables)
    for name in ("stability.csv", "overlaps.csv"):
        assert (a / "analysis" / name).read_text() == (b / "analysis" / name).read_text(), name
    metrics = [pd.read_csv(r / "analysis" / "metrics.csv").drop(columns=["wall_time_s"]) for r in (a, b)]
    pd.testing.assert_frame_equal(metrics[0], metrics[1])
    assert not list(b.rglob(".resume")) and not list(b.rglob("search_state")) and not list(b.rglob(".*.tmp"))
