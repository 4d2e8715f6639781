"""Padding-free forward of a BERT-style sequence classifier: the real tokens of a batch in one stream.

Families: BERT/MiniLM, RoBERTa (positions start after padding_idx), ELECTRA (embeddings_project when the
embeddings are smaller than hidden) and DistilBERT (no token types, its own sub-layers and head).

A padded batch [B, L] wastes the pad rows in every projection, FFN and LayerNorm (48 % of RTE's tokens at
batch 32, 66 % of SST-2's). Here the real tokens are packed into one [T, hidden] tensor; the model's own
modules run on it (embeddings with positions restarting at each sequence, Q/K/V, the attention output
sub-layer, the FFN sub-layer, the pooler and classifier), so forward hooks (soft head/MLP masks), weight-
mask parametrizations and physically pruned layers (uneven or zero heads, removed MLPs) work unchanged.
Only the attention core is computed here, per sequence:

* CPU: the sequences are laid out in the stream by length (longest first). When all have one length the
  stream is one [count, length] block and one SDPA call; otherwise only Q, K and V are scattered into a
  [B, longest] block for one masked SDPA call and the result is gathered back. (One call per length was
  measured too: fewer FLOPs, but dozens of small operators per layer, each an OpenMP barrier, which on a
  loaded 2-core machine cost more than the attention's padding: the attention is ~10 % of a MiniLM
  layer's FLOPs at 128 tokens, the projections and FFN, which stay padding-free, the rest);
* CUDA: FlashAttention's varlen kernel when installed and the activations are fp16/bf16, else SDPA on
  nested (jagged) tensors built with the batch's known min/max lengths, so torch's fused kernels read no
  value back from the GPU (the jagged branch is tested on the CPU; FlashAttention is not exercised).

Attention over a sequence's own tokens equals padded attention with a key mask, so logits, loss and every
gradient equal the padded forward's to float rounding (tests/modeling/test_unpadded.py). The examples
of a batch and their order are unchanged; logits come back in the batch's order. In train mode the
dropout masks are drawn for another tensor shape (equally distributed), as with dynamic padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bertlottery.errors import BertLotteryError
from bertlottery.modeling.structure import (
    DISTILBERT,
    encoder_layers,
    layer_parts,
    model_architecture,
    model_inputs,
    uses_token_types,
)


class Output(NamedTuple):
    """What the callers read from the HF model's SequenceClassifierOutput."""

    loss: torch.Tensor | None
    logits: torch.Tensor


@dataclass
class PackedBatch:
    """The real tokens of a batch in one stream, sequences grouped by length (longest first).

    `first_token[i]` is the stream row of the [CLS] token of the batch's i-th example; `groups` are
    (start row, sequences, length) of the equal-length blocks; `cu_seqlens` the sequence boundaries in
    stream order (for varlen kernels); `max_length` and `min_length` are known on the host, so GPU kernels
    need not read them back from the device."""

    input_ids: torch.Tensor       # [T] long
    token_type_ids: torch.Tensor  # [T] long
    position_ids: torch.Tensor    # [T] long, restarting at 0 for each sequence
    first_token: torch.Tensor     # [B] long, in the batch's order
    cu_seqlens: torch.Tensor      # [B + 1] int32, stream order
    groups: list[tuple[int, int, int]]
    max_length: int
    min_length: int
    labels: torch.Tensor | None
    scatter_index: torch.Tensor   # [T] long: each token's row in a [B * max_length] padded block
    key_mask: torch.Tensor        # [B, 1, 1, max_length] bool: real keys of each (stream-order) sequence

    @classmethod
    def from_padded(cls, batch: dict[str, torch.Tensor]) -> "PackedBatch":
        """Pack a right-padded batch (input_ids, attention_mask, optional token_type_ids and labels)."""
        mask = batch["attention_mask"].bool()
        lengths = mask.sum(1)
        if len(lengths) == 0 or int(lengths.min()) < 1:
            raise BertLotteryError("padding-free batch: every row needs at least one token")
        if not torch.equal(mask, torch.arange(mask.shape[1], device=mask.device) < lengths[:, None]):
            raise BertLotteryError("padding-free batch: attention_mask must be right-padded (1s, then 0s)")
        order = torch.sort(lengths, descending=True, stable=True).indices
        kept = mask[order]
        types = batch.get("token_type_ids")
        types = torch.zeros_like(batch["input_ids"]) if types is None else types
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        sorted_lengths = lengths[order]
        cu = torch.zeros(len(order) + 1, dtype=torch.int64, device=mask.device)
        cu[1:] = sorted_lengths.cumsum(0)
        first = torch.empty_like(order)
        first[order] = cu[:-1]
        groups, row = [], 0
        values, counts = torch.unique_consecutive(sorted_lengths, return_counts=True)
        for length, count in zip(values.tolist(), counts.tolist()):
            groups.append((row, count, length))
            row += count * length
        width = int(values[0])
        in_block = torch.arange(width, device=mask.device)[None, :] < sorted_lengths[:, None]
        rows = torch.arange(len(order), device=mask.device)[:, None] * width + positions[:, :width]
        return cls(batch["input_ids"][order][kept].long(), types[order][kept].long(), positions[order][kept],
                   first, cu.to(torch.int32), groups, width, groups[-1][2], batch.get("labels"), rows[in_block],
                   in_block[:, None, None, :])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PackedBatch":
        move = {name: getattr(self, name).to(device, non_blocking=non_blocking)
                for name in ("input_ids", "token_type_ids", "position_ids", "first_token", "cu_seqlens",
                             "scatter_index", "key_mask")}
        labels = None if self.labels is None else self.labels.to(device, non_blocking=non_blocking)
        return PackedBatch(**move, groups=self.groups, max_length=self.max_length, min_length=self.min_length,
                           labels=labels)

    @property
    def n_tokens(self) -> int:
        return self.input_ids.shape[0]

    def __len__(self) -> int:
        return self.first_token.shape[0]


