"""`evaluate-full` and `evaluate-pruned` (the rules' commands) on a tiny classifier and real RTE rows."""

from __future__ import annotations

import json
import re

import pytest
import torch

from bertlottery.cli import main
from bertlottery.glue.predictions import PREDICTIONS_FIELD, metrics_of_predictions, record_predictions
from bertlottery.glue.tasks import get_task
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.structure import prunable_parameters
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


def write_masks(tmp_path, classifier_dir):
    """Two s-masks (uneven heads, a 0-head layer) and an m weight mask of the tiny classifier."""
    small = HeadMlpMask.full(2, 4)
    small.heads[0, :3] = False
    small.heads[1, :] = False
    small.mlps[0] = False
    other = HeadMlpMask.full(2, 4)
    other.heads[1, 1:] = False
    g = torch.Generator().manual_seed(3)
    model = load_classifier(classifier_dir, 2)
    weights = WeightMask({n: torch.rand(p.shape, generator=g) < 0.6 for n, p in prunable_parameters(model).items()})
    paths = {"s/bad": tmp_path / "small.safetensors", "m/good": tmp_path / "m.safetensors",
             "s/good": tmp_path / "other.safetensors"}
    small.save(paths["s/bad"])
    weights.save(paths["m/good"])
    other.save(paths["s/good"])
    return paths


def without_wall_time(path):
    """The file's bytes with only the wall-time field blanked (every other byte must match)."""
    return re.sub(rb'"wall_time_s": [0-9.e+-]+', b'"wall_time_s": 0', path.read_bytes())


def test_several_masks_in_one_job_equal_one_job_per_mask(tmp_path, classifier_dir, rte_small):
    """One job over s, m and s masks (physical pruning between them) writes, per mask, the file a job
    evaluating that mask alone writes: byte-identical apart from wall time, so the fine-tuned model is
    restored fresh for every mask."""
    paths = write_masks(tmp_path, classifier_dir)
    args = []
    for name, mask in paths.items():
        family, kind = name.split("/")
        args += ["--mask", str(mask), "--family", family, "--kind", kind, "--output",
                 str(tmp_path / f"together-{family}-{kind}.json")]
    main(["evaluate-pruned", "--task", "RTE", "--seed", "42", "--data-dir", str(rte_small), "--model-dir",
          str(classifier_dir), "--training", json.dumps(training_defaults()), *args])
    losses = set()
    for name, mask in paths.items():
        family, kind = name.split("/")
        alone = evaluate("evaluate-pruned", classifier_dir, rte_small, tmp_path / f"alone-{family}-{kind}.json",
                         "--mask", str(mask), "--family", family, "--kind", kind)
        together = tmp_path / f"together-{family}-{kind}.json"
        assert without_wall_time(together) == without_wall_time(tmp_path / f"alone-{family}-{kind}.json")
        losses.add(alone["metrics"]["loss"])
    assert len(losses) == 3  # three different subnetworks, not one model evaluated three times


@pytest.mark.parametrize("extra, message", [
    (["--family", "m", "--kind", "good", "--output", "b.json"], "one --family, --kind and --output per --mask"),
    (["--mask", "MASK", "--family", "s", "--kind", "bad", "--output", "a.json"], "given twice"),
    (["--mask", "nowhere.safetensors", "--family", "s", "--kind", "bad", "--output", "b.json"], "nowhere.safetensors"),
])
def test_pruned_runs_checked_before_any_work(tmp_path, classifier_dir, rte_small, capsys, extra, message):
    HeadMlpMask.full(2, 4).save(tmp_path / "all.safetensors")
    extra = [str(tmp_path / "all.safetensors") if a == "MASK" else a for a in extra]
    extra = [str(tmp_path / a) if a.endswith(".json") else a for a in extra]
    with pytest.raises(SystemExit) as exc:
        main(["evaluate-pruned", "--task", "RTE", "--seed", "42", "--data-dir", str(rte_small), "--model-dir",
              str(classifier_dir), "--training", json.dumps(training_defaults()), "--mask",
              str(tmp_path / "all.safetensors"), "--family", "s", "--kind", "good", "--output",
              str(tmp_path / "a.json"), *extra])
    assert message in str(exc.value)
    assert not (tmp_path / "a.json").exists()


