"""The workflow config is checked before any job: the key, the value and the rule broken, in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from bertlottery.errors import BertLotteryError
from bertlottery.settings import check_config


def _config(**changes):
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config.update(changes)
    return config


def test_command_line_lists_are_read():
    config = _config(seeds=["42", "1337"], tasks=["RTE"])  # --config seeds=[42,1337] tasks=[RTE]
    check_config(config)
    assert config["seeds"] == [42, 1337] and config["tasks"] == ["RTE"]
    config = _config(seeds=42, tasks="RTE")  # --config seeds=42 tasks=RTE
    check_config(config)
    assert config["seeds"] == [42] and config["tasks"] == ["RTE"]


@pytest.mark.parametrize("changes, message", [
    (dict(seeds=["x"]), "config key seeds[0]: 'x' is not of type 'integer' (schema rule type: \"integer\")"),
    (dict(tasks=["RTF"]), "config key tasks[0]: 'RTF' is not one of"),
    (dict(training={"learning_rate": "fast"}), "config key training.learning_rate: 'fast' is not of type 'number'"),
    (dict(trainig={}), "config key (top level): Additional properties are not allowed ('trainig' was unexpected)"),
    (dict(overrides={"RTE": {"epochs": 1}}), "config key overrides: RTE not in tasks ['SST-2', 'MRPC']"),
    (dict(model="models/bert/none"), "config key model: models/bert/none: model folder not found"),
    (dict(glue_dir="no/such/glue"), "config key glue_dir: folder no/such/glue not found"),
])
def test_bad_config_names_key_value_and_rule(changes, message):
    with pytest.raises(BertLotteryError) as info:
        check_config(_config(**changes))
    text = str(info.value)
    assert message in text and "\n" not in text and len(text) < 600


def test_hub_ids_pass():
    check_config(_config(model="bert-base-uncased", glue_dir=None))
    check_config(_config(model="google/bert_uncased_L-2_H-128_A-2"))


def test_snakemake_reads_command_line_lists_and_stops_on_a_missing_model(tmp_path):
    base = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "--cores", "1", "--dry-run", "--configfile", str(REPO / "config" / "smoke.yaml"), "--config"]
    ok = subprocess.run(base + ["seeds=[42]", "tasks=[RTE]"], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "results/finetune/RTE/seed42" in ok.stdout + ok.stderr
    bad = subprocess.run(base + [f"model={tmp_path / 'nope'}"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "config key model:" in bad.stdout + bad.stderr
    assert "model folder not found" in bad.stdout + bad.stderr and not (tmp_path / "results").exists()


def test_snakemake_stops_on_a_glue_folder_lacking_a_configured_task(tmp_path):
    """A GLUE folder with SST-2 only (as the shared data lacks QQP and MNLI): asking for RTE stops planning."""
    shutil.copytree(REPO / "tests/data/glue/SST-2", tmp_path / "glue/SST-2")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "1", "--dry-run", "--configfile", str(REPO / "config" / "smoke.yaml"), "--config",
         f"glue_dir={tmp_path / 'glue'}", "tasks=[SST-2,RTE]"],
        cwd=REPO, capture_output=True, text=True)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "config key glue_dir:" in out and "lacks RTE/train.tsv, RTE/dev.tsv" in out
    assert "SST-2" not in out.split("lacks", 1)[1].split("(", 1)[0] and not (tmp_path / "results").exists()


def test_numbers_inside_nested_command_line_values_read_as_numbers():
    """Snakemake passes `--config 'training={epochs: 2, learning_rate: 1e-4}'` with the numbers as strings."""
    config = _config(training={"epochs": "2", "learning_rate": "1e-4", "tf32": "true"}, seeds=["-1"])
    with pytest.raises(BertLotteryError, match=r"config key seeds\[0\]: -1 is less than the minimum of 0"):
        check_config(config)
    config = _config(training={"epochs": "2", "learning_rate": "1e-4", "tf32": "true"})
    check_config(config)
    assert config["training"] == {"epochs": 2, "learning_rate": 1e-4, "tf32": True}
    with pytest.raises(BertLotteryError, match="config key training.epochs: 'abc' is not of type 'number'"):
        check_config(_config(training={"epochs": "abc"}))
