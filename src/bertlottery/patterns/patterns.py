"""Self-attention pattern analysis (PAPER_SPEC 8.4, Figure 4, Appendix F).

For a sample of dev examples, every head's attention map over the example's real tokens ([CLS] and [SEP]
included, padding stripped) is classified into one of Kovaleva et al.'s five types, in two forms:
* raw: the attention probabilities alpha (eager attention, output_attentions=True);
* normed (Kobayashi et al. 2020): ||alpha_ij * f_h(x_j)|| with f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h, the
  value vector projected through head h's columns of the attention-output dense (its bias excluded).
  Since alpha_ij is a non-negative scalar this is alpha_ij * ||f_h(x_j)||.

Classifiers:
* `RuleClassifier` (default): transparent rules on the row-normalised map, thresholds in `RuleThresholds`.
  It looks only at the image (no token ids), so it applies to the original's labelled .npy maps too.
* `CnnClassifier`: the spec's six-conv CNN, trained by `train-cnn` when the user supplies labelled maps
  (config patterns.labelled_dir). Maps are row-normalised, scaled to max 1 and resized to 64x64 (bilinear,
  antialiased) instead of the original's crop / zero-pad to the largest training map: one input size for
  every sequence length.

Configurations (spec 8.4): model in {finetuned, pretrained} x selection in {all heads, super-survivors}.
By default super-survivor maps are computed in the pruned network (soft head and MLP masks of
bertlottery.modeling.model.attach_soft_masks, as the original did); `--super-network full` instead selects the
super-survivor heads from the full network's maps.

Sampling: per (task, seed) `n_examples` dev examples with at least `min_tokens` tokens, drawn with
numpy's generator seeded by (sample_seed, seed): each seed gets its own draw (as the original's single
RNG stream did), and the fine-tuned and pre-trained models of one (task, seed) see the same examples.

Files:
* counts (one per task, seed, model): safetensors with int64 "all/raw", "all/normed", "super/raw",
  "super/normed" [layers, heads, 5] = number of maps of each type (types in PATTERN_TYPES order; heads
  outside the selection count 0) and uint8 "super/heads" [layers, heads]; metadata names task, seed,
  model config, classifiers, network and examples.
* CNN: <dir>/<kind>/model.safetensors (state dict) + card.json (classes, input size, validation scores).
* labelled maps (input, user supplied): <labelled_dir>/<kind>/labels.csv with columns `file,label`
  (kind in raw, normed); `file` is a path relative to that folder of a 2-D square .npy map over one
  example's tokens (rows = queries); `label` one of PATTERN_TYPES or the original's names (LABEL_ALIASES).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bertlottery.errors import BertLotteryError
from bertlottery.glue.data import load_split
from bertlottery.glue.tasks import get_task
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.loading import load_classifier
from bertlottery.modeling.soft_masks import attach_soft_masks, detach_soft_masks
from bertlottery.modeling.structure import encoder_layers, layer_parts
from bertlottery.runtime import configure_torch, pick_device
from bertlottery.settings import read_json, write_json

PATTERN_TYPES = ("heterogeneous", "block", "diagonal", "vertical", "vertical+diagonal")
SHORT_NAMES = {"heterogeneous": "het", "block": "block", "diagonal": "diag", "vertical": "vert",
               "vertical+diagonal": "vert+diag"}
KINDS = ("raw", "normed")
MODEL_CONFIGS = ("finetuned", "pretrained")
SELECTIONS = ("super", "all")
# Figure 4's task order (WNLI is left out by the paper: it has no super-survivors).
PAPER_TASK_ORDER = ("MNLI", "QNLI", "RTE", "MRPC", "QQP", "SST-2", "CoLA", "STS-B")
# The original's label names (Kovaleva's raw labels file and the normed TSV), lower-cased, spaces removed.
LABEL_ALIASES = {
    "heterogeneous": "heterogeneous", "other": "heterogeneous", "het": "heterogeneous",
    "block": "block", "diagonal": "diagonal", "diag": "diagonal",
    "vertical": "vertical", "singlevertical": "vertical", "doublevertical": "vertical",
    "multiplevertical": "vertical", "vert": "vertical",
    "vertical+diagonal": "vertical+diagonal", "mix": "vertical+diagonal", "vert+diag": "vertical+diagonal",
}

# --------------------------------------------------------------------------------------------------
# attention maps


def _kept_output(store: dict[int, torch.Tensor], index: int):
    def hook(module, args, output):
        store[index] = output
    return hook


@torch.no_grad()
def attention_maps(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw and normed attention of a padded batch, both [batch, layers, heads, n, n] (float32).

    Hooks on each layer's value projection capture x W_V + b_V; the model is switched to eager attention,
    the only implementation that returns alpha."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    parts = [layer_parts(layer) for layer in encoder_layers(model)]
    values: dict[int, torch.Tensor] = {}
    handles = [p.value.register_forward_hook(_kept_output(values, i)) for i, p in enumerate(parts)]
    try:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        out = model(**inputs, output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    raw = torch.stack([a.float() for a in out.attentions], dim=1)
    heads = raw.shape[2]
    norms = torch.stack([_value_norms(values[i].float(), p.attn_dense.weight.float(), heads)
                         for i, p in enumerate(parts)], dim=1)  # [B, L, H, n]
    return raw, raw * norms[:, :, :, None, :]


def _value_norms(value: torch.Tensor, out_weight: torch.Tensor, heads: int) -> torch.Tensor:
    """||f_h(x_j)|| = ||v_j^h (W_O^h)^T|| for every head h and token j: [batch, heads, n]."""
    batch, n, width = value.shape
    head_dim = width // heads
    v = value.view(batch, n, heads, head_dim)
    w = out_weight.view(out_weight.shape[0], heads, head_dim)  # dense: [hidden, heads * head_dim]
    return torch.einsum("bjhd,ohd->bhjo", v, w).norm(dim=-1)


def strip_padding(maps: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Per example, the [layers, heads, n, n] block over its real tokens (right padding assumed)."""
    lengths = attention_mask.sum(dim=1).tolist()
    return [maps[b, :, :, :n, :n] for b, n in enumerate(lengths)]


