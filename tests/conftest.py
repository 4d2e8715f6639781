"""Shared fixtures: the real GLUE data and MiniLM model in ../shared, and tiny BERTs built in code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERTLOTTERY_SHARED", REPO.parent / "shared")).resolve()
GLUE_DIR = SHARED / "data" / "glue"
MINILM_DIR = SHARED / "models" / "all-MiniLM-L6-v2-fp16"


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI expects ../shared beside the clone")
        pytest.skip(f"{path} not found (set BERTLOTTERY_SHARED to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    return _require(GLUE_DIR)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return _require(MINILM_DIR)


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


def tiny_bert_config(**overrides):
    """A tiny BERT (2 layers, 4 heads, hidden 32) with the real uncased vocabulary size."""
    from transformers import BertConfig

    values = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=128)
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_dir) -> Path:
    """A randomly initialised tiny BERT saved like a hub checkpoint, with MiniLM's real tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(tiny_bert_config()).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(minilm_dir)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def rte_small(tmp_path_factory, glue_dir, minilm_dir) -> Path:
    """Real RTE, subsampled (96 train / 48 dev), tokenized with MiniLM's tokenizer."""
    from bertlottery.glue.prepare import prepare_data

    out = tmp_path_factory.mktemp("rte-small")
    prepare_data("RTE", str(minilm_dir), out, glue_dir=glue_dir, max_train_examples=96,
                 max_dev_examples=48, subsample_seed=0, max_seq_length=64)
    return out


def smoke_command(workdir: Path, *extra: str, cores: int = 2) -> list[str]:
    """`snakemake` on config/smoke.yaml with the README's offline overrides, outputs under `workdir`."""
    import sys

    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--cores", str(cores), *extra, "--configfile", str(REPO / "config" / "smoke.yaml"),
        # last: `--config` takes every following word as key=value (targets must come before it)
        "--config", f"model={MINILM_DIR}", f"glue_dir={GLUE_DIR}",
    ]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, glue_dir, minilm_dir) -> Path:
    """The whole smoke workflow, run once per test session; returns the working directory."""
    import subprocess

    workdir = tmp_path_factory.mktemp("smoke")
    result = subprocess.run(smoke_command(workdir), cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        logs = sorted((workdir / "results" / "logs").rglob("*.log"))
        tail = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs[-3:])
        pytest.fail(f"smoke workflow failed:\n{result.stderr[-6000:]}\n{tail}")
    return workdir


# --- kill and resume (the two mask searches) -------------------------------------------------------


class Killed(Exception):
    """Stands for a kill: raised from the search's on_iteration callback."""


def run_killed_then_resumed(search: Callable[..., Any], state_dir: Path, state_file: str, kill_after: int):
    """Run `search(state_dir=..., on_iteration=...)` killed right after iteration `kill_after` was saved,
    check it left its state file, then run it again on the same state.

    Returns the resumed run's result and the iterations it reported (those it did not take from the state)."""
    def kill(i: int) -> None:
        if i == kill_after:
            raise Killed

    with pytest.raises(Killed):
        search(state_dir=state_dir, on_iteration=kill)
    assert (state_dir / state_file).is_file()
    reported: list[int] = []
    return search(state_dir=state_dir, on_iteration=reported.append), reported


@pytest.fixture
def killed_then_resumed():
    """`run_killed_then_resumed` for the kill-and-resume tests of both searches."""
    return run_killed_then_resumed
