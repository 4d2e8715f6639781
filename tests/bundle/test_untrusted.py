"""A bundle is input from a stranger: every attack of docs/reliability.md ("Bundles as untrusted input") is
refused with one message naming the bundle and the key or file, nothing is read from outside the bundle
and nothing written outside the results folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from bertlottery.bundle.config import bundle_info, study_config
from bertlottery.bundle.manifest import MAX_JSON_BYTES, verify, write_manifest
from bertlottery.bundle.packing import MAX_HEADER_BYTES, pack_weight_mask, unpack_weight_mask
from bertlottery.bundle.unpack import unpack
from bertlottery.errors import BertLotteryError
from bertlottery.io import save_tensors
from bertlottery.masks.types import WeightMask

METRICS = "finetune/RTE/seed1/metrics.json"


def _bundle(root: Path, info: dict | None = None) -> Path:
    """A small valid bundle: bundle.json and one metrics file, with its manifest."""
    (root / "finetune/RTE/seed1").mkdir(parents=True)
    (root / METRICS).write_text('{"reported": 0.5}\n')
    config = {"tasks": ["RTE"], "seeds": [1], "model": "some/model"}
    (root / "bundle.json").write_text(json.dumps(info or {"format": 1, "tasks": ["RTE"], "seeds": [1],
                                                          "pattern_counts": False, "config": config}))
    write_manifest(root)
    return root


def _edit_manifest(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


def _refused(root: Path, match: str, results: Path) -> str:
    """verify and unpack both refuse, naming the bundle; unpack writes nothing."""
    with pytest.raises(BertLotteryError, match=match) as error:
        verify(root)
    with pytest.raises(BertLotteryError, match=match):
        unpack([str(root)], str(results))
    assert not results.exists()
    assert str(root) in str(error.value) and "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("path, problem", [
    ("/etc/hostname", "is absolute"),
    ("../outside.json", "contains '..'"),
    ("finetune/../../outside.json", "contains '..'"),
    ("finetune//x.json", "is not a plain relative path"),
    ("./bundle.json", "is not a plain relative path"),
])
def test_manifest_entries_outside_the_bundle_are_refused(tmp_path, path, problem):
    root = _bundle(tmp_path / "b")
    (tmp_path / "outside.json").write_text("secret")
    _edit_manifest(root, lambda m: m["files"].append({"path": path, "sha256": "0" * 64, "size": 6}))
    text = _refused(root, "manifest.json key files: entry", tmp_path / "results")
    assert f"manifest.json key files: entry '{path}' {problem}" in text and text.endswith("; refused")
    assert (tmp_path / "outside.json").read_text() == "secret"


def test_a_symlink_to_an_outside_file_is_refused_and_not_copied(tmp_path):
    (tmp_path / "secret.txt").write_text("the neighbour's private key")
    root = _bundle(tmp_path / "b")
    (root / METRICS).unlink()
    (root / METRICS).symlink_to(tmp_path / "secret.txt")
    write_manifest_error = None
    try:  # an attacker writes the manifest by hand: listing the link's target size and digest
        write_manifest(root)
    except BertLotteryError as exc:
        write_manifest_error = str(exc)
    assert write_manifest_error and "is a symlink" in write_manifest_error
    _refused(root, f"{METRICS} is a symlink; a bundle holds regular files only", tmp_path / "results")


def test_a_symlink_to_dev_zero_listed_with_size_zero_is_refused_at_once(tmp_path):
    """Before: `bundle verify` and the bundle mode hung forever reading /dev/zero."""
    root = _bundle(tmp_path / "b")
    (root / "zero.json").symlink_to("/dev/zero")
    _edit_manifest(root, lambda m: m["files"].append({"path": "zero.json", "sha256": "0" * 64, "size": 0}))
    run = subprocess.run([sys.executable, "-m", "bertlottery", "bundle", "verify", str(root)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode != 0 and "zero.json is a symlink" in run.stderr


def test_a_symlinked_folder_and_a_fifo_are_refused(tmp_path):
    root = _bundle(tmp_path / "b")
    (tmp_path / "elsewhere").mkdir()
    (root / "eval").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _refused(root, "eval is a symlink", tmp_path / "results")
    (root / "eval").unlink()
    os.mkfifo(root / "pipe.json")
    _refused(root, r"pipe.json is not a regular file \(a device, pipe or socket\)", tmp_path / "results")


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(files=[1, 2]), "is not of type 'object'"),
    (lambda m: m["files"][0].update(size="134"), "manifest.json key files[0].size: '134' is not of type 'integer'"),
    (lambda m: m["files"][0].update(size=-1), "manifest.json key files[0].size: -1 is less than the minimum of 0"),
    (lambda m: m["files"][0].update(sha256="abc"), "manifest.json key files[0].sha256: 'abc' does not match"),
    (lambda m: m["files"][0].pop("path"), "manifest.json key files[0]: 'path' is a required property"),
    (lambda m: m.update(format=2), "manifest.json key format: 1 was expected"),
    (lambda m: m.update(signed_by="me"), "manifest.json key (top level): Additional properties are not allowed"),
    (lambda m: m["files"].append(dict(m["files"][0])), "manifest.json key files: 'bundle.json' listed twice"),
])
def test_malformed_manifests_name_the_bundle_and_key(tmp_path, change, message):
    root = _bundle(tmp_path / "b")
    _edit_manifest(root, change)
    text = _refused(root, "manifest.json key", tmp_path / "results")
    assert message in text


def test_manifest_that_is_not_json_or_too_big_is_refused_unread(tmp_path):
    root = _bundle(tmp_path / "b")
    (root / "manifest.json").write_text('{"format": 1, "files": [')
    _refused(root, "manifest.json is not valid JSON", tmp_path / "results")
    with open(root / "manifest.json", "r+b") as handle:  # sparse: no disk used
        handle.truncate(MAX_JSON_BYTES + 1)
    _refused(root, rf"manifest.json is {MAX_JSON_BYTES + 1} bytes; at most {MAX_JSON_BYTES} expected \(refused unread\)",
             tmp_path / "results")


def test_a_file_larger_than_its_manifest_entry_is_not_read(tmp_path):
    root = _bundle(tmp_path / "b")
    with open(root / METRICS, "r+b") as handle:
        handle.truncate(2**40)  # a 1 TiB sparse file: hashing it would take hours
    _refused(root, r"metrics.json: changed \(1099511627776 bytes; the manifest says 18\)", tmp_path / "results")


@pytest.mark.parametrize("info, message", [
    ({"config": "hello", "tasks": ["RTE"], "seeds": [1], "pattern_counts": False},
     "bundle.json key config: 'hello' is not of type 'object'"),
    ({"config": {}, "tasks": "RTE", "seeds": [1], "pattern_counts": False},
     "bundle.json key tasks: 'RTE' is not of type 'array'"),
    ({"config": {}, "tasks": ["RTE"], "seeds": ["x"], "pattern_counts": False},
     "bundle.json key seeds[0]: 'x' is not of type 'integer'"),
    ({"config": {}, "tasks": ["RTE"], "seeds": [1]}, "bundle.json key (top level): 'pattern_counts' is a required"),
    ({"config": {"training": {"epochs": "abc"}}, "tasks": ["RTE"], "seeds": [1], "pattern_counts": False},
     "bundle.json config key training.epochs: 'abc' is not of type 'number'"),
    ({"config": {"bogus_key": 1}, "tasks": ["RTE"], "seeds": [1], "pattern_counts": False},
     "bundle.json config key (top level): Additional properties are not allowed ('bogus_key' was unexpected)"),
])
def test_malformed_bundle_json_names_the_bundle_and_key(tmp_path, info, message):
    root = _bundle(tmp_path / "b", info)
    with pytest.raises(BertLotteryError) as error:
        study_config([str(root)])
    assert f"bundle {root}: {message}" in str(error.value)


def test_bundle_json_that_is_too_big_is_refused_unread(tmp_path):
    root = _bundle(tmp_path / "b")
    with open(root / "bundle.json", "r+b") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)
    write_manifest(root)  # a consistent manifest: the size bound is what refuses it
    with pytest.raises(BertLotteryError, match=rf"bundle {root}: bundle.json is {MAX_JSON_BYTES + 1} bytes"):
        bundle_info(str(root))


def _packed(tmp_path: Path) -> Path:
    WeightMask({"w": torch.rand(9, 5) < 0.5}, {"task": "RTE"}).save(tmp_path / "good.safetensors")
    return pack_weight_mask(tmp_path / "good.safetensors", tmp_path / "packed.safetensors")


@pytest.mark.parametrize("record, message", [
    ("not json", "metadata key bundle_packed is not valid JSON"),
    ('{"shapes": {"w": [-9, 5]}, "metadata": {}}', "metadata bundle_packed key shapes.w[0]: -9 is less than"),
    ('{"shapes": {"w": "9x5"}, "metadata": {}}', "metadata bundle_packed key shapes.w: '9x5' is not of type"),
    ('{"shapes": {"w": [9, 5]}, "metadata": {"task": 1}}', "metadata bundle_packed key metadata.task: 1 is not"),
    ('{"shapes": {"w": [1000000, 1000000, 1000000]}, "metadata": {}}', "holds 6 bytes; expected 125000000000000000"),
])
def test_malformed_packed_mask_metadata_is_a_clear_error(tmp_path, record, message):
    bits = torch.zeros(6, dtype=torch.uint8)
    save_tensors(tmp_path / "bad.safetensors", {"w": bits}, {"mask_type": "PackedWeightMask", "bundle_packed": record})
    with pytest.raises(BertLotteryError, match="bad.safetensors: ") as error:
        unpack_weight_mask(tmp_path / "bad.safetensors", tmp_path / "out.safetensors")
    assert message in str(error.value) and not (tmp_path / "out.safetensors").exists()


def test_a_safetensors_header_length_beyond_the_bound_is_refused_unread(tmp_path):
    packed = _packed(tmp_path)
    data = bytearray(packed.read_bytes())
    data[:8] = (MAX_HEADER_BYTES + 1).to_bytes(8, "little")
    packed.write_bytes(bytes(data))
    with pytest.raises(BertLotteryError, match=f"safetensors header of {MAX_HEADER_BYTES + 1} bytes"):
        unpack_weight_mask(packed, tmp_path / "out.safetensors")
