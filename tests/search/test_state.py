"""The searches' state store: saved, loaded only with the same version and fingerprint, cleared."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from bertlottery.glue.splits import TokenizedSplit
from bertlottery.search import state as ST


def test_save_load_clear(tmp_path):
    state_dir = tmp_path / "state"
    store = ST.StateStore(state_dir, "x_state.safetensors", "abc", "x-search")
    assert store.load() is None
    store.save({"s0": 0.5, "trace": [{"score": 0.5}]}, {"heads": torch.ones(2, 3, dtype=torch.uint8)})
    record, tensors = store.load()
    assert record == {"s0": 0.5, "trace": [{"score": 0.5}]}
    assert torch.equal(tensors["heads"], torch.ones(2, 3, dtype=torch.uint8))
    store.save({"done": True})  # tensors are optional (the m-search keeps none)
    assert store.load() == ({"done": True}, {})
    ST.clear_state(state_dir, "x_state.safetensors")
    assert not state_dir.exists()


def test_no_directory_saves_nothing(tmp_path):
    store = ST.StateStore(None, "x_state.safetensors", "abc", "x-search")
    store.save({"s0": 1.0})
    assert store.load() is None
    ST.clear_state(None, "x_state.safetensors")


def test_other_fingerprint_version_or_a_damaged_file_is_ignored(tmp_path, capsys):
    ST.StateStore(tmp_path, "s.safetensors", "abc", "x-search").save({"s0": 1.0})
    assert ST.StateStore(tmp_path, "s.safetensors", "other", "x-search").load() is None
    assert "x-search: ignoring state" in capsys.readouterr().out
    meta = {"version": ST.STATE_VERSION + 1, "settings_hash": "abc", "s0": 1.0}
    save_file({}, str(tmp_path / "s.safetensors"), metadata={"state": json.dumps(meta)})
    assert ST.StateStore(tmp_path, "s.safetensors", "abc", "x-search").load() is None
    (tmp_path / "s.safetensors").write_bytes(b"half a file")
    assert ST.StateStore(tmp_path, "s.safetensors", "abc", "x-search").load() is None
    assert "x-search: ignoring unreadable state" in capsys.readouterr().out


def test_clear_removes_a_killed_writers_temporary_and_keeps_other_files(tmp_path):
    (tmp_path / ".x_state.safetensors.0123abcd.tmp").write_bytes(b"half")
    (tmp_path / "other").write_text("keep")
    ST.clear_state(tmp_path, "x_state.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


def test_fingerprints_keep_their_format():
    """The s-search's model fingerprint was weights|size|labels|ids before the store was shared: same hashes."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ids = torch.tensor([5, 6, 7, 8, 9], dtype=torch.int32)
    split = TokenizedSplit(ids, torch.zeros(5, dtype=torch.uint8), torch.tensor([0, 2, 5]), torch.tensor([1, 0]))
    weights = sum(float(p.detach().double().abs().sum()) for p in model.parameters())
    assert ST.split_fingerprint(split) == "2|1.000000e+00|35"
    assert ST.model_fingerprint(model, split) == f"{weights:.10e}|2|1.000000e+00|35"
