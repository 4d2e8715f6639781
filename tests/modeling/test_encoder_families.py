"""Every supported encoder family through the whole method, on tiny random configs built in code (2 layers,
4 heads, hidden 32): BERT, RoBERTa, ELECTRA's discriminator (embeddings smaller than hidden, so its
embeddings_project runs) and DistilBERT. Decoders and anything else are refused, naming what was found.

Tokenizers: the tiny WordPiece vocabulary of the tests (conftest.tiny_vocab). RoBERTa uses a BERT tokenizer
folder here (its config's pad_token_id set to [PAD] = 0, one token type as the real RoBERTa), ELECTRA a BERT
tokenizer as the real one is, DistilBERT its own DistilBertTokenizer (whose model inputs have no
token_type_ids)."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch
from conftest import FIXTURE_GLUE, tiny_vocab
from test_unpadded import assert_equivalent
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertTokenizer,
    DistilBertConfig,
    DistilBertTokenizer,
    ElectraConfig,
    GPT2Config,
    RobertaConfig,
    XLMRobertaConfig,
)

from bertlottery.errors import BertLotteryError
from bertlottery.glue.prepare import prepare_data, tokenize_examples
from bertlottery.glue.reading import Example
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
    prunable_roles,
    uses_token_types,
)
from bertlottery.modeling.unpadded import PackedBatch, check_supported, classify
from bertlottery.modeling.weight_masks import apply_weight_mask
from bertlottery.patterns.attention import attention_maps
from bertlottery.search.mpruning import main_find_m_mask, original_order
from bertlottery.search.spruning import main_find_s_mask
from bertlottery.settings import training_defaults
from bertlottery.train.evaluation import main_evaluate_pruned
from bertlottery.train.loop import main_finetune

FAMILIES = ["bert", "roberta", "electra", "distilbert"]
# 3 heads left in layer 0, none in layer 1; layer 1 loses its MLP too
UNEVEN = HeadMlpMask(torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0]]), torch.tensor([1, 0]))


@lru_cache(maxsize=1)
def vocab_size() -> int:
    return len(tiny_vocab())


def family_config(family: str, **overrides):
    common = dict(vocab_size=vocab_size(), max_position_embeddings=128, num_labels=2) | overrides
    bert_style = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if family == "bert":
        return BertConfig(**bert_style, **common)
    if family == "roberta":  # [PAD] of the BERT tokenizer is 0; one token type, as roberta-base
        return RobertaConfig(**bert_style, pad_token_id=0, type_vocab_size=1, **common)
    if family == "electra":  # embeddings (16) smaller than hidden (32): embeddings_project
        return ElectraConfig(**bert_style, embedding_size=16, **common)
    return DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common)


def tiny_classifier(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(family_config(family, num_labels=3)).eval()


def save_pretrained_encoder(family: str, path):
    """A pre-trained-like folder: the bare encoder (no classifier) and the family's tokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    tokenizer_class = DistilBertTokenizer if family == "distilbert" else BertTokenizer
    tokenizer_class(vocab={token: i for i, token in enumerate(tiny_vocab())}, do_lower_case=True).save_pretrained(path)
    torch.manual_seed(0)
    AutoModel.from_config(family_config(family)).save_pretrained(path)
    return path


def padded_batch(lengths=(20, 5, 13, 20, 1, 7), seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    mask = (torch.arange(int(lengths.max()) + 3)[None] < lengths[:, None]).long()
    ids = torch.randint(5, vocab_size(), mask.shape, generator=g) * mask  # [PAD] = 0 only in the padding
    types = (torch.rand(mask.shape, generator=g) > 0.5).long() * mask
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
            "labels": torch.randint(0, 3, (len(lengths),), generator=g)}


def logits(model, batch):
    with torch.no_grad():
        return classify(model, batch).logits


# ------------------------------------------------------------------ structure by role


