"""s-pruning step selection: the heads-only search keeps a layer's last head (as the original's masks)
unless s_pruning.heads_only_empty_layers; the joint search is unaffected."""

from __future__ import annotations

import json

import pytest
import torch
from test_spruning import (
    RTE,
    ScriptedPasses,
    s_settings,
    self_labelled,
    synthetic_split,
    tiny_bert,
)

from bertlottery.errors import BertLotteryError
from bertlottery.search import spruning as S
from bertlottery.search.selection import (
    Phase,
    lowest_keeping_one_per_layer,
    lowest_unmasked,
    phases_for,
    propose,
)
from bertlottery.settings import SPruningSettings

pytestmark = [pytest.mark.filterwarnings("ignore:A single label was found"), pytest.mark.usefixtures("one_thread")]


def keeping_one_reference(importance: torch.Tensor, kept: torch.Tensor, n: int) -> list[int]:
    """The rule, written plainly: heads in importance order (ties: lower index), each taken unless its
    layer would be left empty by this step's picks so far, until n are taken."""
    order = sorted((float(importance.reshape(-1)[i]), i) for i in range(kept.numel()) if kept.reshape(-1)[i])
    left, picked = kept.sum(-1).tolist(), []
    for _, i in order:
        layer = i // kept.shape[-1]
        if len(picked) < n and left[layer] > 1:
            left[layer] -= 1
            picked.append(i)
    return picked


def test_a_nan_importance_of_a_kept_unit_stops_the_step():
    importance = torch.tensor([[0.1, float("nan"), 0.3], [float("nan"), 0.2, 0.4]])
    # a NaN of a unit already pruned is never ranked: no error
    kept = torch.tensor([[True, False, True], [False, True, True]])
    assert lowest_unmasked(importance, kept, 2).tolist() == [0, 4]
    with pytest.raises(BertLotteryError, match="1 of the 5 kept units are NaN"):
        lowest_unmasked(importance, kept | torch.tensor([[False, True, False], [False, False, False]]), 2)
    with pytest.raises(BertLotteryError, match="2 of 6 are NaN or infinite"):
        S.min_max(importance)


def test_a_step_skips_a_layers_last_head_and_counts_its_own_picks():
    importance = torch.tensor([[0.1, 0.2, 0.9, 0.0], [0.3, 0.4, 0.5, 0.6]])
    kept = torch.tensor([[True, True, False, False], [True, True, True, True]])
    # plain ranking: 0, 1, 4, 5; head 1 would empty layer 0 once head 0 is picked in the same step
    assert lowest_unmasked(importance, kept, 3).tolist() == [0, 1, 4]
    assert lowest_keeping_one_per_layer(importance, kept, 3).tolist() == [0, 4, 5]
    # eligible heads run out: layer 1 keeps one of four, layer 0 its last
    assert lowest_keeping_one_per_layer(importance, kept, 10).tolist() == [0, 4, 5, 6]
    one_each = torch.tensor([[False, True, False, False], [False, False, True, False]])
    assert lowest_keeping_one_per_layer(importance, one_each, 3).tolist() == []
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        imp, keep = torch.rand(4, 6, generator=gen), torch.rand(4, 6, generator=gen) > 0.4
        assert lowest_keeping_one_per_layer(imp, keep, 5).tolist() == keeping_one_reference(imp, keep, 5)


def test_only_the_heads_only_mode_keeps_a_head_per_layer():
    assert [p.keep_last_head for p in phases_for("joint", 12, 12, 0.1)] == [False, False, False]
    assert [p.keep_last_head for p in phases_for("heads", 12, 12, 0.1)] == [True]
    assert [p.keep_last_head for p in phases_for("heads", 12, 12, 0.1, heads_only_empty_layers=True)] == [False]
    # the joint search's phase 2 is also named "heads": it may still empty a layer
    heads, mlps = torch.tensor([[True, False], [True, True]]), torch.ones(2, dtype=torch.bool)
    importance = torch.tensor([[0.0, 0.5], [0.2, 0.3]])
    new_heads, _ = propose(Phase("heads", 1, 0), heads, mlps, importance, torch.zeros(2))
    assert new_heads.tolist() == [[False, False], [True, True]]
    new_heads, _ = propose(Phase("heads", 1, 0, keep_last_head=True), heads, mlps, importance, torch.zeros(2))
    assert new_heads.tolist() == [[True, False], [False, True]]


