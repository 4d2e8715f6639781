"""Tests of bertlottery.patterns (attention, rules, cnn, extract, summary, cli): attention maps, rule classifier, CNN, counts, summaries."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bertlottery.errors import BertLotteryError  # noqa: E402
from bertlottery.patterns.attention import attention_maps, strip_padding  # noqa: E402
from bertlottery.patterns.cli import main_patterns  # noqa: E402
from bertlottery.patterns.cnn import (  # noqa: E402
    CnnClassifier,
    PatternCNN,
    canonical_label,
    cnn_input,
    load_labelled,
    train_cnn,
)
from bertlottery.patterns.extract import (  # noqa: E402
    count_patterns,
    load_counts,
    sample_examples,
    save_counts,
)
from bertlottery.patterns.rules import (  # noqa: E402
    PATTERN_TYPES,
    RuleClassifier,
    RuleThresholds,
    map_features,
    synthetic_map,
)
from bertlottery.patterns.summary import (  # noqa: E402
    distributions,
    heterogeneous_pairs,
    pattern_table,
    super_heterogeneous_correlation,
)


def tiny_model(seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=64, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config).eval()


def padded_batch(lengths, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(5, 60, (len(lengths), width), generator=gen)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    types = torch.zeros_like(ids)
    types[:, width // 2:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


# ---------------------------------------------------------------------------------------------- maps


def test_normed_attention_matches_explicit_computation():
    model = tiny_model()
    batch = padded_batch([9, 9])
    raw, normed = attention_maps(model, batch)
    assert raw.shape == normed.shape == (2, 2, 4, 9, 9)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    for layer_index, layer in enumerate(model.bert.encoder.layer):
        x = out.hidden_states[layer_index]  # the layer's input = self-attention input
        sa, dense = layer.attention.self, layer.attention.output.dense
        v = x @ sa.value.weight.T + sa.value.bias  # [B, n, 32]
        for h in range(4):
            cols = slice(8 * h, 8 * (h + 1))
            f = v[..., cols] @ dense.weight[:, cols].T  # [B, n, 32]: bias of the dense excluded
            alpha = out.attentions[layer_index][:, h]  # [B, n(query), n(key)]
            explicit = (alpha[..., None] * f[:, None, :, :]).norm(dim=-1)
            torch.testing.assert_close(normed[:, layer_index, h], explicit, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(raw[:, layer_index, h], alpha)


def test_padding_is_stripped_and_does_not_change_maps():
    model = tiny_model(1)
    batch = padded_batch([12, 7, 10], seed=3)
    raw, normed = attention_maps(model, batch)
    for kind, maps in (("raw", raw), ("normed", normed)):
        per_example = strip_padding(maps, batch["attention_mask"])
        assert [m.shape for m in per_example] == [(2, 4, n, n) for n in (12, 7, 10)]
        for b, n in enumerate((12, 7, 10)):
            single = {k: v[b:b + 1, :n] for k, v in batch.items()}
            alone = attention_maps(model, single)[0 if kind == "raw" else 1][0]
            torch.testing.assert_close(per_example[b], alone, rtol=1e-4, atol=1e-6)
    assert torch.allclose(strip_padding(raw, batch["attention_mask"])[1].sum(-1), torch.ones(2, 4, 7))


def test_attention_maps_switch_sdpa_model_to_eager():
    model = tiny_model()
    model.set_attn_implementation("sdpa")
    raw, _ = attention_maps(model, padded_batch([6]))
    assert raw.shape == (1, 2, 4, 6, 6)
    assert model.config._attn_implementation == "eager"


# ---------------------------------------------------------------------------------------------- rules


@pytest.mark.parametrize("pattern", PATTERN_TYPES)
@pytest.mark.parametrize("noise", [0.0, 0.15, 0.3])
def test_rule_classifier_labels_synthetic_maps(pattern, noise):
    classify = RuleClassifier()
    for n in (16, 23, 40, 77, 128):
        maps = torch.stack([torch.tensor(synthetic_map(pattern, n, np.random.default_rng([n, s]), noise))
                            for s in range(6)])
        labels = [PATTERN_TYPES[i] for i in classify(maps).tolist()]
        assert labels == [pattern] * 6, (n, labels)


def test_rule_classifier_is_scale_free_for_normed_maps():
    rng = np.random.default_rng(0)
    maps = torch.stack([torch.tensor(synthetic_map(t, 30, rng, 0.1)) for t in PATTERN_TYPES]).float()
    scaled = maps * torch.rand(5, 1, 30) * 7  # normed maps: rows no longer sum to 1
    assert RuleClassifier()(scaled).tolist() == list(range(5))


def test_rule_features_and_thresholds_behave():
    uniform = torch.full((1, 20, 20), 1 / 20)
    f = map_features(uniform)
    assert float(f["vertical"]) == 0.0 and float(f["block_mass"]) < 0.8
    assert RuleClassifier()(uniform).item() == PATTERN_TYPES.index("heterogeneous")
    cls = torch.zeros(1, 20, 20)
    cls[:, :, 0] = 1.0
    assert float(map_features(cls)["vertical"]) == pytest.approx(1.0)
    strict = RuleClassifier(RuleThresholds(vertical_min=1.01, mixed_min_total=1.01))
    assert strict(cls).item() == PATTERN_TYPES.index("heterogeneous")


def test_synthetic_map_rejects_unknown_type():
    with pytest.raises(BertLotteryError, match="expected one of"):
        synthetic_map("spiral", 10, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- CNN


def test_cnn_shapes_and_init():
    model = PatternCNN()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 6 + [(1, 1)] * 2
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 16, 5]
    assert all(not c.bias.detach().any() for c in convs)
    x = cnn_input(torch.rand(3, 37, 37))
    assert x.shape == (3, 1, 64, 64) and float(x.amax()) <= 1.0 + 1e-6
    assert model(x).shape == (3, 5)


def synthetic_labelled(per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    maps, labels = [], []
    for label, pattern in enumerate(PATTERN_TYPES):
        for _ in range(per_class):
            maps.append(synthetic_map(pattern, int(rng.integers(16, 48)), rng, float(rng.uniform(0, 0.2))))
            labels.append(label)
    return maps, np.array(labels)


@pytest.mark.slow  # ~5 s alone; far more on a loaded 2-core machine
def test_cnn_learns_synthetic_classes():
    maps, labels = synthetic_labelled(20, seed=0)
    model, card = train_cnn(maps, labels, epochs=15, seed=13, size=16, batch_size=16)
    assert card["val_accuracy"] >= 0.9, card
    assert card["n_val"] == 20 and card["n_train"] == 80 and card["class_counts"]["block"] == 20
    assert 0 <= card["best_epoch"] < 15 and card["val_f1_weighted"] >= 0.85
    classify = CnnClassifier(model, 16)
    test_maps, test_labels = synthetic_labelled(6, seed=1)
    predicted = [classify(torch.tensor(m, dtype=torch.float32)[None]).item() for m in test_maps]
    assert np.mean(np.array(predicted) == test_labels) >= 0.8


def test_cnn_train_command_and_labelled_format(tmp_path):
    maps, labels = synthetic_labelled(6, seed=2)
    folder = tmp_path / "labelled" / "raw"
    folder.mkdir(parents=True)
    names = {0: "other", 1: "Block", 2: "diagonal", 3: "single vertical", 4: "Vertical + Diagonal"}
    rows = ["file,label"]
    for i, (m, y) in enumerate(zip(maps, labels)):
        np.save(folder / f"m{i}.npy", m)
        rows.append(f"m{i}.npy,{names[int(y)]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    loaded, loaded_labels = load_labelled(folder)
    assert loaded_labels.tolist() == labels.tolist() and loaded[3].shape == maps[3].shape
    main_patterns(["train-cnn", "--labelled-dir", str(tmp_path / "labelled"), "--kind", "raw",
                   "--epochs", "2", "--out-dir", str(tmp_path / "cnn" / "raw")])
    card = json.loads((tmp_path / "cnn" / "raw" / "card.json").read_text())
    assert card["classes"] == list(PATTERN_TYPES) and card["epochs"] == 2
    assert (tmp_path / "cnn" / "raw" / "model.safetensors").is_file()
    with pytest.raises(BertLotteryError, match="fewer validation maps than classes"):
        pick = [i for i in range(len(maps)) if i % 6 < 2]  # two of each class: 2 validation maps < 5 classes
        train_cnn([maps[i] for i in pick], labels[pick], epochs=1, seed=0)


def test_labels_are_checked(tmp_path):
    assert canonical_label("MIX", "x") == PATTERN_TYPES.index("vertical+diagonal")
    with pytest.raises(BertLotteryError, match="label 'spiral'"):
        canonical_label("spiral", "labels.csv:2")
    (tmp_path / "labels.csv").write_text("file,label\nmissing.npy,block\n")
    with pytest.raises(BertLotteryError, match="cannot read map"):
        load_labelled(tmp_path)


# ---------------------------------------------------------------------------------------------- counts


def test_sample_examples_respects_min_tokens_and_seeds():
    lengths = np.array([5, 20, 30, 8, 17, 40, 16, 3])
    a = sample_examples(lengths, 3, 16, 1337, 42)
    assert len(a) == 3 and all(lengths[a] >= 16)
    assert a.tolist() == sample_examples(lengths, 3, 16, 1337, 42).tolist()
    assert len(sample_examples(lengths, 100, 16, 1337, 42)) == 5


def test_count_patterns_counts_every_head_of_every_example():
    model = tiny_model()
    batches = [padded_batch([10, 14], seed=1), padded_batch([12], seed=2)]
    classifiers = {"raw": RuleClassifier(), "normed": RuleClassifier()}
    counts = count_patterns(model, batches, classifiers)
    assert counts["raw"].shape == counts["normed"].shape == (2, 4, 5)
    assert (counts["raw"].sum(-1) == 3).all() and (counts["normed"].sum(-1) == 3).all()
    heads = torch.zeros(2, 4, dtype=torch.bool)
    heads[1, 2] = True
    sub = count_patterns(model, batches, classifiers, heads=heads)
    assert int(sub["raw"].sum()) == 3 and int(sub["raw"][1, 2].sum()) == 3


def fake_record(task, seed, config, all_counts, super_heads):
    tensors = {"all/raw": all_counts, "all/normed": all_counts.flip(-1),
               "super/raw": all_counts * super_heads[:, :, None], "super/normed": all_counts.flip(-1) * super_heads[:, :, None],
               "super/heads": super_heads.to(torch.uint8)}
    meta = {"task": task, "seed": str(seed), "config": config, "types": json.dumps(list(PATTERN_TYPES)),
            "classifier_raw": "rules", "classifier_normed": "rules"}
    return tensors, meta


def test_point_biserial_on_synthetic_counts():
    counts = torch.zeros(2, 2, 5, dtype=torch.long)
    counts[0, 0, 0] = 10  # super head: always heterogeneous
    counts[0, 1, 2] = 10  # others: never
    counts[1, :, 1] = 10
    heads = torch.tensor([[1, 0], [0, 0]], dtype=torch.bool)
    x, y = heterogeneous_pairs(counts, heads)
    assert len(x) == 40 and x.sum() == 10 and y.sum() == 10
    result = super_heterogeneous_correlation([fake_record("RTE", 1, "finetuned", counts, heads)])
    assert result["raw"]["r"] == pytest.approx(1.0) and result["raw"]["n_pairs"] == 40
    # normed counts are flipped: heterogeneous now sits in the last slot, nowhere for the super head
    assert result["normed"]["r"] is None or result["normed"]["r"] <= 0
    mixed = counts.clone()
    mixed[0, 0] = torch.tensor([5, 5, 0, 0, 0])
    mixed[0, 1] = torch.tensor([5, 0, 5, 0, 0])
    r = super_heterogeneous_correlation([fake_record("RTE", 1, "finetuned", mixed, heads)])["raw"]["r"]
    from scipy.stats import pearsonr

    x, y = heterogeneous_pairs(mixed, heads)
    assert r == pytest.approx(pearsonr(x, y).statistic)


def test_counts_roundtrip_and_summary_outputs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for config in ("finetuned", "pretrained"):
        for task in ("RTE", "MRPC"):
            for seed in (1, 2):
                counts = torch.from_numpy(rng.integers(0, 20, (2, 4, 5)))
                heads = torch.from_numpy(rng.random((2, 4)) < 0.5)
                tensors, meta = fake_record(task, seed, config, counts, heads)
                path = tmp_path / "counts" / f"{config}_{task}_{seed}.safetensors"
                save_counts(path, tensors, {k: v for k, v in meta.items() if k != "types"} | {"types": list(PATTERN_TYPES)})
                paths.append(str(path))
    loaded, meta = load_counts(paths[0])
    assert loaded["all/raw"].shape == (2, 4, 5) and meta["config"] == "finetuned"
    paper = tmp_path / "paper.yaml"
    paper.write_text("pattern_order: [heterogeneous, block, diagonal, vertical, vertical+diagonal]\n"
                     "patterns:\n  finetuned_super:\n    RTE: [[15.5, 56.6, 15.8, 2.2, 9.9], [46.0, 17.0, 13.9, 0.1, 22.9]]\n"
                     "pattern_correlation: {paper_raw: 0.015}\n")
    main_patterns(["summarize", "--counts", *paths, "--paper", str(paper), "--tables-dir", str(tmp_path / "t"),
                   "--figures-dir", str(tmp_path / "f"), "--correlation", str(tmp_path / "corr.json")])
    for name in ("figure4_finetuned", "figure4_pretrained", "figure4a_types"):
        for ext in (".pdf", ".png"):
            assert (tmp_path / "f" / (name + ext)).stat().st_size > 1000
    md = (tmp_path / "t" / "patterns_finetuned_super.md").read_text()
    assert "(56.6)" in md and "| MRPC |" in md
    corr = json.loads((tmp_path / "corr.json").read_text())
    assert corr["raw"]["n_pairs"] > 0 and set(corr["per_task"]) == {"RTE", "MRPC"}
    assert corr["paper"] == {"paper_raw": 0.015}
    dist = distributions([load_counts(p) for p in paths])
    total = dist.groupby(["config", "selection", "task", "kind"])["percent"].sum()
    assert np.allclose(total.to_numpy(), 100)
    table = pattern_table(dist, {}, "pretrained", "all")
    assert list(table.task.unique()) == ["RTE", "MRPC"] and set(table.source) == {"ours"}


def test_paper_numbers_are_read_from_the_project_file():
    from bertlottery.analysis.aggregate import PAPER_RESULTS_PATH
    from bertlottery.patterns.summary import paper_patterns

    paper = paper_patterns(PAPER_RESULTS_PATH)  # the packaged resources/paper_results.yaml
    assert set(paper) == {(c, s) for c in ("finetuned", "pretrained") for s in ("super", "all")}
    assert paper[("finetuned", "super")]["RTE"]["raw"][1] == 56.6  # block share, Figure 4b
    assert paper[("pretrained", "all")]["CoLA"]["normed"] == [51.3, 7.8, 23.5, 6.3, 11.1]


def write_dev_split(data_dir, lengths, seed=0):
    """A prepared dev split in the data module's file format (flat tokens + offsets)."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    ids = torch.cat([torch.cat([torch.tensor([2]), torch.randint(5, 60, (n - 2,), generator=gen), torch.tensor([3])])
                     for n in lengths]).int()
    offsets = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.long)
    (data_dir / "splits").mkdir(parents=True)
    save_file({"input_ids": ids, "token_type_ids": torch.zeros_like(ids, dtype=torch.uint8), "offsets": offsets,
               "labels": torch.zeros(len(lengths), dtype=torch.long)}, str(data_dir / "splits" / "dev.safetensors"))


