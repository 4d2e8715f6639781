"""Every supported encoder family through the whole method, on tiny random configs built in code (2 layers,
4 heads, hidden 32): BERT, RoBERTa, ELECTRA's discriminator (embeddings smaller than hidden, so its
embeddings_project runs), DistilBERT, DeBERTa-v2 (separate relative-position projections, share_att_key
false), DeBERTa-v3 (shared ones, log buckets, no absolute positions) and ModernBERT (fused QKV, GLU MLP,
pre-norm, local attention in layer 1). Decoders and anything else are refused, naming what was found.
DeBERTa and ModernBERT have no padding-free forward: it is refused, naming the setting to change.

Tokenizers: the tiny WordPiece vocabulary of the tests (conftest.tiny_vocab). RoBERTa uses a BERT tokenizer
folder here (its config's pad_token_id set to [PAD] = 0, one token type as the real RoBERTa), ELECTRA a BERT
tokenizer as the real one is, DistilBERT its own DistilBertTokenizer (whose model inputs have no
token_type_ids), DeBERTa and ModernBERT a BERT tokenizer folder (their configs' pad_token_id set to 0)."""

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
    DebertaV2Config,
    DistilBertTokenizer,
    ElectraConfig,
    GPT2Config,
    ModernBertConfig,
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
from bertlottery.search.fisher import main_find_f_mask
from bertlottery.search.mpruning import main_find_m_mask, original_order
from bertlottery.search.spruning import main_find_s_mask
from bertlottery.settings import training_defaults
from bertlottery.train.evaluation import main_evaluate_pruned
from bertlottery.train.loop import main_finetune

PADDING_FREE_FAMILIES = ["bert", "roberta", "electra", "distilbert"]
PADDED_ONLY_FAMILIES = ["deberta-v2", "deberta-v3", "modernbert"]
FAMILIES = PADDING_FREE_FAMILIES + PADDED_ONLY_FAMILIES
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
    if family == "deberta-v2":  # pos_key_proj and pos_query_proj of their own (share_att_key false)
        return DebertaV2Config(**bert_style, pad_token_id=0, relative_attention=True, pos_att_type=["p2c", "c2p"],
                               share_att_key=False, **common)
    if family == "deberta-v3":  # as deberta-v3-base: shared projections, log buckets, no absolute positions
        return DebertaV2Config(**bert_style, pad_token_id=0, relative_attention=True, pos_att_type=["p2c", "c2p"],
                               share_att_key=True, position_biased_input=False, position_buckets=16,
                               norm_rel_ebd="layer_norm", **common)
    if family == "modernbert":  # layer 0 global, layer 1 local attention (window 8 < the test's lengths)
        return ModernBertConfig(**bert_style, pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2,
                                sep_token_id=3, local_attention=8, **common)
    return DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common)


