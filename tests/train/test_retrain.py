"""Retraining a subnetwork through the `finetune` CLI (what the `retrain` rule runs): the mask is applied
to the pre-trained weights and survives fine-tuning; `--random-init` really starts from random weights.

A tiny BERT with the real tokenizer and real RTE rows; every run keeps its weights so they can be read."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from bertlottery.glue.predictions import record_predictions
from bertlottery.glue.tasks import get_task
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.structure import (
    encoder_layers,
    head_counts,
    layer_parts,
    prunable_parameters,
)
from bertlottery.settings import training_defaults

pytestmark = pytest.mark.slow

# lr and weight decay large enough that every kept weight moves visibly in one epoch
MOVING = training_defaults() | {"learning_rate": 1e-3, "weight_decay": 0.1, "batch_size": 16, "epochs": 1}
# lr so small that the weights after training are the starting weights to ~1e-9
FROZEN = MOVING | {"learning_rate": 1e-12, "weight_decay": 0.0}


def retrain(tmp_path, model_dir, data_dir, name, training, *flags, seed=42):
    out = tmp_path / name
    command = [sys.executable, "-m", "bertlottery", "finetune", "--task", "RTE", "--seed", str(seed),
               "--model", str(model_dir), "--data-dir", str(data_dir), "--training", json.dumps(training),
               "--out-dir", str(out), "--eval-output", str(out / "metrics.json"), *flags]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def encoder_weights(directory) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a saved model (BertModel or classifier), keyed without the 'bert.' prefix."""
    tensors = load_file(directory / "model.safetensors")
    return {k.removeprefix("bert."): v for k, v in tensors.items()
            if k.removeprefix("bert.").startswith(("encoder.", "embeddings."))}


def test_m_mask_weights_stay_zero_after_retraining(tmp_path, tiny_model_dir, rte_small):
    model = load_classifier(tiny_model_dir, 2)
    generator = torch.Generator().manual_seed(0)
    mask = WeightMask({name: torch.rand(p.shape, generator=generator) < 0.5
                       for name, p in prunable_parameters(model).items()})
    mask.save(tmp_path / "m.safetensors")

    out = retrain(tmp_path, tiny_model_dir, rte_small, "m", MOVING, "--mask", str(tmp_path / "m.safetensors"),
                  "--family", "m", "--variant", "good")
    trained = load_file(out / "model" / "model.safetensors")
    pretrained = {f"bert.{k}": v for k, v in encoder_weights(tiny_model_dir).items()}
    for name, keep in mask.masks.items():
        assert (trained[name][~keep] == 0).all(), f"{name}: masked weights are not zero after retraining"
        kept_moved = (trained[name][keep] != pretrained[name][keep]).float().mean()
        assert kept_moved > 0.9, f"{name}: kept weights did not train"
    record = json.loads((out / "metrics.json").read_text())
    assert record["evaluated"] == "retrained" and record["family"] == "m"
    assert record["mask_size"]["prunable_kept"] == mask.kept
    predicted, labels = record_predictions(record, get_task("RTE"), "retrained")["dev"]  # for a dev bootstrap
    assert len(predicted) == record["n_examples"] and labels.size == predicted.size


def test_s_mask_heads_and_mlps_stay_removed_after_retraining(tmp_path, tiny_model_dir, rte_small):
    mask = HeadMlpMask.full(2, 4)
    mask.heads[0, :3] = False  # layer 0 keeps one head
    mask.heads[1, 1] = False
    mask.mlps[1] = False
    mask.save(tmp_path / "s.safetensors")

    out = retrain(tmp_path, tiny_model_dir, rte_small, "s", MOVING, "--mask", str(tmp_path / "s.safetensors"),
                  "--family", "s", "--variant", "good")
    reloaded = load_classifier(out / "model", 2)
    assert head_counts(reloaded) == [1, 3]
    parts = [layer_parts(layer) for layer in encoder_layers(reloaded)]
    assert parts[1].intermediate_dense is None and parts[0].intermediate_dense is not None
    head_dim = reloaded.config.hidden_size // reloaded.config.num_attention_heads
    assert parts[0].query.weight.shape[0] == 1 * head_dim and parts[1].query.weight.shape[0] == 3 * head_dim
    # the kept head of layer 0 (head 3) started from its pre-trained weights and trained
    pretrained = encoder_weights(tiny_model_dir)["encoder.layer.0.attention.self.query.weight"][3 * head_dim:]
    assert not torch.equal(parts[0].query.weight.detach(), pretrained)
    record = json.loads((out / "metrics.json").read_text())
    assert record["mask_size"]["heads_kept"] == 4 and record["mask_size"]["mlps_kept"] == 1


def test_retraining_starts_from_the_pretrained_weights(tmp_path, tiny_model_dir, rte_small):
    out = retrain(tmp_path, tiny_model_dir, rte_small, "pre", FROZEN)
    start, trained = encoder_weights(tiny_model_dir), encoder_weights(out / "model")
    for name, tensor in start.items():
        assert torch.allclose(trained[name], tensor, atol=1e-6), name


def test_random_init_really_starts_from_random_weights(tmp_path, tiny_model_dir, rte_small):
    mask = HeadMlpMask.full(2, 4)
    mask.heads[0, 0] = False
    mask.save(tmp_path / "s.safetensors")
    flags = ("--mask", str(tmp_path / "s.safetensors"), "--random-init", "--family", "s", "--variant", "randinit_random")
    a = encoder_weights(retrain(tmp_path, tiny_model_dir, rte_small, "a", FROZEN, *flags) / "model")
    again = encoder_weights(retrain(tmp_path, tiny_model_dir, rte_small, "again", FROZEN, *flags) / "model")
    other = encoder_weights(retrain(tmp_path, tiny_model_dir, rte_small, "b", FROZEN, *flags, seed=7) / "model")
    pretrained = encoder_weights(tiny_model_dir)

    name = "encoder.layer.1.intermediate.dense.weight"  # unpruned, so the shapes match
    assert a[name].shape == pretrained[name].shape
    assert not torch.allclose(a[name], pretrained[name], atol=1e-3), "random init kept the pre-trained weights"
    correlation = torch.corrcoef(torch.stack([a[name].flatten(), pretrained[name].flatten()]))[0, 1]
    assert abs(correlation) < 0.1
    assert all(torch.equal(a[k], again[k]) for k in a), "same seed, different random init"
    assert not torch.equal(a[name], other[name]), "another seed gave the same random init"
    # BERT's initializer: normal(0, initializer_range) for dense weights
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert a[name].std().item() == pytest.approx(config["initializer_range"], rel=0.1)
    assert a["encoder.layer.0.attention.self.query.weight"].shape[0] == 3 * (config["hidden_size"] // 4)