# The model types whose padding-free forward is checked against their own padded forward
# (tests/modeling/test_unpadded.py, tests/modeling/test_encoder_families.py). DeBERTa-v2/v3 (relative
# positions inside the attention scores) and ModernBERT (rotary positions, local attention windows, pre-norm)
# need their own attention core here and are refused: they run the padded HF forward (padding_free: false).
PADDING_FREE_TYPES = ("bert", "roberta", "electra", "distilbert")


def check_supported(model: nn.Module) -> None:
    """Padding-free needs a tested encoder family (PADDING_FREE_TYPES) with absolute position embeddings."""
    config = model.config
    encoder_layers(model)  # decoders and non-encoders: the structure lookup's own refusal
    model_type = getattr(config, "model_type", None)
    if model_type not in PADDING_FREE_TYPES:
        raise BertLotteryError(f"padding-free forward: model_type {model_type!r} is not one of "
                               f"{', '.join(PADDING_FREE_TYPES)}; set training.padding_free: false")
    kind = getattr(config, "position_embedding_type", "absolute")
    if kind != "absolute":
        raise BertLotteryError(f"padding-free forward: position_embedding_type {kind!r} is not supported "
                               "(only 'absolute'); set training.padding_free: false")


def _flash_varlen():
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


def flash_supported(device: torch.device) -> bool:
    """flash-attn 2 runs on Ampere or newer GPUs (compute capability 8.0+); V100 (7.0) and T4 (7.5), named
    in the slurm profile, take the SDPA branch instead of crashing."""
    return torch.cuda.get_device_capability(device)[0] >= 8


class _GatherRows(torch.autograd.Function):
    """x.index_select(0, index) for an index without repeats. Its backward writes each gradient row back
    (index_copy) where index_select's backward scatter-adds, a serial loop on the CPU: the largest item
    after the matmuls, dropout and attention in a padding-free RTE step's profile (docs/benchmarks.md).
    With no repeats nothing is summed, so the gradient is bit for bit the same."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = x.shape[0]
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.rows, *grad.shape[1:]).index_copy(0, index, grad), None


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows `index` (no repeats) of x, with a cheap backward."""
    return _GatherRows.apply(x, index)