def scripted_heads_only(monkeypatch, **values):
    """A heads-only search on 12 x 12 heads where every step passes, with random importances per pass."""
    script = ScriptedPasses([1.0] * 40)
    monkeypatch.setattr(S, "importance_pass", script)
    model = tiny_bert(layers=12, heads=12, hidden=48)
    return S.find_s_mask(model, RTE, synthetic_split(n=4), s_settings(**values), mode="heads", progress=False), script


def test_heads_only_search_never_empties_a_layer_by_default(monkeypatch):
    result, script = scripted_heads_only(monkeypatch)
    assert all(bool((r["heads"].sum(-1) >= 1).all()) for r in result.trace)
    assert result.mask.heads.sum(-1).tolist() == [1] * 12  # ends at one head per layer, as WNLI's masks
    skipped = 0
    for before, after in zip(script.calls, script.calls[1:]):  # every step was accepted
        kept, importance = before[0], before[2]  # a step ranks with the previous pass's importance
        removed = (kept & ~after[0]).reshape(-1).nonzero().flatten().tolist()
        assert sorted(removed) == sorted(keeping_one_reference(importance, kept, 14))
        skipped += sorted(removed) != sorted(lowest_unmasked(importance, kept, 14).tolist())
    assert skipped >= 1  # some step passed over a layer's last head


def test_heads_only_search_may_empty_layers_with_the_option(monkeypatch):
    result, _ = scripted_heads_only(monkeypatch, heads_only_empty_layers=True)
    assert result.mask.heads_kept == 0
    assert any(bool((r["heads"].sum(-1) == 0).any()) and r["heads"].sum() > 0 for r in result.trace)


def test_option_is_part_of_the_heads_only_resume_fingerprint(tmp_path):
    model = tiny_bert(layers=3, heads=4, hidden=32, seed=5, init=0.1)
    split = self_labelled(model, synthetic_split(n=16, seed=2))
    values = dict(batch_size=8, threshold=0.01, amount=0.2)
    kwargs = dict(settings=s_settings(**values), mode="heads", progress=False, state_dir=tmp_path)
    first = S.find_s_mask(model, RTE, split, **kwargs)
    assert first.mask.heads.sum(-1).tolist() == [1, 1, 1]  # a real search with a loose limit: one per layer
    again = []
    S.find_s_mask(model, RTE, split, on_iteration=again.append, **kwargs)
    assert again == []  # same settings: the finished state is reused
    other = []
    emptied = S.find_s_mask(model, RTE, split, on_iteration=other.append,
                            **(kwargs | {"settings": s_settings(**values, heads_only_empty_layers=True)}))
    assert other[0] == 0 and emptied.mask.heads_kept < 3  # other settings: the state is not reused


def test_command_records_the_option_in_search_json(tmp_path):
    from bertlottery.glue.prepare import TokenizedArrays, write_split

    model = tiny_bert(layers=2, heads=4, seed=7, init=0.1)
    split = self_labelled(model, synthetic_split(n=16, seed=3))
    model.save_pretrained(tmp_path / "model")
    arrays = TokenizedArrays(split.input_ids.numpy(), split.token_type_ids.numpy(), split.offsets.numpy(), 0, 13)
    (tmp_path / "data" / "splits").mkdir(parents=True)
    write_split(tmp_path / "data" / "splits" / "dev.safetensors", RTE, "dev", arrays, split.labels.numpy(),
                "tiny", 64)
    for option in (False, True):
        out = tmp_path / f"out{option}"
        S.main_find_s_mask(["--task", "RTE", "--seed", "42", "--model-dir", str(tmp_path / "model"),
                            "--data-dir", str(tmp_path / "data"), "--mode", "heads", "--out-dir", str(out),
                            "--settings", json.dumps({"batch_size": 8, "threshold": 0.01,
                                                      "heads_only_empty_layers": option})])
        summary = json.loads((out / "search.json").read_text())
        assert summary["family"] == "s-heads" and summary["settings"]["heads_only_empty_layers"] is option
        assert summary["config_hash"] == S.config_hash(SPruningSettings.from_dict(
            {"batch_size": 8, "threshold": 0.01, "heads_only_empty_layers": option}, where="test"))
