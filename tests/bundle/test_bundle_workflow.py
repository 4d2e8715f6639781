"""The whole round trip on the tiny whole-DAG run (conftest's session `tiny_run`): one bundle per task,
verified, then the analyses rebuilt from the bundles in a fresh working directory with no model, equal to
the original run's byte for byte, and `snakemake --report` from them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import FIXTURE_GLUE, REPO, TINY_CONFIG

from bertlottery.bundle.manifest import write_manifest

# What the bundles workflow may run: no data, fine-tuning, search, subnetwork or pattern-extraction job.
ANALYSIS_RULES = {"bundle_unpack", "aggregate", "mask_stats", "m_blocks", "paired_tests", "sensitivity", "claims",
                  "report_summary", "tables", "figure1", "figure2", "figure3", "figure5", "appendix_b", "patterns_summarize",
                  "subnetwork_speed", "all"}


def _bertlottery(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertlottery", *args], cwd=REPO, capture_output=True, text=True)


def _snakemake(workdir: Path, bundles: list[Path], *extra: str, config: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    listed = ", ".join(str(b) for b in bundles)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--cores", "2", *extra, "--config", f"bundles=[{listed}]", *config]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def _compared(results: Path) -> list[str]:
    """The tables (md, csv), claims (md, json) and analysis CSVs of a results tree."""
    files = [p for pattern in ("tables/*.md", "tables/*.csv", "analysis/*.csv", "analysis/claims.md",
                               "analysis/claims.json") for p in results.glob(pattern)]
    return sorted(str(p.relative_to(results)) for p in files)


@pytest.mark.slow
def test_analyses_from_bundles_equal_the_original_run(tiny_run, tiny_model_dir, tmp_path):
    results = tiny_run / "results"
    bundles = [tmp_path / "bundles" / task for task in ("SST-2", "MRPC")]
    for bundle in bundles:
        done = _bertlottery("bundle", "export", "--results", str(results), "--out", str(bundle), "--tasks",
                            bundle.name, "--m-kinds", "good", "--configfile", str(TINY_CONFIG),
                            "--config", f"model={tiny_model_dir}", f"glue_dir={FIXTURE_GLUE}")
        assert done.returncode == 0, done.stderr
        assert not list(bundle.rglob("model.safetensors")) and not list(bundle.rglob("splits"))
    verified = _bertlottery("bundle", "verify", *map(str, bundles))
    assert verified.returncode == 0, verified.stderr
    assert [line.split(":")[0] for line in verified.stdout.splitlines()] == [str(b) for b in bundles]

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    dry = _snakemake(fresh, bundles, "-n", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr
    planned = set(re.findall(r"^(\w+) +\d+$", dry.stdout + dry.stderr, re.MULTILINE)) - {"total"}
    assert planned and planned <= ANALYSIS_RULES, planned - ANALYSIS_RULES
    # other config beside `bundles` would be ignored: refused, naming it
    extra = _snakemake(fresh, bundles, "-n", config=("seeds=[1]",))
    assert extra.returncode != 0 and "config seeds: not used with config `bundles`" in extra.stdout + extra.stderr
    # a bundle that lacks a file the analyses read (a chunk exported unfinished): refused before any job
    incomplete = tmp_path / "incomplete" / "MRPC"
    shutil.copytree(bundles[1], incomplete)
    lacking = next(incomplete.glob("eval/s/bad/MRPC/seed*/pruned.json"))
    lacking.unlink()
    write_manifest(incomplete)
    short = _snakemake(fresh, [bundles[0], incomplete], "-n")
    said = short.stdout + short.stderr
    assert short.returncode != 0 and "1 file(s) the analyses read are in none of them" in said, said
    assert str(Path("results") / lacking.relative_to(incomplete)) in said
    lint = _snakemake(fresh, bundles, "--lint")
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    run = _snakemake(fresh, bundles)
    assert run.returncode == 0, run.stderr[-4000:]
    assert not list((fresh / "results").rglob("model.safetensors"))

    original, rebuilt = _compared(results), _compared(fresh / "results")
    assert original == rebuilt and "analysis/claims.json" in rebuilt and "tables/table2.md" in rebuilt
    differing = [name for name in original
                 if (results / name).read_bytes() != (fresh / "results" / name).read_bytes()]
    assert not differing, f"differ from the original run: {differing}"
    assert json.loads((fresh / "results" / "analysis" / "claims.json").read_text())

    report = _snakemake(fresh, bundles, "--report", str(fresh / "report.html"))
    assert report.returncode == 0, report.stderr[-4000:]
    assert (fresh / "report.html").stat().st_size > 10_000
    assert "What ran." in (fresh / "report.html").read_text()  # the landing page opens on the summary


@pytest.mark.slow
def test_analyses_from_summary_bundles_equal_the_original_run(tiny_run, tiny_model_dir, tmp_path):
    """`bundle export --m-masks summary`: the good m-masks' summaries in their place (here SST-2's; MRPC's
    bundle keeps the masks, so both forms are read in one run). m_blocks reads the summaries, and every
    table, claim and analysis CSV equals the original run's byte for byte. SST-2's bundle is exported as an
    archive (`--out SST-2.tar.gz`), so the workflow reads an archive and a folder together."""
    results = tiny_run / "results"
    bundles = [tmp_path / "bundles" / "SST-2.tar.gz", tmp_path / "bundles" / "MRPC"]
    for bundle, task, form in zip(bundles, ("SST-2", "MRPC"), ("summary", "full")):
        done = _bertlottery("bundle", "export", "--results", str(results), "--out", str(bundle), "--tasks",
                            task, "--m-kinds", "good", "--m-masks", form, "--configfile", str(TINY_CONFIG),
                            "--config", f"model={tiny_model_dir}", f"glue_dir={FIXTURE_GLUE}")
        assert done.returncode == 0, done.stderr
    with tarfile.open(bundles[0]) as archive:
        members = archive.getnames()
    assert all(name.startswith("SST-2/") for name in members) and "SST-2/manifest.json" in members
    assert not [n for n in members if re.fullmatch(r"SST-2/masks/m/.*\.safetensors", n)]
    assert [n for n in members if re.fullmatch(r"SST-2/masks/m/SST-2/seed\d+/good\.summary\.json", n)]
    assert list(bundles[1].glob("masks/m/*/*/good.safetensors"))
    verified = _bertlottery("bundle", "verify", *map(str, bundles))
    assert verified.returncode == 0, verified.stderr

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    dry = _snakemake(fresh, bundles, "-n", "--printshellcmds", "results/analysis/m_blocks.csv")
    said = dry.stdout + dry.stderr
    assert dry.returncode == 0, said
    command = next(line for line in said.splitlines() if "stats m-blocks" in line)
    assert "results/masks/m/SST-2/seed" in command and "good.summary.json" in command
    assert "results/masks/m/MRPC/seed" in command and "good.safetensors" in command
    run = _snakemake(fresh, bundles)
    assert run.returncode == 0, run.stderr[-4000:]
    assert not list((fresh / "results").glob("masks/m/SST-2/*/good.safetensors"))

    original, rebuilt = _compared(results), _compared(fresh / "results")
    assert original == rebuilt and "analysis/m_blocks.csv" in rebuilt
    differing = [name for name in original
                 if (results / name).read_bytes() != (fresh / "results" / name).read_bytes()]
    assert not differing, f"differ from the original run: {differing}"
