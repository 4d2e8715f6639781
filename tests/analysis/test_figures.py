"""figures.py: every figure writes a non-empty PDF and PNG from synthetic inputs, for the smoke shape
(2 tasks x 2 seeds) and from masks in the original study's layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_aggregate import make_results_tree
from test_stats import make_mask_tree, write_original_layout

from bertlottery.analysis import figures as F
from bertlottery.analysis import plotting as PL
from bertlottery.analysis.aggregate import main_aggregate
from bertlottery.analysis.stats import main_stats


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    metrics = make_results_tree(root, tasks=("MRPC", "RTE"), seeds=(1337, 42))
    make_mask_tree(root, layers=3, heads=4)
    a = root / "analysis"
    main_aggregate(["--inputs", *map(str, metrics), "--out-dir", str(a)])
    main_stats(["masks", "--s-masks", *map(str, sorted(root.glob("masks/s/*/*/good.safetensors"))), "--out-dir", str(a)])
    main_stats(["m-blocks", "--m-masks", *map(str, sorted(root.glob("masks/m/*/*/good.safetensors"))),
                "--model-config", str(root / "model/config.json"), "--output", str(a / "m_blocks.csv")])
    return root


def _check(stem):
    pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1000
    with Image.open(png) as image:
        assert image.size[0] > 300 and image.size[1] > 200
        assert len(np.unique(np.asarray(image.convert("L")))) > 5  # not blank


def test_figure1(analysed, tmp_path):
    s = sorted(analysed.glob("masks/s/RTE/*/good.safetensors"))
    F.main_figures(["fig1", "--task", "RTE", "--s-masks", *map(str, s), "--m-blocks",
                    str(analysed / "analysis/m_blocks.parquet"), "--out", str(tmp_path / "fig1")])
    _check(tmp_path / "fig1")


@pytest.mark.parametrize("family", ["s", "m", "super"])
def test_figure2(analysed, tmp_path, family):
    F.main_figures(["fig2", "--summary", str(analysed / "analysis/summary.parquet"), "--family", family,
                    "--out", str(tmp_path / f"fig2_{family}")])
    _check(tmp_path / f"fig2_{family}")


def test_figure2_unknown_family_is_an_error(analysed, tmp_path):
    with pytest.raises(Exception, match="no results for family"):
        F.main_figures(["fig2", "--summary", str(analysed / "analysis/summary.parquet"), "--family", "s-heads",
                        "--out", str(tmp_path / "x")])


def test_figure3_cut_follows_the_next_steps_phase(analysed):
    trace = analysed / "masks/s/RTE/seed42/trace.json"  # phases: initial, joint, heads (3 x 4 heads)
    # amount 0.5: the joint phase prunes int(12 * 0.5) = 6 heads a step, the heads phase half of that
    assert [F.heads_pruned_next(trace, i, 3, 4, 0.5) for i in range(3)] == [6, 3, 0]
    assert F.heads_pruned_next(trace, 0, 3, 4, 0.01) == 1  # at least one head, as the search does


def test_figure3(analysed, tmp_path):
    F.main_figures(["fig3", "--trace", str(analysed / "masks/s/RTE/seed42/trace.json"), "--task", "RTE",
                    "--seed", "42", "--out", str(tmp_path / "fig3")])
    _check(tmp_path / "fig3")


@pytest.mark.parametrize("set_, unit", [("good", "heads"), ("super", "mlps")])
def test_figure5(analysed, tmp_path, set_, unit):
    F.main_figures(["fig5", "--overlaps", str(analysed / "analysis/overlaps.parquet"), "--set", set_,
                    "--unit", unit, "--out", str(tmp_path / "fig5")])
    _check(tmp_path / "fig5")


def test_appendix_b(analysed, tmp_path):
    s = sorted(analysed.glob("masks/s/*/*/good.safetensors"))
    F.main_figures(["appb", "--s-masks", *map(str, s), "--m-blocks", str(analysed / "analysis/m_blocks.parquet"),
                    "--out", str(tmp_path / "appb")])
    _check(tmp_path / "appb")


def test_original_masks_figures(tmp_path):
    rng = np.random.default_rng(0)
    write_original_layout(tmp_path / "orig", {
        task: {seed: (rng.random((12, 12)) < 0.6, rng.random(12) < 0.7) for seed in (1337, 42, 86)}
        for task in ("CoLA", "MRPC")})
    F.main_figures(["fig1", "--task", "CoLA", "--original-masks", str(tmp_path / "orig"), "--out", str(tmp_path / "f1")])
    _check(tmp_path / "f1")
    F.main_figures(["appb", "--original-masks", str(tmp_path / "orig"), "--out", str(tmp_path / "b")])
    _check(tmp_path / "b")


def test_compact_cell_text_and_colour_range():
    assert PL._short(0.444, 2) == ".44" and PL._short(1.0, 2) == "1.00" and PL._short(-0.12, 2) == "-.12"
    assert PL._short(4.77, 1) == "4.8"
    assert PL._data_range(np.array([0.42, 0.57])) == pytest.approx((0.40, 0.60))
