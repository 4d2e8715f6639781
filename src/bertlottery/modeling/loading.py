"""Load a sequence-classification model from a hub id or a local directory (pruned ones rebuilt)."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import torch
from torch import nn

from bertlottery.errors import BertLotteryError
from bertlottery.io import check_model_source
from bertlottery.modeling.pruning import load_pruned
from bertlottery.modeling.structure import (
    PRUNED_CONFIG_KEYS,
    attention_implementation,
    encoder_layers,
    meta_model,
)


def _is_pruned_dir(name: str) -> bool:
    config = Path(name).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get(PRUNED_CONFIG_KEYS[0]) is not None
    except (OSError, ValueError) as exc:
        raise BertLotteryError(f"{config}: not readable JSON ({exc})") from exc


def load_classifier(name_or_path: str | os.PathLike, num_labels: int, *, random_init: bool = False,
                    attn_implementation: str = "sdpa") -> nn.Module:
    """A sequence-classification model in fp32 (num_labels=1: regression with MSE loss).

    random_init builds the architecture from the checkpoint's config with random weights (the paper's
    Table 2 "random init" row); the caller seeds torch first for a reproducible init. A saved physically
    pruned model (config.json has bertlottery_head_mask) is rebuilt with `load_pruned`. "sdpa" falls back
    to "eager" for a class without it (structure.attention_implementation)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    name = str(name_or_path)
    check_model_source(name)  # not found / not a model folder / damaged weights: named before transformers
    if not random_init and _is_pruned_dir(name):
        model = load_pruned(name, attn_implementation=attn_implementation)
        if model.config.num_labels != num_labels:
            raise BertLotteryError(f"{name}: pruned model has num_labels={model.config.num_labels}, "
                                   f"expected {num_labels}")
        return keep_head_in_fp32(model)
    problem = "regression" if num_labels == 1 else "single_label_classification"
    try:
        config = AutoConfig.from_pretrained(name, num_labels=num_labels, problem_type=problem)
        attention = attention_implementation(config, attn_implementation)
        if random_init:
            for key in PRUNED_CONFIG_KEYS:  # a random full-size model, even from a pruned model's config
                if hasattr(config, key):
                    delattr(config, key)
            model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)
        else:
            # dtype fixed: checkpoints may store fp16 (the shared MiniLM) while the study runs in fp32
            model = AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=num_labels, problem_type=problem, dtype=torch.float32,
                attn_implementation=attention)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # RuntimeError: e.g. a fine-tuned checkpoint whose classifier has another number of labels
        raise BertLotteryError(f"{name}: cannot load a sequence-classification model with "
                               f"num_labels={num_labels} ({exc})") from exc
    model = model.float()
    encoder_layers(model)  # fail early on a non-BERT-style architecture
    return keep_head_in_fp32(model)


def _fp32_forward(self: nn.Module, *args, **kwargs):
    """The module's own forward with autocast off and floating inputs in fp32."""
    device_type = next((a.device.type for a in args if torch.is_tensor(a)), "cuda")
    args = tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
    with torch.autocast(device_type=device_type, enabled=False):
        return type(self).forward(self, *args, **kwargs)


def keep_head_in_fp32(model: nn.Module) -> nn.Module:
    """Under bf16 autocast the classification head (and DistilBERT's pre_classifier) still runs in fp32:
    regression scores are not rounded to bf16 (ties in STS-B's Spearman), and the loss sees fp32 logits.
    A bound method on the instance: no new parameters or state-dict keys, and deep copies keep it bound
    to their own head."""
    for name in ("pre_classifier", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            head.forward = types.MethodType(_fp32_forward, head)
    return model


def model_of_config_file(path: str | os.PathLike) -> nn.Module:
    """The full-size sequence-classification model a config.json describes, on the meta device: its module
    names, shapes and roles without weights (what m-blocks needs from a study bundle's copy of config.json)."""
    from transformers import CONFIG_MAPPING

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BertLotteryError(f"{path}: not a readable model config.json ({exc})") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in CONFIG_MAPPING:
        raise BertLotteryError(f"{path}: model_type {model_type!r} is not a transformers model type; expected "
                               "a model's config.json (model_type 'bert', 'roberta', 'distilbert', ...)")
    model = meta_model(CONFIG_MAPPING[model_type].from_dict(data))
    encoder_layers(model)  # fail early on a non-BERT-style architecture
    return model
