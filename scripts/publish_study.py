"""Rebuild a study's analyses from its bundles and copy what a reader needs next to them.

    python scripts/publish_study.py docs/results/minilm            # bundles in docs/results/minilm/bundles/*

Runs the workflow in bundle mode (config `bundles`, no model needed) in a scratch working directory, then
copies into the study folder: claims.md, metrics.csv (one row per run) and summary.csv, the statistics
(stability, overlaps, survivors, paired tests, m-blocks) as CSV, every table as Markdown and every figure
as PNG. The README.md of the folder is written by hand, except two parts rewritten from the results: the
claims table between `<!-- claims:start -->` and `<!-- claims:end -->` (from claims.json: one row per
claim, verdict and numbers on this study, verdict on the paper's numbers) and the per-task scores between
`<!-- scores:start -->` and `<!-- scores:end -->` (from summary.csv: every family's good, random and bad
masks, pruned and retrained, beside the paper's numbers). Exit status: Snakemake's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bertlottery.bundle.archive import ARCHIVE_SUFFIX

REPO = Path(__file__).resolve().parent.parent
ANALYSIS_FILES = ["claims.md", "metrics.csv", "summary.csv", "stability.csv", "stability_pairs.csv", "overlaps.csv",
                  "survivors.csv", "paired_tests.csv", "m_blocks.csv", "sensitivity.csv"]
ANALYSIS_FILES += [f"f_{name}" for name in ("stability.csv", "stability_pairs.csv", "survivors.csv", "overlaps.csv")]


def rebuild(bundles: list[Path], workdir: Path, cores: int) -> int:
    """The analysis and report stages from the bundles, in `workdir` (results/ there)."""
    listed = ", ".join(str(b.resolve()) for b in bundles)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", str(cores), "--config", f"bundles=[{listed}]"]
    return subprocess.run(command, cwd=REPO).returncode


def publish(results: Path, study: Path) -> list[Path]:
    """Copy the reader's files of a results tree into the study folder; returns the files written. The
    study's tables and figures are replaced, so none is left from an earlier publish."""
    for folder, pattern in (("tables", "*.md"), ("figures", "*.png")):
        for stale in (study / folder).glob(pattern):
            stale.unlink()
    written = []
    for name in ANALYSIS_FILES:
        if (results / "analysis" / name).is_file():
            written.append(_copy(results / "analysis" / name, study / name))
    for source, pattern, target in (("tables", "*.md", "tables"), ("figures", "*.png", "figures")):
        for path in sorted((results / source).glob(pattern)):
            written.append(_copy(path, study / target / path.name))
    return written


CLAIMS_START, CLAIMS_END = "<!-- claims:start -->", "<!-- claims:end -->"
SCORES_START, SCORES_END = "<!-- scores:start -->", "<!-- scores:end -->"


def claims_table(claims_json: Path) -> str:
    """A Markdown table of the claims check: section, claim, verdict and reason here, verdict on the paper's."""
    from bertlottery.analysis.claims_report import MARK

    rows = ["| § | claim | here | effect and uncertainty | on the paper's numbers |", "|---|---|---|---|---|"]
    for claim in json.loads(claims_json.read_text())["claims"]:
        paper = claim["paper_verdict"]
        cells = [claim["section"], claim["claim"], f"**{MARK[claim['verdict']]} {claim['verdict']}**", claim["reason"],
                 f"{MARK[paper]} {paper}" if paper in MARK else paper]
        rows.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(rows)


def scores_tables(summary_csv: Path) -> str:
    """Per task, every family's scores beside the paper's (tables.scores_by_task_markdown)."""
    from bertlottery.analysis.aggregate import load_paper, read_table
    from bertlottery.analysis.tables import scores_by_task_markdown

    return scores_by_task_markdown(read_table(summary_csv), load_paper())


def _replace_between(text: str, start_marker: str, end_marker: str, body: str) -> str | None:
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        return None
    return text[: start + len(start_marker)] + "\n" + body + "\n" + text[end:]


def update_readme(readme: Path, results: Path) -> list[str]:
    """Rewrite the generated parts of a hand-written README from a rebuild's results: the claims table and
    the per-task scores, each between its markers; returns the parts rewritten (none without markers)."""
    if not readme.is_file():
        return []
    text, done = readme.read_text(), []
    for name, (start, end), source, render in (
            ("claims table", (CLAIMS_START, CLAIMS_END), results / "analysis" / "claims.json", claims_table),
            ("scores", (SCORES_START, SCORES_END), results / "analysis" / "summary.csv", scores_tables)):
        if source.is_file() and (new := _replace_between(text, start, end, render(source))) is not None:
            text = new
            done.append(name)
    if done:
        readme.write_text(text)
    return done


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def find_bundles(folder: Path) -> list[Path]:
    """The bundles in a study's bundles/ folder, sorted: folders with a manifest.json, and archives."""
    return sorted(p for p in folder.iterdir()
                  if (p / "manifest.json").is_file() or (p.is_file() and p.name.endswith(ARCHIVE_SUFFIX)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="the study folder, with bundles/<chunk>/ or "
                                                 "bundles/<chunk>.tar.gz inside")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", type=Path, help="rebuild here (kept) instead of a temporary directory")
    args = parser.parse_args(argv)
    bundles = find_bundles(args.study / "bundles")
    if not bundles:
        parser.error(f"{args.study / 'bundles'}: no bundle (a folder with manifest.json, or a {ARCHIVE_SUFFIX} "
                     "archive) found")
    with tempfile.TemporaryDirectory(prefix="publish-") as scratch:
        workdir = (args.keep or Path(scratch)).resolve()  # Snakemake runs from the repository
        status = rebuild(bundles, workdir, args.cores)
        if status != 0:
            return status
        claims = workdir / "results" / "analysis" / "claims.json"
        if not claims.is_file():
            print(f"error: {claims}: not written by the rebuild; nothing published", file=sys.stderr)
            return 1
        for path in publish(workdir / "results", args.study):
            print(path)
        if done := update_readme(args.study / "README.md", workdir / "results"):
            print(args.study / "README.md", f"({', '.join(done)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
