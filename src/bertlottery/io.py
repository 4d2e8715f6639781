"""Atomic file writes and JSON files: a killed job never leaves half a file behind.

Every writer goes through `atomic_path`: it hands out a temporary file in the target's folder, and when
the body finishes the temporary file is flushed to disk (fsync), given the usual umask-based mode and
renamed onto the target with os.replace; on any error it is removed and the target is left as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bertlottery.errors import BertLotteryError


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path` (.<name>.<random>.tmp): concurrent writers never share one."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the body to write; then fsync, chmod and os.replace it.

    The parent folder is created. Writers that create owner-only files (safetensors does) get the
    mode a plain open() would give, so every output has the same permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(path)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `directory`; then replace `directory` by it (any old one is
    removed first). On any error the temporary folder is removed; one a killed writer left behind (a
    folder is large, e.g. a saved model) is removed when the next writer starts."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = _temp_name(directory)
    tmp.mkdir()
    try:
        yield tmp
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
    """torch tensors as one safetensors file (made contiguous), written atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
