"""Bit-packed m-masks: a WeightMask file stored with one bit per weight (np.packbits) instead of one
byte, 8x smaller. The packed file keeps the original file's name (so `layout.parse` still reads it) and
says what it is in its metadata (mask_type PackedWeightMask); unpacking writes back the very same
safetensors bytes, since both are written by `io.save_tensors` (canonical header)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from bertlottery.errors import BertLotteryError
from bertlottery.io import damaged_file_error, save_tensors

PACKED_TYPE = "PackedWeightMask"
_PACKED_KEY = "bundle_packed"  # metadata: JSON {"shapes": {name: shape}, "metadata": the original's}


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not Path(path).is_file():
        raise BertLotteryError(f"{path}: mask file not found")
    try:
        with safe_open(str(path), framework="np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged_file_error(path, exc) from None


def is_packed(path: str | os.PathLike) -> bool:
    """Whether a safetensors file is a bit-packed weight mask (reads the header only)."""
    try:
        with safe_open(str(path), framework="np") as f:
            return (f.metadata() or {}).get("mask_type") == PACKED_TYPE
    except (SafetensorError, OSError, ValueError):
        return False


def pack_weight_mask(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write `source` (a WeightMask file: uint8 0/1 tensors) bit-packed to `target`."""
    tensors, meta = _read(source)
    if meta.get("mask_type") != "WeightMask":
        raise BertLotteryError(f"{source}: mask_type {meta.get('mask_type')!r}; expected a WeightMask file "
                               "(an m-pruning mask) to bit-pack")
    packed, shapes = {}, {}
    for name, values in tensors.items():
        if values.dtype != np.uint8 or ((values != 0) & (values != 1)).any():
            raise BertLotteryError(f"{source}: tensor {name!r} is not 0/1 uint8; expected a WeightMask file")
        shapes[name] = list(values.shape)
        packed[name] = torch.from_numpy(np.packbits(values.reshape(-1)))
    info = json.dumps({"shapes": shapes, "metadata": meta}, sort_keys=True)
    return save_tensors(target, packed, {"mask_type": PACKED_TYPE, _PACKED_KEY: info})


def unpack_weight_mask(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write the WeightMask file that `pack_weight_mask` packed into `source`, byte for byte."""
    tensors, meta = _read(source)
    if meta.get("mask_type") != PACKED_TYPE or _PACKED_KEY not in meta:
        raise BertLotteryError(f"{source}: mask_type {meta.get('mask_type')!r}; expected a bit-packed weight "
                               f"mask ({PACKED_TYPE}) written by `bertlottery bundle export`")
    info = json.loads(meta[_PACKED_KEY])
    if set(info["shapes"]) != set(tensors):
        raise BertLotteryError(f"{source}: tensors {sorted(tensors)} do not match the recorded shapes of "
                               f"{sorted(info['shapes'])}")
    unpacked = {}
    for name, shape in info["shapes"].items():
        count = int(np.prod(shape, dtype=np.int64))
        bits = tensors[name]
        if bits.size != (count + 7) // 8:
            raise BertLotteryError(f"{source}: tensor {name!r} holds {bits.size} bytes; expected "
                                   f"{(count + 7) // 8} for shape {shape}")
        values = np.unpackbits(bits, count=count).reshape(shape)
        unpacked[name] = torch.from_numpy(np.ascontiguousarray(values))
    return save_tensors(target, unpacked, info["metadata"])
