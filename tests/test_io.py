"""Atomic writes: the target appears whole or not at all, no temporary file is left, usual permissions."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from safetensors import safe_open

from bertlottery.errors import BertLotteryError
from bertlottery.io import (
    atomic_directory,
    atomic_path,
    read_json,
    remove_temporaries,
    save_tensors,
    write_json,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_write_json_bytes_and_round_trip(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json(path, {"b": 1, "a": np.float32(0.5), "arr": np.arange(2), "p": tmp_path / "x"})
    assert path.read_text() == (
        '{\n  "b": 1,\n  "a": 0.5,\n  "arr": [\n    0,\n    1\n  ],\n  "p": "' + str(tmp_path / "x") + '"\n}\n')
    assert read_json(path)["arr"] == [0, 1]
    assert os.listdir(path.parent) == ["out.json"]
    assert _mode(path) == _umask_mode()


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(BertLotteryError, match="file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BertLotteryError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_write_json_of_an_unserialisable_value_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "out.json", {"x": object()})
    assert os.listdir(tmp_path) == []


def test_save_tensors_is_readable_and_has_the_usual_mode(tmp_path):
    path = save_tensors(tmp_path / "t.safetensors", {"a": torch.arange(6).view(2, 3).t()}, {"k": "v"})
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"k": "v"}
        assert torch.equal(f.get_tensor("a"), torch.arange(6).view(2, 3).t())
    assert _mode(path) == _umask_mode()  # safetensors itself creates owner-only files


def test_atomic_directory_replaces_the_old_one(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("w")
    assert sorted(os.listdir(target)) == ["weights"]
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "half").write_text("h")
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["model"] and sorted(os.listdir(target)) == ["weights"]
    (tmp_path / ".model.0a1b2c3d.tmp").mkdir()  # left by a killed writer
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("w2")
    assert sorted(os.listdir(tmp_path)) == ["model"] and (target / "weights").read_text() == "w2"


def test_remove_temporaries_after_a_kill(tmp_path):
    path = tmp_path / "state.safetensors"
    (tmp_path / ".state.safetensors.0a1b2c3d.tmp").write_text("half")
    (tmp_path / ".other.0a1b2c3d.tmp").write_text("keep")
    remove_temporaries(path)
    assert os.listdir(tmp_path) == [".other.0a1b2c3d.tmp"]
