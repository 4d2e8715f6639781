"""The padding-free forward equals the model's own padded forward: logits and loss to 1e-6, every
parameter's gradient to 1e-5 relative (fp32), with soft masks, physically pruned layers and weight masks."""

from __future__ import annotations

import traceback

import pytest
import torch
from conftest import tiny_bert_config
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import BertForSequenceClassification

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask
from bertlottery.modeling.pruning import prune_heads_and_mlps
from bertlottery.modeling.soft_masks import attach_soft_masks
from bertlottery.modeling.structure import prunable_parameters
from bertlottery.modeling.unpadded import (
    PackedBatch,
    attention_core,
    classify,
    gather_rows,
    jagged_attention,
    jagged_tensors,
    unpadded_forward,
)
from bertlottery.modeling.weight_masks import apply_weight_mask

LENGTHS = [20, 5, 13, 20, 1, 7, 13, 2]  # repeats (one attention block of several rows) and a 1-token row


def tiny(num_labels=3, attn="sdpa", seed=0, **overrides):
    torch.manual_seed(seed)
    overrides = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} | overrides
    config = tiny_bert_config(num_labels=num_labels, num_hidden_layers=3, attn_implementation=attn, **overrides)
    return BertForSequenceClassification(config).eval()


def padded_batch(num_labels=3, lengths=LENGTHS, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    width = int(lengths.max()) + 3  # extra padding columns beyond the longest row, as padding to 128 has
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    ids = torch.randint(1000, 30000, (len(lengths), width), generator=g) * mask
    types = (torch.rand(len(lengths), width, generator=g) > 0.5).long() * mask
    if num_labels == 1:
        labels = torch.rand(len(lengths), generator=g) * 5
    else:
        labels = torch.randint(0, num_labels, (len(lengths),), generator=g)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}


def run(model, batch, extra=()):
    """Logits, loss and gradients (parameters by name, then the `extra` leaf tensors) of one pass."""
    model.zero_grad(set_to_none=True)
    for t in extra:
        t.grad = None
    out = classify(model, batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    grads |= {f"extra{i}": t.grad.clone() for i, t in enumerate(extra)}
    return out.logits.detach(), out.loss.detach(), grads


def assert_equivalent(model, batch, extra=()):
    logits_a, loss_a, grads_a = run(model, batch, extra)
    logits_b, loss_b, grads_b = run(model, PackedBatch.from_padded(batch), extra)
    assert logits_a.shape == logits_b.shape
    assert (logits_a - logits_b).abs().max() <= 1e-6
    assert abs(float(loss_a - loss_b)) <= 1e-6
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    # Relative per parameter; the floor (1e-8 of the whole gradient) is for gradients that are zero in
    # exact arithmetic and rounding noise in both paths: the key bias (softmax ignores a per-row shift).
    floor = 1e-8 * float(torch.cat([g.reshape(-1) for g in grads_a.values()]).norm())
    for name, a in grads_a.items():
        diff = float((a - grads_b[name]).norm())
        assert diff <= 1e-5 * float(a.norm()) + floor, f"{name}: gradient differs by {diff} ({float(a.norm())})"


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("num_labels", [3, 1])  # classification, and regression as STS-B
def test_logits_loss_and_every_gradient_equal_the_padded_forward(attn, num_labels):
    assert_equivalent(tiny(num_labels, attn), padded_batch(num_labels))


def test_a_batch_of_equal_lengths_is_one_block():
    batch = padded_batch(lengths=[9, 9, 9])
    assert PackedBatch.from_padded(batch).groups == [(0, 3, 9)]
    assert_equivalent(tiny(), batch)


def test_eval_mode_equal_even_with_dropout_configured():
    assert_equivalent(tiny(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1), padded_batch())


def test_train_mode_applies_dropout():
    model = tiny(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1).train()
    packed = PackedBatch.from_padded(padded_batch())
    torch.manual_seed(0)
    a = unpadded_forward(model, packed).logits
    b = unpadded_forward(model, packed).logits
    assert not torch.equal(a, b)
    model.eval()
    torch.testing.assert_close(unpadded_forward(model, packed).logits, unpadded_forward(model, packed).logits,
                               rtol=0, atol=0)


@pytest.mark.parametrize("empty_layer_bias", [False, True])
def test_soft_masks_and_their_importance_gradients_are_equal(empty_layer_bias):
    model = tiny()
    heads = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=torch.bool)  # a 0-head layer
    mask = HeadMlpMask(heads, torch.tensor([True, False, True]))
    soft = attach_soft_masks(model, mask, empty_layer_bias=empty_layer_bias).requires_grad_()
    assert_equivalent(model, padded_batch(), extra=(soft.heads, soft.mlps))
    _, _, grads = run(model, PackedBatch.from_padded(padded_batch()), (soft.heads, soft.mlps))
    assert grads["extra0"].abs().sum() > 0 and grads["extra1"].abs().sum() > 0


@pytest.mark.parametrize("num_labels", [3, 1])
def test_physically_pruned_uneven_and_zero_head_layers_and_removed_mlps(num_labels):
    model = tiny(num_labels)
    heads = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=torch.bool)
    prune_heads_and_mlps(model, HeadMlpMask(heads, torch.tensor([False, True, True])))
    assert_equivalent(model, padded_batch(num_labels))