# --------------------------------------------------------------------------------------------------
# rule-based classifier


@dataclass(frozen=True)
class RuleThresholds:
    """Thresholds of the rule classifier. Masses are fractions of a row-normalised map's total mass
    (each query row sums to 1, so "mass" = average share of a query's attention)."""

    stripe_min_mass: float = 0.08
    """A column (key) is a vertical stripe if its mean attention over queries is at least this ..."""
    stripe_uniform_ratio: float = 1.5
    """... and at least this many times the uniform share 1/n (guards short sequences) ..."""
    stripe_min_median: float = 0.05
    """... and at least half of the queries give it this much or more (a stripe spans the map) ..."""
    max_stripes: int = 6
    """... and it is among the `max_stripes` heaviest columns ([CLS], [SEP]s, a few punctuation marks)."""
    diagonal_width: int = 2
    """The diagonal band: keys j with |i - j| <= width (previous, own and next token)."""
    vertical_min: float = 0.4
    """vertical: at least this mass on the stripes."""
    diagonal_min: float = 0.4
    """diagonal: at least this mass in the band (stripe columns excluded)."""
    mixed_min_each: float = 0.15
    """vertical+diagonal: at least this on the stripes and at least this in the band ..."""
    mixed_min_total: float = 0.5
    """... and at least this on both together."""
    block_min_mass: float = 0.8
    """block: the best split into two contiguous segments keeps at least this mass inside the segments ..."""
    block_min_uniformity: float = 0.8
    """... and within its segment a query's attention has normalised entropy at least this (1 = uniform)."""
    min_block_tokens: int = 3
    """Smallest segment of a split, in tokens ..."""
    min_block_fraction: float = 0.2
    """... and as a fraction of the sequence (the larger of the two applies)."""


def row_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum 1 (raw maps already do; normed maps do not). All-zero rows stay zero."""
    maps = maps.float()
    return maps / maps.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def map_features(maps: torch.Tensor, th: RuleThresholds = RuleThresholds()) -> dict[str, torch.Tensor]:
    """Per map of a [M, n, n] stack: vertical, diagonal, block_mass, block_uniformity (each [M]) and
    the split position of the best two-block segmentation (0 when n is too short to split)."""
    p = row_normalize(maps)
    m, n, _ = p.shape
    col = p.mean(dim=1)
    top = col.topk(min(th.max_stripes, n), dim=1)
    cutoff = max(th.stripe_min_mass, th.stripe_uniform_ratio / n)
    broad = p.median(dim=1).values >= th.stripe_min_median
    heavy = torch.zeros_like(col, dtype=torch.bool).scatter_(1, top.indices, top.values >= cutoff)
    stripes = heavy & broad
    vertical = (col * stripes).sum(dim=1)  # = mean over queries of the mass on stripe columns
    diagonal = torch.zeros_like(vertical)
    for offset in range(-th.diagonal_width, th.diagonal_width + 1):
        if abs(offset) < n:  # cells (i, i + offset), counted unless their column is a stripe
            cells = p.diagonal(offset=offset, dim1=1, dim2=2)
            keys = stripes[:, max(offset, 0):n + min(offset, 0)]
            diagonal += (cells * ~keys).sum(dim=1) / n
    mass, uniformity, split = _two_blocks(p, th)
    return {"vertical": vertical, "diagonal": diagonal, "block_mass": mass,
            "block_uniformity": uniformity, "split": split}


def _two_blocks(p: torch.Tensor, th: RuleThresholds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The split s maximising the mass in [0,s)x[0,s) + [s,n)x[s,n), via 2-D prefix sums."""
    m, n, _ = p.shape
    low = max(th.min_block_tokens, math.ceil(th.min_block_fraction * n))
    zeros = torch.zeros(m, device=p.device)
    if n < 2 * low:
        return zeros, zeros, zeros.long()
    c = p.cumsum(1).cumsum(2)
    s = torch.arange(low, n - low + 1, device=p.device)
    total = c[:, -1, -1, None]
    top_left = c[:, s - 1, s - 1]
    bottom_right = total - c[:, s - 1, -1] - c[:, -1, s - 1] + top_left
    best = ((top_left + bottom_right) / total.clamp_min(1e-12)).max(dim=1)
    split = s[best.indices]
    idx = torch.arange(n, device=p.device)
    segment = idx[None, :] >= split[:, None]
    same = segment[:, :, None] == segment[:, None, :]
    inside = p * same
    q = inside / inside.sum(-1, keepdim=True).clamp_min(1e-12)
    entropy = -(q * q.clamp_min(1e-12).log()).sum(-1)
    size = same.sum(-1).float()
    uniformity = (entropy / size.log().clamp_min(1e-12)).mean(dim=1)
    return best.values, uniformity, split


