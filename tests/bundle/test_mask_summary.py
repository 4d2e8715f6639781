"""`bundle export --m-masks summary`: each m-mask's summary in its place (bertlottery.masks.summary), on a
results tree built in code with masks that fit a small BERT. The m-block table from the summaries equals
the one from the full masks byte for byte; a tampered or malformed summary is refused; an analysis that
needs a full mask that is absent names it, the command that regenerates it and its sha256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY

from bertlottery.analysis.m_blocks import m_block_table
from bertlottery.analysis.stats import main_stats
from bertlottery.bundle.cli import main_bundle
from bertlottery.bundle.config import bundle_info
from bertlottery.bundle.export import export
from bertlottery.bundle.manifest import BUNDLE_INFO, MANIFEST, verify, write_manifest
from bertlottery.bundle.unpack import unpack
from bertlottery.errors import BertLotteryError
from bertlottery.io import file_sha256
from bertlottery.layout import Layout
from bertlottery.masks.summary import MAX_SUMMARY_BYTES, read_summary
from bertlottery.masks.types import WeightMask, load_any_mask
from bertlottery.modeling.structure import meta_model, prunable_parameters

L = Layout("results")
TASKS, SEEDS = ("RTE", "CoLA"), (1, 2)


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative.removeprefix("results/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _random_mask(generator: torch.Generator, keep: float) -> WeightMask:
    shapes = {name: p.shape for name, p in prunable_parameters(meta_model(TINY)).items()}
    return WeightMask({name: torch.rand(shape, generator=generator) < keep for name, shape in shapes.items()})


def _results(root: Path) -> Path:
    """A finished run's small files: data cards, full metrics, each fine-tuned model's config.json (conftest's
    TINY BERT: 3 layers x 4 heads) and its m-masks, as the m-search writes them (metadata included)."""
    generator = torch.Generator().manual_seed(0)
    for task in TASKS:
        _write(root, L.data_card(task), json.dumps({"task": task, "tokenizer": "some/model", "max_seq_length": 64}))
        for seed in SEEDS:
            _write(root, L.full_metrics(task, seed), json.dumps({"task": task, "seed": seed}))
            config = root / L.finetuned_model_config(task, seed).removeprefix("results/")
            config.parent.mkdir(parents=True, exist_ok=True)
            TINY.to_json_file(config)
            for kind, keep in (("good", 0.6), ("random", 0.6), ("bad", 0.4)):
                _random_mask(generator, keep).save(root / L.mask_file("m", task, seed, kind).removeprefix("results/"),
                                                   task=task, seed=seed, family="m", kind=kind)
                _write(root, L.retrain_metrics("m", kind, task, seed), json.dumps({"task": task, "seed": seed}))
    return root


def _m_blocks(paths: list[Path], config: Path, out: Path) -> dict[str, bytes]:
    """`stats m-blocks` as the workflow's m_blocks rule runs it: the bytes of its CSV and parquet."""
    main_stats(["m-blocks", "--m-masks", *map(str, paths), "--model-config", str(config), "--output", str(out)])
    return {suffix: out.with_suffix(suffix).read_bytes() for suffix in (".csv", ".parquet")}


@pytest.fixture
def exported(tmp_path):
    """The same run exported twice, `--m-masks full` and `--m-masks summary` (good masks), both unpacked."""
    results = _results(tmp_path / "results")
    study = tmp_path / "study.yaml"
    study.write_text("tasks: [RTE, CoLA]\nseeds: [1, 2]\nretrain: {families: [m]}\ntraining: {max_seq_length: 64}\n")
    for form in ("full", "summary"):
        main_bundle(["export", "--results", str(results), "--out", str(tmp_path / form), "--m-kinds", "good",
                     "--m-masks", form, "--configfile", str(study), "--config", "model=some/model"])
        unpack([str(tmp_path / form)], str(tmp_path / f"{form}-restored"))
    return tmp_path