def jagged_tensors(packed: PackedBatch, heads: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """[T, heads * d] stream tensors as jagged nested tensors [B, heads, {length}, d] sharing one offsets
    tensor. The min/max lengths are passed in: otherwise torch reads them back with `.item()` (a host sync
    per tensor and query on a GPU)."""
    offsets = packed.cu_seqlens.long()
    tokens, width = tensors[0].shape
    return [torch.nested.nested_tensor_from_jagged(x.view(tokens, heads, width // heads), offsets,
                                                    min_seqlen=packed.min_length,
                                                    max_seqlen=packed.max_length).transpose(1, 2)
            for x in tensors]


def jagged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packed: PackedBatch, heads: int,
                     dropout_p: float) -> torch.Tensor:
    """SDPA on jagged nested tensors (the CUDA path without FlashAttention; runs on the CPU too, where
    torch falls back to its math kernel)."""
    out = F.scaled_dot_product_attention(*jagged_tensors(packed, heads, q, k, v), dropout_p=dropout_p)
    return out.transpose(1, 2).values().reshape(q.shape)


def attention_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packed: PackedBatch, heads: int,
                   dropout_p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v within each sequence; q, k, v and the result are [T, heads * d]."""
    tokens, width = q.shape
    head_dim = width // heads
    if q.is_cuda:
        half = q.dtype in (torch.float16, torch.bfloat16)
        flash = _flash_varlen() if half and flash_supported(q.device) else None
        if flash is not None:  # untested here (no GPU in the test suite)
            out = flash(q.view(tokens, heads, head_dim), k.view(tokens, heads, head_dim),
                        v.view(tokens, heads, head_dim), packed.cu_seqlens, packed.cu_seqlens,
                        packed.max_length, packed.max_length, dropout_p=dropout_p)
            return out.reshape(tokens, width)
        return jagged_attention(q, k, v, packed, heads, dropout_p)
    if len(packed.groups) == 1:  # every sequence has the same length: the stream is the block
        _, count, length = packed.groups[0]

        def block(x):
            return x.view(count, length, heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(block(q), block(k), block(v), dropout_p=dropout_p)
        return out.transpose(1, 2).reshape(tokens, width)
    count, length = len(packed), packed.max_length
    index = packed.scatter_index

    def padded(x):
        return x.new_zeros(count * length, width).index_copy(0, index, x).view(count, length, heads,
                                                                               head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=packed.key_mask,
                                         dropout_p=dropout_p)
    return gather_rows(out.transpose(1, 2).reshape(count * length, width), index)


def _layer(layer: nn.Module, hidden: torch.Tensor, packed: PackedBatch, training: bool) -> torch.Tensor:
    parts = layer_parts(layer)
    context = None
    if parts.num_heads:
        dropout_p = parts.self_attention.dropout.p if training else 0.0
        context = attention_core(parts.query(hidden), parts.key(hidden), parts.value(hidden), packed,
                                 parts.num_heads, dropout_p)
    if parts.arch is DISTILBERT:  # sa_layer_norm(out_lin(context) + x); output_layer_norm(ffn(h) + h)
        attended = parts.attn_norm(hidden if context is None else parts.attn_dense(context) + hidden)
        return parts.output_norm(layer.ffn(attended) + attended)  # a removed FFN adds zeros
    if context is None:  # all heads removed: the sub-layer is LayerNorm(input)
        attended = layer.attention.output(hidden)
    else:  # the model's own output sub-layer: dense (soft head-mask hooks) + dropout + residual + LayerNorm
        attended = layer.attention.output(context, hidden)
    # the model's own FFN sub-layer; a removed MLP is _Skip + _NormOnly, i.e. LayerNorm(input)
    return layer.output(layer.intermediate(attended), attended)


def _loss(model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss BertForSequenceClassification computes (same problem_type rules)."""
    config, n = model.config, model.num_labels
    problem = config.problem_type
    if problem is None:
        problem = ("regression" if n == 1 else "single_label_classification"
                   if labels.dtype in (torch.long, torch.int) else "multi_label_classification")
    if problem == "regression":
        return F.mse_loss(logits.squeeze(), labels.squeeze()) if n == 1 else F.mse_loss(logits, labels)
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, n), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels)


def unpadded_forward(model: nn.Module, packed: PackedBatch) -> Output:
    """Logits [B, num_labels] (batch order) and, when the batch has labels, the model's loss."""
    check_supported(model)  # DeBERTa, ModernBERT and untested types are refused with the setting to change
    base = model.base_model
    embeddings = base.embeddings
    positions = packed.position_ids
    padding_idx = getattr(embeddings, "padding_idx", None)
    if padding_idx is not None:  # RoBERTa-style positions start after the padding index
        positions = positions + padding_idx + 1
    inputs = {"input_ids": packed.input_ids[None], "position_ids": positions[None]}
    if uses_token_types(model):
        inputs["token_type_ids"] = packed.token_type_ids[None]
    hidden = embeddings(**inputs)[0]
    project = getattr(base, "embeddings_project", None)
    if project is not None:  # ELECTRA with embeddings smaller than hidden
        hidden = project(hidden)
    for layer in encoder_layers(model):
        hidden = _layer(layer, hidden, packed, model.training)
    first = gather_rows(hidden, packed.first_token)[:, None, :]  # [B, 1, hidden]
    pooler = getattr(base, "pooler", None)
    if model_architecture(model) is DISTILBERT:  # pre_classifier, ReLU, dropout, classifier on the first token
        logits = model.classifier(model.dropout(F.relu(model.pre_classifier(first[:, 0]))))
    elif pooler is not None:  # BERT: pooler on [CLS], dropout, linear classifier
        logits = model.classifier(model.dropout(pooler(first)))
    else:  # RoBERTa/ELECTRA-style heads take the sequence and read its first token themselves
        logits = model.classifier(first)
    loss = None if packed.labels is None else _loss(model, logits, packed.labels)
    return Output(loss, logits)


def classify(model: nn.Module, batch: dict[str, torch.Tensor] | PackedBatch) -> Output:
    """One forward pass of a padded batch (the model's own forward) or a packed one (padding-free)."""
    if isinstance(batch, PackedBatch):
        return unpadded_forward(model, batch)
    out = model(**model_inputs(model, batch))
    return Output(out.loss, out.logits)
