"""`python -m bertlottery doctor`: what a model job would use, and a non-zero exit naming the cause when a
job would silently run on the wrong device; the same check stops the model jobs themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO

from bertlottery import doctor, runtime
from bertlottery.errors import BertLotteryError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine where CUDA is unusable")


def _doctor(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"CUDA_VISIBLE_DEVICES", "BERTLOTTERY_GPUS", "BERTLOTTERY_DEVICE"}}
    return subprocess.run([sys.executable, "-m", "bertlottery", "doctor", *args], env=clean | env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@no_cuda
def test_doctor_passes_on_a_plain_cpu_machine():
    run = _doctor()
    assert run.returncode == 0, run.stderr
    assert "device a model job would use" in run.stdout and " cpu\n" in run.stdout
    assert "torch" in run.stdout and "with-gpu" in run.stdout and "ok: no problem found" in run.stderr


@no_cuda
def test_doctor_refuses_a_gpu_assigned_where_cuda_is_unusable():
    run = _doctor(CUDA_VISIBLE_DEVICES="0")
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("bertlottery doctor: error: CUDA_VISIBLE_DEVICES=0 gives this job a GPU, but CUDA is "
                           "unusable") and "BERTLOTTERY_DEVICE=cpu" in last
    assert _doctor(CUDA_VISIBLE_DEVICES="0", BERTLOTTERY_DEVICE="cpu").returncode == 0  # the CPU on purpose
    assert _doctor(CUDA_VISIBLE_DEVICES="").returncode == 0  # every GPU hidden: the CPU is meant


@no_cuda
def test_doctor_refuses_the_gpu_with_gpu_would_hand_out(tmp_path):
    """BERTLOTTERY_GPUS=0 (a GPU the slots would give a job) while this torch cannot use CUDA."""
    run = _doctor(BERTLOTTERY_GPUS="0", BERTLOTTERY_GPU_LOCK_DIR=str(tmp_path))
    assert run.returncode != 0 and "next free slot on GPU 0" in run.stdout
    assert "CUDA_VISIBLE_DEVICES=0 gives this job a GPU" in run.stderr


@no_cuda
def test_model_job_given_an_unusable_gpu_stops_with_the_same_message(tmp_path):
    """The check runs before the model and data are read, so the (missing) inputs are never reached."""
    run = subprocess.run(
        [sys.executable, "-m", "bertlottery", "evaluate-full", "--task", "RTE", "--seed", "1", "--model-dir",
         str(tmp_path / "none"), "--data-dir", str(tmp_path / "none"), "--output", str(tmp_path / "m.json"),
         "--training", "{}"],
        env=os.environ | {"CUDA_VISIBLE_DEVICES": "0"}, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "CUDA_VISIBLE_DEVICES=0 gives this job a GPU, but CUDA is unusable" in run.stderr
    assert not (tmp_path / "m.json").exists()


@no_cuda
@pytest.mark.parametrize("env, expected", [
    ({}, "cpu"), ({"CUDA_VISIBLE_DEVICES": ""}, "cpu"), ({"CUDA_VISIBLE_DEVICES": "-1"}, "cpu"),
    ({"CUDA_VISIBLE_DEVICES": "0", "BERTLOTTERY_DEVICE": "cpu"}, "cpu"),
    ({"CUDA_VISIBLE_DEVICES": "0"}, "CUDA_VISIBLE_DEVICES=0 gives this job a GPU"),
    ({"BERTLOTTERY_DEVICE": "cuda"}, "BERTLOTTERY_DEVICE=cuda but CUDA is unusable"),
    ({"BERTLOTTERY_DEVICE": "gpu"}, "BERTLOTTERY_DEVICE='gpu': expected one of auto, cpu, cuda"),
])
def test_pick_device_refuses_a_silent_cpu_run(env, expected):
    if expected == "cpu":
        assert runtime.pick_device(env).type == "cpu"
    else:
        with pytest.raises(BertLotteryError, match=expected):
            runtime.pick_device(env)


def test_doctor_checks_a_configs_model_and_glue_data(tmp_path, tiny_model_dir):
    shutil.copytree(REPO / "tests/data/glue/SST-2", tmp_path / "glue/SST-2")  # a GLUE folder without RTE
    config = {"model": str(tiny_model_dir), "glue_dir": str(tmp_path / "glue"), "tasks": ["SST-2", "RTE"],
              "seeds": [1]}
    problems: list[str] = []
    lines = dict(doctor.config_report(config, problems))
    assert lines["model"].endswith("M parameters with a 2-label head)") and lines["GLUE data"].endswith("incomplete")
    assert len(problems) == 1 and "lacks RTE/train.tsv, RTE/dev.tsv" in problems[0]
    config["tasks"] = ["SST-2"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"model": str(tmp_path / "no/such/model")}))
    merged = doctor.read_configs([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    problems = []
    lines = dict(doctor.config_report(merged, problems))
    assert "model folder not found" in problems[0] and len(problems) == 1
    with pytest.raises(BertLotteryError, match="b.yaml: expected a YAML mapping"):
        (tmp_path / "b.yaml").write_text("- 1\n")
        doctor.read_configs([tmp_path / "b.yaml"])
