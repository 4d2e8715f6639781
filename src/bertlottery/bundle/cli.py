"""`python -m bertlottery bundle {export,masks,verify,pack,unpack}` (README "Sharing a study: bundles")."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bertlottery.bundle.archive import ARCHIVE_SUFFIX, is_archive, write_archive
from bertlottery.bundle.config import FULL, M_MASK_FORMS
from bertlottery.bundle.export import M_KINDS, export, export_run_masks, weight_masks_read_by
from bertlottery.bundle.manifest import MANIFEST, verify
from bertlottery.bundle.unpack import unpack
from bertlottery.errors import BertLotteryError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertlottery bundle", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    ex = sub.add_parser("export", help="write a chunk's small artifacts and a sha256 manifest into a new folder")
    ex.add_argument("--results", default="results", help="the workflow's results folder (default: results)")
    ex.add_argument("--out", required=True, help=f"the bundle folder to write (new or empty), or an archive "
                                                 f"<name>{ARCHIVE_SUFFIX} (one file, about a twentieth of the disk)")
    ex.add_argument("--tasks", nargs="+", help="tasks to export (default: every task with results)")
    ex.add_argument("--m-kinds", nargs="+", default=list(M_KINDS), choices=M_KINDS,
                    help="m-masks to include (default: all; the analyses read only good)")
    ex.add_argument("--m-masks", choices=M_MASK_FORMS, default=FULL,
                    help="what the bundle holds of each m-mask: full, the mask bit-packed (default; MiniLM: "
                         "1.34 MB a mask), or summary, only its per-block counts, size, parameters and sha256 "
                         "(<kind>.summary.json, a few KB), which is what the analyses read; the mask itself is "
                         "regenerated from the run when needed (the summary names the command)")
    ex.add_argument("--configfile", nargs="+", default=[],
                    help="the run's config file(s), as given to snakemake (recorded resolved in bundle.json; "
                         "without it the config is rebuilt from the results)")
    ex.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                    help="the run's --config overrides, as given to snakemake (e.g. model=... glue_dir=...)")
    ma = sub.add_parser("masks", help="write the weight masks that unfinished retrainings read, bit-packed, as a "
                                      "bundle (none written when they read none): with a partial bundle (--m-masks "
                                      "summary), what a chunk needs to go on on another machine (`bundle unpack` "
                                      "restores them, checked)")
    ma.add_argument("--results", default="results", help="the workflow's results folder (default: results)")
    ma.add_argument("--runs", required=True, help="a file of the unfinished retrainings' metrics paths, one a line "
                                                  "(results/retrain/<family>/<variant>/<task>/seed<S>/metrics.json)")
    ma.add_argument("--out", required=True, help=f"the bundle folder or archive <name>{ARCHIVE_SUFFIX} to write")
    ve = sub.add_parser("verify", help="check bundles against their manifests")
    ve.add_argument("bundles", nargs="+")
    pa = sub.add_parser("pack", help=f"write each bundle folder as one archive <folder>{ARCHIVE_SUFFIX} (verified "
                                      "before and after; the folder is left as it is)")
    pa.add_argument("folders", nargs="+")
    un = sub.add_parser("unpack", help="verify bundles and restore their results files (m-masks unpacked; "
                                       "m-mask summaries restored as they are)")
    un.add_argument("--results", default="results", help="the results folder to restore into (default: results)")
    un.add_argument("--benchmarks", action="store_true",
                    help="restore the bundles' per-job benchmarks too: a chunk continued from its partial bundle on "
                         "another machine, to be exported whole again (docs/results/minilm/README.md)")
    un.add_argument("bundles", nargs="+")
    return parser


def pack(folder: str, archive: str) -> dict:
    """The bundle folder as one archive: checked against its manifest, written, and the archive checked."""
    manifest = verify(folder)
    write_archive(Path(folder), [MANIFEST] + [e["path"] for e in manifest["files"]], Path(archive))
    return verify(archive)


def _written(write, out: str) -> dict:
    """`write(folder)` into the bundle `out`: the folder itself, or for an archive a scratch folder then packed."""
    if not is_archive(out):
        return write(out)
    with tempfile.TemporaryDirectory(prefix="bertlottery-export-") as scratch:
        folder = str(Path(scratch) / Path(out).name[:-len(ARCHIVE_SUFFIX)])
        info = write(folder)
        pack(folder, out)
    return info


def main_bundle(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    if args.action == "export":
        options = dict(tasks=args.tasks, m_kinds=args.m_kinds, m_masks=args.m_masks, configfiles=args.configfile,
                       overrides=args.config)
        info = _written(lambda folder: export(args.results, folder, **options), args.out)
        print(f"{args.out}: bundle of {info['files']} files, tasks {' '.join(info['tasks'])}, "
              f"seeds {' '.join(map(str, info['seeds']))}, m-masks {info['m_masks']} "
              f"(config {info['config_source']})")
    elif args.action == "masks":
        if not Path(args.runs).is_file():
            raise BertLotteryError(f"--runs {args.runs}: file not found; expected the unfinished retrainings' "
                                   "metrics paths, one a line (a partial bundle's <TASK>.remaining.txt)")
        runs = Path(args.runs).read_text().split()
        masks = weight_masks_read_by(runs)
        if not masks:  # nothing a summary bundle lacks: no file, so none is committed
            print(f"{args.out}: not written; none of the {len(runs)} retraining(s) in {args.runs} reads a weight mask")
            return
        _written(lambda folder: export_run_masks(args.results, masks, folder), args.out)
        print(f"{args.out}: {len(masks)} weight mask(s) that {len(runs)} unfinished retraining(s) read, bit-packed")
    elif args.action == "verify":
        for bundle in args.bundles:
            manifest = verify(bundle)
            size = sum(e["size"] for e in manifest["files"])
            print(f"{bundle}: OK ({len(manifest['files'])} files, {size / 2**20:.2f} MiB, manifest matches)")
    elif args.action == "pack":
        for folder in args.folders:
            archive = folder.rstrip("/") + ARCHIVE_SUFFIX
            manifest = pack(folder, archive)
            print(f"{archive}: {len(manifest['files'])} files of {folder}, {Path(archive).stat().st_size / 2**20:.2f} "
                  "MiB, verified")
    else:
        count = unpack(args.bundles, args.results, benchmarks=args.benchmarks)
        print(f"{args.results}: {count} files restored from {len(args.bundles)} bundle(s)")