def classify_features(f: dict[str, torch.Tensor], th: RuleThresholds = RuleThresholds()) -> torch.Tensor:
    """Type indices (PATTERN_TYPES). Precedence: vertical+diagonal > vertical > block > diagonal >
    heterogeneous (block before diagonal: a uniform small block also fills the diagonal band)."""
    v, d = f["vertical"], f["diagonal"]
    labels = torch.full_like(v, PATTERN_TYPES.index("heterogeneous"), dtype=torch.long)
    rules = [  # lowest precedence first: later rules overwrite
        ("diagonal", d >= th.diagonal_min),
        ("block", (f["block_mass"] >= th.block_min_mass) & (f["block_uniformity"] >= th.block_min_uniformity)),
        ("vertical", v >= th.vertical_min),
        ("vertical+diagonal", (v >= th.mixed_min_each) & (d >= th.mixed_min_each) & (v + d >= th.mixed_min_total)),
    ]
    for name, hit in rules:
        labels[hit] = PATTERN_TYPES.index(name)
    return labels


@dataclass(frozen=True)
class RuleClassifier:
    """Maps [M, n, n] -> type indices [M] by `RuleThresholds`."""

    thresholds: RuleThresholds = RuleThresholds()
    name: str = "rules"

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        return classify_features(map_features(maps, self.thresholds), self.thresholds)


# --------------------------------------------------------------------------------------------------
# synthetic maps (tests, Figure 4a, CNN checks)


