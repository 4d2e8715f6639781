"""A bundle as one .tar.gz (bertlottery.bundle.archive): packed with deterministic bytes, read by verify,
unpack and bundle_info exactly as the folder is, and refused, naming the archive, when it is not a bundle
archive a stranger could safely hand over (docs/reliability.md, "Bundles as untrusted input")."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO

from bertlottery.bundle import archive as archive_module
from bertlottery.bundle.archive import bundle_folder, manifest_input
from bertlottery.bundle.cli import pack
from bertlottery.bundle.config import bundle_info
from bertlottery.bundle.manifest import verify, write_manifest
from bertlottery.bundle.unpack import unpack
from bertlottery.errors import BertLotteryError

METRICS = "finetune/RTE/seed1/metrics.json"


def _folder(root: Path) -> Path:
    """A small valid bundle folder: bundle.json and two results files, with its manifest."""
    (root / "finetune/RTE/seed1").mkdir(parents=True)
    (root / METRICS).write_text('{"reported": 0.5}\n')
    (root / "finetune/RTE/seed1/train_log.csv").write_text("step,loss\n1,0.7\n")
    config = {"tasks": ["RTE"], "seeds": [1], "model": "some/model"}
    (root / "bundle.json").write_text(json.dumps({"format": 1, "tasks": ["RTE"], "seeds": [1],
                                                  "pattern_counts": False, "config": config}))
    write_manifest(root)
    return root


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_archive_reads_as_its_folder(tmp_path):
    folder = _folder(tmp_path / "RTE")
    archive = tmp_path / "RTE.tar.gz"
    manifest = pack(str(folder), str(archive))
    assert manifest == verify(folder) == verify(archive)
    assert bundle_info(str(archive)) == bundle_info(str(folder))
    assert unpack([str(archive)], str(tmp_path / "a")) == unpack([str(folder)], str(tmp_path / "f")) == 2
    for relative in (METRICS, "finetune/RTE/seed1/train_log.csv"):
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "f" / relative).read_bytes()
    with tarfile.open(archive) as tar:  # `tar xzf RTE.tar.gz` gives the folder RTE/
        assert sorted(tar.getnames()) == ["RTE/bundle.json", "RTE/finetune/RTE/seed1/metrics.json",
                                          "RTE/finetune/RTE/seed1/train_log.csv", "RTE/manifest.json"]
    assert manifest_input(str(archive)) == str(archive)
    assert manifest_input(str(folder)) == os.path.join(str(folder), "manifest.json")
    with bundle_folder(archive) as scratch:  # the scratch folder is removed after the reading
        assert (scratch / METRICS).is_file()
    assert not scratch.exists()


def test_packing_twice_gives_the_same_bytes(tmp_path):
    """Times, owners and modes of this machine do not reach the archive."""
    folder = _folder(tmp_path / "RTE")
    first = tmp_path / "one" / "RTE.tar.gz"
    pack(str(folder), str(first))
    os.utime(folder / METRICS, (1, 1))
    (folder / METRICS).chmod(0o600)
    second = tmp_path / "two" / "RTE.tar.gz"
    pack(str(folder), str(second))
    assert _sha(first) == _sha(second)


def test_the_cli_packs_and_exports_archives(tmp_path):
    folder = _folder(tmp_path / "RTE")
    done = subprocess.run([sys.executable, "-m", "bertlottery", "bundle", "pack", str(folder)], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{folder}.tar.gz: 3 files of {folder}" in done.stdout and "verified" in done.stdout
    verified = subprocess.run([sys.executable, "-m", "bertlottery", "bundle", "verify", f"{folder}.tar.gz"],
                              cwd=REPO, capture_output=True, text=True)
    assert verified.returncode == 0 and "OK (3 files" in verified.stdout, verified.stderr


def test_a_changed_member_is_named_inside_the_archive(tmp_path):
    folder = _folder(tmp_path / "RTE")
    (folder / METRICS).write_text('{"reported": 0.9}\n')  # after the manifest was written
    archive = tmp_path / "RTE.tar.gz"
    archive_module.write_archive(folder, ["manifest.json", "bundle.json", METRICS], archive)
    with pytest.raises(BertLotteryError) as error:
        verify(archive)
    message = str(error.value)
    assert f"{archive}/{METRICS}: changed" in message and f"{archive}/finetune/RTE/seed1/train_log.csv: missing" \
        in message
    assert "bertlottery-bundle-" not in message  # the scratch folder is not what the user handed over
    with pytest.raises(BertLotteryError, match="does not match its manifest"):
        unpack([str(archive)], str(tmp_path / "results"))
    assert not (tmp_path / "results").exists()


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"{}\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("members, problem", [
    ([_file("RTE/manifest.json"), _link("RTE/bundle.json", "/etc/hostname")], "is a link"),
    ([_file("RTE/manifest.json"), _link("RTE/bundle.json", "RTE/manifest.json", tarfile.LNKTYPE)], "is a link"),
    ([_file("/RTE/manifest.json")], "is absolute"),
    ([_file("RTE/../../outside.json")], "contains '..'"),
    ([_file("RTE//manifest.json")], "is not a plain relative path"),
    ([_file("RTE/manifest.json"), _file("RTE/manifest.json")], "is listed twice"),
    ([_file("manifest.json")], "is not inside the archive's top folder"),
    ([_file("RTE/manifest.json"), _file("MRPC/manifest.json")], "expected one top folder"),
])
def test_an_unsafe_archive_is_refused_and_nothing_is_written(tmp_path, members, problem):
    archive = _archive(tmp_path / "RTE.tar.gz", members)
    with pytest.raises(BertLotteryError, match=problem) as error:
        verify(archive)
    assert str(archive) in str(error.value)
    with pytest.raises(BertLotteryError, match=problem):
        unpack([str(archive)], str(tmp_path / "results"))
    assert not (tmp_path / "results").exists() and not (tmp_path / "outside.json").exists()


def test_an_archive_larger_than_the_limit_is_refused_before_unpacking(tmp_path, monkeypatch):
    archive = _archive(tmp_path / "RTE.tar.gz", [_file("RTE/manifest.json", b"x" * 600),
                                                 _file("RTE/bundle.json", b"x" * 600)])
    monkeypatch.setattr(archive_module, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(BertLotteryError, match="add up to more than 1000 bytes"):
        verify(archive)


@pytest.mark.parametrize("content, problem", [(b"not an archive", "cannot be unpacked as a .tar.gz"),
                                              (None, "bundle archive not found")])
def test_a_broken_or_missing_archive_is_one_line(tmp_path, content, problem):
    archive = tmp_path / "RTE.tar.gz"
    if content is not None:
        archive.write_bytes(content)
    with pytest.raises(BertLotteryError, match=problem) as error:
        verify(archive)
    assert str(archive) in str(error.value) and "\n" not in str(error.value)


def test_an_archive_name_must_end_in_tar_gz(tmp_path):
    folder = _folder(tmp_path / "RTE")
    with pytest.raises(BertLotteryError, match="<name>.tar.gz"):
        archive_module.write_archive(folder, ["manifest.json"], tmp_path / ".tar.gz")