def test_extract_command_counts_all_and_super_heads(tmp_path):
    from bertlottery.masks.types import HeadMlpMask

    model_dir, data_dir = tmp_path / "model", tmp_path / "data"
    tiny_model().save_pretrained(model_dir)
    write_dev_split(data_dir, [20, 8, 30, 17, 25, 12, 18])  # 5 examples have >= 16 tokens
    heads = torch.zeros(2, 4, dtype=torch.bool)
    heads[0, 1] = heads[1, 3] = True
    HeadMlpMask(heads, torch.tensor([True, False])).save(tmp_path / "super.safetensors")
    out = {}
    for network in ("pruned", "full"):
        out[network] = tmp_path / f"{network}.safetensors"
        main_patterns(["extract", "--task", "RTE", "--seed", "42", "--config", "finetuned", "--model", str(model_dir),
                       "--data-dir", str(data_dir), "--n-examples", "4", "--super-mask", str(tmp_path / "super.safetensors"),
                       "--super-network", network, "--batch-size", "3", "--output", str(out[network])])
    pruned, meta = load_counts(out["pruned"])
    full, _ = load_counts(out["full"])
    assert meta["n_examples"] == "4" and meta["super_network"] == "pruned" and meta["classifier_raw"] == "rules"
    for kind in ("raw", "normed"):
        assert (pruned[f"all/{kind}"].sum(-1) == 4).all()
        assert pruned[f"super/{kind}"].sum(-1).tolist() == (heads * 4).tolist()
        # layer 0 sees the same input in both networks; the full-network selection is a subset of all heads
        assert torch.equal(pruned[f"super/{kind}"][0], full[f"super/{kind}"][0])
        assert torch.equal(full[f"super/{kind}"], full[f"all/{kind}"] * heads[:, :, None])
    assert torch.equal(pruned["super/heads"].bool(), heads)


def test_pruned_network_changes_later_layers_only():
    from bertlottery.masks.types import HeadMlpMask
    from bertlottery.modeling.soft_masks import attach_soft_masks

    model = tiny_model(2)
    batch = padded_batch([11])
    full_raw, full_normed = attention_maps(model, batch)
    heads = torch.ones(2, 4, dtype=torch.bool)
    heads[0, :2] = False
    attach_soft_masks(model, HeadMlpMask(heads, torch.tensor([False, True])))
    raw, normed = attention_maps(model, batch)
    torch.testing.assert_close(raw[:, 0], full_raw[:, 0])  # layer 0: same input
    assert float((raw[:, 1] - full_raw[:, 1]).abs().max()) > 1e-5  # layer 1: its input comes from the pruned layer 0