def test_summary_bundle_gives_the_m_blocks_of_the_full_masks_byte_for_byte(exported):
    tmp = exported
    relative = [f"masks/m/{task}/seed{seed}/good" for task in TASKS for seed in SEEDS]
    config = tmp / "full-restored" / "finetune/RTE/seed1/model/config.json"
    full = _m_blocks([tmp / "full-restored" / f"{r}.safetensors" for r in relative], config, tmp / "a" / "m_blocks.csv")
    summaries = [tmp / "summary-restored" / f"{r}.summary.json" for r in relative]
    summarized = _m_blocks(summaries, tmp / "summary-restored" / "finetune/RTE/seed1/model/config.json",
                           tmp / "b" / "m_blocks.csv")
    assert full == summarized
    table = m_block_table(summaries, config)
    assert sorted(table[["task", "seed"]].drop_duplicates().itertuples(index=False)) == \
        sorted((task, seed) for task in TASKS for seed in SEEDS)
    assert 0.3 < table["fraction"].mean() < 0.9

    # what each bundle holds, and says it holds
    assert bundle_info(str(tmp / "full"))["m_masks"] == "full"
    assert bundle_info(str(tmp / "summary"))["m_masks"] == "summary"
    assert not list((tmp / "summary").rglob("masks/m/**/*.safetensors"))
    assert not list((tmp / "summary-restored").glob("masks/m/*/*/*.safetensors"))
    assert len(list((tmp / "summary-restored").glob("masks/m/*/*/good.summary.json"))) == 4
    verify(tmp / "full")
    verify(tmp / "summary")

    # the summary: what the run wrote, identified
    summary = read_summary(summaries[0])
    original = tmp / "results" / "masks/m/RTE/seed1/good.safetensors"
    mask = WeightMask.load(original)
    assert summary["sha256"] == file_sha256(original) and summary["bytes"] == original.stat().st_size
    assert summary["mask"] == "masks/m/RTE/seed1/good.safetensors"
    assert (summary["kept"], summary["total"]) == (mask.kept, mask.total)
    assert summary["sparsity"] == pytest.approx(1 - mask.kept / mask.total)
    assert summary["meta"] == mask.meta and summary["meta"]["task"] == "RTE"
    assert summary["parameters"] == {name: list(m.shape) for name, m in mask.masks.items()}
    assert len(summary["blocks"]["head_kept"]) == TINY.num_hidden_layers
    assert summary["model_config"]["path"] == "finetune/RTE/seed1/model/config.json"
    assert summary["regenerate"] == (f"snakemake results/masks/m/RTE/seed1/good.safetensors --cores 1 --configfile "
                                     f"{tmp / 'study.yaml'} --config model=some/model")


def test_a_tampered_summary_is_refused(exported):
    bundle = exported / "summary"
    path = bundle / "masks/m/RTE/seed1/good.summary.json"
    summary = json.loads(path.read_text())
    summary["blocks"]["head_kept"][0][0] -= 1
    path.write_text(json.dumps(summary, indent=2) + "\n")
    with pytest.raises(BertLotteryError, match=r"good.summary.json: changed"):
        verify(bundle)
    # with the manifest rewritten to match, the counts themselves are checked when read
    summary["blocks"]["head_kept"][0][0] = summary["blocks"]["head_total"][0][0] + 1
    path.write_text(json.dumps(summary))
    write_manifest(bundle)
    verify(bundle)
    config = bundle / "finetune/RTE/seed1/model/config.json"
    with pytest.raises(BertLotteryError, match="good.summary.json: mask summary: a kept count exceeds its total"):
        m_block_table([path], config)
    summary["blocks"]["head_total"][0][0] += 5
    path.write_text(json.dumps(summary))
    with pytest.raises(BertLotteryError, match=r"blocks.head_total, blocks.mlp_total\) are not those of the model"):
        m_block_table([path], config)
    name = next(iter(summary["parameters"]))
    summary["parameters"][name] = [1, 2]
    path.write_text(json.dumps(summary))
    with pytest.raises(BertLotteryError, match=rf"summarized weight mask for '{name}' has shape \[1, 2\]"):
        m_block_table([path], config)
    for broken, message in (({**summary, "sha256": "abc"}, r"mask summary key sha256: 'abc' does not match"),
                            ({**summary, "blocks": {"head_kept": "x"}}, r"mask summary key blocks"),
                            ({k: v for k, v in summary.items() if k != "meta"}, "'meta' is a required property")):
        path.write_text(json.dumps(broken))
        with pytest.raises(BertLotteryError, match=message):
            read_summary(path)
    path.write_text("{not json")
    with pytest.raises(BertLotteryError, match="mask summary is not valid JSON"):
        read_summary(path)
    path.write_text(" " * (MAX_SUMMARY_BYTES + 1))
    with pytest.raises(BertLotteryError, match="refused unread"):
        read_summary(path)


