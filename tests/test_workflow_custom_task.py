"""Integration: the README's own-task example (tests/data/custom: a three-class CSV task and a sentence-pair
regression in JSON Lines) through the whole DAG on the tiny model, tests/data/tiny.yaml's settings:
fine-tuning, every finder, derived masks, retraining, patterns, statistics, tables, figures, claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_tiny_with_overlay

from bertlottery.masks.types import HeadMlpMask, WeightMask

pytestmark = pytest.mark.slow
TASKS = ("Reviews", "Similarity")
SEEDS = (1337, 42)


@pytest.fixture(scope="module")
def custom_run(tiny_model_dir, tmp_path_factory) -> Path:
    """The example's config on top of tiny.yaml, its files' paths made absolute (the run's working directory
    is a temporary folder; the README's command runs from the repository root instead)."""
    workdir = tmp_path_factory.mktemp("custom-task")
    config = yaml.safe_load((REPO / "tests" / "data" / "custom" / "custom.yaml").read_text())
    for entry in config["custom_tasks"].values():
        entry.update({split: str(REPO / entry[split]) for split in ("train", "dev")})
    overlay = workdir / "custom.yaml"
    overlay.write_text(yaml.safe_dump(config))
    run_tiny_with_overlay(workdir, tiny_model_dir, overlay)
    return workdir


def test_data_cards_and_full_models(custom_run):
    results = custom_run / "results"
    reviews = json.loads((results / "data" / "Reviews" / "data_card.json").read_text())
    assert reviews["labels"] == ["negative", "neutral", "positive"] and reviews["source"].startswith("files:")
    similarity = json.loads((results / "data" / "Similarity" / "data_card.json").read_text())
    assert similarity["is_regression"] and similarity["num_labels"] == 1
    for task, metric in (("Reviews", "accuracy"), ("Similarity", "pearson")):
        for seed in SEEDS:
            record = json.loads((results / "finetune" / task / f"seed{seed}" / "metrics.json").read_text())
            assert record["task"] == task and record["reported_metric"] == metric
            assert record["reported"] == record["metrics"][metric]


def test_every_finder_and_retraining(custom_run):
    results = custom_run / "results"
    for task in TASKS:
        for seed in SEEDS:
            s_good = HeadMlpMask.load(next(results.glob(f"masks/s/{task}/seed{seed}/good.safetensors")))
            assert s_good.meta["task"] == task
            assert WeightMask.load(next(results.glob(f"masks/m/{task}/seed{seed}/good.safetensors"))).kept > 0
            assert list(results.glob(f"masks/super/{task}/seed{seed}/good.safetensors"))
        retrained = [json.loads(p.read_text()) for p in results.glob(f"retrain/*/*/{task}/seed*/metrics.json")]
        assert {(r["family"], r["evaluated"]) for r in retrained} >= {("s", "retrained"), ("m", "retrained")}


def test_tables_figures_and_claims_name_the_tasks_and_skip_the_paper_comparison(custom_run):
    results = custom_run / "results"
    table2 = next(results.rglob("table2.md")).read_text()
    assert "| Reviews" in table2 and "Similarity" in table2
    assert "Tasks not in the paper (custom_tasks): Reviews, Similarity; the paper has no numbers" in table2
    assert list(results.glob("figures/fig1_Reviews.png")) and list(results.glob("figures/fig2_s.png"))
    notes = json.loads(next(results.rglob("claims.json")).read_text())["notes"]
    assert any(n.startswith("Tasks of your own (custom_tasks): Reviews, Similarity.") for n in notes)
