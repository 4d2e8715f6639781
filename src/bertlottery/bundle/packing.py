"""Bit-packed m-masks: a WeightMask file stored with one bit per weight (np.packbits) instead of one
byte, 8x smaller. The packed file keeps the original file's name (so `layout.parse` still reads it) and
says what it is in its metadata (mask_type PackedWeightMask); unpacking writes back the very same
safetensors bytes, since both are written by `io.save_tensors` (canonical header)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from bertlottery.bundle.manifest import schema_error
from bertlottery.errors import BertLotteryError
from bertlottery.io import damaged_file_error, save_tensors

PACKED_TYPE = "PackedWeightMask"
_PACKED_KEY = "bundle_packed"  # metadata: JSON {"shapes": {name: shape}, "metadata": the original's}
MAX_HEADER_BYTES = 16 * 2**20  # a safetensors JSON header (a BERT-base mask's: about 20 KiB)
_PACKED_INFO_SCHEMA = {
    "type": "object",
    "required": ["shapes", "metadata"],
    "properties": {
        "shapes": {"type": "object", "additionalProperties": {
            "type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 8}},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def check_header_size(path: str | os.PathLike) -> None:
    """A safetensors file's header length (its first 8 bytes) bounded before the header is parsed."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = os.fstat(handle.fileno()).st_size
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
        raise BertLotteryError(f"{path}: safetensors header of {length} bytes in a {size}-byte file; expected "
                               f"1 to {MAX_HEADER_BYTES} bytes within the file (damaged or not a safetensors file)")


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not Path(path).is_file():
        raise BertLotteryError(f"{path}: mask file not found")
    check_header_size(path)
    try:
        with safe_open(str(path), framework="np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged_file_error(path, exc) from None


def is_packed(path: str | os.PathLike) -> bool:
    """Whether a safetensors file is a bit-packed weight mask (reads the header only)."""
    try:
        check_header_size(path)
        with safe_open(str(path), framework="np") as f:
            return (f.metadata() or {}).get("mask_type") == PACKED_TYPE
    except (SafetensorError, OSError, ValueError, BertLotteryError):
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
    info = _packed_info(source, meta[_PACKED_KEY])
    if set(info["shapes"]) != set(tensors):
        raise BertLotteryError(f"{source}: tensors {sorted(tensors)} do not match the recorded shapes of "
                               f"{sorted(info['shapes'])}")
    unpacked = {}
    for name, shape in info["shapes"].items():
        count = math.prod(shape)  # Python ints: no overflow from a stranger's shape
        bits = tensors[name]
        if bits.size != (count + 7) // 8:
            raise BertLotteryError(f"{source}: tensor {name!r} holds {bits.size} bytes; expected "
                                   f"{(count + 7) // 8} for shape {shape}")
        values = np.unpackbits(bits, count=count).reshape(shape)
        unpacked[name] = torch.from_numpy(np.ascontiguousarray(values))
    return save_tensors(target, unpacked, info["metadata"])


def _packed_info(source: str | os.PathLike, text: str) -> dict:
    """The packed file's record of the original shapes and metadata, parsed and schema-checked."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BertLotteryError(f"{source}: metadata key {_PACKED_KEY} is not valid JSON ({exc}); expected the "
                               "shapes and metadata `bertlottery bundle export` records") from None
    schema_error(info, _PACKED_INFO_SCHEMA, f"{source}: metadata {_PACKED_KEY}")
    return info
