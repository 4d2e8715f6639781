"""A model given by hub id (`model: org/name`), offline: it resolves from a HuggingFace cache made in the
test. HF_HOME points at the test's tmp dir, HF_HUB_OFFLINE=1, and the tiny BERT is saved in the hub cache
layout (hub/models--org--name/snapshots/<revision>/ with refs/main naming the revision), as a download
would have left it. The loaders run in child processes: huggingface_hub fixes its cache folder on import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURE_GLUE, REPO

HUB_ID = "bertlottery-test/tiny-bert"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(tmp_path: Path, model_dir: Path) -> Path:
    """HF_HOME with `model_dir`'s files cached as HUB_ID; returns HF_HOME."""
    home = tmp_path / "hf-home"
    repo = home / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    shutil.copytree(model_dir, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return home


LOAD = f"""
import json, torch
from bertlottery.glue.prepare import load_tokenizer
from bertlottery.modeling.loading import load_classifier
tokenizer = load_tokenizer({HUB_ID!r})
model = load_classifier({HUB_ID!r}, 2)
print(json.dumps({{"ids": tokenizer("the film was good")["input_ids"],
                  "embedding_sum": float(model.bert.embeddings.word_embeddings.weight.detach().double().sum())}}))
"""


def test_model_and_tokenizer_by_hub_id_resolve_from_the_local_cache(tmp_path, tiny_model_dir):
    env = os.environ | {"HF_HOME": str(hub_cache(tmp_path, tiny_model_dir)), "HF_HUB_OFFLINE": "1",
                        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", LOAD], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    from transformers import AutoModel, AutoTokenizer

    local = AutoModel.from_pretrained(tiny_model_dir)
    assert seen["ids"] == AutoTokenizer.from_pretrained(tiny_model_dir)("the film was good")["input_ids"]
    assert seen["embedding_sum"] == float(local.embeddings.word_embeddings.weight.detach().double().sum())

    # the data step of the workflow with `model: org/name`: its tokenizer found in the same cache
    out = tmp_path / "prepared"
    run = subprocess.run([sys.executable, "-m", "bertlottery", "prepare-data", "--task", "RTE", "--model", HUB_ID,
                          "--glue-dir", str(FIXTURE_GLUE), "--out-dir", str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert json.loads((out / "data_card.json").read_text())["splits"]["dev"]["rows_kept"] == 48


def test_an_uncached_hub_id_offline_is_a_clear_error(tmp_path):
    env = os.environ | {"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1",
                        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    code = f"from bertlottery.modeling.loading import load_classifier; load_classifier({HUB_ID!r}, 2)"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode != 0 and f"{HUB_ID}: cannot load a sequence-classification model" in run.stderr