def synthetic_map(pattern: str, n: int, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """A row-stochastic n x n map of one type, mixed with a share `noise` of Dirichlet(1) rows."""
    i = np.arange(n)
    if pattern == "vertical":
        p = _stripes(n, rng)
    elif pattern == "diagonal":
        p = _diagonal(n, rng)
    elif pattern == "vertical+diagonal":
        p = 0.5 * _stripes(n, rng) + 0.5 * _diagonal(n, rng)
    elif pattern == "block":
        split = int(rng.integers(round(0.3 * n), round(0.7 * n) + 1))
        segment = i >= split
        p = (segment[:, None] == segment[None, :]).astype(float)
    elif pattern == "heterogeneous":
        p = np.zeros((n, n))
        for row in range(n):
            allowed = np.flatnonzero(np.abs(i - row) > 2)  # off the diagonal band
            cols = rng.choice(allowed, size=min(int(rng.integers(2, 5)), len(allowed)), replace=False)
            p[row, cols] = rng.dirichlet(np.ones(len(cols)))
    else:
        raise BertLotteryError(f"synthetic_map: pattern {pattern!r}; expected one of {PATTERN_TYPES}")
    p = p / p.sum(axis=1, keepdims=True)
    return (1 - noise) * p + noise * rng.dirichlet(np.ones(n), size=n)


def _stripes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Attention to [CLS] (0), final [SEP] (n-1) and/or a middle [SEP]: most mass on 1-3 columns."""
    options = [[0], [n - 1], [0, n - 1], [0, n // 2, n - 1]]
    cols = options[int(rng.integers(len(options)))]
    p = np.full((n, n), 0.05 / n)
    p[:, cols] += 0.95 * rng.dirichlet(np.full(len(cols), 2.0), size=n)
    return p


def _diagonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Attention to the previous or the next token (plus some to itself)."""
    i = np.arange(n)
    p = np.zeros((n, n))
    p[i, np.clip(i + int(rng.choice([-1, 1])), 0, n - 1)] += 0.8
    p[i, i] += 0.2
    return p


# --------------------------------------------------------------------------------------------------
# CNN classifier (spec 8.4)

CNN_INPUT_SIZE = 64


class PatternCNN(nn.Module):
    """Six 3x3 convolutions (16, 16, pool, 32, 32, pool, 64, 64), a 1x1 conv to 16 channels, global
    average pooling and a 1x1 conv to the class logits; ReLU after each 3x3 conv; padding 1."""

    def __init__(self, n_classes: int = len(PATTERN_TYPES)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for width, pool in ((16, False), (16, True), (32, False), (32, True), (64, False), (64, False)):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if pool else []
            channels = width
        layers.append(nn.Conv2d(channels, 16, 1))
        self.features = nn.Sequential(*layers)
        self.classify = nn.Conv2d(16, n_classes, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, S, S] -> [B, classes]
        pooled = self.features(x).mean(dim=(2, 3), keepdim=True)
        return self.classify(pooled).flatten(1)


def cnn_input(maps: torch.Tensor, size: int = CNN_INPUT_SIZE) -> torch.Tensor:
    """[M, n, n] maps -> [M, 1, size, size]: rows normalised, each map scaled to max 1, resized."""
    p = row_normalize(maps)
    p = p / p.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return F.interpolate(p[:, None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class CnnClassifier:
    """Maps [M, n, n] -> type indices [M] with a trained PatternCNN."""

    name = "cnn"

    def __init__(self, model: PatternCNN, size: int = CNN_INPUT_SIZE):
        self.model = model.eval()
        self.size = size

    @torch.no_grad()
    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model(cnn_input(maps.to(device), self.size)).argmax(dim=1).to(maps.device)

    def to(self, device: torch.device) -> CnnClassifier:
        self.model.to(device)
        return self


def canonical_label(text: str, where: str) -> int:
    key = "".join(str(text).lower().split())
    if key not in LABEL_ALIASES:
        raise BertLotteryError(f"{where}: label {text!r}; expected one of {PATTERN_TYPES} "
                               f"or the original's names {sorted(set(LABEL_ALIASES) - set(PATTERN_TYPES))}")
    return PATTERN_TYPES.index(LABEL_ALIASES[key])


def load_labelled(folder: str | Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Maps and type indices from <folder>/labels.csv (columns file,label) and the .npy files it names."""
    folder = Path(folder)
    table = folder / "labels.csv"
    if not table.is_file():
        raise BertLotteryError(f"{table}: labels file not found; expected a CSV with columns file,label "
                               "next to the .npy maps")
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise BertLotteryError(f"{table}: expected a header with columns file,label and at least one row")
    maps, labels = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{table}:{line}"
        path = folder / row["file"]
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BertLotteryError(f"{where}: cannot read map {path} ({exc})") from None
        if array.ndim != 2 or array.shape[0] != array.shape[1] or not np.isfinite(array).all():
            raise BertLotteryError(f"{where}: map {path} has shape {array.shape}; expected a finite square 2-D array")
        maps.append(array.astype(np.float32))
        labels.append(canonical_label(row["label"], where))
    return maps, np.asarray(labels)


def _stack_inputs(maps: Sequence[np.ndarray], size: int) -> torch.Tensor:
    return torch.cat([cnn_input(torch.from_numpy(np.asarray(m, dtype=np.float32))[None], size) for m in maps])


def train_cnn(maps: Sequence[np.ndarray], labels: np.ndarray, *, epochs: int, seed: int,
              size: int = CNN_INPUT_SIZE, batch_size: int = 64, lr: float = 1e-3, val_fraction: float = 0.2,
              device: torch.device | None = None, progress: bool = False) -> tuple[PatternCNN, dict]:
    """Adam, cross-entropy, stratified train/validation split; the epoch with the best validation
    accuracy is kept (spec 8.4). Returns the model (on CPU) and a card of the validation scores."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(PATTERN_TYPES))
    if (counts[counts > 0] < 2).any():
        raise BertLotteryError(f"labelled maps: per-class counts {dict(zip(PATTERN_TYPES, counts.tolist()))}; "
                               "a stratified split needs at least 2 maps of every class present")
    if math.ceil(val_fraction * len(labels)) < (counts > 0).sum():
        raise BertLotteryError(f"labelled maps: {len(labels)} maps leave fewer validation maps than classes "
                               f"({(counts > 0).sum()}); expected at least {math.ceil((counts > 0).sum() / val_fraction)}")
    device = device or torch.device("cpu")
    x, y = _stack_inputs(maps, size), torch.from_numpy(labels).long()
    train_idx, val_idx = train_test_split(np.arange(len(y)), test_size=val_fraction, stratify=labels,
                                          random_state=seed)
    torch.manual_seed(seed)
    model = PatternCNN().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    best = (-1.0, 0, None)
    for epoch in tqdm(range(epochs), desc="cnn", disable=not progress):
        model.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[chunk].to(device)), y[chunk].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracy = float((_predict(model, x[val_idx], device) == y[val_idx]).float().mean())
        if accuracy > best[0]:
            best = (accuracy, epoch, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    predicted = _predict(model, x[val_idx], device).numpy()
    card = {"classes": list(PATTERN_TYPES), "input_size": size, "epochs": epochs, "best_epoch": best[1],
            "seed": seed, "val_accuracy": best[0],
            "val_f1_weighted": float(f1_score(y[val_idx].numpy(), predicted, average="weighted")),
            "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
            "class_counts": dict(zip(PATTERN_TYPES, counts.tolist()))}
    return model.cpu().eval(), card


@torch.no_grad()
def _predict(model: PatternCNN, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def save_cnn(model: PatternCNN, card: dict, out_dir: str | Path) -> None:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    write_json(out_dir / "card.json", card)


def load_cnn(folder: str | Path) -> CnnClassifier:
    from safetensors.torch import load_file

    folder = Path(folder)
    card = read_json(folder / "card.json")
    if card.get("classes") != list(PATTERN_TYPES):
        raise BertLotteryError(f"{folder / 'card.json'}: classes {card.get('classes')}; expected {list(PATTERN_TYPES)}")
    model = PatternCNN()
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return CnnClassifier(model, int(card["input_size"]))


# --------------------------------------------------------------------------------------------------
# extraction: label counts per head


def sample_examples(lengths: np.ndarray, n_examples: int, min_tokens: int, sample_seed: int, seed: int) -> np.ndarray:
    """Indices of up to n_examples examples with >= min_tokens tokens, in random order (spec 8.4)."""
    eligible = np.flatnonzero(np.asarray(lengths) >= min_tokens)
    rng = np.random.default_rng([sample_seed, seed])
    return rng.permutation(eligible)[:n_examples]


Classifier = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def count_patterns(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                   classifiers: dict[str, Classifier], heads: torch.Tensor | None = None,
                   progress: bool = False, total: int | None = None) -> dict[str, torch.Tensor]:
    """Counts of each type per head, {"raw", "normed"} -> int64 [layers, heads, 5], over every example
    of `batches`. Heads outside `heads` (bool [layers, heads]; None = all) count 0."""
    model.eval()
    device = next(model.parameters()).device
    counts: dict[str, torch.Tensor] = {}
    for batch in tqdm(batches, desc="patterns", total=total, disable=not progress, leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        raw, normed = attention_maps(model, batch)
        for kind, maps in (("raw", raw), ("normed", normed)):
            layers, n_heads = maps.shape[1:3]
            selected = torch.ones(layers, n_heads, dtype=torch.bool) if heads is None else heads.bool().cpu()
            slot = counts.setdefault(kind, torch.zeros(layers, n_heads, len(PATTERN_TYPES), dtype=torch.long))
            for example in strip_padding(maps, batch["attention_mask"]) if selected.any() else []:
                labels = classifiers[kind](example[selected.to(example.device)]).cpu()  # [selected heads]
                slot[selected] += F.one_hot(labels, len(PATTERN_TYPES))
    if not counts:
        raise BertLotteryError("count_patterns: no examples to classify")
    return counts


def save_counts(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tmp.replace(path)


def load_counts(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BertLotteryError(f"{path}: pattern counts file not found")
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata() or {})
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    missing = {"all/raw", "all/normed"} - set(tensors)
    if missing or meta.get("types") != json.dumps(list(PATTERN_TYPES)):
        raise BertLotteryError(f"{path}: missing {sorted(missing)} or types {meta.get('types')}; "
                               "expected a counts file written by `patterns extract`")
    return tensors, meta


def _classifiers(cnn_dir: str | None, device: torch.device) -> dict[str, Classifier]:
    """The CNN of each kind that has one under cnn_dir (<cnn_dir>/<kind>/card.json), else the rules."""
    chosen: dict[str, Classifier] = {}
    for kind in KINDS:
        folder = Path(cnn_dir) / kind if cnn_dir else None
        chosen[kind] = load_cnn(folder).to(device) if folder and (folder / "card.json").is_file() else RuleClassifier()
    return chosen


def extract(args: argparse.Namespace) -> None:
    started = time.time()
    configure_torch()
    device = pick_device()
    spec = get_task(args.task)
    split = load_split(args.data_dir, "dev")
    chosen = sample_examples(split.lengths.numpy(), args.n_examples, args.min_tokens, args.sample_seed, args.seed)
    if len(chosen) == 0:
        raise BertLotteryError(f"{args.data_dir}: no dev example has >= {args.min_tokens} tokens (--min-tokens)")
    model = load_classifier(args.model, spec.num_labels, attn_implementation="eager").to(device).eval()
    classifiers = _classifiers(args.cnn_dir, device)

    def batches():
        for start in range(0, len(chosen), args.batch_size):
            batch = split.collate(chosen[start:start + args.batch_size])
            yield {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

    total = -(-len(chosen) // args.batch_size)
    full = count_patterns(model, batches(), classifiers, progress=True, total=total)
    tensors = {f"all/{k}": v for k, v in full.items()}
    meta = {"task": args.task, "seed": str(args.seed), "config": args.config, "model": args.model,
            "types": list(PATTERN_TYPES), "n_examples": str(len(chosen)), "min_tokens": str(args.min_tokens),
            "classifier_raw": classifiers["raw"].name, "classifier_normed": classifiers["normed"].name}
    if args.super_mask:
        mask = HeadMlpMask.load(args.super_mask)
        mask.check_fits(model)
        if args.super_network == "pruned" and mask.heads_kept:
            attach_soft_masks(model, mask)
            sub = count_patterns(model, batches(), classifiers, heads=mask.heads, progress=True, total=total)
            detach_soft_masks(model)
        else:
            sub = {k: v * mask.heads[:, :, None] for k, v in full.items()}
        tensors |= {f"super/{k}": v for k, v in sub.items()} | {"super/heads": mask.heads.to(torch.uint8)}
        meta |= {"super_mask": args.super_mask, "super_network": args.super_network}
    meta["wall_time_s"] = f"{time.time() - started:.1f}"
    save_counts(args.output, {k: v.contiguous() for k, v in tensors.items()}, meta)
    print(f"patterns extract: {args.task} seed {args.seed} {args.config}: {len(chosen)} examples -> {args.output}")


# --------------------------------------------------------------------------------------------------
# summaries: distributions, tables, Figure 4, correlation


def distributions(records: Sequence[tuple[dict[str, torch.Tensor], dict[str, str]]]):
    """Tidy table (config, selection, task, kind, type, count, percent) summed over seeds and heads."""
    import pandas as pd

    rows = []
    for tensors, meta in records:
        for selection in SELECTIONS:
            for kind in KINDS:
                key = f"{selection}/{kind}"
                if key in tensors:
                    totals = tensors[key].sum(dim=(0, 1)).tolist()
                    rows += [{"config": meta["config"], "selection": selection, "task": meta["task"],
                              "seed": int(meta["seed"]), "kind": kind, "type": t, "count": int(c)}
                             for t, c in zip(PATTERN_TYPES, totals)]
    frame = pd.DataFrame(rows, columns=["config", "selection", "task", "seed", "kind", "type", "count"])
    keys = ["config", "selection", "task", "kind"]
    frame = frame.groupby(keys + ["type"], as_index=False, sort=False)["count"].sum()
    frame["percent"] = 100 * frame["count"] / frame.groupby(keys)["count"].transform("sum").replace(0, np.nan)
    return frame


def paper_patterns(path: str | Path | None) -> dict:
    """Spec 8.4's percentages from paper_results.yaml: {(config, selection): {task: {kind: [5 values]}}}.

    Reads `patterns: {<config>_<selection>: {task: [[raw x5], [normed x5]]}}` with columns in the file's
    `pattern_order` (reordered to PATTERN_TYPES); {} when the file or the key is absent."""
    data = _paper_yaml(path)
    order = data.get("pattern_order", list(PATTERN_TYPES))
    if sorted(order) != sorted(PATTERN_TYPES):
        raise BertLotteryError(f"{path}: pattern_order {order}; expected the types {list(PATTERN_TYPES)}")
    position = [order.index(t) for t in PATTERN_TYPES]
    out = {}
    for key, block in (data.get("patterns") or {}).items():
        config, _, selection = str(key).partition("_")
        if config not in MODEL_CONFIGS or selection not in SELECTIONS or not isinstance(block, dict):
            continue
        for task, pair in block.items():
            if not (isinstance(pair, list) and len(pair) == 2 and all(len(v) == len(order) for v in pair)):
                raise BertLotteryError(f"{path}: patterns.{key}.{task} = {pair!r}; expected [[raw x5], [normed x5]]")
            out.setdefault((config, selection), {})[task] = {
                kind: [float(values[i]) for i in position] for kind, values in zip(KINDS, pair)}
    return out


def _paper_yaml(path: str | Path | None) -> dict:
    import yaml

    if not path or not Path(path).is_file():
        return {}
    return yaml.safe_load(Path(path).read_text()) or {}


def _task_order(tasks: Iterable[str]) -> list[str]:
    tasks = set(tasks)
    return [t for t in PAPER_TASK_ORDER if t in tasks] + sorted(tasks - set(PAPER_TASK_ORDER))


def pattern_table(dist, paper: dict, config: str, selection: str):
    """Wide table: one row per (task, kind, source) with the five percentages and the map count."""
    import pandas as pd

    part = dist[(dist.config == config) & (dist.selection == selection)]
    rows = []
    for task in _task_order(part.task.unique()):
        for kind in KINDS:
            cell = part[(part.task == task) & (part.kind == kind)].set_index("type")
            if cell.empty:
                continue
            rows.append({"task": task, "kind": kind, "source": "ours", "n_maps": int(cell["count"].sum()),
                         **{SHORT_NAMES[t]: round(float(cell.loc[t, "percent"]), 1) for t in PATTERN_TYPES}})
            published = paper.get((config, selection), {}).get(task, {}).get(kind)
            if published:
                rows.append({"task": task, "kind": kind, "source": "paper", "n_maps": None,
                             **dict(zip(SHORT_NAMES.values(), published))})
    return pd.DataFrame(rows, columns=["task", "kind", "source", "n_maps", *SHORT_NAMES.values()])


def table_markdown(table, title: str) -> str:
    """Markdown with 'ours (paper)' cells where the paper has the task."""
    lines = [f"### {title}", "", "% of classified head maps; paper values (spec 8.4) in parentheses.", ""]
    for kind in KINDS:
        lines += [f"**{kind}**", "", "| task | " + " | ".join(SHORT_NAMES.values()) + " | maps |",
                  "|---" * (len(SHORT_NAMES) + 2) + "|"]
        part = table[table.kind == kind]
        for task in part.task.unique():
            ours = part[(part.task == task) & (part.source == "ours")].iloc[0]
            paper = part[(part.task == task) & (part.source == "paper")]
            cells = []
            for col in SHORT_NAMES.values():
                value = "n/a" if np.isnan(ours[col]) else f"{ours[col]:.1f}"
                cells.append(value + (f" ({paper.iloc[0][col]:.1f})" if len(paper) else ""))
            lines.append(f"| {task} | " + " | ".join(cells) + f" | {int(ours['n_maps'])} |")
        lines.append("")
    return "\n".join(lines)


COLORS = {"heterogeneous": "#7f7f7f", "block": "#1f77b4", "diagonal": "#2ca02c", "vertical": "#d62728",
          "vertical+diagonal": "#ff7f0e"}


def figure4(dist, config: str, out_stem: str | Path) -> list[Path]:
    """Stacked 100 % bars per task: rows super-survivors / all heads, columns raw / normed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = dist[dist.config == config]
    tasks = _task_order(part.task.unique())[::-1]  # top-to-bottom in paper order
    height = 1.4 + 0.32 * max(len(tasks), 2)  # 8 tasks: about 4 in at column width (3.4 in)
    fig, axes = plt.subplots(2, 2, figsize=(3.4, height), sharey=True, sharex=True)
    for row, selection in enumerate(SELECTIONS):
        for col, kind in enumerate(KINDS):
            ax = axes[row, col]
            left = np.zeros(len(tasks))
            for t in PATTERN_TYPES:
                sel = part[(part.selection == selection) & (part.kind == kind) & (part.type == t)]
                values = sel.set_index("task")["percent"].reindex(tasks).fillna(0).to_numpy()
                ax.barh(tasks, values, left=left, color=COLORS[t], height=0.75, linewidth=0)
                left += values
            ax.set_xlim(0, 100)
            ax.set_title(f"{'super-survivors' if selection == 'super' else 'all heads'}, {kind}", fontsize=7)
            ax.tick_params(labelsize=6, length=2)
    for ax in axes[1]:
        ax.set_xlabel("% of head maps", fontsize=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[t]) for t in PATTERN_TYPES]
    fig.suptitle(f"Self-attention patterns, {'fine-tuned' if config == 'finetuned' else 'pre-trained'} model",
                 fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1), h_pad=0.6, w_pad=0.4)
    fig.legend(handles, [SHORT_NAMES[t] for t in PATTERN_TYPES], loc="lower center", ncol=5, fontsize=6,
               frameon=False, handlelength=1, columnspacing=0.8, bbox_to_anchor=(0.5, -0.01))
    return _save_figure(fig, out_stem)


def figure4a(out_stem: str | Path, n: int = 24, seed: int = 0) -> list[Path]:
    """Schematic examples of the five types (synthetic maps, as classified by the rules)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 5, figsize=(3.4, 0.95))
    for ax, t in zip(axes, PATTERN_TYPES):
        image = synthetic_map(t, n, rng, noise=0.1)
        ax.imshow(image, cmap="Greys", vmin=0, vmax=image.max())  # each map on its own scale, as a heatmap
        ax.set_title(SHORT_NAMES[t], fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    return _save_figure(fig, out_stem)


def _save_figure(fig, out_stem: str | Path) -> list[Path]:
    import matplotlib.pyplot as plt

    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".pdf"), out_stem.with_suffix(".png")]
    for path in paths:
        fig.savefig(path, dpi=300, bbox_inches="tight")
    plt.close(fig)
    return paths


def heterogeneous_pairs(counts: torch.Tensor, is_super: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One (is_super, is_heterogeneous) pair per classified map, from per-head counts [L, H, 5]."""
    het = counts[..., PATTERN_TYPES.index("heterogeneous")].flatten().numpy()
    rest = counts.sum(-1).flatten().numpy() - het
    flag = is_super.bool().flatten().numpy()
    x = np.concatenate([np.repeat(flag, het), np.repeat(flag, rest)]).astype(float)
    y = np.concatenate([np.ones(het.sum()), np.zeros(rest.sum())])
    return x, y


def _pointbiserial(x: np.ndarray, y: np.ndarray) -> dict:
    from scipy.stats import pointbiserialr

    if len(x) < 3 or x.min() == x.max() or y.min() == y.max():
        return {"r": None, "p": None, "n_pairs": int(len(x))}  # undefined: a constant variable
    result = pointbiserialr(x, y)
    return {"r": float(result.statistic), "p": float(result.pvalue), "n_pairs": int(len(x))}


def super_heterogeneous_correlation(records: Sequence[tuple[dict[str, torch.Tensor], dict[str, str]]]) -> dict:
    """Point-biserial r between "head is a super-survivor" and "map is heterogeneous" over every
    (example, layer, head) of the fine-tuned full models (spec 8.4), pooled and per task."""
    pairs: dict[str, dict[str, list]] = {}
    for tensors, meta in records:
        if meta["config"] != "finetuned" or "super/heads" not in tensors:
            continue
        for kind in KINDS:
            x, y = heterogeneous_pairs(tensors[f"all/{kind}"], tensors["super/heads"])
            for scope in ("pooled", meta["task"]):
                slot = pairs.setdefault(scope, {}).setdefault(kind, [[], []])
                slot[0].append(x)
                slot[1].append(y)
    result = {scope: {kind: _pointbiserial(np.concatenate(v[0]), np.concatenate(v[1])) for kind, v in kinds.items()}
              for scope, kinds in pairs.items()}
    pooled = result.pop("pooled", {})
    return {**pooled, "per_task": result,
            "definition": "Pearson r (scipy.stats.pointbiserialr) of is_super_survivor vs is_heterogeneous "
                          "over example x layer x head maps of the fine-tuned full models"}


def summarize(args: argparse.Namespace) -> None:
    records = [load_counts(path) for path in args.counts]
    dist = distributions(records)
    paper = paper_patterns(args.paper)
    tables_dir, figures_dir = Path(args.tables_dir), Path(args.figures_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    dist.to_csv(tables_dir / "patterns_distribution.csv", index=False)
    for config in MODEL_CONFIGS:
        for selection in SELECTIONS:
            table = pattern_table(dist, paper, config, selection)
            stem = tables_dir / f"patterns_{config}_{selection}"
            table.to_csv(stem.with_suffix(".csv"), index=False)
            title = f"{config}, {'super-survivor heads' if selection == 'super' else 'all heads'}"
            stem.with_suffix(".md").write_text(table_markdown(table, title) + "\n")
        figure4(dist, config, figures_dir / f"figure4_{config}")
    figure4a(figures_dir / "figure4a_types")
    classifiers = sorted({f"{m['classifier_raw']}/{m['classifier_normed']}" for _, m in records})
    correlation = super_heterogeneous_correlation(records) | {"classifiers_raw_normed": classifiers}
    correlation["paper"] = _paper_yaml(args.paper).get("pattern_correlation")  # 8.4: raw 0.015, normed 0.025
    write_json(args.correlation, correlation)
    if not paper:
        print(f"patterns summarize: no `patterns` key in {args.paper}; tables carry no paper columns")


# --------------------------------------------------------------------------------------------------
# CLI


def train_cnn_command(args: argparse.Namespace) -> None:
    maps, labels = load_labelled(Path(args.labelled_dir) / args.kind)
    model, card = train_cnn(maps, labels, epochs=args.epochs, seed=args.seed, device=pick_device(), progress=True)
    card |= {"kind": args.kind, "labelled_dir": str(args.labelled_dir)}
    save_cnn(model, card, args.out_dir)
    print(f"patterns train-cnn {args.kind}: val accuracy {card['val_accuracy']:.3f}, "
          f"weighted F1 {card['val_f1_weighted']:.3f} (paper: raw 0.81, normed 0.74)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertlottery patterns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    ext = sub.add_parser("extract", help="classify every head's maps of sampled dev examples; write counts")
    ext.add_argument("--task", required=True)
    ext.add_argument("--seed", type=int, required=True, help="the model's seed (also seeds the example draw)")
    ext.add_argument("--config", choices=MODEL_CONFIGS, required=True)
    ext.add_argument("--model", required=True, help="model directory or hub id")
    ext.add_argument("--data-dir", required=True, help="prepared task data (results/data/<task>)")
    ext.add_argument("--n-examples", type=int, default=100)
    ext.add_argument("--min-tokens", type=int, default=16, help="skip shorter examples")
    ext.add_argument("--sample-seed", type=int, default=1337)
    ext.add_argument("--super-mask", help="HeadMlpMask of the task's super-survivors")
    ext.add_argument("--super-network", choices=["pruned", "full"], default="pruned",
                     help="pruned: super maps computed with the mask applied (original); full: selected from all")
    ext.add_argument("--cnn-dir", help="folder with <kind>/model.safetensors + card.json; else the rules")
    ext.add_argument("--batch-size", type=int, default=8)
    ext.add_argument("--output", required=True)
    cnn = sub.add_parser("train-cnn", help="train the pattern CNN on labelled maps")
    cnn.add_argument("--labelled-dir", required=True, help="folder with raw/ and/or normed/ labels.csv + .npy")
    cnn.add_argument("--kind", choices=KINDS, required=True)
    cnn.add_argument("--epochs", type=int, default=200)
    cnn.add_argument("--seed", type=int, default=13, help="the original's normed classifier used 13")
    cnn.add_argument("--out-dir", required=True)
    summ = sub.add_parser("summarize", help="distribution tables, Figure 4, super/heterogeneous correlation")
    summ.add_argument("--counts", nargs="+", required=True)
    summ.add_argument("--paper", help="paper_results.yaml (optional; adds the paper's percentages)")
    summ.add_argument("--tables-dir", required=True)
    summ.add_argument("--figures-dir", required=True)
    summ.add_argument("--correlation", required=True, help="output JSON")
    return parser


def main_patterns(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    {"extract": extract, "train-cnn": train_cnn_command, "summarize": summarize}[args.action](args)
