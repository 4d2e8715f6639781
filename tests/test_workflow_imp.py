"""Integration: family i (IMP with rewinding, beyond the paper) switched on over the tiny run (tests/data/tiny.yaml
+ an i overlay like config/imp.yaml, two rounds at most), through the whole DAG: the search with its random and
bad masks, pruned and retrained evaluations, tables, Figure 2, the comparison with m, claims."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, overlay_on_tiny_run

from bertlottery.analysis.verdicts import VERDICTS
from bertlottery.masks.types import WeightMask
from bertlottery.settings import IPruningSettings

pytestmark = pytest.mark.slow

# Two rounds at most; the speed jobs (which would rerun for the new masks) off, to keep the overlay's cost small.
I_OVERLAY = {"retrain": {"families": ["m", "s", "super", "i"]}, "i_pruning": {"max_rounds": 2},
             "speed": {"enabled": False}}
RUNS = [(task, seed) for task in ("SST-2", "MRPC") for seed in (1337, 42)]


def test_documented_overlay_switches_i_on():
    overlay = yaml.safe_load((REPO / "config" / "imp.yaml").read_text())
    assert {"i", "m"} <= set(overlay["retrain"]["families"])
    assert IPruningSettings.from_dict(overlay["i_pruning"], where="config/imp.yaml") == \
        IPruningSettings.from_dict({}, where="defaults")  # the overlay states the defaults it runs


@pytest.fixture(scope="module")
def i_run(tiny_run, tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny run with the i overlay on top (only i and what reads it runs)."""
    workdir = tmp_path_factory.mktemp("tiny-i")
    jobs = overlay_on_tiny_run(tiny_run, tiny_model_dir, workdir, I_OVERLAY)
    assert "find_i_mask" in jobs and not jobs & {"finetune", "find_s_mask", "find_m_mask"}, jobs
    return workdir


def test_i_search_writes_masks_of_one_size_and_its_rounds(i_run):
    masks = i_run / "results" / "masks" / "i"
    for task, seed in RUNS:
        folder = masks / task / f"seed{seed}"
        found = {kind: WeightMask.load(folder / f"{kind}.safetensors") for kind in ("good", "random", "bad")}
        assert len({mask.kept for mask in found.values()}) == 1
        assert {mask.meta["family"] for mask in found.values()} == {"i"}
        record = json.loads((folder / "search.json").read_text())
        trace = json.loads((folder / "trace.json").read_text())
        assert record["rounds_taken"] == len(trace["rounds"]) - 1 <= 2 and record["note"]
        assert record["cost"]["fine_tunes"] == record["rounds_taken"]
        good = trace["rounds"][record["good_round"]]
        assert good["accepted"] and good["prunable_kept"] == found["good"].kept
        # retraining the good mask repeats its round's fine-tune (round 0: the full fine-tune): the same score
        retrained = json.loads((i_run / "results" / "retrain" / "i" / "good" / task / f"seed{seed}" / "metrics.json")
                               .read_text())
        assert retrained["reported"] == pytest.approx(record["score"], abs=1e-9)


def test_i_runs_reach_the_tables_figures_comparison_and_claims(i_run):
    results = i_run / "results"
    for kind in ("good", "random", "bad"):
        for task, seed in RUNS:
            pruned = json.loads((results / "eval" / "i" / kind / task / f"seed{seed}" / "pruned.json").read_text())
            retrained = json.loads((results / "retrain" / "i" / kind / task / f"seed{seed}" / "metrics.json")
                                   .read_text())
            assert pruned["evaluated"] == "pruned" and retrained["evaluated"] == "retrained"
            assert pruned["mask_size"] == retrained["mask_size"]
    rows = {r["row"] for r in csv.DictReader((results / "tables" / "beyond_i_imp.csv").open())}
    assert {"good, pruned", "random, retrained", "bad, retrained"} <= rows, rows
    table2 = {r["row"] for r in csv.DictReader((results / "tables" / "table2.csv").open())}
    assert any(r.startswith("i-pruning") for r in table2), table2
    sizes = {r["row"] for r in csv.DictReader((results / "tables" / "sizes.csv").open())}
    assert any(r.startswith("i-pruning good") for r in sizes) and any(r.startswith("i good") for r in sizes), sizes
    compared = list(csv.DictReader((results / "analysis" / "i_vs_m.csv").open()))
    assert {(r["task"], int(r["seed"])) for r in compared} == set(RUNS)
    assert all(0 <= float(r["jaccard"]) <= 1 for r in compared)
    assert "Jaccard" in (results / "tables" / "i_vs_m.md").read_text()
    for figure in ("fig2_i", "i_vs_m"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0
    claims = {c["id"]: c for c in json.loads((results / "analysis" / "claims.json").read_text())["claims"]}
    for cid in ("i-good-90", "i-good-best-pruned", "i-good-retrained-full", "i-good-best-retrained",
                "i-sparser-than-m", "i-retrains-like-m"):
        assert claims[cid]["verdict"] in VERDICTS
        assert claims[cid]["paper_verdict"] == "cannot be checked"  # the paper has no family i
    assert claims["i-retrains-like-m"]["verdict"] != "cannot be checked"  # both families' retrained numbers are there
    assert "beyond: i-pruning" in (results / "analysis" / "claims.md").read_text()