def test_a_missing_full_mask_names_the_command_that_regenerates_it(exported):
    restored = exported / "summary-restored"
    mask = restored / "masks/m/CoLA/seed2/good.safetensors"
    sha256 = file_sha256(exported / "results" / "masks/m/CoLA/seed2/good.safetensors")
    config = restored / "finetune/RTE/seed1/model/config.json"
    for load in (WeightMask.load, load_any_mask, lambda path: m_block_table([path], config)):
        with pytest.raises(BertLotteryError) as error:
            load(mask)
        message = str(error.value)
        assert message.startswith(f"{mask}: mask file not found: the study bundle it came from kept only its summary")
        assert "snakemake results/masks/m/CoLA/seed2/good.safetensors --cores 1 --configfile " in message
        assert f"check `sha256sum {mask}` prints {sha256}" in message
    # no summary beside it: the plain error
    with pytest.raises(BertLotteryError, match=r"seed2/random.safetensors: mask file not found$"):
        WeightMask.load(restored / "masks/m/CoLA/seed2/random.safetensors")


def test_summary_export_without_a_config_file_and_without_the_model_config(tmp_path):
    results = _results(tmp_path / "results")
    info = export(str(results), str(tmp_path / "b"), tasks=["RTE"], m_masks="summary")
    assert info["m_masks"] == "summary" and info["m_kinds"] == ["good", "random", "bad"]
    summary = read_summary(tmp_path / "b" / "masks/m/RTE/seed2/bad.summary.json")
    assert summary["regenerate"] == ("snakemake results/masks/m/RTE/seed2/bad.safetensors --cores 1 "
                                     "--configfile <the run's config file>")
    sizes = [p.stat().st_size for p in (tmp_path / "b").rglob("*.summary.json")]
    assert len(sizes) == 6 and max(sizes) < 8000
    (results / "finetune/RTE/seed1/model/config.json").unlink()
    with pytest.raises(BertLotteryError, match=r"seed1/model/config.json: not found; `--m-masks summary` counts"):
        export(str(results), str(tmp_path / "c"), tasks=["RTE"], m_masks="summary")
    with pytest.raises(BertLotteryError, match="--m-masks half: expected one of full summary"):
        export(str(results), str(tmp_path / "d"), m_masks="half")


