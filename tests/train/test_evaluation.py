"""Dev predictions: padding-free and padded give the same logits and loss, in file order."""

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config
from transformers import BertForSequenceClassification

from bertlottery.glue.splits import TokenizedSplit
from bertlottery.train.evaluation import predict


def split(n=37, regression=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    ids = torch.randint(1000, 30000, (int(offsets[-1]),), generator=g).int()
    types = (torch.rand(int(offsets[-1]), generator=g) > 0.5).to(torch.uint8)
    labels = torch.rand(n, generator=g) * 5 if regression else torch.randint(0, 2, (n,), generator=g)
    return TokenizedSplit(ids, types, offsets, labels)


@pytest.mark.parametrize("num_labels", [2, 1])
def test_padding_free_predictions_equal_the_padded_ones(num_labels):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=num_labels))
    data = split(regression=num_labels == 1)
    free = predict(model, data, batch_size=8, padding_free=True)
    padded = predict(model, data, batch_size=8, padding_free=False)
    fixed = predict(model, data, batch_size=8, padding_free=False, pad_to=64)
    assert free.logits.shape == (37, num_labels)
    np.testing.assert_allclose(free.logits, padded.logits, rtol=0, atol=1e-6)
    np.testing.assert_allclose(free.logits, fixed.logits, rtol=0, atol=1e-6)
    assert free.loss == pytest.approx(padded.loss, abs=1e-6)
    np.testing.assert_array_equal(free.labels, padded.labels)
