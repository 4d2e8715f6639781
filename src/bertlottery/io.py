"""Atomic file writes and JSON files: a killed job never leaves half a file behind.

Every writer goes through `atomic_path`: it hands out a temporary file in the target's folder, and when
the body finishes the temporary file is flushed to disk (fsync), given the usual umask-based mode and
renamed onto the target with os.replace; on any error it is removed and the target is left as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import struct
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from bertlottery.errors import BertLotteryError


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# What an OS error on write means to the user (errno -> message); torch and safetensors report the same
# failures as RuntimeError / SafetensorError text, matched by these fragments.
_NO_SPACE = ("No space left", "code: 28", "StorageFull")
_READ_ONLY = ("Read-only file system", "code: 30", "ReadOnlyFilesystem", "Permission denied", "code: 13",
              "PermissionDenied")


def write_error(path: Path, exc: BaseException) -> BertLotteryError | None:
    """The user-facing error for a failed write of `path` (disk full, read-only), or None if it is not one.

    torch.save reports a full disk as `[enforce fail at inline_container.cc] ... unexpected pos`, with no
    errno: such a failure counts as a full disk when the folder has (almost) no free space left."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    no_space = code in (errno.ENOSPC, errno.EDQUOT) or any(f in text for f in _NO_SPACE)
    if not no_space and code is None and "inline_container" in text:
        no_space = _free_bytes(path) < 1 << 20
        if not no_space:
            return BertLotteryError(f"writing {path} failed ({text.splitlines()[0][:200]})")
    if no_space:
        return BertLotteryError(f"no space left on device while writing {path}; free some space and rerun")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or any(f in text for f in _READ_ONLY):
        return BertLotteryError(f"{path} is read-only (cannot write there); make the folder writable or "
                                "choose another results folder")
    return None


def check_writable_folder(folder: str | os.PathLike, probe_bytes: int = 1 << 16) -> None:
    """Write, sync and remove a small probe file in `folder` (or, while it does not exist, in the nearest
    folder above it; nothing is created): a read-only or full results folder is then one named error
    before any job (under Snakemake, which would otherwise fail creating the jobs' output folders with a
    long traceback)."""
    path = Path(folder)
    existing = next((p for p in (path, *path.absolute().parents) if p.is_dir()), Path("."))
    probe = existing / f".write-check.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        try:
            with open(probe, "wb") as handle:
                handle.write(bytes(probe_bytes))
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise (write_error(path, exc) or BertLotteryError(f"{path}: cannot write there ({exc})")) from None


def _free_bytes(path: Path) -> int:
    for folder in (path.parent, *path.parents):
        try:
            stats = os.statvfs(folder)
            return stats.f_bavail * stats.f_frsize
        except OSError:
            continue
    return 1 << 62


@contextmanager
def _named_write_errors(path: Path) -> Iterator[None]:
    """Turn a disk-full or read-only failure of the body into a BertLotteryError naming `path`."""
    try:
        yield
    except BertLotteryError:
        raise
    except Exception as exc:
        error = write_error(path, exc)
        if error is None:
            raise
        raise error from exc


def _make_parent(path: Path) -> None:
    with _named_write_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)