@pytest.mark.parametrize("family", FAMILIES)
def test_roles_heads_and_pool_order(family):
    model = tiny_classifier(family)
    assert head_counts(model) == [4, 4]
    parts = layer_parts(encoder_layers(model)[0])
    assert parts.num_heads == 4 and parts.head_size == 8
    assert all(isinstance(m, torch.nn.Linear) for m in (parts.query, parts.key, parts.value, parts.attn_dense,
                                                         parts.intermediate_dense, parts.output_dense))
    assert parts.intermediate_dense.out_features == 64 and parts.output_dense.in_features == 64
    roles = prunable_roles(model)
    assert len(roles) == 2 * 11 and list(roles) == list(prunable_parameters(model))
    # every family's m-pruning pool is in the original's per-layer role order
    assert [roles[n] for n in original_order(roles)][:4] == [(0, "key.weight"), (0, "key.bias"),
                                                             (0, "query.weight"), (0, "query.bias")]
    names = " ".join(roles)
    assert not any(k in names for k in ("embeddings", "LayerNorm", "layer_norm", "pooler", "classifier"))
    assert uses_token_types(model) == (family in ("bert", "electra"))
    check_supported(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_uneven_and_zero_heads_and_removed_mlp_equal_the_soft_masked_model(family, tmp_path):
    model, batch = tiny_classifier(family), padded_batch()
    full = sum(p.numel() for p in model.parameters())
    attach_soft_masks(model, UNEVEN)
    soft = logits(model, batch)
    detach_soft_masks(model)
    prune_heads_and_mlps(model, UNEVEN)
    assert head_counts(model) == [3, 0]
    parts = [layer_parts(layer) for layer in encoder_layers(model)]
    assert parts[1].query is None and parts[1].intermediate_dense is None and parts[0].query.out_features == 24
    torch.testing.assert_close(logits(model, batch), soft, rtol=0, atol=1e-5)
    size = size_of(model.config, UNEVEN)
    assert size["params_total"] == full and size["params_kept"] == sum(p.numel() for p in model.parameters())
    assert size["heads_kept"] == 3 and size["mlps_kept"] == 1
    model.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path)
    assert type(reloaded) is type(model)
    torch.testing.assert_close(logits(reloaded, batch), soft, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_free_equals_padded(family):
    """Logits and loss to 1e-6, every gradient to 1e-5 relative (as tests/modeling/test_unpadded.py): the
    plain model, with soft masks (their gradients too), physically pruned, and under a weight mask."""
    batch = padded_batch()
    assert_equivalent(tiny_classifier(family), batch)
    model = tiny_classifier(family)
    soft = attach_soft_masks(model)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        soft.heads.copy_(torch.rand(soft.heads.shape, generator=g))
        soft.mlps.copy_(torch.rand(soft.mlps.shape, generator=g))
    assert_equivalent(model, batch, extra=(soft.requires_grad_().heads, soft.mlps))
    pruned = prune_heads_and_mlps(tiny_classifier(family), UNEVEN)
    assert_equivalent(pruned, batch)
    weighted = tiny_classifier(family)
    apply_weight_mask(weighted, WeightMask({n: torch.rand(p.shape, generator=g) < 0.5
                                            for n, p in prunable_parameters(weighted).items()}))
    assert_equivalent(weighted, batch)


def test_padding_free_in_train_mode_runs_every_family_dropout():
    """Dropout on (train mode): the packed forward draws other masks, so only its shape and finiteness."""
    for family in FAMILIES:
        model = tiny_classifier(family).train()
        out = classify(model, PackedBatch.from_padded(padded_batch()))
        assert out.logits.shape == (6, 3) and torch.isfinite(out.loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_maps_of_every_family(family):
    """The pattern analysis' raw and normed maps: per layer and head, rows of alpha sum to 1 over real keys."""
    batch = padded_batch(lengths=(9, 4))
    raw, normed = attention_maps(tiny_classifier(family), batch)
    assert raw.shape == normed.shape == (2, 2, 4, 12, 12)
    torch.testing.assert_close(raw[1, :, :, :4, :4].sum(-1), torch.ones(2, 4, 4))
    assert (normed >= 0).all() and (raw[1, :, :, :, 4:] == 0).all()


# ------------------------------------------------------------------ refusals


def test_decoders_and_other_models_are_refused_naming_what_was_found(tmp_path):
    gpt2 = AutoModelForSequenceClassification.from_config(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=50))
    with pytest.raises(BertLotteryError) as info:
        encoder_layers(gpt2)
    text = str(info.value)
    assert "GPT2ForSequenceClassification" in text and "'gpt2'" in text and "decoder" in text
    assert "children: wte, wpe, drop, h, ln_f" in text and "expected a BERT-style encoder" in text
    assert "DistilBERT" in text
    gpt2.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(BertLotteryError, match="is a decoder"):
        load_classifier(tmp_path / "gpt2", 2)
    causal = AutoModelForSequenceClassification.from_config(family_config("bert", is_decoder=True))
    with pytest.raises(BertLotteryError, match="BertForSequenceClassification.*is a decoder"):
        head_counts(causal)
    with pytest.raises(BertLotteryError, match="Linear.*no encoder layer list found; expected a BERT-style"):
        encoder_layers(torch.nn.Linear(2, 2))


def test_padding_free_only_for_the_tested_model_types():
    """XLM-R has BERT-style layers (the lookup finds them) but its padding-free forward is untested."""
    xlmr = AutoModelForSequenceClassification.from_config(XLMRobertaConfig(
        vocab_size=vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    assert head_counts(xlmr) == [4, 4]
    with pytest.raises(BertLotteryError, match="model_type 'xlm-roberta' is not one of bert, roberta, electra, "
                                               "distilbert; set training.padding_free: false"):
        check_supported(xlmr)


def test_a_tokenizer_that_writes_no_token_types_gives_zeros(tmp_path):
    """prepare-data with a tokenizer whose output has no token_type_ids (truncated rows included)."""
    tokenizer = DistilBertTokenizer(vocab={token: i for i, token in enumerate(tiny_vocab())})

    def without_types(*args, **kwargs):
        encoded = tokenizer(*args, **kwargs)
        del encoded["token_type_ids"]
        return encoded

    examples = [Example("the cat sat", "hello world", 0, 1), Example("a b c " * 20, "tiny pair", 1, 2)]
    arrays = tokenize_examples(without_types, examples, max_seq_length=16)
    reference = tokenize_examples(tokenizer, examples, max_seq_length=16)
    assert arrays.n_truncated == 1 and (arrays.input_ids == reference.input_ids).all()
    assert (arrays.token_type_ids == 0).all() and reference.token_type_ids.any()


def test_a_layer_missing_a_role_names_it():
    model = tiny_classifier("distilbert")
    del encoder_layers(model)[1].ffn.lin2
    with pytest.raises(BertLotteryError, match="ffn.lin2 is missing, expected an nn.Linear"):
        encoder_layers(model)


# ------------------------------------------------------------------ the whole method, through the commands


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_finetune_searches_and_retraining(family, tmp_path):
    """prepare-data with the family's tokenizer, finetune, find-s-mask, find-m-mask, evaluate-pruned with
    both good masks, retraining with an uneven s-mask and with the m-mask, each through its command."""
    pretrained = save_pretrained_encoder(family, tmp_path / "pretrained")
    data = tmp_path / "data"
    prepare_data("RTE", str(pretrained), data, glue_dir=FIXTURE_GLUE, max_train_examples=96, max_dev_examples=48,
                 subsample_seed=0, max_seq_length=64)
    training = json.dumps(training_defaults() | {"learning_rate": 1e-3, "batch_size": 16, "epochs": 1})

    def finetune(name, *flags):
        out = tmp_path / name
        main_finetune(["--task", "RTE", "--seed", "42", "--model", str(pretrained), "--data-dir", str(data),
                       "--training", training, "--out-dir", str(out), "--eval-output", str(out / "metrics.json"),
                       *flags])
        return out

    tuned = finetune("finetune")
    model = load_classifier(tuned / "model", 2)
    assert type(model).__name__.lower().startswith(family) and head_counts(model) == [4, 4]
    common = ["--task", "RTE", "--seed", "42", "--model-dir", str(tuned / "model"), "--data-dir", str(data)]
    main_find_s_mask([*common, "--out-dir", str(tmp_path / "s"),
                      "--settings", json.dumps({"batch_size": 16, "modes": ["joint"]})])
    good = HeadMlpMask.load(tmp_path / "s" / "good.safetensors")
    assert good.heads.shape == (2, 4) and good.head_importance.shape == (2, 4)
    assert json.loads((tmp_path / "s" / "search.json").read_text())["heads_kept"] == good.heads_kept
    main_find_m_mask([*common, "--out-dir", str(tmp_path / "m"),
                      "--settings", json.dumps({"batch_size": 16, "max_iterations": 3})])
    m_good = WeightMask.load(tmp_path / "m" / "good.safetensors")
    assert set(m_good.masks) == set(prunable_parameters(model)) and m_good.kept < sum(
        p.numel() for p in prunable_parameters(model).values())

    main_evaluate_pruned(["--task", "RTE", "--seed", "42", "--data-dir", str(data), "--training", training,
                          "--model-dir", str(tuned / "model"),
                          "--mask", str(tmp_path / "s" / "good.safetensors"), "--family", "s", "--kind", "good",
                          "--output", str(tmp_path / "pruned_s.json"),
                          "--mask", str(tmp_path / "m" / "good.safetensors"), "--family", "m", "--kind", "good",
                          "--output", str(tmp_path / "pruned_m.json")])
    pruned_s = json.loads((tmp_path / "pruned_s.json").read_text())
    assert pruned_s["evaluated"] == "pruned" and pruned_s["mask_size"]["heads_kept"] == good.heads_kept
    assert json.loads((tmp_path / "pruned_m.json").read_text())["mask_size"]["prunable_kept"] == m_good.kept

    UNEVEN.save(tmp_path / "uneven.safetensors")
    s_run = finetune("retrain_s", "--mask", str(tmp_path / "uneven.safetensors"), "--family", "s",
                     "--variant", "good")
    retrained = load_classifier(s_run / "model", 2)
    assert head_counts(retrained) == [3, 0] and layer_parts(encoder_layers(retrained)[1]).output_dense is None
    record = json.loads((s_run / "metrics.json").read_text())
    assert record["evaluated"] == "retrained" and record["mask_size"]["heads_kept"] == 3
    m_run = finetune("retrain_m", "--mask", str(tmp_path / "m" / "good.safetensors"), "--family", "m",
                     "--variant", "good")
    weights = prunable_parameters(load_classifier(m_run / "model", 2))
    for name, keep in m_good.masks.items():
        assert (weights[name][~keep] == 0).all(), name
    kept = torch.cat([weights[n][keep].flatten() for n, keep in m_good.masks.items()])
    assert (kept != 0).float().mean() > 0.99  # the kept weights are not zeroed
