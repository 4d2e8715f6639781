"""Bit-packed m-masks: unpacking gives back the very same WeightMask file, bit for bit and byte for byte."""

from __future__ import annotations

import pytest
import torch

from bertlottery.bundle.packing import is_packed, pack_weight_mask, unpack_weight_mask
from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask


def _mask(seed: int = 0) -> WeightMask:
    g = torch.Generator().manual_seed(seed)
    # odd sizes: the last byte of each packed tensor is partly padding
    shapes = {"encoder.layer.0.attention.self.query.weight": (13, 7), "encoder.layer.0.output.dense.bias": (5,),
              "pooler.dense.weight": (3, 3, 3)}
    return WeightMask({name: torch.rand(shape, generator=g) < 0.6 for name, shape in shapes.items()},
                      {"task": "CoLA", "seed": "42", "family": "m", "kind": "good"})


def test_pack_then_unpack_is_bit_exact(tmp_path):
    original = _mask()
    original.save(tmp_path / "good.safetensors")
    packed = pack_weight_mask(tmp_path / "good.safetensors", tmp_path / "packed" / "good.safetensors")
    assert is_packed(packed) and not is_packed(tmp_path / "good.safetensors")
    restored = unpack_weight_mask(packed, tmp_path / "restored" / "good.safetensors")
    again = WeightMask.load(restored)
    assert again == original and again.meta == WeightMask.load(tmp_path / "good.safetensors").meta
    assert restored.read_bytes() == (tmp_path / "good.safetensors").read_bytes()
    with pytest.raises(BertLotteryError, match="a bit-packed m-mask from a study bundle; restore it"):
        WeightMask.load(packed)


def test_packed_file_is_about_eight_times_smaller(tmp_path):
    big = WeightMask({"w": torch.rand(256, 512, generator=torch.Generator().manual_seed(1)) < 0.5})
    big.save(tmp_path / "m.safetensors")
    packed = pack_weight_mask(tmp_path / "m.safetensors", tmp_path / "p.safetensors")
    assert packed.stat().st_size < (tmp_path / "m.safetensors").stat().st_size / 7


def test_only_weight_masks_are_packed_and_only_packed_files_unpacked(tmp_path):
    HeadMlpMask.full(2, 4).save(tmp_path / "s.safetensors")
    with pytest.raises(BertLotteryError, match="s.safetensors: mask_type 'HeadMlpMask'; expected a WeightMask"):
        pack_weight_mask(tmp_path / "s.safetensors", tmp_path / "out.safetensors")
    _mask().save(tmp_path / "m.safetensors")
    with pytest.raises(BertLotteryError, match="m.safetensors: mask_type 'WeightMask'; expected a bit-packed"):
        unpack_weight_mask(tmp_path / "m.safetensors", tmp_path / "out.safetensors")
