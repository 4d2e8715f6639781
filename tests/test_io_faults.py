"""Write faults and reproducible bytes: a full disk or a read-only folder is a named error that leaves no
temporary file; equal masks are equal files; files get the user's umask; damaged files name the fix."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys

import pytest
import torch
from conftest import tiny_command

from bertlottery.errors import BertLotteryError
from bertlottery.io import (
    atomic_directory,
    atomic_path,
    check_model_source,
    save_tensors,
    write_json,
)
from bertlottery.masks.types import HeadMlpMask, WeightMask, load_any_mask


def _mount_tmpfs(path, options: str) -> None:
    """Mount a small tmpfs at `path` (root only); skip the test where mounting is not permitted."""
    path.mkdir(exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission): {out.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: writing more than that fails with ENOSPC."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=64k")
    yield disk
    # lazy: torch.save's failed writer may still hold its file (the traceback pytest keeps); detach anyway
    subprocess.run(["umount", "--lazy", str(disk)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs: writes fail with EROFS even for root (chmod does not stop root)."""
    folder = tmp_path / "ro"
    _mount_tmpfs(folder, "ro,size=64k")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=False)


BIG = torch.zeros(100_000)  # 400 KB: more than the small disk holds


@pytest.mark.parametrize("writer", ["json", "tensors", "torch.save", "directory"])
def test_full_disk_is_a_named_error_and_leaves_no_temporary(small_disk, writer):
    target = small_disk / "out"
    with pytest.raises(BertLotteryError, match=f"no space left on device while writing {target}"):
        if writer == "json":
            write_json(target, {"x": [0.5] * 100_000})
        elif writer == "tensors":
            save_tensors(target, {"a": BIG})
        elif writer == "torch.save":  # torch reports it as `[enforce fail at inline_container.cc] ...`
            with atomic_path(target) as tmp:
                torch.save({"a": BIG}, tmp)
        else:
            with atomic_directory(target) as tmp:
                (tmp / "weights").write_bytes(bytes(400_000))
    assert os.listdir(small_disk) == []


@pytest.mark.parametrize("nested", [False, True])
def test_read_only_folder_is_a_named_error(read_only_dir, nested):
    target = read_only_dir / "sub" / "x.json" if nested else read_only_dir / "x.json"
    with pytest.raises(BertLotteryError, match="is read-only"):
        write_json(target, {"a": 1})
    assert os.listdir(read_only_dir) == []


_SAVE_MASKS = """
import sys, torch
from bertlottery.masks.types import HeadMlpMask, WeightMask
meta = dict(task="RTE", seed=42, family="s", kind="good", method="s-pruning", mode="joint", threshold=0.9)
HeadMlpMask(torch.eye(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool), {}).save(sys.argv[1], **meta)
WeightMask({f"layer.{i}.weight": torch.eye(3, dtype=torch.bool) for i in range(6)}).save(sys.argv[2], **meta)
"""


def test_equal_masks_saved_in_two_processes_have_equal_sha256(tmp_path):
    digests = []
    for run in range(2):
        paths = [tmp_path / f"s{run}.safetensors", tmp_path / f"m{run}.safetensors"]
        subprocess.run([sys.executable, "-c", _SAVE_MASKS, *map(str, paths)], check=True,
                       env=os.environ | {"PYTHONHASHSEED": str(run)})
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
    assert digests[0] == digests[1]
    s, m = load_any_mask(tmp_path / "s0.safetensors"), load_any_mask(tmp_path / "m0.safetensors")
    assert isinstance(s, HeadMlpMask) and s.meta["task"] == "RTE" and s.heads_kept == 4
    assert isinstance(m, WeightMask) and m.kept == 18


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(2)})
        write_json(tmp_path / "j.json", {})
        with atomic_directory(tmp_path / "model") as tmp:
            fd = os.open(tmp / "weights", os.O_WRONLY | os.O_CREAT, 0o600)  # an owner-only writer
            os.close(fd)
    finally:
        os.umask(old)
    for path in (tmp_path / "t.safetensors", tmp_path / "j.json", tmp_path / "model" / "weights"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path


@pytest.mark.parametrize("content", [b"", b"\x10\x00", b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":"])
def test_damaged_mask_file_names_path_and_fix(tmp_path, content):
    good = tmp_path / "good.safetensors"
    HeadMlpMask(torch.ones(2, 2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)).save(good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content or good.read_bytes()[: len(good.read_bytes()) - 3])
    for loader in (load_any_mask, HeadMlpMask.load, WeightMask.load):
        with pytest.raises(BertLotteryError, match="damaged, truncated or empty file") as info:
            loader(bad)
        assert str(bad) in str(info.value) and "delete it and rerun the job that writes it" in str(info.value)


def test_model_folder_errors(tmp_path):
    with pytest.raises(BertLotteryError, match="model folder not found"):
        check_model_source(str(tmp_path / "models" / "nothere"))
    with pytest.raises(BertLotteryError, match="model folder not found"):
        check_model_source("results/finetune/model")  # two slashes: a path, not a hub id
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(BertLotteryError, match="not a model folder"):
        check_model_source(str(tmp_path / "notes"))
    (tmp_path / "notes" / "config.json").write_text("{}")
    (tmp_path / "notes" / "model.safetensors").write_bytes(b"")
    with pytest.raises(BertLotteryError, match="model.safetensors: damaged, truncated or empty file"):
        check_model_source(str(tmp_path / "notes"))
    check_model_source("bert-base-uncased")  # hub ids pass
    check_model_source("google/bert_uncased_L-2_H-128_A-2")


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_snakemake_on_a_read_only_or_full_results_folder_says_so_in_one_line(tmp_path, tiny_model_dir, fault):
    """Before: Snakemake created the jobs' output folders before the package's own check, a 60-line traceback."""
    results = tmp_path / "wd" / "results"
    results.parent.mkdir()
    _mount_tmpfs(results, "ro,size=64k" if fault == "read-only" else "size=64k")
    try:
        if fault == "full":
            (results / "filler").write_bytes(bytes(60_000))
        run = subprocess.run(tiny_command(tmp_path / "wd", tiny_model_dir, "results/data/SST-2/data_card.json"),
                             capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["umount", "--lazy", str(results)], check=False)
    message = "results is read-only (cannot write there)" if fault == "read-only" else \
        "no space left on device while writing results; free some space and rerun"
    assert run.returncode != 0 and message in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and len(run.stderr.splitlines()) < 8, run.stderr
