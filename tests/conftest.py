"""Shared fixtures: the real GLUE data and MiniLM model in ../shared, and tiny BERTs built in code."""

from __future__ import annotations

import os
from pathlib import Path

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