def tiny_classifier(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(family_config(family, num_labels=3)).eval()


def save_pretrained_encoder(family: str, path):
    """A pre-trained-like folder: the bare encoder (no classifier) and the family's tokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    tokenizer_class = DistilBertTokenizer if family == "distilbert" else BertTokenizer  # BERT's for the others
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
    assert all(isinstance(m, torch.nn.Linear) for m in (parts.attn_dense, parts.intermediate_dense,
                                                         parts.output_dense))
    roles = prunable_roles(model)
    assert list(roles) == list(prunable_parameters(model))
    if family == "modernbert":  # fused QKV, GLU MLP (input and gate rows), no biases
        assert parts.query is None and parts.qkv.out_features == 3 * 32 and parts.head_projections == (parts.qkv,)
        assert parts.intermediate_dense.out_features == 2 * 64 and parts.output_dense.in_features == 64
        assert [roles[n] for n in original_order(roles)][:4] == [(0, "qkv.weight"), (0, "attn_out.weight"),
                                                                 (0, "mlp_in.weight"), (0, "mlp_out.weight")]
        assert len(roles) == 2 * 4
    else:
        assert all(isinstance(m, torch.nn.Linear) for m in (parts.query, parts.key, parts.value))
        assert parts.intermediate_dense.out_features == 64 and parts.output_dense.in_features == 64
        assert len(roles) == 2 * 11
        # every family's m-pruning pool is in the original's per-layer role order
        assert [roles[n] for n in original_order(roles)][:4] == [(0, "key.weight"), (0, "key.bias"),
                                                                 (0, "query.weight"), (0, "query.bias")]
    assert len(parts.extra_head_projections) == (2 if family == "deberta-v2" else 0)
    names = " ".join(roles)
    assert not any(k in names for k in ("embeddings", "LayerNorm", "layer_norm", "norm", "pooler", "classifier",
                                        "pos_"))
    assert uses_token_types(model) == (family in ("bert", "electra"))
    if family in PADDING_FREE_FAMILIES:
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
    assert parts[1].head_projections == () and parts[1].intermediate_dense is None
    assert [p.out_features for p in parts[0].head_projections] == (
        [72] if family == "modernbert" else [24] * (5 if family == "deberta-v2" else 3))
    torch.testing.assert_close(logits(model, batch), soft, rtol=0, atol=1e-5)
    size = size_of(model.config, UNEVEN)
    assert size["params_total"] == full and size["params_kept"] == sum(p.numel() for p in model.parameters())
    assert size["heads_kept"] == 3 and size["mlps_kept"] == 1
    model.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path)
    assert type(reloaded) is type(model)
    torch.testing.assert_close(logits(reloaded, batch), soft, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", PADDING_FREE_FAMILIES)
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
    for family in PADDING_FREE_FAMILIES:
        model = tiny_classifier(family).train()
        out = classify(model, PackedBatch.from_padded(padded_batch()))
        assert out.logits.shape == (6, 3) and torch.isfinite(out.loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_maps_of_every_family(family):
    """The pattern analysis' raw and normed maps: per layer and head, rows of alpha sum to 1 over real keys
    (the rows of padding queries, which strip_padding drops, are whatever the family computes there)."""
    batch = padded_batch(lengths=(9, 4))
    raw, normed = attention_maps(tiny_classifier(family), batch)
    assert raw.shape == normed.shape == (2, 2, 4, 12, 12)
    torch.testing.assert_close(raw[1, :, :, :4, :4].sum(-1), torch.ones(2, 4, 4))
    assert (normed >= 0).all() and (raw[1, :, :, :4, 4:] == 0).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_m_block_fractions_find_each_heads_values(family):
    """Figure 1a's per-head survival: a weight mask dropping exactly head 1 of layer 0 (its rows of every head
    projection, fused or not, and its columns of the output projection) shows that head empty, all else whole."""
    from bertlottery.analysis.m_blocks import block_fractions

    model = tiny_classifier(family)
    parts = layer_parts(encoder_layers(model)[0])
    names = {id(m): n for n, m in model.named_modules()}
    masks = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    for linear in (*parts.head_projections, parts.attn_dense):
        rows = parts.head_rows(linear, torch.tensor([1]))
        for attr in ("weight", "bias"):
            name = f"{names[id(linear)]}.{attr}"
            if name in masks and linear is parts.attn_dense and attr == "weight":
                masks[name][:, rows] = False
            elif name in masks and linear is not parts.attn_dense:
                masks[name][rows] = False
    head_kept, head_total, mlp_kept, mlp_total = block_fractions(WeightMask(masks), model)
    assert head_kept[0, 1] == 0 and (head_total == head_total[0, 0]).all() and (mlp_kept == mlp_total).all()
    head_kept[0, 1] = head_total[0, 1]
    assert (head_kept == head_total).all()


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


@pytest.mark.parametrize("family", PADDED_ONLY_FAMILIES)
def test_padding_free_is_refused_for_deberta_and_modernbert_naming_the_setting(family):
    """Their attention has positions inside (relative buckets; rotary and local windows): the packed forward
    would need its own attention core, so every packed call is refused and the padded forward runs."""
    model = tiny_classifier(family)
    expected = f"model_type '{model.config.model_type}' is not one of .*set training.padding_free: false"
    with pytest.raises(BertLotteryError, match=expected):
        check_supported(model)
    with pytest.raises(BertLotteryError, match=expected):
        classify(model, PackedBatch.from_padded(padded_batch()))


@pytest.mark.parametrize("family", PADDED_ONLY_FAMILIES)
def test_soft_mask_gradients_of_the_padded_forward(family):
    """The s/f importance scores: gradients reach every head and MLP multiplier, and zeroing a head's
    multiplier changes the logits as removing its rows does (the physical pruning test above)."""
    model, batch = tiny_classifier(family), padded_batch()
    soft = attach_soft_masks(model).requires_grad_()
    classify(model, batch).loss.backward()
    assert (soft.heads.grad != 0).all() and (soft.mlps.grad != 0).all()


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
    """prepare-data with the family's tokenizer, finetune, find-s-mask, find-f-mask, find-m-mask, evaluate-pruned with
    both good masks, retraining with an uneven s-mask and with the m-mask, each through its command."""
    pretrained = save_pretrained_encoder(family, tmp_path / "pretrained")
    data = tmp_path / "data"
    prepare_data("RTE", str(pretrained), data, glue_dir=FIXTURE_GLUE, max_train_examples=96, max_dev_examples=48,
                 subsample_seed=0, max_seq_length=64)
    padding_free = family in PADDING_FREE_FAMILIES
    training = json.dumps(training_defaults() | {"learning_rate": 1e-3, "batch_size": 16, "epochs": 1,
                                                 "padding_free": padding_free})

    def finetune(name, *flags):
        out = tmp_path / name
        main_finetune(["--task", "RTE", "--seed", "42", "--model", str(pretrained), "--data-dir", str(data),
                       "--training", training, "--out-dir", str(out), "--eval-output", str(out / "metrics.json"),
                       *flags])
        return out

    tuned = finetune("finetune")
    model = load_classifier(tuned / "model", 2)
    assert type(model).__name__.lower().startswith(family.split("-")[0]) and head_counts(model) == [4, 4]
    common = ["--task", "RTE", "--seed", "42", "--model-dir", str(tuned / "model"), "--data-dir", str(data),
              "--padding-free" if padding_free else "--no-padding-free"]
    main_find_s_mask([*common, "--out-dir", str(tmp_path / "s"),
                      "--settings", json.dumps({"batch_size": 16, "modes": ["joint"]})])
    good = HeadMlpMask.load(tmp_path / "s" / "good.safetensors")
    assert good.heads.shape == (2, 4) and good.head_importance.shape == (2, 4)
    assert json.loads((tmp_path / "s" / "search.json").read_text())["heads_kept"] == good.heads_kept
    main_find_f_mask([*common, "--out-dir", str(tmp_path / "f"), "--reference", str(tmp_path / "s" / "good.safetensors"),
                      "--settings", json.dumps({"batch_size": 16, "n_examples": 32})])
    f_good = HeadMlpMask.load(tmp_path / "f" / "good.safetensors")
    assert (f_good.heads_kept, f_good.mlps_kept) == (good.heads_kept, good.mlps_kept)
    assert (f_good.head_importance > 0).all()
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
