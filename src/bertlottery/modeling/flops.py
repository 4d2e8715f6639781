"""Compute cost of a (physically pruned) sequence classifier: parameters and padding-free FLOPs per token.

FLOPs are 2 x the multiply-accumulates of the matrix products, counted on the model as it is (a pruned
model has smaller Q/K/V/output matrices, no MLP where one was removed). For one sequence of n real tokens

    F(n) = 2 n P_tok + 4 n^2 A + 2 P_seq

* P_tok: the weights of every nn.Linear of the encoder that runs on every token (Q, K, V, attention
  output, both MLP denses; an embedding projection where a model has one), biases left out;
* A: the sum over layers of (kept heads x head size); QK^T and (attention x V) cost n x head size
  multiply-accumulates per token and head each, hence 4 n A per token;
* P_seq: the weights of the linear layers that read only the first token (BERT's pooler, the classifier).

Not counted: biases, LayerNorms, softmax, GELU, dropout, embedding look-ups (each O(n x hidden), a few
per cent of a layer). FLOPs per token of a set of sequences = sum_i F(n_i) / sum_i n_i: padding-free, the
real lengths only, so a pad token costs nothing (as in the padding-free forward, modeling/unpadded.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from bertlottery.modeling.structure import encoder_layers, layer_parts


@dataclass(frozen=True)
class Cost:
    """The FLOP-relevant sizes of a model (see the module docstring)."""

    per_token_weights: int  # P_tok
    attention_width: int    # A: sum over layers of kept heads x head size
    per_sequence_weights: int  # P_seq
    parameters: int         # every parameter of the model (embeddings, pooler, classifier included)

    def flops(self, lengths) -> float:
        """Total FLOPs of one forward pass over sequences of these real lengths."""
        n = np.asarray(lengths, dtype=np.float64)
        return float((2 * n * self.per_token_weights + 4 * n * n * self.attention_width).sum()
                     + 2 * len(n) * self.per_sequence_weights)

    def flops_per_token(self, lengths) -> float:
        total = float(np.asarray(lengths, dtype=np.float64).sum())
        return self.flops(lengths) / total if total else float("nan")


def _linear_weights(module: nn.Module | None) -> int:
    if module is None:
        return 0
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def model_cost(model: nn.Module) -> Cost:
    """Cost of `model` as it is now (pruned or not), found by role, so any BERT-style encoder works."""
    base = model.base_model
    pooler = getattr(base, "pooler", None)
    per_sequence = _linear_weights(pooler) + sum(
        _linear_weights(child) for child in model.children() if child is not base)
    per_token = _linear_weights(base) - _linear_weights(pooler)
    width = 0
    for layer in encoder_layers(model):
        parts = layer_parts(layer)
        if parts.self_attention is not None:  # a layer with no head left has no attention product
            width += parts.num_heads * parts.head_size
    return Cost(per_token, width, per_sequence, sum(p.numel() for p in model.parameters()))
