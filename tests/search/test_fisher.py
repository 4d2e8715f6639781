"""f-pruning: Fisher information of the head/MLP masks against a brute-force per-example loop, the
count matching with the s-good mask, the example draw and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from bertlottery.errors import BertLotteryError
from bertlottery.glue.splits import TokenizedSplit
from bertlottery.glue.tasks import get_task
from bertlottery.masks.types import HeadMlpMask
from bertlottery.search import fisher as FI

RTE, STSB = get_task("RTE"), get_task("STS-B")
pytestmark = pytest.mark.usefixtures("one_thread")



def tiny_bert(num_labels=2, seed=0, layers=2, heads=4, hidden=32) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=num_labels,
                        initializer_range=0.1)
    return BertForSequenceClassification(config).eval()


def synthetic_split(n=12, seed=0, regression=False) -> TokenizedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 14, (n,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    ids = torch.randint(1, 60, (int(offsets[-1]),), generator=g).int()
    types = (torch.rand(int(offsets[-1]), generator=g) > 0.5).to(torch.uint8)
    labels = torch.rand(n, generator=g) * 5 if regression else torch.randint(0, 2, (n,), generator=g)
    return TokenizedSplit(ids, types, offsets, labels)


def per_example_gradients(model, split: TokenizedSplit, order, regression=False):
    """Brute force, one example at a time and without the package's soft masks, by the chain rule: a
    multiplier m on a tensor x has d loss / d m = <d loss / d x, x> at m = 1. Heads: x = the head's slice
    of the attention context (the input of the attention output projection); MLPs: x = the MLP output."""
    heads_g, mlps_g = [], []
    n_heads = model.config.num_attention_heads
    layers = model.bert.encoder.layer
    for i in order:
        row = split.collate([int(i)])
        labels = row.pop("labels")
        contexts, outs = [], []

        def keep_context(module, args):
            args[0].retain_grad()
            contexts.append(args[0])

        def keep_out(module, args, output):
            output.retain_grad()
            outs.append(output)

        hooks = [layer.attention.output.dense.register_forward_pre_hook(keep_context) for layer in layers]
        hooks += [layer.output.dense.register_forward_hook(keep_out) for layer in layers]
        logits = model(**row).logits
        for hook in hooks:
            hook.remove()
        loss = (F.mse_loss(logits.reshape(-1), labels.float()) if regression
                else F.cross_entropy(logits, labels.long()))
        loss.backward()
        heads_g.append(torch.stack([(c.grad * c).reshape(*c.shape[:-1], n_heads, -1).sum(dim=(0, 1, 3))
                                    for c in contexts]).detach())
        mlps_g.append(torch.stack([(o.grad * o).sum() for o in outs]).detach())
        model.zero_grad(set_to_none=True)
    return torch.stack(heads_g), torch.stack(mlps_g)


@pytest.mark.parametrize("padding_free", [True, False])
@pytest.mark.parametrize("task", [RTE, STSB], ids=["classification", "regression"])
def test_fisher_equals_brute_force_squared_gradients(task, padding_free):
    regression = task.is_regression
    model = tiny_bert(num_labels=1 if regression else 2, seed=3)
    split = synthetic_split(n=10, seed=1, regression=regression)
    order = np.array([4, 0, 7, 7, 2, 9, 1, 4, 3])  # with a repeat, as a draw with replacement gives
    g_heads, g_mlps = per_example_gradients(model, split, order, regression)
    # batch_size 1: the per-example sum of squares (the paper's formula without its 1/|D|)
    heads, mlps = FI.fisher_information(model, task, split, order, batch_size=1, padding_free=padding_free)
    torch.testing.assert_close(heads, g_heads.pow(2).sum(0), rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(mlps, g_mlps.pow(2).sum(0), rtol=1e-4, atol=1e-9)
    # batches of 4 (the last one 1): the square of each batch's mean gradient (the reference code)
    heads, mlps = FI.fisher_information(model, task, split, order, batch_size=4, padding_free=padding_free)
    chunks = [slice(0, 4), slice(4, 8), slice(8, 9)]
    torch.testing.assert_close(heads, sum(g_heads[c].mean(0).pow(2) for c in chunks), rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(mlps, sum(g_mlps[c].mean(0).pow(2) for c in chunks), rtol=1e-4, atol=1e-9)
    assert (heads > 0).all() and (mlps > 0).all()


def test_fisher_pass_leaves_the_model_as_it_was():
    model = tiny_bert(seed=2)
    split = synthetic_split(n=6, seed=2)
    before = model(**{k: v for k, v in split.collate(np.arange(6)).items() if k != "labels"}).logits
    FI.fisher_information(model, RTE, split, np.arange(6), batch_size=3)
    after = model(**{k: v for k, v in split.collate(np.arange(6)).items() if k != "labels"}).logits
    torch.testing.assert_close(before, after)
    assert all(p.grad is None for p in model.parameters())


def test_mask_keeps_the_reference_counts_of_highest_fisher_units():
    heads = torch.tensor([[0.5, 0.1, 0.9, 0.1], [0.3, 0.7, 0.1, 0.0]])
    mlps = torch.tensor([0.2, 0.4])
    reference = HeadMlpMask(torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]]), torch.tensor([0, 1]))
    mask = FI.fisher_mask(heads, mlps, reference)
    assert mask.heads_kept == reference.heads_kept == 4 and mask.mlps_kept == reference.mlps_kept == 1
    # 0.9, 0.7, 0.5, 0.3 kept, ranked over all layers; the MLP of layer 1
    assert mask.heads.tolist() == [[True, False, True, False], [True, True, False, False]]
    assert mask.mlps.tolist() == [False, True]
    torch.testing.assert_close(mask.head_importance, heads)
    # ties: the lower flat index is kept
    assert FI.top_k(torch.tensor([1.0, 2.0, 1.0, 1.0]), 2).tolist() == [True, True, False, False]
    # the extremes: nothing kept, everything kept
    assert FI.top_k(heads, 0).sum() == 0 and FI.top_k(heads, 8).all()
    with pytest.raises(BertLotteryError, match="do not fit"):
        FI.fisher_mask(heads[:, :3], mlps, reference)
    # a NaN score (a diverged model) stops the search instead of being ranked last
    with pytest.raises(BertLotteryError, match="1 of 8 are NaN or infinite"):
        FI.fisher_mask(heads.masked_fill(heads == 0.9, float("nan")), mlps, reference)


def test_example_draw_is_seeded():
    a = FI.sample_examples(10, 30, replacement=True, seed=5)
    assert len(a) == 30 and a.max() < 10 and (a == FI.sample_examples(10, 30, replacement=True, seed=5)).all()
    b = FI.sample_examples(10, 30, replacement=False, seed=5)
    assert sorted(b.tolist()) == list(range(10))  # capped at the split's size, each row once
    assert len(FI.sample_examples(100, 30, replacement=False, seed=5)) == 30
    with pytest.raises(BertLotteryError, match="empty"):
        FI.sample_examples(0, 3, replacement=True, seed=0)


def _prepared(tmp_path, model, split):
    from bertlottery.glue.prepare import TokenizedArrays, write_split

    model.save_pretrained(tmp_path / "model")
    arrays = TokenizedArrays(split.input_ids.numpy(), split.token_type_ids.numpy(), split.offsets.numpy(), 0, 13)
    (tmp_path / "data" / "splits").mkdir(parents=True)
    for name in ("train", "dev"):
        write_split(tmp_path / "data" / "splits" / f"{name}.safetensors", RTE, name, arrays, split.labels.numpy(),
                    "tiny", 64)


def test_command_writes_a_size_matched_mask_with_its_importances(tmp_path):
    model, split = tiny_bert(seed=7), synthetic_split(n=16, seed=3)
    _prepared(tmp_path, model, split)
    reference = HeadMlpMask(torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]]), torch.tensor([1, 0]))
    reference.save(tmp_path / "s_good.safetensors", task="RTE", seed="42", family="s", kind="good")
    args = ["--task", "RTE", "--seed", "42", "--model-dir", str(tmp_path / "model"), "--data-dir",
            str(tmp_path / "data"), "--reference", str(tmp_path / "s_good.safetensors"),
            "--settings", json.dumps({"n_examples": 20, "batch_size": 4})]
    FI.main_find_f_mask(args + ["--out-dir", str(tmp_path / "out")])
    good = HeadMlpMask.load(tmp_path / "out" / "good.safetensors")
    assert good.meta["family"] == "f" and good.meta["kind"] == "good" and good.meta["task"] == "RTE"
    assert (good.heads_kept, good.mlps_kept) == (4, 1)
    record = json.loads((tmp_path / "out" / "search.json").read_text())
    assert record["n_examples"] == 20 and record["heads_kept"] == 4 and record["settings"]["replacement"]
    # the mask is the top 4 heads / top MLP of its stored importances, and a rerun gives the same numbers
    assert good == FI.fisher_mask(good.head_importance, good.mlp_importance, reference)
    FI.main_find_f_mask(args + ["--out-dir", str(tmp_path / "again")])
    again = HeadMlpMask.load(tmp_path / "again" / "good.safetensors")
    assert torch.equal(again.head_importance, good.head_importance) and again == good
    # an s-good mask of another seed is refused, naming the mismatch
    with pytest.raises(BertLotteryError, match="seed='42' where the job has seed='1'"):
        FI.main_find_f_mask([a if a != "42" else "1" for a in args] + ["--out-dir", str(tmp_path / "bad")])


# ------------------------------------------------------------------ Kwon et al.'s rearrangement and FLOPs split


def published_rearrangement(keep: list[bool], grads: list[list[float]]) -> list[bool]:
    """Kwon et al. (2022) §4.2, mask rearrangement, written out directly in plain Python (floats, lists):
    per batch b and unit i the gradient g[b][i]. With n units pruned, Z starts as the n units of lowest
    sum_b g[b][i]^2; each further unit, in ascending order of that, joins Z, and the unit of Z whose removal
    gives the smallest sum_b (sum_{j in Z, j != i} g[b][j])^2 leaves it (the first one on ties)."""
    units, batches = len(keep), len(grads)
    n = sum(1 for k in keep if not k)
    if n in (0, units):
        return list(keep)
    diagonal = [sum(grads[b][i] ** 2 for b in range(batches)) for i in range(units)]
    order = sorted(range(units), key=lambda i: diagonal[i])  # Python's sort is stable
    pruned = order[:n]
    for unit in order[n:]:
        pruned.append(unit)
        costs = []
        for leaving in pruned:
            rest = [j for j in pruned if j != leaving]
            costs.append(sum(sum(grads[b][j] for j in rest) ** 2 for b in range(batches)))
        del pruned[costs.index(min(costs))]
    return [i not in pruned for i in range(units)]


def _cost(pruned: torch.Tensor, grads: torch.Tensor) -> float:
    return float(grads.double()[:, pruned].sum(1).pow(2).sum())


@pytest.mark.parametrize("seed", range(8))
def test_rearrangement_is_the_published_algorithm(seed):
    g = torch.Generator().manual_seed(seed)
    units, batches = [(4, 3), (12, 16), (6, 1), (16, 8)][seed % 4]
    grads = torch.randn(batches, units, generator=g) * torch.rand(units, generator=g)  # scales differ per unit
    keep = torch.rand(units, generator=g) < 0.5
    ours = FI.rearrange_layer(keep, grads)
    assert ours.dtype == torch.bool and int(ours.sum()) == int(keep.sum())  # binary, the count kept
    assert ours.tolist() == published_rearrangement(keep.tolist(), grads.tolist())
    # never worse under the block-diagonal Fisher than the diagonal choice it starts from
    diagonal = torch.sort(grads.pow(2).sum(0), stable=True).indices[: int((~keep).sum())]
    assert _cost(~ours, grads) <= _cost(diagonal, grads) + 1e-9


def test_rearrangement_keeps_each_layers_count_and_can_move_heads():
    # per-batch gradient vectors: head 0 = v, head 1 = 0.95 w (w orthogonal to v), head 2 = -1.1 v, head 3 large.
    # The diagonal prunes 0 and 1 (lowest ||g||^2); pruning 0 and 2 together costs ||v - 1.1 v||^2 = 0.01 under
    # the block-diagonal Fisher, against ||v + 0.95 w||^2 = 1.9: the rearrangement moves the pruned head 1 to 2.
    v, w, u = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), torch.tensor([0, 0, 1.0])
    grads = torch.stack([v, 0.95 * w, -1.1 * v, 2 * u], 1)  # [batches, heads]
    layer = [False, True, False, True]
    assert FI.rearrange_layer(torch.tensor([True, True, False, False]), grads).tolist() == layer
    assert published_rearrangement([True, True, False, False], grads.tolist()) == layer
    mask = HeadMlpMask(torch.tensor([[False, False, True, True], [True, False, True, True]]), torch.tensor([1, 0]),
                       head_importance=torch.rand(2, 4), mlp_importance=torch.rand(2))
    g = torch.Generator().manual_seed(3)
    out = FI.rearrange_heads(mask, torch.stack([grads, torch.randn(3, 4, generator=g)], 1))
    assert out.heads[0].tolist() == layer and out.heads.sum(1).tolist() == [2, 3]
    assert torch.equal(out.mlps, mask.mlps) and torch.equal(out.head_importance, mask.head_importance)
    all_kept = torch.ones(4, dtype=torch.bool)
    assert FI.rearrange_layer(all_kept, grads).all() and not FI.rearrange_layer(~all_kept, grads).any()


def test_unit_flops_are_kwon_et_al_s_mac_counts():
    model = tiny_bert(hidden=32, heads=4)  # head size 8, intermediate 64
    s, h, d, inner = 128, 32, 8, 64
    head, mlp = FI.unit_flops(model, s)
    assert head == 3 * s * h * d + 2 * s * s * d + s * d * h  # mac_per_head of the reference code
    assert mlp == inner * 2 * s * h  # intermediate_size x mac_per_neuron


def test_flops_split_is_the_best_split_within_the_budget():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        heads, mlps = torch.rand(3, 4, generator=g), torch.rand(3, generator=g) * 4
        head_flops, mlp_flops = 1.0, float(torch.randint(2, 6, (1,), generator=g))
        budget = float(torch.randint(1, 20, (1,), generator=g))
        n_heads, n_mlps = FI.flops_split(heads, mlps, budget, head_flops, mlp_flops)
        top_h, top_m = heads.flatten().sort(descending=True).values, mlps.sort(descending=True).values
        best = max((float(top_h[:a].sum() + top_m[:b].sum()), a, b) for a in range(1, 13) for b in range(4)
                   if a * head_flops + b * mlp_flops <= budget)
        assert n_heads * head_flops + n_mlps * mlp_flops <= budget
        assert float(top_h[:n_heads].sum() + top_m[:n_mlps].sum()) == pytest.approx(best[0])
    with pytest.raises(BertLotteryError, match="does not fit one head"):
        FI.flops_split(heads, mlps, 0.5, 1.0, 2.0)


def test_command_with_the_flops_split_and_the_rearrangement(tmp_path):
    model, split = tiny_bert(seed=7), synthetic_split(n=16, seed=3)
    _prepared(tmp_path, model, split)
    reference = HeadMlpMask(torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]]), torch.tensor([1, 0]))
    reference.save(tmp_path / "s_good.safetensors", task="RTE", seed="42", family="s", kind="good")
    settings = {"n_examples": 20, "batch_size": 4, "counts": "flops", "rearrange": True, "flops_seq_length": 16}
    FI.main_find_f_mask(["--task", "RTE", "--seed", "42", "--model-dir", str(tmp_path / "model"), "--data-dir",
                         str(tmp_path / "data"), "--reference", str(tmp_path / "s_good.safetensors"),
                         "--settings", json.dumps(settings), "--out-dir", str(tmp_path / "out")])
    good = HeadMlpMask.load(tmp_path / "out" / "good.safetensors")
    record = json.loads((tmp_path / "out" / "search.json").read_text())
    assert record["counts"] == "flops" and record["rearranged"] and "heads_moved_by_rearrangement" in record
    head, mlp = record["head_flops"], record["mlp_flops"]
    budget = record["flops_fraction"] * (8 * head + 2 * mlp)
    assert record["flops_fraction"] == pytest.approx((4 * head + 1 * mlp) / (8 * head + 2 * mlp))  # s-good's share
    assert good.heads_kept * head + good.mlps_kept * mlp <= budget * (1 + 1e-12)
    assert (good.heads_kept, good.mlps_kept) == FI.flops_split(good.head_importance, good.mlp_importance, budget,
                                                               head, mlp)
    assert "rearranged" in good.meta["method"]
