"""benchmarks/gpu_check.sh end to end in its small CPU mode: every phase runs within its cap and the
summary has one row per phase (the GPU run itself needs a GPU; this checks the script and its phases)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO

PHASES = ["doctor", "assets", "equivalence", "speed", "speed_padded", "sharing", "workflow", "tests"]


@pytest.mark.slow
def test_gpu_check_small_mode_runs_every_phase(tmp_path):
    out = tmp_path / "check"
    run = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), str(out), "--small"], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split("\t") for line in (out / "status.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == PHASES
    failed = {r[0]: (r[1], (out / f"{r[0]}.log").read_text()[-1500:]) for r in rows if r[1] != "ok"}
    assert not failed, failed
    summary = (out / "summary.md").read_text()
    assert summary.count("\n| ") == len(PHASES) + 1 and "| equivalence | ok |" in summary
    equivalence = json.loads((out / "equivalence.json").read_text())
    assert equivalence["ok"] and equivalence["repeatability"]["grads_bitwise_equal"]
    assert all(r["max_logit_diff"] <= 1e-4 and r["logits_dtype"] == "torch.float32" for r in equivalence["rows"])
    sharing = json.loads((out / "sharing.json").read_text())
    assert sharing["ok"] and sharing["rows"][0]["examples"] == 2 * 96  # two jobs, one epoch of the fixture RTE
    assert json.loads((out / "speed.json").read_text())["summary"]["trainer"]["train_examples"] == 40
    assert (out / "workflow/results/finetune/SST-2/seed42/metrics.json").is_file()
