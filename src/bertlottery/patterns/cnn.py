"""The original's six-convolution pattern CNN (paper §5.2): labelled maps, training, save and load.

Trained by `patterns train-cnn` when the user supplies labelled maps (config patterns.labelled_dir). Maps are
row-normalised, scaled to max 1 and resized to 64x64 (bilinear, antialiased) instead of the original's crop /
zero-pad to the largest training map: one input size for every sequence length.

Labelled maps (input, user supplied): <labelled_dir>/<kind>/labels.csv with columns `file,label` (kind in raw,
normed); `file` is a path relative to that folder of a 2-D square .npy map over one example's tokens (rows =
queries); `label` one of PATTERN_TYPES or the original's names (LABEL_ALIASES).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertlottery.errors import BertLotteryError
from bertlottery.io import read_json, save_tensors, write_json
from bertlottery.patterns.rules import PATTERN_TYPES, row_normalize
from bertlottery.progress import tqdm
from bertlottery.runtime import pick_device

# The original's label names (Kovaleva's raw labels file and the normed TSV), lower-cased, spaces removed.
LABEL_ALIASES = {
    "heterogeneous": "heterogeneous", "other": "heterogeneous", "het": "heterogeneous",
    "block": "block", "diagonal": "diagonal", "diag": "diagonal",
    "vertical": "vertical", "singlevertical": "vertical", "doublevertical": "vertical",
    "multiplevertical": "vertical", "vert": "vertical",
    "vertical+diagonal": "vertical+diagonal", "mix": "vertical+diagonal", "vert+diag": "vertical+diagonal",
}


# --------------------------------------------------------------------------------------------------
# CNN classifier (the original's architecture)

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
    accuracy is kept (as the original). Returns the model (on CPU) and a card of the validation scores."""
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
    out_dir = Path(out_dir)
    save_tensors(out_dir / "model.safetensors", model.state_dict())
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
# the train-cnn command


@dataclass(frozen=True)
class CnnJob:
    """One `patterns train-cnn` command (its options, typed)."""

    labelled_dir: str
    kind: str
    out_dir: str
    epochs: int = 200
    seed: int = 13


def train_cnn_command(job: CnnJob) -> None:
    maps, labels = load_labelled(Path(job.labelled_dir) / job.kind)
    model, card = train_cnn(maps, labels, epochs=job.epochs, seed=job.seed, device=pick_device(), progress=True)
    card |= {"kind": job.kind, "labelled_dir": str(job.labelled_dir)}
    save_cnn(model, card, job.out_dir)
    print(f"patterns train-cnn {job.kind}: val accuracy {card['val_accuracy']:.3f}, "
          f"weighted F1 {card['val_f1_weighted']:.3f} (paper: raw 0.81, normed 0.74)")
