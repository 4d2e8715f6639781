"""Prepared splits for training and evaluation: `load_split` reads one written by prepare-data, and
`TokenizedSplit.collate` builds padded batches by slicing the flat arrays without Python loops over tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertlottery.errors import BertLotteryError
from bertlottery.io import damaged_file_error
from bertlottery.layout import SPLITS_DIR

# ----------------------------------------------------------------------------------------------------
# Loading for training and evaluation


@dataclass
class TokenizedSplit:
    """A prepared split held as flat token arrays; `collate` builds right-padded batches."""

    input_ids: "torch.Tensor"  # noqa: F821  int32, flat
    token_type_ids: "torch.Tensor"  # noqa: F821  uint8, flat
    offsets: "torch.Tensor"  # noqa: F821  int64 [n + 1]
    labels: "torch.Tensor"  # noqa: F821  int64 class indices, or float32 scores (STS-B)
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lengths = self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels.is_floating_point()

    def collate(self, indices: Any, pad_to: int | None = None) -> dict[str, "torch.Tensor"]:  # noqa: F821
        """input_ids, token_type_ids, attention_mask (all long) and labels of these rows, right-padded
        with 0 to the longest row (or to `pad_to`, the fixed-length mode)."""
        import torch

        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        starts, lengths = self.offsets[idx], self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        if pad_to is not None:
            if pad_to < width:
                raise BertLotteryError(f"collate: pad_to={pad_to} is shorter than a row of {width} tokens "
                                       f"(prepared with max_seq_length {self.metadata.get('max_seq_length')})")
            width = pad_to
        positions = torch.arange(width)
        mask = positions[None, :] < lengths[:, None]
        gather = torch.where(mask, starts[:, None] + positions[None, :], 0)
        return {
            "input_ids": torch.where(mask, self.input_ids[gather].long(), 0),
            "token_type_ids": torch.where(mask, self.token_type_ids[gather].long(), 0),
            "attention_mask": mask.long(),
            "labels": self.labels[idx],
        }


def split_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / SPLITS_DIR / f"{split}.safetensors"


def load_split(data_dir: str | Path, split: str) -> TokenizedSplit:
    """A split written by prepare-data (`<data_dir>/splits/<split>.safetensors`)."""
    from safetensors import safe_open

    path = split_path(data_dir, split)
    if not path.is_file():
        raise BertLotteryError(f"{path}: prepared split not found; run `python -m bertlottery prepare-data "
                               f"--out-dir {data_dir} ...` (Snakemake rule prepare_data) first")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise damaged_file_error(path, exc) from None
    missing = {"input_ids", "token_type_ids", "offsets", "labels"} - set(tensors)
    if missing:
        raise BertLotteryError(f"{path}: missing tensors {sorted(missing)}; rerun prepare-data")
    return TokenizedSplit(tensors["input_ids"], tensors["token_type_ids"], tensors["offsets"],
                          tensors["labels"], metadata)
