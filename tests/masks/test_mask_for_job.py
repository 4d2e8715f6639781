"""A mask used in the wrong place (another task, seed, family or kind) is an error naming both, for the
masks of every writer: the s-search, derive-s-masks, super-masks and the m-search."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_bert_config

from bertlottery.errors import BertLotteryError
from bertlottery.masks.types import HeadMlpMask, WeightMask, load_mask_for
from bertlottery.search.mpruning import MagnitudePool
from bertlottery.subnetworks.derive import main_derive_s_masks
from bertlottery.subnetworks.super import main_super_masks


def _good(path, family="s", seed=42, task="RTE"):
    """A good s-mask with the metadata the s-search writes (search/spruning.py write_outputs)."""
    heads = torch.rand(2, 4, generator=torch.Generator().manual_seed(seed)) > 0.3
    HeadMlpMask(heads, torch.tensor([True, False])).save(path, task=task, seed=str(seed), family=family, kind="good",
                                                         method="s-pruning joint", iteration="3")
    return path


@pytest.fixture
def masks(tmp_path):
    """Every writer's files for RTE: s (good, random, bad, random_like_bad), s-heads, super, m."""
    s = tmp_path / "s"
    good = _good(tmp_path / "good.safetensors")
    main_derive_s_masks(["--task", "RTE", "--seed", "42", "--good", str(good), "--out-dir", str(s)])
    heads = tmp_path / "s-heads"
    good_heads = _good(tmp_path / "good_heads.safetensors", family="s-heads")
    main_derive_s_masks(["--task", "RTE", "--seed", "42", "--good", str(good_heads), "--out-dir", str(heads)])
    goods = [str(_good(tmp_path / f"good{seed}.safetensors", seed=seed)) for seed in (42, 1337)]
    main_super_masks(["--task", "RTE", "--seeds", "42", "1337", "--goods", *goods, "--out-root",
                      str(tmp_path / "super")])
    from transformers import BertForSequenceClassification

    pool = MagnitudePool.from_model(BertForSequenceClassification(tiny_bert_config(num_labels=2)))
    m = tmp_path / "m.safetensors"  # as find-m-mask writes it (search/mpruning.py)
    pool.weight_mask(torch.ones(pool.total, dtype=torch.bool), kind="good", method="m-pruning", task="RTE",
                     seed=42, family="m", iteration=0).save(m)
    return {"s": s, "s-heads": heads, "super": tmp_path / "super" / "seed42", "m": m, "good": good}


def test_every_writers_mask_passes_in_its_own_place(masks):
    for kind in ("random", "bad", "random_like_bad"):
        load_mask_for(masks["s"] / f"{kind}.safetensors", task="RTE", seed=42, family="s", kind=kind)
        load_mask_for(masks["s-heads"] / f"{kind}.safetensors", task="RTE", seed=42, family="s-heads", kind=kind)
    for kind in ("good", "random", "bad"):
        load_mask_for(masks["super"] / f"{kind}.safetensors", task="RTE", seed=42, family="super", kind=kind)
    load_mask_for(masks["good"], task="RTE", seed=42, family="s", kind="good")
    assert isinstance(load_mask_for(masks["m"], task="RTE", seed=42, family="m", kind="good"), WeightMask)
    load_mask_for(masks["s"] / "bad.safetensors", task="RTE", seed=42, family="s")  # bad_6ep: kind not named


def test_weight_mask_families_come_from_the_registry(masks, tmp_path):
    """Family i (IMP) holds weight masks like m: the registry's mask type decides, not the family's name."""
    i_mask = WeightMask.load(masks["m"])
    i_mask.meta["family"] = "i"
    path = i_mask.save(tmp_path / "i.safetensors")
    assert isinstance(load_mask_for(path, task="RTE", seed=42, family="i", kind="good"), WeightMask)
    with pytest.raises(BertLotteryError, match="family 'i' needs a WeightMask"):
        load_mask_for(masks["good"], task="RTE", seed=42, family="i", kind="good")


@pytest.mark.parametrize("wrong, expected", [
    (dict(family="s"), "a WeightMask (family 's' needs a HeadMlpMask)"),  # the m-mask as s/good
    (dict(seed=1337), "seed='42' where the job has seed='1337'"),
    (dict(task="MRPC"), "task='RTE' where the job has task='MRPC'"),
    (dict(kind="bad"), "kind='good' where the job has kind='bad'"),
])
def test_a_mask_in_the_wrong_place_names_both(masks, wrong, expected):
    job = dict(task="RTE", seed=42, family="m", kind="good") | wrong
    with pytest.raises(BertLotteryError, match="mask made for another job") as info:
        load_mask_for(masks["m"], **job)
    assert expected in str(info.value) and str(masks["m"]) in str(info.value)


def test_super_and_s_masks_are_told_apart(masks):
    with pytest.raises(BertLotteryError, match="family='super' where the job has family='s'"):
        load_mask_for(masks["super"] / "good.safetensors", task="RTE", seed=42, family="s", kind="good")
    with pytest.raises(BertLotteryError, match="family='s-heads' where the job has family='s'"):
        load_mask_for(masks["s-heads"] / "random.safetensors", task="RTE", seed=42, family="s", kind="random")


def test_evaluate_pruned_and_retrain_refuse_a_wrong_mask(masks, tiny_model_dir, tmp_path):
    from bertlottery.train.evaluation import main_evaluate_pruned
    from bertlottery.train.loop import build_model

    training = json.dumps({"batch_size": 8})
    with pytest.raises(BertLotteryError, match="family 's' needs a HeadMlpMask"):
        main_evaluate_pruned(["--task", "RTE", "--seed", "42", "--model-dir", str(tiny_model_dir), "--mask",
                              str(masks["m"]), "--family", "s", "--kind", "good", "--data-dir", str(tmp_path),
                              "--training", training, "--output", str(tmp_path / "m.json")])
    assert not (tmp_path / "m.json").exists()
    from bertlottery.glue.tasks import get_task
    from bertlottery.settings import TrainingSettings
    from bertlottery.train.loop import FinetuneJob

    job = FinetuneJob(get_task("RTE"), 1337, str(tiny_model_dir), tmp_path, TrainingSettings.from_dict({}, where="test"),
                      tmp_path / "out", mask=str(masks["s"] / "random.safetensors"), family="s", variant="random")
    with pytest.raises(BertLotteryError, match="seed='42' where the job has seed='1337'"):
        build_model(job, torch.device("cpu"))
