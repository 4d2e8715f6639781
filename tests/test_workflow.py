"""Integration: the Snakemake workflow. The whole DAG (every rule) runs on the tiny model and the fixture
GLUE files (tests/data/tiny.yaml, conftest's session `tiny_run`); the numbers that need a real model (full
models beat the majority baseline, a killed fine-tune resumes bit for bit) come from the real MiniLM on
real GLUE (config/smoke.yaml, conftest's session `smoke_run`: the full models only)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_CONFIG, smoke_command, tiny_command
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def dry_run_jobs(command: list[str], cwd: Path = REPO) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run would execute."""
    out = subprocess.run(command + ["--dry-run"], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-4000:]
    jobs, rule = [], None
    for line in out.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\S+):$", line.strip()):
            rule = m.group(1)
            jobs.append((rule, {}))
        elif line.strip().startswith("wildcards:") and jobs:
            pairs = line.strip().removeprefix("wildcards:").split(",")
            jobs[-1] = (rule, dict(p.strip().split("=", 1) for p in pairs if "=" in p))
    return jobs


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_smoke_full_models_beat_the_majority_baseline(smoke_run):
    for task in ("SST-2", "MRPC"):
        card = read(smoke_run / "results" / "data" / task / "data_card.json")
        majority = card["splits"]["dev"]["majority_baseline"]["score"]
        for seed in (1337, 42):
            record = read(smoke_run / "results" / "finetune" / task / f"seed{seed}" / "metrics.json")
            assert record["task"] == task and record["evaluated"] == "full"
            assert record["n_examples"] == card["splits"]["dev"]["rows_kept"]
            print(f"{task} seed {seed}: accuracy {record['reported']:.3f} (majority {majority:.3f})")
            if task == "SST-2":  # learnable from the smoke run's ~100 examples; MRPC is not, reliably
                assert record["reported"] > majority + 0.05


def test_every_family_and_kind_is_written(tiny_run):
    results = tiny_run / "results"
    for family in ("m", "s", "super"):
        for kind in ("good", "random", "bad"):
            for task in ("SST-2", "MRPC"):
                for seed in (1337, 42):
                    unit = f"{family}/{kind}/{task}/seed{seed}"
                    pruned = read(results / "eval" / unit / "pruned.json")
                    retrained = read(results / "retrain" / unit / "metrics.json")
                    assert pruned["evaluated"] == "pruned" and retrained["evaluated"] == "retrained"
                    assert pruned["mask_size"] == retrained["mask_size"]
                    assert 0 < pruned["mask_size"]["params_kept"] <= pruned["mask_size"]["params_total"]


def test_subnetwork_speed_table_and_figure(tiny_run):
    """speed.enabled in tiny.yaml: one speed JSON per (task, seed) with a timed row per s/super subnetwork
    and a sparsity row per m-mask; the subnetwork_speed table (4 formats) and figure exist."""
    results = tiny_run / "results"
    for task in ("SST-2", "MRPC"):
        for seed in (1337, 42):
            record = read(results / "speed" / task / f"seed{seed}" / "speed.json")
            rows = {(r["family"], r["kind"]): r for r in record["rows"]}
            assert set(rows) == {("full", "none")} | {(f, k) for f in ("m", "s", "super")
                                                      for k in ("good", "random", "bad")}
            assert record["machine"]["torch_threads"] == 1 and record["speed"]["repeats"] == 2
            for (family, _), row in rows.items():
                if family == "m":
                    assert not row["structured"] and 0 < row["sparsity_prunable"] < 1
                    assert "infer_speedup" not in row
                else:
                    assert len(row["infer_s"]) == 2 and min(row["infer_s"] + row["train_step_s"]) > 0
                    assert row["params"] <= rows[("full", "none")]["params"]
    for ext in ("csv", "md", "tex", "html"):
        assert (results / "tables" / f"subnetwork_speed.{ext}").stat().st_size > 0
    for ext in ("png", "pdf"):
        assert (results / "figures" / f"subnetwork_speed.{ext}").stat().st_size > 0
    markdown = (results / "tables" / "subnetwork_speed.md").read_text()
    assert "n/a (dense)" in markdown and "F(n) = 2·n·P_tok" in markdown


