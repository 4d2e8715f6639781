"""analysis/m_blocks.py on every supported encoder family (tiny random BERT, RoBERTa, ELECTRA and DistilBERT
configs built in code): the block table from a config.json alone, one head's slice counted by hand from
the family's own parameter names, Figure 1a and the m-pruning claims (paper §4.1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
)

from bertlottery.analysis import claims as C
from bertlottery.analysis import claims_masks as K
from bertlottery.analysis import figures as F
from bertlottery.analysis.stats import main_stats
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.structure import prunable_parameters

LAYERS, HEADS, HIDDEN, INTERMEDIATE = 3, 4, 16, 24
HEAD_SIZE = HIDDEN // HEADS
KEEP_BY_LAYER = (0.45, 0.5, 0.55)  # kept share of every prunable value: later layers keep more
SEEDS = (1, 2)
# Each family's own names of one layer's query/key/value and attention output projection (the test's
# independent account; the package finds them by role).
ATTENTION_NAMES = {
    "bert": ("bert.encoder.layer.{i}.attention.self.{q}", ("query", "key", "value"),
             "bert.encoder.layer.{i}.attention.output.dense"),
    "roberta": ("roberta.encoder.layer.{i}.attention.self.{q}", ("query", "key", "value"),
                "roberta.encoder.layer.{i}.attention.output.dense"),
    "electra": ("electra.encoder.layer.{i}.attention.self.{q}", ("query", "key", "value"),
                "electra.encoder.layer.{i}.attention.output.dense"),
    "distilbert": ("distilbert.transformer.layer.{i}.attention.{q}", ("q_lin", "k_lin", "v_lin"),
                   "distilbert.transformer.layer.{i}.attention.out_lin"),
}


def family_config(family: str):
    common = dict(vocab_size=50, max_position_embeddings=40, num_labels=2)
    bert_style = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=INTERMEDIATE)
    if family == "bert":
        return BertConfig(**bert_style, **common)
    if family == "roberta":
        return RobertaConfig(**bert_style, pad_token_id=0, type_vocab_size=1, **common)
    if family == "electra":
        return ElectraConfig(**bert_style, embedding_size=8, **common)
    return DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE, **common)


def write_masks(root, family: str) -> tuple[list, dict[int, WeightMask]]:
    """config.json of the family and one random weight mask per seed at the workflow's paths."""
    config = family_config(family)
    config.save_pretrained(root / "model")
    params = prunable_parameters(AutoModelForSequenceClassification.from_config(config))
    paths, masks = [], {}
    for seed in SEEDS:
        generator = torch.Generator().manual_seed(seed)
        masks[seed] = WeightMask({name: torch.rand(p.shape, generator=generator) < KEEP_BY_LAYER[_layer(name)]
                                  for name, p in params.items()})
        paths.append(masks[seed].save(root / f"masks/m/RTE/seed{seed}/good.safetensors", task="RTE", seed=seed))
    return paths, masks


def _layer(name: str) -> int:
    return int(name.split(".layer.")[1].split(".")[0])


def head_by_hand(mask: WeightMask, family: str, layer: int, head: int) -> tuple[int, int]:
    """Kept and total values of one head: its query/key/value rows and biases, its output-projection columns."""
    pattern, qkv, out = ATTENTION_NAMES[family]
    rows = slice(head * HEAD_SIZE, (head + 1) * HEAD_SIZE)
    pieces = [mask.masks[f"{pattern.format(i=layer, q=q)}.{attr}"][rows] for q in qkv for attr in ("weight", "bias")]
    pieces.append(mask.masks[f"{out.format(i=layer)}.weight"][:, rows])
    return sum(int(p.sum()) for p in pieces), sum(p.numel() for p in pieces)


@pytest.mark.parametrize("family", list(ATTENTION_NAMES))
def test_m_blocks_figure1a_and_claims_on_every_encoder_family(tmp_path, family):
    paths, masks = write_masks(tmp_path, family)
    main_stats(["m-blocks", "--m-masks", *map(str, paths), "--model-config", str(tmp_path / "model/config.json"),
                "--output", str(tmp_path / "m_blocks.csv")])
    table = pd.read_parquet(tmp_path / "m_blocks.parquet")
    assert len(table) == len(SEEDS) * LAYERS * (HEADS + 1)
    for seed, mask in masks.items():
        rows = table[table["seed"] == seed].set_index(["block", "layer", "head"])
        assert tuple(rows.loc[("head", 1, 2), ["kept", "total"]]) == head_by_hand(mask, family, 1, 2)
        # every prunable value is in one block, except the attention output biases (no head owns them)
        out_bias = [mask.masks[ATTENTION_NAMES[family][2].format(i=layer) + ".bias"] for layer in range(LAYERS)]
        assert rows["kept"].sum() + sum(int(v.sum()) for v in out_bias) == mask.kept
        assert rows["total"].sum() + sum(v.numel() for v in out_bias) == mask.total

    F.main_figures(["fig1", "--task", "RTE", "--m-blocks", str(tmp_path / "m_blocks.parquet"),
                    "--out", str(tmp_path / "fig1")])
    with Image.open(tmp_path / "fig1.png") as image:
        assert len(np.unique(np.asarray(image.convert("L")))) > 5  # not blank

    numbers = C.Numbers(label="ours", summary=pd.DataFrame(), m_blocks=table)
    half, early = K.claim_m_half(numbers), K.claim_m_early_layers(numbers, alpha=0.05)
    assert half.verdict == C.HOLDS, half.reason
    # later layers keep more here, but 3 layers cannot reach p < 0.05 (exact p of a perfect rank order: 1/3)
    assert early.verdict == C.NOT_SHOWN and "needs |rho| >= " in early.reason, early.reason
    per_layer = early.evidence["per_layer"]
    assert [per_layer[layer] for layer in range(LAYERS)] == pytest.approx(KEEP_BY_LAYER, abs=0.03)
