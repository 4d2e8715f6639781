"""`evaluate-full` and `evaluate-pruned` (the rules' commands) on a tiny classifier and real RTE rows."""

from __future__ import annotations

import json

import pytest
import torch

from bertlottery.cli import main
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.loading import load_classifier
from bertlottery.settings import training_defaults


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tiny_model_dir):
    """A tiny 2-label classifier saved like a fine-tuned model (seeded random classifier head)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier")
    load_classifier(tiny_model_dir, 2).save_pretrained(path)
    return path


def evaluate(command, classifier_dir, rte_small, output, *extra):
    main([command, "--task", "RTE", "--seed", "42", "--data-dir", str(rte_small), "--model-dir", str(classifier_dir),
          "--training", json.dumps(training_defaults()), "--output", str(output), *extra])
    return json.loads(output.read_text())


def test_full_and_all_kept_pruned_evaluation_agree(tmp_path, classifier_dir, rte_small):
    full = evaluate("evaluate-full", classifier_dir, rte_small, tmp_path / "full.json")
    assert full["evaluated"] == "full" and full["n_examples"] == 48 and full["mask_size"] is None
    HeadMlpMask.full(2, 4).save(tmp_path / "all.safetensors")
    kept = evaluate("evaluate-pruned", classifier_dir, rte_small, tmp_path / "all.json", "--mask",
                    str(tmp_path / "all.safetensors"), "--family", "s", "--kind", "good")
    assert kept["evaluated"] == "pruned" and (kept["family"], kept["kind"]) == ("s", "good")
    assert kept["metrics"] == pytest.approx(full["metrics"], abs=1e-6)
    assert kept["mask_size"]["heads_kept"] == 8


def test_pruned_evaluation_removes_what_the_mask_removes(tmp_path, classifier_dir, rte_small):
    mask = HeadMlpMask.full(2, 4)
    mask.heads[:, :3] = False
    mask.mlps[:] = False
    mask.save(tmp_path / "small.safetensors")
    record = evaluate("evaluate-pruned", classifier_dir, rte_small, tmp_path / "small.json", "--mask",
                      str(tmp_path / "small.safetensors"), "--family", "s", "--kind", "bad")
    full = evaluate("evaluate-full", classifier_dir, rte_small, tmp_path / "full.json")
    assert record["mask_size"]["heads_kept"] == 2 and record["mask_size"]["mlps_kept"] == 0
    assert record["metrics"]["loss"] != pytest.approx(full["metrics"]["loss"], abs=1e-6)