def _temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path` (.<name>.<random>.tmp): concurrent writers never share one."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the body to write; then fsync, chmod and os.replace it.

    The parent folder is created. Writers that create owner-only files (safetensors does) get the
    mode a plain open() would give, so every output has the same permissions. A full disk or a read-only
    folder is a BertLotteryError naming `path`; no temporary file is left either way.
    """
    path = Path(path)
    _make_parent(path)
    while True:
        tmp = _temp_name(path)
        try:
            with _named_write_errors(path):
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        with _named_write_errors(path):
            yield tmp
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
            remove_temporaries(path)  # left by an earlier writer that was killed mid-write
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `directory`; then replace `directory` by it (any old one is
    removed first). On any error the temporary folder is removed; one a killed writer left behind (a
    folder is large, e.g. a saved model) is removed when the next writer starts."""
    directory = Path(directory)
    _make_parent(directory)
    for stale in directory.parent.glob(f".{directory.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = _temp_name(directory)
    try:
        with _named_write_errors(directory):
            tmp.mkdir()
            yield tmp
            mode = _umask_mode()
            for file in tmp.rglob("*"):  # writers that make owner-only files: the usual mode, as atomic_path
                if file.is_file():
                    os.chmod(file, mode)
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_temporaries(path: str | os.PathLike) -> None:
    """Remove what a killed writer of `path` may have left beside it (see `atomic_path`)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str, encoding: str | None = None) -> None:
    """Write text atomically (as Path.write_text)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write JSON atomically (indented, a final newline; numpy values and paths as plain JSON)."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BertLotteryError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise BertLotteryError(f"{path}: not valid JSON ({exc})") from None


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """torch tensors as one safetensors file (made contiguous), written atomically and byte-reproducibly."""
    from safetensors.torch import save

    blob = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(canonical_safetensors(blob))
    return Path(path)


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header in sorted key order (safetensors writes the
    metadata in hash-map order, which differs between processes): equal tensors and metadata give
    equal bytes, hence equal sha256. The tensor data and its offsets are unchanged."""
    (size,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text + blob[8 + size :]


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def damaged_file_error(path: str | os.PathLike, detail: object) -> BertLotteryError:
    """The error for a damaged, truncated or empty output file: its path and the fix."""
    detail = str(detail).splitlines()[0][:200] if str(detail) else type(detail).__name__
    return BertLotteryError(f"{path}: damaged, truncated or empty file ({detail}); delete it and rerun the "
                            "job that writes it (Snakemake: delete it and run the workflow again)")


def check_safetensors(path: str | os.PathLike) -> None:
    """Fail with `damaged_file_error` unless `path` is a whole safetensors file (reads its header only:
    safetensors checks the header against the file size)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:
        if isinstance(exc, FileNotFoundError):
            raise BertLotteryError(f"{path}: file not found") from None
        raise damaged_file_error(path, exc) from None


def looks_like_path(name: str) -> bool:
    """A model name that is a local path: it exists, starts like a path, or has more than one '/'
    (a hub id is `name` or `namespace/name`)."""
    return (Path(name).expanduser().exists() or name.startswith(("/", "./", "../", "~", "."))
            or name.count("/") > 1 or os.sep != "/" and os.sep in name)


def check_model_source(name: str) -> None:
    """A local model must be a folder holding config.json and whole weights; a hub id passes as is."""
    name = str(name)
    if not looks_like_path(name):
        return
    folder = Path(name).expanduser()
    if not folder.exists():
        raise BertLotteryError(f"{name}: model folder not found (expected a local save_pretrained folder "
                               "with config.json, weights and tokenizer files, or a hub id such as "
                               "bert-base-uncased)")
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise BertLotteryError(f"{name}: not a model folder (no config.json); expected a save_pretrained "
                               "folder with config.json, model.safetensors and tokenizer files")
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(weights)


def plain_path_problem(relative: str) -> str | None:
    """Why a path from an untrusted listing (a bundle's manifest entry, an archive member) is not a plain
    relative POSIX path, or None: absolute, '..', empty or '.' parts, a backslash or a NUL."""
    parts = relative.split("/")
    if relative.startswith("/") or PurePosixPath(relative).is_absolute():
        return "is absolute"
    if ".." in parts:
        return "contains '..'"
    if "" in parts or "." in parts or "\\" in relative or "\0" in relative:
        return "is not a plain relative path (empty or '.' parts, a backslash or a NUL)"
    return None


def read_regular_json(path: str | os.PathLike, limit: int, *, name: str, missing: str, hint: str = ""):
    """A JSON file from an untrusted folder (a bundle, a summary): a regular file, not a symlink, of at
    most `limit` bytes, parsed. Errors start with `name` ("bundle B: manifest.json"); `missing` is the
    whole message for a file that is not there, `hint` ends the one for a file that cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BertLotteryError(missing) from None
    except OSError as exc:  # ELOOP: a symlink
        raise BertLotteryError(f"{name} cannot be opened as a regular file ({exc.strerror}){hint}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BertLotteryError(f"{name} is not a regular file")
        if info.st_size > limit:
            raise BertLotteryError(f"{name} is {info.st_size} bytes; at most {limit} expected (refused unread)")
        raw = handle.read(limit + 1)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BertLotteryError(f"{name} is not valid JSON ({exc})") from None