def test_the_sensitivity_table_covers_every_run(tiny_run):
    """The sensitivity rule: a row per (task, seed, family) with every retraining counted, and the band and
    still-good share of each threshold search from the dev bootstrap (the tiny run keeps predictions)."""
    results = tiny_run / "results"
    rows = pd.read_csv(results / "analysis" / "sensitivity.csv")
    metrics = pd.read_csv(results / "analysis" / "metrics.csv")
    assert rows["retrained"].sum() == (metrics["evaluated"] == "retrained").sum()
    assert rows["nonconverged"].sum() == metrics["nonconverged"].sum()
    searched = rows[rows["family"].isin(["m", "s"])]
    assert len(searched) == 2 * metrics.loc[metrics["evaluated"] == "full"].shape[0]
    assert searched["p_still_good"].between(0, 1).all() and (searched["full_dev_sd"] >= 0).all()
    assert "retrainings not converged" in (results / "tables" / "sensitivity.md").read_text()


def test_good_masks_keep_90_percent_of_the_full_score(tiny_run):
    """Both searches end at >= 90 % of the full model's stop-rule score. The m-mask is evaluated as the
    search saw it; the s-search scores soft masks (a layer whose heads are all masked keeps its output
    bias there, as in the original), while the pruned evaluation removes heads physically."""
    results = tiny_run / "results"
    for task in ("SST-2", "MRPC"):
        for seed in (1337, 42):
            full = read(results / "finetune" / task / f"seed{seed}" / "metrics.json")["stop"]
            search = read(results / "masks" / "s" / task / f"seed{seed}" / "search.json")
            assert search["s0"] == pytest.approx(full, abs=1e-6)
            assert search["score"] >= 0.9 * full - 1e-9, (task, seed, search["score"], full)
            pruned = read(results / "eval" / "m" / "good" / task / f"seed{seed}" / "pruned.json")
            assert pruned["stop"] >= 0.9 * full - 1e-9, (task, seed, pruned["stop"], full)


def test_every_job_has_a_log_and_a_benchmark(tiny_run):
    results = tiny_run / "results"
    logs = {p.relative_to(results / "logs").with_suffix("") for p in (results / "logs").rglob("*.log")}
    benchmarks = {p.relative_to(results / "benchmarks").with_suffix("")
                  for p in (results / "benchmarks").rglob("*.tsv")}
    assert logs and logs == benchmarks


def test_paper_config_lists_the_45_fine_tunes(tmp_path):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "8",
               "--resources", "gpu=4", "--directory", str(tmp_path),
               "--configfile", str(REPO / "config" / "config.yaml")]
    jobs = dry_run_jobs(command)
    finetunes = {(w["task"], w["seed"]) for rule, w in jobs if rule == "finetune"}
    assert len(finetunes) == 45


