"""masks.py: mask types, files (safetensors, original .npy layout) and size accounting ('% surviving weights')."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.fit import check_fits
from bertlottery.modeling.sizes import PAPER_EMBEDDING_SHARE, size_of
from bertlottery.modeling.structure import prunable_parameters
from bertlottery.modeling.weight_masks import check_weight_mask
from conftest import BERT_BASE, TINY, tiny_model


def random_head_mask(layers=12, heads=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return HeadMlpMask(torch.rand(layers, heads, generator=g) < 0.6, torch.rand(layers, generator=g) < 0.7)


# ------------------------------------------------------------------ HeadMlpMask


def test_head_mlp_mask_basics_and_algebra():
    full = HeadMlpMask.full(3, 4)
    assert (full.num_layers, full.num_heads, full.heads_kept, full.mlps_kept) == (3, 4, 12, 3)
    a = HeadMlpMask(torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]]), torch.tensor([1.0, 0.0, 1.0]))
    assert a.heads.dtype == torch.bool and a.heads_kept == 6 and a.mlps_kept == 2
    assert (a & full) == a and (a | full) == full
    assert (~a).heads_kept == 6 and (~a).mlps_kept == 1
    assert (a & ~a).heads_kept == 0
    assert a != full
    with pytest.raises(BertLotteryError, match="cannot combine"):
        a & HeadMlpMask.full(12, 12)


@pytest.mark.parametrize("heads, mlps, message", [
    (torch.ones(12), torch.ones(12), "heads"),
    (torch.ones(12, 12), torch.ones(11), r"mlps \[11\]"),
    (torch.full((2, 2), 0.5), torch.ones(2), r"values \[0.5\]"),
    (torch.ones(2, 2), torch.tensor([1.0, 2.0]), r"values \[2.0\]"),
])
def test_head_mlp_mask_rejects_bad_input(heads, mlps, message):
    with pytest.raises(BertLotteryError, match=message):
        HeadMlpMask(heads, mlps)


def test_head_mlp_mask_save_load_round_trip(tmp_path):
    mask = random_head_mask(seed=3)
    importance = torch.rand(12, 12)
    path = mask.save(tmp_path / "s" / "RTE" / "seed42" / "good.safetensors", task="RTE", seed=42, family="s",
                     kind="good", method="s-joint", iteration=4, head_importance=importance,
                     mlp_importance=torch.arange(12.0))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert f.get_tensor("heads").dtype == torch.uint8 and f.get_tensor("mlps").shape == (12,)
        assert sorted(f.keys()) == ["head_importance", "heads", "mlp_importance", "mlps"]
    assert meta["seed"] == "42" and meta["heads_kept"] == str(mask.heads_kept)
    assert meta["mlps_kept"] == str(mask.mlps_kept) and meta["iteration"] == "4"
    loaded = HeadMlpMask.load(path)
    assert loaded == mask
    assert loaded.meta["task"] == "RTE" and loaded.meta["method"] == "s-joint" and loaded.meta["kind"] == "good"
    torch.testing.assert_close(loaded.head_importance, importance)
    torch.testing.assert_close(loaded.mlp_importance, torch.arange(12.0))
    assert not list(path.parent.glob("*.tmp"))


def test_head_mlp_mask_load_errors(tmp_path):
    with pytest.raises(BertLotteryError, match="not found"):
        HeadMlpMask.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BertLotteryError, match="damaged, truncated or empty file"):
        HeadMlpMask.load(tmp_path / "junk.safetensors")
    WeightMask({"a.weight": torch.ones(2, 2)}).save(tmp_path / "w.safetensors")
    with pytest.raises(BertLotteryError, match="expected a head/MLP mask"):
        HeadMlpMask.load(tmp_path / "w.safetensors")


def write_original(directory, heads, mlps):
    directory.mkdir(parents=True)
    np.save(directory / "head_mask.npy", heads)
    np.save(directory / "mlp_mask.npy", mlps)
    return directory


def test_from_original_npy(tmp_path):
    heads = (np.random.default_rng(0).random((12, 12)) < 0.6).astype(np.float32)
    mlps = np.array([1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1], dtype=np.float32)
    directory = write_original(tmp_path / "heads_mlps" / "CoLA" / "seed_1337", heads, mlps)
    np.save(directory / "head_importance.npy", np.ones((12, 12), dtype=np.float32))
    mask = HeadMlpMask.from_original_npy(directory)
    assert mask.heads_kept == int(heads.sum()) and mask.mlps_kept == 10
    assert torch.equal(mask.heads, torch.from_numpy(heads != 0))
    assert mask.meta["task"] == "CoLA" and mask.meta["seed"] == "1337"
    assert mask.head_importance.shape == (12, 12) and mask.mlp_importance is None
    check_fits(mask, BERT_BASE)
    with pytest.raises(BertLotteryError, match="num_hidden_layers=3"):
        check_fits(mask, TINY)  # a bert-base mask on another architecture


@pytest.mark.parametrize("heads, mlps, message", [
    (np.ones(144), np.ones(12), r"head_mask.npy: shape \[144\]"),
    (np.ones((12, 12)), np.ones(11), r"mlp_mask.npy: shape \[11\]"),
    (np.ones((12, 12)), np.ones((12, 1)), r"mlp_mask.npy: shape \[12, 1\]"),
    (np.full((12, 12), 0.3), np.ones(12), r"head_mask.npy: head_mask holds values \[0.3"),
])
def test_from_original_npy_rejects_bad_files(tmp_path, heads, mlps, message):
    directory = write_original(tmp_path / "RTE" / "seed_42", heads, mlps)
    with pytest.raises(BertLotteryError, match=message):
        HeadMlpMask.from_original_npy(directory)


def test_from_original_npy_missing_file(tmp_path):
    with pytest.raises(BertLotteryError, match="head_mask.npy: not found"):
        HeadMlpMask.from_original_npy(tmp_path)


# ------------------------------------------------------------------ WeightMask


def test_weight_mask_save_load_and_counts(tmp_path):
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    mask = WeightMask({n: torch.rand(p.shape, generator=g) < 0.4 for n, p in prunable_parameters(model).items()})
    total = sum(p.numel() for p in prunable_parameters(model).values())
    assert mask.total == total and 0.3 < mask.kept / total < 0.5
    assert mask.fraction == mask.kept / total
    path = mask.save(tmp_path / "m.safetensors", task="SST-2", seed=1337, family="m", kind="good", iteration=3)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert f.get_tensor("bert.encoder.layer.0.attention.self.query.weight").dtype == torch.uint8
    assert meta["prunable_kept"] == str(mask.kept) and meta["prunable_total"] == str(total)
    loaded = WeightMask.load(path)
    assert loaded == mask and loaded.meta["task"] == "SST-2" and loaded.meta["iteration"] == "3"
    check_weight_mask(loaded, model)
    check_weight_mask(loaded, TINY)
    assert WeightMask.full(prunable_parameters(model)).kept == total
    assert (mask & ~mask).kept == 0 and (mask | ~mask).kept == total
    HeadMlpMask.full(3, 4).save(tmp_path / "s.safetensors")
    with pytest.raises(BertLotteryError, match="expected a weight mask"):
        WeightMask.load(tmp_path / "s.safetensors")


def test_weight_mask_check_fits_names_first_mismatch():
    model = tiny_model()
    masks = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    missing = dict(masks)
    del missing["bert.encoder.layer.1.intermediate.dense.bias"]
    with pytest.raises(BertLotteryError, match="no entry for prunable parameter 'bert.encoder.layer.1.intermediate"):
        check_weight_mask(WeightMask(missing), model)
    wrong = {**masks, "bert.encoder.layer.0.attention.self.key.weight": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(BertLotteryError, match=r"key.weight' has shape \[3, 3\].*\[24, 24\]"):
        check_weight_mask(WeightMask(wrong), model)
    extra = {**masks, "bert.encoder.layer.0.output.dense.bias": torch.ones(24, dtype=torch.bool)}
    with pytest.raises(BertLotteryError, match="output.dense.bias' is not a prunable parameter"):
        check_weight_mask(WeightMask(extra), model)
    with pytest.raises(BertLotteryError, match=r"query.weight' has shape \[24, 24\].*\[768, 768\]"):
        check_weight_mask(WeightMask(masks), BERT_BASE)  # another architecture


# ------------------------------------------------------------------ sizes (paper's '% surviving weights')


def removed_params(mask: HeadMlpMask) -> int:
    size = size_of(BERT_BASE, mask)
    return size["params_total"] - size["params_kept"]


def test_bert_base_structure_costs_match_paper():
    one_head, one_mlp, all_heads = HeadMlpMask.full(12, 12), HeadMlpMask.full(12, 12), HeadMlpMask.full(12, 12)
    one_head.heads[0, 0] = False
    one_mlp.mlps[0] = False
    all_heads.heads[0] = False
    assert removed_params(one_head) == 196_800  # per head
    assert removed_params(one_mlp) == 4_722_432  # per MLP
    assert removed_params(all_heads) == 12 * 196_800 + 768  # + the attention output bias
    full = size_of(BERT_BASE, None)
    assert full["params_total"] == full["params_kept"] == 109_483_778
    assert full["prunable_total"] == 85_008_384
    assert (full["heads_total"], full["mlps_total"]) == (144, 12)
    assert full["paper_fraction"] == pytest.approx(1 - PAPER_EMBEDDING_SHARE)


def test_bert_base_head_mlp_sizes():
    mask = HeadMlpMask.full(12, 12)
    mask.heads[0] = False  # a whole layer of heads: + the attention output bias
    mask.heads[5, :3] = False
    mask.mlps[[2, 7]] = False
    size = size_of(BERT_BASE, mask)
    removed = 15 * 196_800 + 768 + 2 * 4_722_432
    assert size["params_kept"] == 109_483_778 - removed
    assert size["prunable_kept"] == 85_008_384 - (removed - 2 * 768)  # the MLP output bias is not prunable
    assert (size["heads_kept"], size["mlps_kept"]) == (129, 10)
    assert size["paper_fraction"] == pytest.approx((109_483_778 - removed) / 109_483_778 - 0.21)


def test_spec_example_sizes_are_plausible():
    """Figure 2 titles: CoLA s-good is ~65 %; e.g. 95 heads and 11 MLPs -> about (109.5 - 9.6 - 4.7)/109.5 - 0.21."""
    mask = HeadMlpMask.full(12, 12)
    mask.heads.view(-1)[:49] = False
    mask.mlps[0] = False
    assert round(100 * size_of(BERT_BASE, mask)["paper_fraction"]) == 66
    nothing = HeadMlpMask(torch.zeros(12, 12), torch.zeros(12))
    # WNLI prunes everything: what is left is embeddings, LayerNorms, pooler and classifier
    assert size_of(BERT_BASE, nothing)["params_kept"] == 109_483_778 - 85_008_384 - 12 * 768
    assert size_of(BERT_BASE, nothing)["prunable_kept"] == 0


def test_weight_mask_size_and_head_mlp_size_wrong_architecture():
    model = tiny_model()
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(p.numel() for p in prunable_parameters(model).values())
    g = torch.Generator().manual_seed(1)
    mask = WeightMask({n: torch.rand(p.shape, generator=g) < 0.5 for n, p in prunable_parameters(model).items()})
    size = size_of(TINY, mask)
    assert size["params_total"] == total and size["prunable_total"] == prunable
    assert size["prunable_kept"] == mask.kept and size["params_kept"] == total - prunable + mask.kept
    assert (size["heads_kept"], size["mlps_kept"]) == (12, 3)
    assert size_of(model, mask) == size  # a model or its config
    with pytest.raises(BertLotteryError, match="num_hidden_layers=3"):
        size_of(TINY, HeadMlpMask.full(12, 12))
    with pytest.raises(BertLotteryError, match="has shape"):
        size_of(BERT_BASE, mask)
    with pytest.raises(BertLotteryError, match="expected a HeadMlpMask"):
        size_of(TINY, "mask")
