"""The manifest of a bundle: every file (but manifest.json itself) with its sha256 and size, sorted by
path, so equal files give equal manifest bytes. `verify` recomputes it and names each missing, extra or
changed file.

A bundle is input from a stranger (docs/reliability.md, "Bundles as untrusted input"): its manifest and
bundle.json are size-bounded and schema-checked before use; an entry must be a plain relative path inside
the bundle; the bundle may hold regular files and folders only (no symlinks, devices or pipes); and a
file is read only after its size matched the manifest's, never beyond it. The manifest is a checksum
list, not a signature: it proves the files are those it lists, not who wrote them."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import jsonschema

from bertlottery.bundle.archive import bundle_folder
from bertlottery.errors import BertLotteryError
from bertlottery.io import file_sha256, plain_path_problem, read_regular_json, write_text

MANIFEST = "manifest.json"
BUNDLE_INFO = "bundle.json"
FORMAT = 1
MAX_JSON_BYTES = 32 * 2**20  # manifest.json and bundle.json (the MiniLM study's largest manifest: 60 KiB)
MAX_PATH_CHARS = 1024

MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["format", "files"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "files": {"type": "array", "items": {
            "type": "object",
            "required": ["path", "sha256", "size"],
            "additionalProperties": False,
            "properties": {
                "path": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_CHARS},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "size": {"type": "integer", "minimum": 0},
            },
        }},
    },
}


def _files(directory: Path) -> list[str]:
    """Every file under `directory` as a POSIX path relative to it, sorted (manifest.json left out).
    A symlink or anything but a regular file or folder is refused, never followed or read."""
    found = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            relative = path.relative_to(directory).as_posix()
            if not stat.S_ISREG(mode):
                what = "a symlink" if stat.S_ISLNK(mode) else "not a regular file (a device, pipe or socket)"
                raise BertLotteryError(f"bundle {directory}: {relative} is {what}; a bundle holds regular files "
                                       "only (refused, nothing read through it)")
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


def read_bounded_json(path: Path, bundle: Path, limit: int = MAX_JSON_BYTES):
    """A JSON file of a bundle: a regular file (not a symlink) of at most `limit` bytes, parsed."""
    return read_regular_json(path, limit, name=f"bundle {bundle}: {path.name}",
                             missing=f"{path}: not found; expected a bundle folder written by `bertlottery bundle "
                                     "export` (it holds manifest.json and bundle.json)",
                             hint="; a bundle holds regular files only")


def schema_error(value, schema: dict, where: str) -> None:
    """One line naming the first broken key (`where` + JSON path), or nothing when `value` fits `schema`."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        raise BertLotteryError(f"{where} key {key or '(top level)'}: {message}")


def _entry_problem(relative: str, bundle: Path) -> str | None:
    problem = plain_path_problem(relative)
    if problem is None and not (bundle / relative).resolve().is_relative_to(bundle.resolve()):
        return "resolves outside the bundle"
    return problem


def check_entry_path(relative: str, bundle: Path) -> None:
    """A manifest entry must be a plain relative POSIX path that stays inside the bundle."""
    problem = _entry_problem(relative, bundle)
    if problem:
        raise BertLotteryError(f"bundle {bundle}: {MANIFEST} key files: entry {relative!r} {problem}; refused")


def read_manifest(bundle: str | os.PathLike) -> dict:
    """manifest.json of a bundle (folder or archive), size-bounded and schema-checked, every entry a path
    inside the bundle."""
    with bundle_folder(bundle) as folder:
        return _read_manifest(folder)


def _read_manifest(directory: Path) -> dict:
    if not directory.is_dir():
        raise BertLotteryError(f"{directory}: bundle folder not found")
    manifest = read_bounded_json(directory / MANIFEST, directory)
    schema_error(manifest, MANIFEST_SCHEMA, f"bundle {directory}: {MANIFEST}")
    seen = set()
    for entry in manifest["files"]:
        check_entry_path(entry["path"], directory)
        if entry["path"] in seen:
            raise BertLotteryError(f"bundle {directory}: {MANIFEST} key files: {entry['path']!r} listed twice")
        seen.add(entry["path"])
    return manifest


def bounded_sha256(path: Path, size: int) -> str | None:
    """sha256 of a regular file read to at most `size` bytes; None when it is not that size now."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return None
        digest, left = hashlib.sha256(), size + 1  # one more byte: a file grown since is seen
        while left > 0:
            chunk = handle.read(min(left, 2**20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        return digest.hexdigest() if left == 1 else None


def verify(bundle: str | os.PathLike) -> dict:
    """Check every file of the bundle (folder or archive) against its manifest; returns the manifest.
    Raises one error that lists each missing, extra and changed file with what was expected."""
    with bundle_folder(bundle) as folder:
        return _verify(folder)


def _verify(directory: Path) -> dict:
    present = set(_files(directory)) if directory.is_dir() else set()  # a symlink refused before any use
    manifest = _read_manifest(directory)
    expected = {entry["path"]: entry for entry in manifest["files"]}
    problems = [f"{directory / rel}: missing (the manifest lists it, sha256 {expected[rel]['sha256'][:12]}...)"
                for rel in sorted(set(expected) - present)]
    problems += [f"{directory / rel}: extra file (not in the manifest)" for rel in sorted(present - set(expected))]
    for rel in sorted(set(expected) & present):
        entry, path = expected[rel], directory / rel
        size = path.lstat().st_size
        if size != entry["size"]:  # checked before reading: nothing read beyond the manifest's size
            problems.append(f"{path}: changed ({size} bytes; the manifest says {entry['size']})")
        elif bounded_sha256(path, entry["size"]) != entry["sha256"]:
            problems.append(f"{path}: changed (sha256 differs from the manifest's {entry['sha256'][:12]}...)")
    if BUNDLE_INFO not in expected and not problems:
        problems.append(f"{directory / BUNDLE_INFO}: missing (every bundle has one)")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise BertLotteryError(f"bundle {directory} does not match its manifest: " + "; ".join(shown))
    return manifest
