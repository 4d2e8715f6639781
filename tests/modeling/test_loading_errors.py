"""Loading a model from a folder that is missing, not a model, or holds damaged weights says which."""

import shutil

import pytest

from bertlottery.errors import BertLotteryError
from bertlottery.glue.prepare import load_tokenizer
from bertlottery.modeling.loading import load_classifier


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_weights_name_the_file_and_the_fix(tmp_path, tiny_model_dir, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000] if damage == "truncated" else b"")
    with pytest.raises(BertLotteryError) as info:
        load_classifier(model, 2)
    assert f"{weights}: damaged, truncated or empty file" in str(info.value)
    assert "delete it and rerun the job that writes it" in str(info.value)


def test_missing_and_non_model_folders(tmp_path):
    (tmp_path / "docs").mkdir()
    for load in (lambda p: load_classifier(p, 2), load_tokenizer):
        with pytest.raises(BertLotteryError, match="model folder not found"):
            load(str(tmp_path / "a" / "b"))
        with pytest.raises(BertLotteryError, match="not a model folder"):
            load(str(tmp_path / "docs"))
