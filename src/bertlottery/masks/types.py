"""Mask types, their files, and subnetwork sizes (docs/protocol.md §s-pruning, §m-pruning, §Evaluation and retraining).

* `HeadMlpMask` (s-pruning): heads [layers, heads] and mlps [layers], True = kept.
* `WeightMask` (m-pruning): one boolean tensor per prunable parameter (see `modeling.structure.prunable_parameters`).

Files are safetensors with str->str metadata (the shared formats of the notes/PREAMBLE):
HeadMlpMask: uint8 "heads" [L, H], uint8 "mlps" [L], optional float32 "head_importance" [L, H] and
"mlp_importance" [L] (kept in the mask's `head_importance` / `mlp_importance` attributes).
WeightMask: one uint8 tensor per prunable parameter, keyed by its full name in the model.
The original study's layout (<dir>/head_mask.npy 12x12, mlp_mask.npy 12, 0/1 floats) is read by
`HeadMlpMask.from_original_npy`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from bertlottery.errors import BertLotteryError
from bertlottery.families import FAMILIES, WEIGHTS
from bertlottery.io import check_safetensors, damaged_file_error, save_tensors
from bertlottery.layout import seed_of_dir
from bertlottery.masks.summary import missing_mask_error


def _as_bool(tensor: Any, what: str, where: str) -> torch.Tensor:
    """A 0/1 (or bool) array as a bool CPU tensor; anything else is an error naming `where`."""
    t = torch.as_tensor(np.asarray(tensor)) if not isinstance(tensor, torch.Tensor) else tensor
    t = t.detach().cpu()
    if t.dtype == torch.bool:
        return t.clone()
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise BertLotteryError(f"{where}: {what} holds non-finite values; expected only 0 and 1")
    bad = (t != 0) & (t != 1)
    if bad.any():
        values = sorted({float(v) for v in t[bad].flatten()[:5].tolist()})
        raise BertLotteryError(f"{where}: {what} holds values {values}; expected only 0 and 1")
    return t != 0


def _meta_str(meta: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata must be str->str; None values are dropped."""
    return {str(k): (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v))
            for k, v in meta.items() if v is not None}