def test_evaluation_commands_apply_training_tf32(tmp_path, classifier_dir, rte_small):
    """training.tf32 reaches every command that runs a model (before: evaluate-full/-pruned ignored it)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        main(["evaluate-full", "--task", "RTE", "--seed", "42", "--data-dir", str(rte_small), "--model-dir",
              str(classifier_dir), "--training", json.dumps(training_defaults() | {"tf32": True}), "--output",
              str(tmp_path / "full.json")])
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        HeadMlpMask.full(2, 4).save(tmp_path / "m.safetensors")
        main(["evaluate-pruned", "--task", "RTE", "--seed", "42", "--data-dir", str(rte_small), "--model-dir",
              str(classifier_dir), "--training", json.dumps(training_defaults()), "--mask", str(tmp_path / "m.safetensors"),
              "--family", "s", "--kind", "good", "--output", str(tmp_path / "pruned.json")])
        assert not torch.backends.cuda.matmul.allow_tf32  # the paper's fp32 again
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def recomputed_metrics(record, task):
    """The record's metrics recomputed from its kept per-example predictions, split by split."""
    spec = get_task(task)
    out = {}
    for split, (predicted, labels) in record_predictions(record, spec, "record").items():
        suffix = "" if split == "dev" else "_" + split.removeprefix("dev_")
        out |= {key + suffix: value for key, value in metrics_of_predictions(spec, predicted, labels).items()}
    return out


def test_records_keep_the_predictions_that_recompute_their_metrics(tmp_path, classifier_dir, rte_small):
    full = evaluate("evaluate-full", classifier_dir, rte_small, tmp_path / "full.json")
    paths = write_masks(tmp_path, classifier_dir)
    pruned = evaluate("evaluate-pruned", classifier_dir, rte_small, tmp_path / "m.json", "--mask",
                      str(paths["m/good"]), "--family", "m", "--kind", "good")
    for record in (full, pruned):
        assert set(record[PREDICTIONS_FIELD]) == {"dev"} and len(record[PREDICTIONS_FIELD]["dev"]["labels"]) == 48
        recomputed = recomputed_metrics(record, "RTE")
        assert recomputed == {k: v for k, v in record["metrics"].items() if k != "loss"}
    assert full[PREDICTIONS_FIELD]["dev"]["labels"] == pruned[PREDICTIONS_FIELD]["dev"]["labels"]
    again = evaluate("evaluate-full", classifier_dir, rte_small, tmp_path / "again.json")
    assert without_wall_time(tmp_path / "again.json") == without_wall_time(tmp_path / "full.json")
    assert again[PREDICTIONS_FIELD] == full[PREDICTIONS_FIELD]


@pytest.mark.parametrize("task, num_labels", [("STS-B", 1), ("MNLI", 3)])
def test_regression_and_two_split_records_recompute_their_metrics(tmp_path, tiny_model_dir, fixture_glue_dir, task,
                                                                  num_labels):
    """STS-B's scores (Pearson, Spearman) and MNLI's matched and mismatched splits."""
    from bertlottery.glue.prepare import prepare_data

    data = tmp_path / "data"
    prepare_data(task, str(tiny_model_dir), data, glue_dir=fixture_glue_dir, max_train_examples=16,
                 max_dev_examples=40, subsample_seed=0, max_seq_length=64)
    torch.manual_seed(0)
    load_classifier(tiny_model_dir, num_labels).save_pretrained(tmp_path / "model")
    main(["evaluate-full", "--task", task, "--seed", "1", "--data-dir", str(data), "--model-dir",
          str(tmp_path / "model"), "--training", json.dumps(training_defaults()), "--output", str(tmp_path / "r.json")])
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record[PREDICTIONS_FIELD]) == set(get_task(task).dev_splits)
    assert recomputed_metrics(record, task) == {k: v for k, v in record["metrics"].items() if not k.startswith("loss")}