def test_a_chunk_continued_from_its_partial_summary_bundle_exports_as_the_whole_run(tmp_path):
    """A chunk exported partway (`--m-masks summary`), restored on a fresh machine with its benchmarks,
    continued (one more retraining) and exported again holds what exporting the whole run at once holds."""
    results = _results(tmp_path / "results")
    _write(results, "benchmarks/finetune/RTE/seed1.tsv", "s\tcpu_time\n1.0\t2.0\n")
    late = results / L.retrain_metrics("m", "bad", "RTE", 2).removeprefix("results/")
    late_text = late.read_text()
    late.unlink()  # not run yet when the chunk was saved
    export(str(results), str(tmp_path / "partial"), tasks=["RTE"], m_kinds=["good"], m_masks="summary")

    restored = tmp_path / "fresh"
    unpack([str(tmp_path / "partial")], str(restored), benchmarks=True)
    assert (restored / "benchmarks/finetune/RTE/seed1.tsv").is_file()
    assert not list(restored.rglob("masks/m/**/*.safetensors"))
    late.write_text(late_text)  # the run finishes: on the original machine, and on the fresh one
    _write(restored, L.retrain_metrics("m", "bad", "RTE", 2), late_text)
    export(str(results), str(tmp_path / "whole"), tasks=["RTE"], m_kinds=["good"], m_masks="summary")
    export(str(restored), str(tmp_path / "continued"), tasks=["RTE"], m_kinds=["good"], m_masks="summary")

    def contents(bundle: Path) -> dict[str, bytes]:
        return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*")
                if p.is_file() and p.name not in (BUNDLE_INFO, MANIFEST)}
    whole, continued = contents(tmp_path / "whole"), contents(tmp_path / "continued")
    assert L.retrain_metrics("m", "bad", "RTE", 2).removeprefix("results/") in continued
    assert len(continued) > 10 and continued == whole
    verify(tmp_path / "continued")

    # a restored summary stands for a mask that is not here: a full export says so instead of dropping it
    with pytest.raises(BertLotteryError, match=r"RTE/seed1/good.summary.json: only the summary of this m-mask is "
                                               r"here \(restored from a summary bundle\), not the mask; export "
                                               r"with --m-masks summary"):
        export(str(restored), str(tmp_path / "full"), tasks=["RTE"], m_kinds=["good"], m_masks="full")


def test_the_m_masks_of_unfinished_retrainings_travel_as_a_checked_bundle(tmp_path, capsys):
    """`bundle masks`: the weight masks a partial summary bundle lacks, read by the unfinished retrainings,
    bit-packed with a manifest; restored byte for byte, a tampered one refused; none read, nothing written."""
    results = _results(tmp_path / "results")
    runs = tmp_path / "RTE.remaining.txt"
    runs.write_text("\n".join([L.retrain_metrics("m", "bad", "RTE", 2), L.retrain_metrics("m", "good", "RTE", 2),
                               L.retrain_metrics("s", "bad_6ep", "RTE", 2), ""]))
    archive = tmp_path / "RTE.m_masks.tar.gz"
    main_bundle(["masks", "--results", str(results), "--runs", str(runs), "--out", str(archive)])
    assert "2 weight mask(s) that 3 unfinished retraining(s) read" in capsys.readouterr().out
    restored = tmp_path / "fresh"
    unpack([str(archive)], str(restored))
    wanted = [L.mask_file("m", "RTE", 2, kind).removeprefix("results/") for kind in ("bad", "good")]
    assert sorted(p.relative_to(restored).as_posix() for p in restored.rglob("*") if p.is_file()) == wanted
    for relative in wanted:
        assert (restored / relative).read_bytes() == (results / relative).read_bytes()

    folder = tmp_path / "folder"
    main_bundle(["masks", "--results", str(results), "--runs", str(runs), "--out", str(folder)])
    packed = folder / wanted[0]
    packed.write_bytes(packed.read_bytes()[:-1] + bytes([packed.read_bytes()[-1] ^ 1]))
    with pytest.raises(BertLotteryError, match=r"seed2/bad.safetensors: changed \(sha256 differs"):
        unpack([str(folder)], str(tmp_path / "tampered"))

    runs.write_text(L.retrain_metrics("s", "good", "RTE", 1) + "\n")
    main_bundle(["masks", "--results", str(results), "--runs", str(runs), "--out", str(tmp_path / "none.tar.gz")])
    assert "not written; none of the 1 retraining(s)" in capsys.readouterr().out
    assert not (tmp_path / "none.tar.gz").exists()
    runs.write_text(L.full_metrics("RTE", 1) + "\n")
    with pytest.raises(BertLotteryError, match=r"finetune/RTE/seed1/metrics.json: not a retraining's metrics path"):
        main_bundle(["masks", "--results", str(results), "--runs", str(runs), "--out", str(tmp_path / "x")])
    with pytest.raises(BertLotteryError, match=r"--runs .*missing.txt: file not found"):
        main_bundle(["masks", "--runs", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "y")])