def _read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise BertLotteryError(f"{path}: mask file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            # sorted: safetensors hands the metadata back in no fixed order (a summary's bytes would vary)
            meta = dict(sorted((f.metadata() or {}).items()))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged_file_error(path, exc) from None
    return tensors, meta


# --------------------------------------------------------------------------------------------------
# HeadMlpMask


@dataclass(eq=False)
class HeadMlpMask:
    """Which attention heads ([layers, heads]) and MLPs ([layers]) are kept (True)."""

    heads: torch.Tensor
    mlps: torch.Tensor
    meta: dict[str, str] = field(default_factory=dict)
    head_importance: torch.Tensor | None = None  # float32 [L, H], saved when present
    mlp_importance: torch.Tensor | None = None   # float32 [L], saved when present
    source: str | None = None  # file it was read from, for error messages (not saved)

    def __post_init__(self) -> None:
        where = self.source or "HeadMlpMask"
        self.heads = _as_bool(self.heads, "heads", where)
        self.mlps = _as_bool(self.mlps, "mlps", where)
        if self.heads.dim() != 2 or self.mlps.dim() != 1 or self.heads.shape[0] != self.mlps.shape[0]:
            raise BertLotteryError(
                f"{where}: heads {list(self.heads.shape)} and mlps {list(self.mlps.shape)} do not fit; "
                "expected heads [layers, heads] and mlps [layers]")
        for name, shape in (("head_importance", self.heads.shape), ("mlp_importance", self.mlps.shape)):
            value = getattr(self, name)
            if value is not None:
                value = torch.as_tensor(value).detach().cpu().to(torch.float32)
                if value.shape != shape:
                    raise BertLotteryError(
                        f"{where}: tensor {name!r} has shape {list(value.shape)}; expected {list(shape)} "
                        f"(the shape of {'heads' if name == 'head_importance' else 'mlps'})")
                setattr(self, name, value)
        self.meta = {str(k): str(v) for k, v in (self.meta or {}).items()}

    # -- construction
    @classmethod
    def full(cls, num_layers: int, num_heads: int, **meta: Any) -> HeadMlpMask:
        return cls(torch.ones(num_layers, num_heads, dtype=torch.bool),
                   torch.ones(num_layers, dtype=torch.bool), _meta_str(meta))

    # -- sizes
    @property
    def num_layers(self) -> int:
        return int(self.heads.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.heads.shape[1])

    @property
    def heads_kept(self) -> int:
        return int(self.heads.sum())

    @property
    def mlps_kept(self) -> int:
        return int(self.mlps.sum())

    # -- algebra (meta and importances are not carried over)
    def _same_shape(self, other: HeadMlpMask) -> None:
        if not isinstance(other, HeadMlpMask) or other.heads.shape != self.heads.shape:
            raise BertLotteryError(
                f"cannot combine head/MLP masks of shapes {list(self.heads.shape)} and "
                f"{list(getattr(other, 'heads', torch.empty(0)).shape)}")

    def __and__(self, other: HeadMlpMask) -> HeadMlpMask:
        self._same_shape(other)
        return HeadMlpMask(self.heads & other.heads, self.mlps & other.mlps)

    def __or__(self, other: HeadMlpMask) -> HeadMlpMask:
        self._same_shape(other)
        return HeadMlpMask(self.heads | other.heads, self.mlps | other.mlps)

    def __invert__(self) -> HeadMlpMask:
        return HeadMlpMask(~self.heads, ~self.mlps)

    def __eq__(self, other: object) -> bool:  # compares the masks only, not meta
        return (isinstance(other, HeadMlpMask) and other.heads.shape == self.heads.shape
                and bool(torch.equal(self.heads, other.heads)) and bool(torch.equal(self.mlps, other.mlps)))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"HeadMlpMask(layers={self.num_layers}, heads={self.num_heads}, "
                f"heads_kept={self.heads_kept}, mlps_kept={self.mlps_kept}, meta={self.meta})")

    # -- files
    def save(self, path: str | os.PathLike, *, head_importance: torch.Tensor | None = None,
             mlp_importance: torch.Tensor | None = None, **meta: Any) -> Path:
        """Write the mask file; `meta` adds to / overrides self.meta. Importances given here are stored
        (and set on self); otherwise self.head_importance / self.mlp_importance are stored if present."""
        if head_importance is not None or mlp_importance is not None:
            checked = HeadMlpMask(self.heads, self.mlps, head_importance=head_importance,
                                  mlp_importance=mlp_importance, source=str(path))
            self.head_importance = checked.head_importance if head_importance is not None else self.head_importance
            self.mlp_importance = checked.mlp_importance if mlp_importance is not None else self.mlp_importance
        self.meta.update(_meta_str(meta))
        tensors = {"heads": self.heads.to(torch.uint8), "mlps": self.mlps.to(torch.uint8)}
        if self.head_importance is not None:
            tensors["head_importance"] = self.head_importance
        if self.mlp_importance is not None:
            tensors["mlp_importance"] = self.mlp_importance
        file_meta = {**self.meta, "mask_type": "HeadMlpMask",
                     "heads_kept": str(self.heads_kept), "mlps_kept": str(self.mlps_kept)}
        return save_tensors(path, tensors, file_meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HeadMlpMask:
        tensors, meta = _read_safetensors(path)
        if "heads" not in tensors or "mlps" not in tensors:
            kind = meta.get("mask_type", "unknown")
            raise BertLotteryError(
                f"{path}: no 'heads'/'mlps' tensors (found {sorted(tensors)[:3]}..., mask_type={kind}); "
                "expected a head/MLP mask file")
        meta.pop("mask_type", None)
        return cls(tensors["heads"], tensors["mlps"], meta,
                   head_importance=tensors.get("head_importance"), mlp_importance=tensors.get("mlp_importance"),
                   source=str(path))

    @classmethod
    def from_original_npy(cls, directory: str | os.PathLike) -> HeadMlpMask:
        """Read the original study's <dir>/head_mask.npy ([L, H]) and mlp_mask.npy ([L]), 0/1 floats,
        plus head_importance.npy / mlp_importance.npy when present. A <TASK>/seed_<S> path sets the
        task and seed metadata."""
        directory = Path(directory)
        arrays = {}
        for name in ("head_mask", "mlp_mask", "head_importance", "mlp_importance"):
            file = directory / f"{name}.npy"
            if not file.is_file():
                if name.endswith("_mask"):
                    raise BertLotteryError(f"{file}: not found; expected the original layout "
                                           "<dir>/head_mask.npy (layers x heads) and <dir>/mlp_mask.npy (layers)")
                continue
            try:
                arrays[name] = np.load(file, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise BertLotteryError(f"{file}: not a readable .npy array ({exc})") from exc
        heads, mlps = arrays["head_mask"], arrays["mlp_mask"]
        if heads.ndim != 2:
            raise BertLotteryError(f"{directory / 'head_mask.npy'}: shape {list(heads.shape)}; "
                                   "expected [layers, heads] (12 x 12 for bert-base)")
        if mlps.ndim != 1 or mlps.shape[0] != heads.shape[0]:
            raise BertLotteryError(f"{directory / 'mlp_mask.npy'}: shape {list(mlps.shape)}; "
                                   f"expected [{heads.shape[0]}] (one entry per layer of head_mask.npy)")
        for name, shape in (("head_importance", heads.shape), ("mlp_importance", mlps.shape)):
            if name in arrays and arrays[name].shape != shape:
                raise BertLotteryError(f"{directory / (name + '.npy')}: shape {list(arrays[name].shape)}; "
                                       f"expected {list(shape)} (as {name.split('_')[0]}_mask.npy)")
        meta = {"method": "original", "source": str(directory)}
        seed = seed_of_dir(directory.name)
        if seed is not None:
            meta.update(task=directory.parent.name, seed=seed)
        head_mask = _as_bool(heads, "head_mask", str(directory / "head_mask.npy"))
        mlp_mask = _as_bool(mlps, "mlp_mask", str(directory / "mlp_mask.npy"))
        return cls(head_mask, mlp_mask, meta, head_importance=arrays.get("head_importance"),
                   mlp_importance=arrays.get("mlp_importance"), source=str(directory))


# --------------------------------------------------------------------------------------------------
# WeightMask


@dataclass(eq=False)
class WeightMask:
    """One boolean tensor (True = kept) per prunable parameter, keyed by the parameter's full name."""

    masks: dict[str, torch.Tensor]
    meta: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        where = self.source or "WeightMask"
        self.masks = {str(k): _as_bool(v, f"mask {k!r}", where) for k, v in self.masks.items()}
        self.meta = {str(k): str(v) for k, v in (self.meta or {}).items()}

    @classmethod
    def full(cls, parameters: dict[str, torch.Tensor], **meta: Any) -> WeightMask:
        """Every value of these parameters kept (pass `prunable_parameters(model)`)."""
        return cls({n: torch.ones(p.shape, dtype=torch.bool) for n, p in parameters.items()}, _meta_str(meta))

    @property
    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    @property
    def total(self) -> int:
        return int(sum(m.numel() for m in self.masks.values()))

    @property
    def fraction(self) -> float:
        return self.kept / self.total if self.total else 1.0

    def _same_keys(self, other: WeightMask) -> None:
        if not isinstance(other, WeightMask) or set(other.masks) != set(self.masks):
            raise BertLotteryError("cannot combine weight masks over different parameters")

    def __and__(self, other: WeightMask) -> WeightMask:
        self._same_keys(other)
        return WeightMask({k: v & other.masks[k] for k, v in self.masks.items()})

    def __or__(self, other: WeightMask) -> WeightMask:
        self._same_keys(other)
        return WeightMask({k: v | other.masks[k] for k, v in self.masks.items()})

    def __invert__(self) -> WeightMask:
        return WeightMask({k: ~v for k, v in self.masks.items()})

    def __eq__(self, other: object) -> bool:
        # key order is not compared: safetensors files store tensors sorted, not in model order
        return (isinstance(other, WeightMask) and set(other.masks) == set(self.masks)
                and all(v.shape == other.masks[k].shape and torch.equal(v, other.masks[k])
                        for k, v in self.masks.items()))

    __hash__ = None

    def __repr__(self) -> str:
        return f"WeightMask(params={len(self.masks)}, kept={self.kept}/{self.total}, meta={self.meta})"

    def save(self, path: str | os.PathLike, **meta: Any) -> Path:
        self.meta.update(_meta_str(meta))
        file_meta = {**self.meta, "mask_type": "WeightMask",
                     "prunable_kept": str(self.kept), "prunable_total": str(self.total)}
        return save_tensors(path, {k: v.to(torch.uint8) for k, v in self.masks.items()}, file_meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WeightMask:
        if not Path(path).is_file():  # a study bundle's summary in its place: how to regenerate the mask
            raise missing_mask_error(path)
        tensors, meta = _read_safetensors(path)
        if meta.get("mask_type") == "PackedWeightMask":  # bertlottery.bundle.packing
            raise BertLotteryError(f"{path}: a bit-packed m-mask from a study bundle; restore it with "
                                   "`python -m bertlottery bundle unpack` first")
        if meta.get("mask_type") == "HeadMlpMask" or set(tensors) <= {"heads", "mlps", "head_importance",
                                                                       "mlp_importance"}:
            raise BertLotteryError(f"{path}: holds a head/MLP mask (heads, mlps); expected a weight mask")
        for key in ("mask_type", "prunable_kept", "prunable_total"):
            meta.pop(key, None)
        return cls(tensors, meta, source=str(path))


def load_any_mask(path: str | os.PathLike) -> HeadMlpMask | WeightMask:
    """A HeadMlpMask or WeightMask file, told apart by its tensors."""
    if not Path(path).exists():
        raise missing_mask_error(path)
    check_safetensors(path)
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    return HeadMlpMask.load(path) if {"heads", "mlps"} <= keys else WeightMask.load(path)


def load_mask_for(path: str | os.PathLike, *, task: str, seed: int | str, family: str | None,
                  kind: str | None = None) -> HeadMlpMask | WeightMask:
    """The mask file of a job (evaluate-pruned, retraining), checked against the job: a mask made for
    another task, seed, family or kind (e.g. an m-mask where an s-mask belongs) is an error naming both.
    Metadata a file does not have (the original study's masks) is not checked; the model's shape is
    checked when the mask is applied (`modeling.fit.check_fits`)."""
    mask = load_any_mask(path)
    # the registered family's mask type (m and i: weights); a family the registry lacks: heads and MLPs
    weights = family is not None and family in FAMILIES and FAMILIES[family].mask_type == WEIGHTS
    expected_type = None if family is None else WeightMask if weights else HeadMlpMask
    problems = []
    if expected_type is not None and not isinstance(mask, expected_type):
        problems.append(f"a {type(mask).__name__} (family {family!r} needs a {expected_type.__name__})")
    for key, wanted in (("task", task), ("seed", seed), ("family", family), ("kind", kind)):
        found = mask.meta.get(key)
        if wanted is not None and found is not None and found != str(wanted):
            problems.append(f"{key}={found!r} where the job has {key}={str(wanted)!r}")
    if problems:
        raise BertLotteryError(f"{path}: mask made for another job: {'; '.join(problems)}. Pass the mask of "
                               f"task {task}, seed {seed}" + (f", family {family}" if family else "") + (f", kind {kind}" if kind else ""))
    return mask