def test_weight_masks():
    model = tiny()
    g = torch.Generator().manual_seed(3)
    mask = WeightMask({n: torch.rand(p.shape, generator=g) < 0.5 for n, p in prunable_parameters(model).items()})
    apply_weight_mask(model, mask)
    assert_equivalent(model, padded_batch())


def test_packing_layout():
    batch = padded_batch(lengths=[3, 5, 3, 1])
    packed = PackedBatch.from_padded(batch)
    assert packed.n_tokens == 12 and len(packed) == 4 and packed.max_length == 5
    assert packed.groups == [(0, 1, 5), (5, 2, 3), (11, 1, 1)]  # longest first; equal lengths in one block
    assert packed.cu_seqlens.tolist() == [0, 5, 8, 11, 12]
    assert packed.first_token.tolist() == [5, 0, 8, 11]  # the batch's order is kept
    assert packed.position_ids.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 0]
    assert packed.scatter_index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 15]  # rows of a [4, 5] block
    assert packed.key_mask.shape == (4, 1, 1, 5) and int(packed.key_mask.sum()) == 12
    rows = batch["input_ids"]
    assert packed.input_ids[packed.first_token].tolist() == rows[:, 0].tolist()
    assert packed.input_ids[5:8].tolist() == rows[0, :3].tolist()


class HostSyncs(TorchDispatchMode):
    """Records every read of a tensor's value back to the host (`.item()`, `int(t)`, `.tolist()`: the
    aten op `_local_scalar_dense`, a device-to-host sync on a GPU) with the Python functions it came from."""

    def __init__(self):
        super().__init__()
        self.stacks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.stacks.append([frame.name for frame in traceback.extract_stack()])
        return func(*args, **(kwargs or {}))


def stream_qkv(lengths=LENGTHS, heads=4, head_dim=8):
    packed = PackedBatch.from_padded(padded_batch(lengths=lengths))
    g = torch.Generator().manual_seed(5)
    return packed, [torch.randn(packed.n_tokens, heads * head_dim, generator=g) for _ in range(3)]


def test_jagged_tensors_carry_their_lengths_so_the_fused_kernels_need_no_host_sync():
    """What CUDA's fused kernels (flash, memory-efficient) read from jagged inputs: min/max length and the
    offsets, via torch's own preparation of them. Without the known lengths each read is an `.item()`."""
    from torch.nested._internal.sdpa import _sdpa_nested_preprocessing

    packed, qkv = stream_qkv()
    with HostSyncs() as syncs:
        q, k, v = jagged_tensors(packed, 4, *qkv)
        assert (q._get_min_seqlen(), q._get_max_seqlen()) == (min(LENGTHS), max(LENGTHS))
        _sdpa_nested_preprocessing(q, k, v)
    assert syncs.stacks == []


def test_the_jagged_branch_equals_the_cpu_path_and_syncs_only_in_torchs_cpu_fallback():
    """The jagged branch forced on the CPU: same attention as the CPU path; its only host reads are in
    torch's math fallback (it splits the stream into a list), which CUDA's fused kernels never take."""
    packed, qkv = stream_qkv()
    with HostSyncs() as syncs:
        out = jagged_attention(*qkv, packed, 4, 0.0)
    torch.testing.assert_close(out, attention_core(*qkv, packed, 4, 0.0), rtol=0, atol=1e-6)
    assert all("get_strided_layout_nested_tensor" in stack for stack in syncs.stacks), syncs.stacks


def test_gather_rows_has_index_selects_values_and_gradients_bit_for_bit():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 6, generator=g, requires_grad=True)
    index = torch.randperm(40, generator=g)[:25]
    weights = torch.randn(25, 6, generator=g)
    (x.index_select(0, index) * weights).sum().backward()
    reference, x.grad = x.grad, None
    out = gather_rows(x, index)
    (out * weights).sum().backward()
    assert torch.equal(out, x.index_select(0, index)) and torch.equal(x.grad, reference)


def test_left_padding_and_empty_rows_are_errors():
    batch = padded_batch(lengths=[3, 2])
    batch["attention_mask"] = batch["attention_mask"].flip(1)
    with pytest.raises(BertLotteryError, match="right-padded"):
        PackedBatch.from_padded(batch)
    batch["attention_mask"][1] = 0
    with pytest.raises(BertLotteryError, match="at least one token"):
        PackedBatch.from_padded(batch)


def test_real_minilm_on_real_rte_batches(minilm_dir, glue_dir, tmp_path):
    from bertlottery.glue.prepare import prepare_data
    from bertlottery.glue.splits import load_split
    from bertlottery.modeling.loading import load_classifier
    from bertlottery.train.loop import epoch_order

    prepare_data("RTE", str(minilm_dir), tmp_path, glue_dir=glue_dir, max_train_examples=64,
                 max_dev_examples=8, subsample_seed=0, max_seq_length=128)
    torch.manual_seed(0)
    model = load_classifier(minilm_dir, 2).eval()
    split = load_split(tmp_path, "train")
    order = epoch_order(len(split), 42, 0, None, 16)
    assert_equivalent(model, split.collate(order[:16]))  # the first batch of the real epoch order
