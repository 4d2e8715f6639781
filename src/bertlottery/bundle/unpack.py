"""`bundle unpack`: the results files of one or more bundles restored under a results root, m-masks
unpacked to the normal WeightMask files, so the analyses run as after the original run. A bundle exported
with `--m-masks summary` holds each m-mask's summary in its place: restored as it is (<kind>.summary.json
beside the mask's path), which the m-block analysis reads; the mask itself is not there (an analysis that
needs it says how to regenerate it). The bundles' benchmarks stay in the bundles (they are the original
run's compute record, not inputs), unless asked for (`--benchmarks`: a chunk continued from its partial bundle,
to be exported whole again)."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

from bertlottery.bundle.archive import bundle_folder
from bertlottery.bundle.manifest import BUNDLE_INFO, read_manifest, verify
from bertlottery.bundle.packing import is_packed, unpack_weight_mask
from bertlottery.errors import BertLotteryError
from bertlottery.io import atomic_path

SKIPPED = ("benchmarks/",)


def restored_files(bundle: str | Path, manifest: dict | None = None, benchmarks: bool = False) -> list[str]:
    """The paths (under a results root) that `unpack` writes from this bundle, as its manifest lists them
    (read here when not given; `verify` is what checks the files); the benchmarks too with `benchmarks`."""
    manifest = manifest or read_manifest(bundle)
    skipped = () if benchmarks else SKIPPED
    return [e["path"] for e in manifest["files"] if e["path"] != BUNDLE_INFO and not e["path"].startswith(skipped)]


def unpack(bundles: list[str], results: str, benchmarks: bool = False) -> int:
    """Verify every bundle (folder or archive), then restore their files under `results` (their benchmarks
    too with `benchmarks`); returns the number of files written. The same path in two bundles must hold the
    same bytes (an error naming both otherwise)."""
    with ExitStack() as stack:  # archives stay unpacked until every file is copied
        folders = [stack.enter_context(bundle_folder(bundle)) for bundle in bundles]
        return _restore(list(zip(bundles, folders)), Path(results), benchmarks)


def _restore(bundles: list[tuple[str, Path]], results: Path, benchmarks: bool) -> int:
    sources: dict[str, tuple[str, str]] = {}  # path -> (bundle, sha256)
    plan = []
    for bundle, folder in bundles:
        manifest = verify(folder)
        digests = {e["path"]: e["sha256"] for e in manifest["files"]}
        for relative in restored_files(folder, manifest, benchmarks):
            if relative in sources:
                other, digest = sources[relative]
                if digest != digests[relative]:
                    raise BertLotteryError(f"bundles {other} and {bundle} both hold {relative}, with different "
                                           "contents; analyse them separately")
                continue
            sources[relative] = (bundle, digests[relative])
            plan.append((folder / relative, results / relative))
    for source, target in plan:
        if source.suffix == ".safetensors" and is_packed(source):
            unpack_weight_mask(source, target)
        else:
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    return len(plan)
