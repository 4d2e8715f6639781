"""model.py: loading, soft masks, physical pruning, weight masks, the prunable set (docs/protocol.md §m-pruning)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.pruning import load_pruned, prune_heads_and_mlps
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.soft_masks import attach_soft_masks, detach_soft_masks
from bertlottery.modeling.structure import (
    encoder_layers,
    head_counts,
    layer_parts,
    prunable_parameters,
)
from bertlottery.modeling.weight_masks import (
    apply_weight_mask,
    remove_weight_mask,
)

TINY = dict(vocab_size=50, hidden_size=24, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
            max_position_embeddings=32, num_labels=3)


def tiny_model(config_class=BertConfig, attn="sdpa", dtype=torch.float32, seed=0, **overrides):
    """A tiny classifier with every parameter (biases, LayerNorms included) drawn at random, so dropped
    biases and removed sub-layers change the output visibly."""
    torch.manual_seed(seed)
    config = config_class(**{**TINY, **overrides})
    if config_class is RobertaConfig:
        config.pad_token_id, config.max_position_embeddings = 1, TINY["max_position_embeddings"] + 2
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attn).to(dtype)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)
    return model.eval()


def batch(vocab=50, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (3, 11), generator=g)
    attention = torch.ones_like(ids)
    attention[1, 7:] = 0
    attention[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": attention}


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


EDGE_MASK = HeadMlpMask(torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]]), torch.tensor([1, 0, 0]))


# ------------------------------------------------------------------ soft masks


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_soft_all_ones_equals_unmasked(attn):
    model, inputs = tiny_model(attn=attn), batch()
    before = logits(model, inputs)
    soft = attach_soft_masks(model)
    assert soft.heads.shape == (3, 4) and soft.mlps.shape == (3,)
    torch.testing.assert_close(logits(model, inputs), before, rtol=0, atol=1e-6)
    detach_soft_masks(model)
    torch.testing.assert_close(logits(model, inputs), before, rtol=0, atol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_equals_physical_random_masks(attn, seed):
    model, inputs = tiny_model(attn=attn, seed=seed), batch(seed=seed)
    g = torch.Generator().manual_seed(seed)
    heads = torch.rand(3, 4, generator=g) < 0.6
    heads[1] = False  # a layer with zero heads
    mlps = torch.tensor([True, False, seed % 2 == 0])  # a removed MLP
    mask = HeadMlpMask(heads, mlps)
    full = logits(model, inputs)
    attach_soft_masks(model, mask)
    soft = logits(model, inputs)
    detach_soft_masks(model)
    prune_heads_and_mlps(model, mask)
    physical = logits(model, inputs)
    torch.testing.assert_close(physical, soft, rtol=0, atol=1e-5)
    assert (physical - full).abs().max() > 1e-3  # the mask really changed the model
    assert head_counts(model) == heads.sum(1).tolist()
    # the mask is recorded in the config, which load_pruned rebuilds the architecture from
    assert model.config.bertlottery_head_mask == heads.int().tolist()
    assert model.config.bertlottery_mlp_mask == mlps.int().tolist()


def test_physical_param_count_matches_size_of():
    model = tiny_model()
    prune_heads_and_mlps(model, EDGE_MASK)
    size = size_of(model.config, EDGE_MASK)
    assert size["params_kept"] == sum(p.numel() for p in model.parameters())
    assert size["prunable_kept"] == sum(p.numel() for p in prunable_parameters(model).values())


def test_empty_layer_bias_option_reproduces_original_soft_mask():
    """empty_layer_bias=True keeps the attention-output bias of a headless layer (original search)."""
    model, inputs = tiny_model(), batch()
    mask = HeadMlpMask(torch.tensor([[1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]]), torch.ones(3))
    attach_soft_masks(model, mask, empty_layer_bias=True)
    with_bias = logits(model, inputs)
    detach_soft_masks(model)
    # by hand: layer 1's attention sub-layer is LayerNorm(x + bias)
    layer = encoder_layers(model)[1]
    parts = layer_parts(layer)
    original_forward = layer.attention.forward
    layer.attention.forward = lambda h, *a, **k: (parts.attn_norm(h + parts.attn_dense.bias), None)
    attach_soft_masks(model, mask)
    expected = logits(model, inputs)
    detach_soft_masks(model)
    layer.attention.forward = original_forward
    torch.testing.assert_close(with_bias, expected, rtol=0, atol=1e-5)
    attach_soft_masks(model, mask)
    assert (logits(model, inputs) - with_bias).abs().max() > 1e-3


def test_soft_importance_gradient_matches_finite_differences():
    model, inputs = tiny_model(dtype=torch.float64, attn="eager"), batch()
    labels = torch.tensor([0, 2, 1])
    mask = HeadMlpMask(torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]]), torch.tensor([1, 0, 1]))
    soft = attach_soft_masks(model, mask).requires_grad_()
    assert soft.heads.dtype == torch.float32
    soft.heads = soft.heads.detach().double().requires_grad_()
    soft.mlps = soft.mlps.detach().double().requires_grad_()

    def loss():
        return model(**inputs, labels=labels).loss

    loss().backward()
    eps = 1e-6
    for tensor, index in [(soft.heads, (0, 0)), (soft.heads, (0, 1)), (soft.heads, (2, 3)), (soft.heads, (1, 2)),
                          (soft.mlps, (0,)), (soft.mlps, (1,))]:
        with torch.no_grad():
            value = tensor[index].item()
            tensor[index] = value + eps
            up = loss().item()
            tensor[index] = value - eps
            down = loss().item()
            tensor[index] = value
        numeric = (up - down) / (2 * eps)
        assert tensor.grad[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9), index
    assert soft.heads.grad.abs().sum() > 0 and soft.mlps.grad.abs().sum() > 0


def test_soft_gradients_in_train_mode_flow_and_zero_grad():
    model, inputs = tiny_model(), batch()
    model.train()
    soft = attach_soft_masks(model).requires_grad_()
    model(**inputs, labels=torch.tensor([0, 1, 2])).loss.backward()
    assert soft.heads.grad.shape == (3, 4) and torch.isfinite(soft.heads.grad).all()
    soft.zero_grad()
    assert soft.heads.grad is None


def test_soft_mask_errors():
    model = tiny_model()
    attach_soft_masks(model)
    with pytest.raises(BertLotteryError, match="already attached"):
        attach_soft_masks(model)
    with pytest.raises(BertLotteryError, match="detach_soft_masks"):
        prune_heads_and_mlps(model, EDGE_MASK)
    detach_soft_masks(model)
    with pytest.raises(BertLotteryError, match="num_attention_heads=4"):
        attach_soft_masks(model, HeadMlpMask.full(12, 12))
    prune_heads_and_mlps(model, EDGE_MASK)
    with pytest.raises(BertLotteryError, match="unpruned"):
        attach_soft_masks(model)


# ------------------------------------------------------------------ physical pruning


def test_prune_everything_leaves_layernorms_of_the_embeddings():
    """WNLI prunes everything: each sub-layer is LayerNorm(input), so the encoder output is six
    LayerNorms applied to the embeddings."""
    model, inputs = tiny_model(), batch()
    prune_heads_and_mlps(model, HeadMlpMask(torch.zeros(3, 4), torch.zeros(3)))
    assert all(layer_parts(layer).query is None and layer_parts(layer).intermediate_dense is None
               for layer in encoder_layers(model))
    assert prunable_parameters(model) == {}
    with torch.no_grad():
        hidden = model.bert.embeddings(input_ids=inputs["input_ids"])
        for layer in encoder_layers(model):
            parts = layer_parts(layer)
            hidden = parts.output_norm(parts.attn_norm(hidden))
        pooled = model.bert.pooler(hidden)
        expected = model.classifier(pooled)
    torch.testing.assert_close(logits(model, inputs), expected, rtol=0, atol=1e-6)


def test_prune_wrong_shape_and_twice():
    model = tiny_model()
    with pytest.raises(BertLotteryError, match=r"heads \[12, 12\].*num_hidden_layers=3"):
        prune_heads_and_mlps(model, HeadMlpMask.full(12, 12))
    prune_heads_and_mlps(model, EDGE_MASK)
    with pytest.raises(BertLotteryError, match="already physically pruned"):
        prune_heads_and_mlps(model, EDGE_MASK)


def test_pruned_model_training_step_runs():
    model, inputs = tiny_model(), batch()
    prune_heads_and_mlps(model, EDGE_MASK)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(**inputs, labels=torch.tensor([0, 1, 2])).loss.backward()
    optimizer.step()
    assert torch.isfinite(logits(model.eval(), inputs)).all()


def test_save_and_load_pruned_round_trip(tmp_path):
    model, inputs = tiny_model(), batch()
    prune_heads_and_mlps(model, EDGE_MASK)
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path)
    torch.testing.assert_close(logits(reloaded, inputs), expected, rtol=0, atol=1e-6)
    assert head_counts(reloaded) == EDGE_MASK.heads.sum(1).tolist()
    assert reloaded.config.bertlottery_head_mask == EDGE_MASK.heads.int().tolist()
    via_loader = load_classifier(tmp_path, 3)  # recognises a pruned directory
    torch.testing.assert_close(logits(via_loader, inputs), expected, rtol=0, atol=1e-6)
    with pytest.raises(BertLotteryError, match="num_labels=3, expected 2"):
        load_classifier(tmp_path, 2)
    tiny_model().save_pretrained(tmp_path / "full")
    with pytest.raises(BertLotteryError, match="not a pruned model"):
        load_pruned(tmp_path / "full")


# ------------------------------------------------------------------ prunable set and weight masks


def test_prunable_set_bert_base_counts():
    """protocol.md §m-pruning: 7,084,032 prunable values per layer, 85,008,384 in total (bert-base)."""
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2))
    prunable = prunable_parameters(model)
    assert sum(p.numel() for p in prunable.values()) == 85_008_384
    layer0 = sum(p.numel() for n, p in prunable.items() if ".layer.0." in n)
    assert layer0 == 7_084_032
    assert len(prunable) == 12 * 11
    assert "bert.encoder.layer.0.output.dense.weight" in prunable
    assert "bert.encoder.layer.0.output.dense.bias" not in prunable
    assert not any(k in n for n in prunable for k in ("embeddings", "LayerNorm", "pooler", "classifier"))


def test_prunable_set_is_role_based_for_roberta():
    model, inputs = tiny_model(RobertaConfig), batch()
    bert = tiny_model()
    names = list(prunable_parameters(model))
    assert names and all(n.startswith("roberta.encoder.layer.") for n in names)
    assert [n.split(".", 1)[1] for n in names] == [n.split(".", 1)[1] for n in prunable_parameters(bert)]
    # soft == physical on a non-"bert." model too
    attach_soft_masks(model, EDGE_MASK)
    soft = logits(model, inputs)
    detach_soft_masks(model)
    prune_heads_and_mlps(model, EDGE_MASK)
    torch.testing.assert_close(logits(model, inputs), soft, rtol=0, atol=1e-5)


def random_weight_mask(model, keep=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return WeightMask({n: torch.rand(p.shape, generator=g) < keep for n, p in prunable_parameters(model).items()})


def test_weight_mask_zero_in_forward_and_through_adamw_with_weight_decay():
    model, inputs = tiny_model(), batch()
    mask = random_weight_mask(model)
    apply_weight_mask(model, mask)
    modules = dict(model.named_modules())

    def effective(name):
        module_name, attr = name.rsplit(".", 1)
        return getattr(modules[module_name], attr)

    for name, keep in mask.masks.items():
        assert (effective(name)[~keep] == 0).all()
    start = {n: effective(n).detach().clone() for n in mask.masks}
    # the forward pass sees the masked weights: zeroing them by hand gives the same logits
    masked_out = logits(model, inputs)
    reference = tiny_model()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if name in mask.masks:
                param[~mask.masks[name]] = 0
    torch.testing.assert_close(masked_out, logits(reference, inputs), rtol=0, atol=1e-6)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        model(**inputs, labels=torch.tensor([0, 1, 2])).loss.backward()
        optimizer.step()
    for name, keep in mask.masks.items():
        weight = effective(name)
        assert (weight[~keep] == 0).all(), name
        assert not torch.equal(weight[keep], start[name][keep]), name  # training did happen

    before = logits(model.eval(), inputs)
    remove_weight_mask(model)
    assert not any(".parametrizations." in n for n in model.state_dict())
    for name, keep in mask.masks.items():
        assert (model.get_parameter(name)[~keep] == 0).all()
    torch.testing.assert_close(logits(model, inputs), before, rtol=0, atol=0)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_weight_mask_reapply_replaces_and_names_stay_stable():
    model = tiny_model()
    names = list(prunable_parameters(model))
    apply_weight_mask(model, random_weight_mask(model, seed=1))
    assert list(prunable_parameters(model)) == names  # names of the unmasked model, not parametrizations.*
    second = random_weight_mask(model, keep=0.3, seed=2)
    apply_weight_mask(model, second)
    for name, keep in second.masks.items():  # the forward pass sees the stored weights under `second` only
        module_name, attr = name.rsplit(".", 1)
        module = model.get_submodule(module_name)
        stored = getattr(module.parametrizations, attr).original
        assert torch.equal(getattr(module, attr), torch.where(keep, stored, torch.zeros_like(stored))), name
    layer = model.bert.encoder.layer[0].attention.self.query
    assert len(layer.parametrizations.weight) == 1


def test_weight_mask_wrong_model_error():
    model = tiny_model()
    other = tiny_model(num_hidden_layers=2)
    with pytest.raises(BertLotteryError, match="bert.encoder.layer.2"):
        apply_weight_mask(other, random_weight_mask(model))
    with pytest.raises(BertLotteryError, match="has shape"):
        apply_weight_mask(tiny_model(intermediate_size=41), random_weight_mask(model))


# ------------------------------------------------------------------ loading


def test_encoder_layers_rejects_non_bert_models():
    with pytest.raises(BertLotteryError, match="BERT-style"):
        encoder_layers(nn.Linear(2, 2))


def test_load_classifier_missing_path(tmp_path):
    with pytest.raises(BertLotteryError, match="not found"):
        load_classifier(tmp_path / "nope", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BertLotteryError, match="not a model folder"):
        load_classifier(tmp_path / "empty", 2)


def test_load_classifier_local_tiny_regression_and_random_init(tmp_path):
    tiny_model().bert.save_pretrained(tmp_path)  # an encoder-only checkpoint, like a pre-trained model
    model = load_classifier(tmp_path, 1)
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.manual_seed(0)
    random = load_classifier(tmp_path, 2, random_init=True)
    assert random.config.problem_type == "single_label_classification"
    assert not torch.equal(random.bert.encoder.layer[0].attention.self.query.weight,
                           model.bert.encoder.layer[0].attention.self.query.weight)


def test_load_classifier_fine_tuned_round_trip_and_label_mismatch(tmp_path):
    original, inputs = tiny_model(), batch()
    original.save_pretrained(tmp_path)
    reloaded = load_classifier(tmp_path, 3)
    torch.testing.assert_close(logits(reloaded.eval(), inputs), logits(original, inputs), rtol=0, atol=1e-6)
    with pytest.raises(BertLotteryError, match="num_labels=1"):
        load_classifier(tmp_path, 1)


def test_minilm_loads_fp32_and_soft_equals_physical(monkeypatch, minilm_dir):
    """The real MiniLM (an fp16 checkpoint, shared folder; skipped without it)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = load_classifier(minilm_dir, 2).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config._attn_implementation == "sdpa"
    assert head_counts(model) == [12] * 6
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 1012, 102, 0, 0]])
    inputs = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    g = torch.Generator().manual_seed(3)
    heads = torch.rand(6, 12, generator=g) < 0.5
    heads[2] = False
    mask = HeadMlpMask(heads, torch.tensor([1, 1, 0, 1, 0, 1]))
    attach_soft_masks(model, mask)
    soft = logits(model, inputs)
    detach_soft_masks(model)
    prune_heads_and_mlps(model, mask)
    torch.testing.assert_close(logits(model, inputs), soft, rtol=0, atol=1e-5)
    assert size_of(model.config, mask)["params_kept"] == sum(p.numel() for p in model.parameters())
    assert os.environ["HF_HUB_OFFLINE"] == "1"
