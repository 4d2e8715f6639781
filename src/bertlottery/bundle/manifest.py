"""The manifest of a bundle: every file (but manifest.json itself) with its sha256 and size, sorted by
path, so equal files give equal manifest bytes. `verify` recomputes it and names each missing, extra or
changed file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bertlottery.errors import BertLotteryError
from bertlottery.io import file_sha256, read_json, write_text

MANIFEST = "manifest.json"
BUNDLE_INFO = "bundle.json"
FORMAT = 1


def _files(directory: Path) -> list[str]:
    """Every file under `directory` as a POSIX path relative to it, sorted (manifest.json left out)."""
    found = []
    for path in directory.rglob("*"):
        if path.is_file() or path.is_symlink():
            relative = path.relative_to(directory).as_posix()
            if relative != MANIFEST:
                found.append(relative)
    return sorted(found)


def compute_manifest(directory: str | os.PathLike) -> dict:
    directory = Path(directory)
    files = [{"path": rel, "sha256": file_sha256(directory / rel), "size": (directory / rel).stat().st_size}
             for rel in _files(directory)]
    return {"format": FORMAT, "files": files}


def write_manifest(directory: str | os.PathLike) -> dict:
    manifest = compute_manifest(directory)
    write_text(Path(directory) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict:
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise BertLotteryError(f"{directory}: bundle folder not found")
    if not path.is_file():
        raise BertLotteryError(f"{path}: not found; expected a bundle folder written by `bertlottery bundle "
                               "export` (it holds manifest.json and bundle.json)")
    manifest = read_json(path)
    if not isinstance(manifest.get("files"), list) or manifest.get("format") != FORMAT:
        raise BertLotteryError(f"{path}: not a bundle manifest of format {FORMAT} (expected keys format, files)")
    return manifest


def verify(directory: str | os.PathLike) -> dict:
    """Check every file of the bundle against its manifest; returns the manifest. Raises one error that
    lists each missing, extra and changed file with what was expected."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    expected = {entry["path"]: entry for entry in manifest["files"]}
    present = set(_files(directory))
    problems = [f"{directory / rel}: missing (the manifest lists it, sha256 {expected[rel]['sha256'][:12]}...)"
                for rel in sorted(set(expected) - present)]
    problems += [f"{directory / rel}: extra file (not in the manifest)" for rel in sorted(present - set(expected))]
    for rel in sorted(set(expected) & present):
        entry, path = expected[rel], directory / rel
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"{path}: changed ({size} bytes; the manifest says {entry['size']})")
        elif file_sha256(path) != entry["sha256"]:
            problems.append(f"{path}: changed (sha256 differs from the manifest's {entry['sha256'][:12]}...)")
    if BUNDLE_INFO not in expected and not problems:
        problems.append(f"{directory / BUNDLE_INFO}: missing (every bundle has one)")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise BertLotteryError(f"bundle {directory} does not match its manifest: " + "; ".join(shown))
    return manifest
