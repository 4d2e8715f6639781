"""A failed job's error reaches the console: the rules' shell runs `job-failed` after a failed command."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

from bertlottery.cli import failure_summary

LOG = """RTE train:  50%|#####     | 48/96\r
Traceback (most recent call last):
  File "x.py", line 1
RuntimeError: boom
"""


def test_summary_is_the_error_line_and_the_signal():
    assert failure_summary("loading\nbertlottery finetune: error: data/x: not found\n", 1) == [
        "bertlottery finetune: error: data/x: not found"]
    assert failure_summary(LOG, 1) == ["RuntimeError: boom"]
    assert failure_summary("a\nb\n", 137) == [
        "job killed by SIGKILL (exit status 137) (out of memory, or a scheduler's time limit?)", "a", "b"]
    assert failure_summary("", 143) == ["job killed by SIGTERM (exit status 143)"]


def test_the_error_line_is_found_anywhere_also_glued_to_a_progress_bar():
    log = ("train:  10%|#         | 9/90 [00:01<00:10, loss=0.701]\rtrain:  20%|##        | 18/90 [00:02<00:09, "
           "loss=0.697]bertlottery finetune: error: no space left on device while writing x/state.pt\n"
           "Exception ignored in: <function tqdm.__del__>\n")
    assert failure_summary(log, 1) == ["bertlottery finetune: error: no space left on device while writing x/state.pt"]
    # a usage error from argparse ("python -m bertlottery finetune: error: ...")
    assert failure_summary("usage: ...\npython -m bertlottery finetune: error: the following arguments are required: "
                           "--task\n", 2) == ["bertlottery finetune: error: the following arguments are required: --task"]
    long_line = "x" * 5000
    assert failure_summary(long_line, 1) == ["x" * 297 + "..."]  # not a 5000-character raw line


def test_job_failed_prints_to_stderr_and_keeps_the_status(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("step 1\nbertlottery prepare-data: error: glue/RTE/train.tsv: file not found\n")
    out = subprocess.run([sys.executable, "-m", "bertlottery", "job-failed", str(log), "137"], capture_output=True,
                         text=True)
    assert out.returncode == 137
    assert f"{log}: job killed by SIGKILL" in out.stderr
    assert f"{log}: bertlottery prepare-data: error: glue/RTE/train.tsv: file not found" in out.stderr


def test_workflow_console_shows_the_error_line_without_a_profile(tmp_path, minilm_dir):
    glue = tmp_path / "glue"
    (glue / "RTE").mkdir(parents=True)  # the files exist (the config check passes) but are not GLUE's
    for split in ("train", "dev"):
        (glue / "RTE" / f"{split}.tsv").write_text("bad\theader\n")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--cores", "1", "results/data/RTE/data_card.json", "--configfile",
               str(REPO / "config" / "smoke.yaml"), "--config", f"model={minilm_dir}", f"glue_dir={glue}",
               "tasks=[RTE]", "seeds=[42]"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0
    console = out.stdout + out.stderr
    assert (f"results/logs/prepare_data/RTE.log: bertlottery prepare-data: error: {glue}/RTE/train.tsv:1: "
            "expected the GLUE header") in console
