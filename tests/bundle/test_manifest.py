"""The manifest: equal files give equal bytes; verify names a changed, missing or extra file."""

from __future__ import annotations

import json

import pytest

from bertlottery.bundle.manifest import compute_manifest, verify, write_manifest
from bertlottery.errors import BertLotteryError


def _bundle(root):
    (root / "finetune" / "CoLA" / "seed1").mkdir(parents=True)
    (root / "finetune" / "CoLA" / "seed1" / "metrics.json").write_text('{"mcc": 0.5}\n')
    (root / "bundle.json").write_text(json.dumps({"tasks": ["CoLA"]}))
    (root / "data.bin").write_bytes(bytes(range(256)))
    write_manifest(root)
    return root


def test_manifest_is_sorted_and_reproducible(tmp_path):
    a, b = _bundle(tmp_path / "a"), _bundle(tmp_path / "b")
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    paths = [entry["path"] for entry in compute_manifest(a)["files"]]
    assert paths == sorted(paths) == ["bundle.json", "data.bin", "finetune/CoLA/seed1/metrics.json"]
    assert verify(a)["files"][1]["size"] == 256


def test_one_changed_byte_fails_naming_the_file(tmp_path):
    root = _bundle(tmp_path / "a")
    data = bytearray((root / "data.bin").read_bytes())
    data[100] ^= 1
    (root / "data.bin").write_bytes(bytes(data))
    with pytest.raises(BertLotteryError, match=r"data.bin: changed \(sha256 differs"):
        verify(root)


def test_missing_and_extra_files_are_named(tmp_path):
    root = _bundle(tmp_path / "a")
    (root / "finetune" / "CoLA" / "seed1" / "metrics.json").unlink()
    (root / "notes.txt").write_text("x")
    with pytest.raises(BertLotteryError) as error:
        verify(root)
    assert "metrics.json: missing (the manifest lists it" in str(error.value)
    assert "notes.txt: extra file (not in the manifest)" in str(error.value)


def test_a_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(BertLotteryError, match="manifest.json: not found; expected a bundle folder"):
        verify(tmp_path)
    with pytest.raises(BertLotteryError, match="bundle folder not found"):
        verify(tmp_path / "nope")