@pytest.mark.parametrize("extras", [False, True], ids=["paper", "paper+extras"])
def test_snakemake_lint_reports_nothing(tmp_path, extras):
    """`snakemake --lint` on the paper config, and with every optional rule family switched on."""
    configs = [str(REPO / "config" / "config.yaml")]
    if extras:
        (tmp_path / "extras.yaml").write_text(yaml.safe_dump({
            "retrain": {"bad_6_epochs": True, "random_init_random_s": True, "separate_searches": True,
                        "families": ["m", "s", "super", "f", "i"]},
            "s_pruning": {"modes": ["joint", "heads", "mlps"]},
            "speed": {"enabled": True},
        }))
        configs.append(str(tmp_path / "extras.yaml"))
    out = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--lint",
                          "--directory", str(tmp_path), "--configfile", *configs], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "Lints for" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_config_typo_stops_before_any_job(tmp_path):
    out = subprocess.run(tiny_command(tmp_path, tmp_path, "--dry-run") + ["trainig={epochs: 1}"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "trainig" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def test_editing_one_task_reruns_only_that_task(tiny_run, tiny_model_dir, tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["overrides"] = {"MRPC": {"learning_rate": 5.0e-5}}
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    command = tiny_command(tiny_run, tiny_model_dir)
    command[command.index("--configfile") + 1] = str(edited)
    jobs = dry_run_jobs(command)
    print("\n".join(f"{rule} {w}" for rule, w in jobs))
    # Every job that trains, searches or evaluates is MRPC's; the rest are cross-task analyses
    # (aggregation, statistics, tables, figures), which read MRPC's new numbers.
    model_rules = {"prepare_data", "finetune", "evaluate_full", "find_s_mask", "find_m_mask", "derive_s_masks",
                   "super_masks", "evaluate_pruned", "retrain", "patterns_extract"}
    tasks = {w.get("task") for rule, w in jobs if rule in model_rules}
    assert tasks == {"MRPC"}, tasks
    assert {rule for rule, _ in jobs} >= {"finetune", "retrain"}
    untouched = dry_run_jobs(tiny_command(tiny_run, tiny_model_dir))
    assert [rule for rule, _ in untouched if rule != "all"] == []


def test_paper_extras_run_on_the_tiny_models(tiny_run, tiny_model_dir):
    """The optional paper settings as targets on the smoke models: s-bad retrained for 6 epochs
    (Appendix D), random-init BERT with a random mask sized like s-bad (Table 2), and a heads-only
    s-search with its good retraining (Appendix B)."""
    unit = "SST-2/seed1337"
    targets = [f"results/retrain/s/bad_6ep/{unit}/metrics.json", f"results/retrain/s/randinit_random/{unit}/metrics.json",
               f"results/retrain/s-heads/good/{unit}/metrics.json"]
    run = subprocess.run(tiny_command(tiny_run, tiny_model_dir, *targets, "--printshellcmds"), cwd=REPO, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    commands = [line for line in (run.stdout + run.stderr).splitlines() if "bertlottery finetune" in line]
    assert any("random_like_bad.safetensors --random-init" in c for c in commands), commands
    results = tiny_run / "results"
    bad, bad6 = read(results / f"retrain/s/bad/{unit}/metrics.json"), read(results / f"retrain/s/bad_6ep/{unit}/metrics.json")
    assert bad6["train"]["epochs"] == 6 and bad6["train"]["steps"] == bad["train"]["steps"] * 6 // bad["train"]["epochs"]
    assert bad6["mask_size"] == bad["mask_size"]
    randinit = read(results / f"retrain/s/randinit_random/{unit}/metrics.json")
    assert randinit["train"]["mask"].endswith("random_like_bad.safetensors")
    assert randinit["mask_size"]["heads_kept"] == bad["mask_size"]["heads_kept"]
    heads_only = read(results / f"retrain/s-heads/good/{unit}/metrics.json")
    assert heads_only["mask_size"]["mlps_kept"] == heads_only["mask_size"]["mlps_total"]  # MLPs never pruned
    search = read(results / f"masks/s-heads/{unit}/search.json")
    assert search["mode"] == "heads"
    for record in (bad6, randinit, heads_only):
        assert 0 <= record["reported"] <= 1


def test_killed_smoke_finetune_resumes_to_identical_weights(smoke_run, tmp_path):
    """SIGKILL the whole Snakemake run mid fine-tune; --rerun-incomplete resumes from the checkpoint."""
    shutil.copytree(smoke_run / "results" / "data", tmp_path / "results" / "data")
    target = "results/finetune/MRPC/seed1337/train_summary.json"
    proc = subprocess.Popen(smoke_command(tmp_path, target, "--cores", "1"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "results" / "finetune" / "MRPC" / "seed1337" / ".resume" / "state.pt"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert state.exists(), "no checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / target).exists()
    subprocess.run(smoke_command(tmp_path, "--unlock"), cwd=REPO, check=True, capture_output=True)
    rerun = subprocess.run(smoke_command(tmp_path, target, "--rerun-incomplete"), cwd=REPO,
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "results" / "logs" / "finetune" / "MRPC" / "seed1337.log").read_text()
    assert "resuming from step" in log
    resumed = load_file(tmp_path / "results/finetune/MRPC/seed1337/model/model.safetensors")
    straight = load_file(smoke_run / "results/finetune/MRPC/seed1337/model/model.safetensors")
    for name, tensor in straight.items():
        assert (resumed[name] == tensor).all(), name
