"""A bundle as one file: `<name>.tar.gz`, the bundle folder `<name>/` compressed (`bundle pack`, or `bundle
export --out <name>.tar.gz`). A study chunk's bundle is about 700 small files, 1 MiB of content that takes
4-5 MB of disk in 4 KiB blocks; as one archive it is about 0.2 MB. Everything that reads a bundle (verify,
unpack, the bundles workflow) takes the folder or the archive: an archive is unpacked into a scratch
folder that lives as long as the reading does.

An archive is untrusted input like a folder (docs/reliability.md, "Bundles as untrusted input"): before
anything is written, every member must be a regular file or a folder (no links, devices or pipes) under
one top folder, at a plain relative path, listed once, and the members' sizes must add up to at most
MAX_UNPACKED_BYTES. Its bytes are deterministic: members sorted, no times, owners or modes of this
machine, gzip without a timestamp."""

from __future__ import annotations

import gzip
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bertlottery.errors import BertLotteryError
from bertlottery.io import atomic_path, plain_path_problem

ARCHIVE_SUFFIX = ".tar.gz"
MAX_UNPACKED_BYTES = 8 * 2**30  # a BERT-base study's bundle with every m-mask bit-packed is under 1 GiB
MAX_MEMBERS = 1_000_000


def is_archive(bundle: str | os.PathLike) -> bool:
    """A bundle path names an archive when it ends with .tar.gz (a folder of that name is still a folder)."""
    return str(bundle).endswith(ARCHIVE_SUFFIX) and not Path(bundle).is_dir()


def manifest_input(bundle: str) -> str:
    """The file a workflow rule depends on for a bundle: the archive itself, or the folder's manifest.json."""
    return bundle if is_archive(bundle) else os.path.join(bundle, "manifest.json")


def write_archive(folder: Path, relatives: list[str], archive: Path) -> Path:
    """`folder`'s files `relatives` (POSIX paths) as a deterministic `archive`, under the top folder
    <archive name without .tar.gz>/, written atomically."""
    if not archive.name.endswith(ARCHIVE_SUFFIX) or archive.name == ARCHIVE_SUFFIX:
        raise BertLotteryError(f"{archive}: a bundle archive's name is <name>{ARCHIVE_SUFFIX}")
    top = archive.name[:-len(ARCHIVE_SUFFIX)]
    with atomic_path(archive) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative in sorted(relatives):
            member = tarfile.TarInfo(f"{top}/{relative}")
            member.size, member.mode = (folder / relative).stat().st_size, 0o644
            with open(folder / relative, "rb") as handle:
                tar.addfile(member, handle)
    return archive


def _member_problem(member: tarfile.TarInfo) -> str | None:
    if not (member.isfile() or member.isdir()):
        what = "a link" if member.issym() or member.islnk() else "not a regular file (a device or pipe)"
        return f"is {what}; a bundle holds regular files only"
    return plain_path_problem(member.name.removesuffix("/") if member.isdir() else member.name)


def _checked_members(tar: tarfile.TarFile, archive: Path) -> tuple[str, list[tarfile.TarInfo]]:
    """The archive's top folder and its file members, after every member passed the checks above."""
    members, tops, names, total = [], set(), set(), 0
    for count, member in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise BertLotteryError(f"bundle {archive}: more than {MAX_MEMBERS} members; refused")
        problem = _member_problem(member)
        if problem:
            raise BertLotteryError(f"bundle {archive}: member {member.name!r} {problem}; refused, nothing unpacked")
        name = member.name.rstrip("/")
        if name in names:
            raise BertLotteryError(f"bundle {archive}: member {name!r} is listed twice; refused, nothing unpacked")
        names.add(name)
        tops.add(name.split("/")[0])
        if member.isfile():
            if "/" not in name:
                raise BertLotteryError(f"bundle {archive}: member {name!r} is not inside the archive's top folder; "
                                       "refused, nothing unpacked")
            total += member.size
            if total > MAX_UNPACKED_BYTES:
                raise BertLotteryError(f"bundle {archive}: its members add up to more than {MAX_UNPACKED_BYTES} "
                                       "bytes; refused, nothing unpacked")
            members.append(member)
    if len(tops) != 1:
        raise BertLotteryError(f"bundle {archive}: expected one top folder (<name>/ of <name>{ARCHIVE_SUFFIX}), "
                               f"found {len(tops)}: {', '.join(sorted(tops)[:5]) or 'none'}")
    return tops.pop(), members


def extract(archive: Path, into: Path) -> Path:
    """Unpack a bundle archive into the empty folder `into`; returns the bundle folder (into/<top>)."""
    if not archive.is_file():
        raise BertLotteryError(f"{archive}: bundle archive not found")
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            top, members = _checked_members(tar, archive)
            for member in members:
                target = into / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "xb") as out:
                    while chunk := source.read(2**20):
                        out.write(chunk)
    except (tarfile.TarError, EOFError, OSError) as exc:  # a truncated or foreign file; a full scratch disk
        raise BertLotteryError(f"bundle {archive}: cannot be unpacked as a {ARCHIVE_SUFFIX} archive ({exc})") from None
    return into / top


@contextmanager
def bundle_folder(bundle: str | os.PathLike) -> Iterator[Path]:
    """The bundle as a folder for the body to read: a folder as it is, an archive unpacked into a scratch
    folder removed afterwards. Errors raised inside name the archive, not the scratch folder."""
    path = Path(bundle)
    if not is_archive(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bertlottery-bundle-") as scratch:
        folder = extract(path, Path(scratch))
        try:
            yield folder
        except BertLotteryError as exc:
            raise BertLotteryError(str(exc).replace(str(folder), str(path))) from None
