"""flops.py: FLOPs per token of full and physically pruned models against a hand count and torch's counter."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_bert_config
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
)

from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.flops import model_cost
from bertlottery.modeling.pruning import prune_heads_and_mlps
from bertlottery.modeling.sizes import size_of

# hidden 32, 2 layers x 4 heads of size 8, intermediate 64, 2 labels
MASK = HeadMlpMask(torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0]]), torch.tensor([1, 0]))


def tiny(attn="sdpa"):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_labels=2, attn_implementation=attn)).eval()


def test_full_model_matches_a_hand_count():
    cost = model_cost(tiny())
    # per layer: Q, K, V, attention output 4 x 32 x 32, MLP 2 x 32 x 64 -> 8192 weights; 2 layers
    assert cost.per_token_weights == 2 * (4 * 32 * 32 + 2 * 32 * 64) == 16384
    assert cost.attention_width == 2 * 4 * 8
    assert cost.per_sequence_weights == 32 * 32 + 32 * 2  # pooler, classifier
    # lengths 3 and 5: 2 n P_tok + 4 n^2 A per sequence, 2 P_seq per sequence
    hand = 2 * 8 * 16384 + 4 * (9 + 25) * 64 + 2 * 2 * 1088
    assert cost.flops([3, 5]) == hand == 275200
    assert cost.flops_per_token([3, 5]) == hand / 8


def test_pruned_model_matches_a_hand_count_and_size_of():
    model = tiny()
    sizes = size_of(model, MASK)
    prune_heads_and_mlps(model, MASK)
    cost = model_cost(model)
    # layer 0: 2 heads of 8 -> Q/K/V 3 x 16 x 32, output 32 x 16, MLP kept; layer 1: nothing left
    assert cost.per_token_weights == 3 * 16 * 32 + 32 * 16 + 2 * 32 * 64 == 6144
    assert cost.attention_width == 16
    assert cost.flops([3, 5]) == 2 * 8 * 6144 + 4 * 34 * 16 + 2 * 2 * 1088
    assert cost.parameters == sum(p.numel() for p in model.parameters()) == sizes["params_kept"]


@pytest.mark.parametrize("pruned", [False, True], ids=["full", "pruned"])
def test_matches_torch_flop_counter_on_one_sequence(pruned):
    """One sequence (no padding): torch's own count of the matrix products equals the formula's (eager
    attention: the counter does not see inside CPU SDPA kernels)."""
    model = tiny("eager")
    if pruned:
        prune_heads_and_mlps(model, HeadMlpMask(torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0]]), torch.tensor([0, 1])))
    ids = torch.randint(5, 1000, (1, 11))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert counter.get_total_flops() == model_cost(model).flops([11])


FAMILY_CONFIGS = {
    "bert": lambda: BertConfig(**BERT_STYLE),
    "roberta": lambda: RobertaConfig(**BERT_STYLE, pad_token_id=0, type_vocab_size=1),
    "electra": lambda: ElectraConfig(**BERT_STYLE, embedding_size=16),  # + a per-token embedding projection
    "distilbert": lambda: DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=1000,
                                           max_position_embeddings=64, num_labels=3),
}
BERT_STYLE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=1000,
                  max_position_embeddings=64, num_labels=3)


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_every_encoder_family_matches_torch_flop_counter_after_pruning(family):
    """Found by role: the count holds for each encoder family (pooler or classifier heads on the first token,
    ELECTRA's embedding projection per token), with uneven and zero heads and a removed MLP."""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(FAMILY_CONFIGS[family](), attn_implementation="eager")
    prune_heads_and_mlps(model.eval(), HeadMlpMask(torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0]]), torch.tensor([1, 0])))
    ids = torch.randint(5, 1000, (1, 9))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert counter.get_total_flops() == model_cost(model).flops([9])
