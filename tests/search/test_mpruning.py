"""m-pruning: global magnitude steps (= torch's global_unstructured), stop rule, cap quirk,
random and bad masks, resumability and the command."""

from __future__ import annotations

import copy
import dataclasses
import json
from functools import partial

import pytest
import torch
import torch.nn.utils.prune as prune
from transformers import BertConfig, BertForSequenceClassification

from conftest import self_labelled_split
from bertlottery.glue.tasks import get_task
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.structure import prunable_parameters
from bertlottery.modeling.weight_masks import check_weight_mask
from bertlottery.search import mpruning as MP
from bertlottery.search.state import clear_state
from bertlottery.settings import MPruningSettings

RTE = get_task("RTE")
# A masked tiny model may predict one class only; sklearn's MCC then warns (the metric is still defined).
pytestmark = [pytest.mark.filterwarnings("ignore:A single label was found"), pytest.mark.usefixtures("one_thread")]



def m_settings(**values) -> MPruningSettings:
    """The m_pruning section with these values over the schema's defaults."""
    return MPruningSettings.from_dict(values, where="m_pruning")


def tiny_bert(layers=2, heads=4, hidden=32, seed=0, init=0.1) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=2,
                        initializer_range=init)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # BERT initialises biases to 0; fine-tuned ones are not
        for name, param in model.named_parameters():
            if name.endswith("bias") and "LayerNorm" not in name:
                param.normal_(0.0, init)
    return model


def effective_nonzero(model) -> int:
    """Nonzero prunable values as the forward pass sees them (masked weights under a weight mask)."""
    total = 0
    for name in prunable_parameters(model):
        module_name, attr = name.rsplit(".", 1)
        total += int((getattr(model.get_submodule(module_name), attr) != 0).sum())
    return total


def torch_targets(model, pool: MP.MagnitudePool) -> list[tuple[torch.nn.Module, str]]:
    return [(model.get_submodule(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]) for name in pool.names]


# ------------------------------------------------------------------------------------------------
# the pool and one pruning step


def test_pool_is_the_papers_prunable_set_in_the_originals_order():
    model = tiny_bert()
    pool = MP.MagnitudePool.from_model(model)
    assert set(pool.names) == set(prunable_parameters(model))
    assert pool.names[:4] == ["bert.encoder.layer.0.attention.self.key.weight", "bert.encoder.layer.0.attention.self.key.bias",
                              "bert.encoder.layer.0.attention.self.query.weight",
                              "bert.encoder.layer.0.attention.self.query.bias"]
    assert pool.names[10] == "bert.encoder.layer.0.output.dense.weight"
    assert pool.names[11].startswith("bert.encoder.layer.1.")
    assert not any(n.endswith("output.dense.bias") and "attention" not in n for n in pool.names)
    # 4 h^2 + 4 h (Q, K, V, attention output) + 2 h f + f (intermediate) per layer; f = 2 h here
    h, f = 32, 64
    assert pool.total == 2 * (4 * h * h + 4 * h + 2 * h * f + f)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "many-ties"])
def test_repeated_steps_equal_torch_global_unstructured(ties):
    model = tiny_bert()
    if ties:  # magnitudes on a coarse grid: most values tie with many others
        with torch.no_grad():
            for p in prunable_parameters(model).values():
                p.copy_((p * 20).round() / 20)
    pool = MP.MagnitudePool.from_model(model)
    reference = copy.deepcopy(model)
    targets = torch_targets(reference, pool)
    kept = torch.ones(pool.total, dtype=torch.bool)
    for _ in range(5):
        kept = MP.l1_step(pool.magnitude, kept, 0.1)
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=0.1)
        expected = torch.cat([getattr(m, a + "_mask").reshape(-1).bool() for m, a in targets])
        assert torch.equal(kept, expected)
    assert int(kept.sum()) == _kept_after(pool.total, 5, 0.1)


def _kept_after(total: int, steps: int, amount: float) -> int:
    kept = total
    for _ in range(steps):
        kept -= round(amount * kept)
    return kept


def test_each_step_removes_the_smallest_remaining_magnitudes():
    pool = MP.MagnitudePool.from_model(tiny_bert(seed=2))
    one = MP.l1_step(pool.magnitude, torch.ones(pool.total, dtype=torch.bool), 0.1)
    two = MP.l1_step(pool.magnitude, one, 0.1)
    assert not (two & ~one).any()  # nothing pruned comes back
    assert pool.magnitude[~one].max() <= pool.magnitude[one].min()
    assert pool.magnitude[~two].max() <= pool.magnitude[two].min()
    assert int((one & ~two).sum()) == round(0.1 * int(one.sum()))


# ------------------------------------------------------------------------------------------------
# random and bad masks


def test_random_and_bad_masks_have_the_exact_count():
    pool = MP.MagnitudePool.from_model(tiny_bert(seed=1))
    good = torch.ones(pool.total, dtype=torch.bool)
    for _ in range(3):
        good = MP.l1_step(pool.magnitude, good, 0.1)
    n = int(good.sum())
    random = MP.random_kept(pool.total, n, MP._generator("RTE", 42, "random"))
    bad = MP.bad_kept_code(pool.magnitude, n)
    assert int(random.sum()) == int(bad.sum()) == n
    # bad keeps exactly the smallest |w|: everything kept is no larger than anything removed
    assert pool.magnitude[bad].max() <= pool.magnitude[~bad].min()
    # random: reproducible from (task, seed), different for another seed, spread over all parameters
    assert torch.equal(random, MP.random_kept(pool.total, n, MP._generator("RTE", 42, "random")))
    assert not torch.equal(random, MP.random_kept(pool.total, n, MP._generator("RTE", 43, "random")))
    per_param = [float(m.float().mean()) for m in pool.split(random).values() if m.numel() > 500]
    assert max(per_param) - min(per_param) < 0.1


@pytest.mark.parametrize("steps", [3, 8], ids=["p<0.5", "p>=0.5"])
def test_paper_bad_mask(steps):
    pool = MP.MagnitudePool.from_model(tiny_bert(seed=1))
    good = torch.ones(pool.total, dtype=torch.bool)
    for _ in range(steps):
        good = MP.l1_step(pool.magnitude, good, 0.1)
    bad = MP.bad_kept_paper(good, MP._generator("RTE", 1, "bad"))
    assert int(bad.sum()) == int(good.sum())
    pruned = ~good
    if pruned.float().mean() < 0.5:
        assert (bad[pruned]).all()  # every pruned-away value, plus survivors
    else:
        assert not (bad & good).any()  # only pruned-away values
    assert torch.equal(bad, MP.bad_kept_paper(good, MP._generator("RTE", 1, "bad")))


# ------------------------------------------------------------------------------------------------
# the stop rule, with scripted dev scores


def scripted(monkeypatch, scores):
    calls = []

    def fake_dev_score(model, spec, split, batch_size, progress, padding_free=True):
        calls.append(effective_nonzero(model))
        score = scores[len(calls) - 1]
        return score, {"accuracy": score}

    monkeypatch.setattr(MP, "dev_score", fake_dev_score)
    return calls


@pytest.mark.parametrize("scores, max_iterations, cap_quirk, steps", [
    ([1.0, 0.95, 0.92, 0.91], 3, True, 2),    # the cap ends it after a passing step: one step short
    ([1.0, 0.95, 0.92, 0.91], 3, False, 3),   # without the quirk: the passing step is saved
    ([1.0, 0.95, 0.5, 0.99], 3, True, 1),     # a failing step: the one before
    ([1.0, 0.95, 0.5, 0.99], 3, False, 1),
    ([1.0, 0.9, 0.89], 10, True, 1),          # score == T passes
    ([1.0, 0.2], 10, True, 0),                # the first step fails: the full mask
    ([-0.3, -0.3], 10, True, 0),              # S0 < 0: T > S0, no step is taken
])
def test_stop_rule_and_cap_quirk(monkeypatch, scores, max_iterations, cap_quirk, steps):
    calls = scripted(monkeypatch, scores)
    model = tiny_bert()
    split = self_labelled_split(model, n=4)
    result = MP.find_m_mask(model, RTE, split, m_settings(max_iterations=max_iterations, cap_quirk=cap_quirk),
                            seed=1, progress=False)
    taken = len(result.trace) - 1
    assert taken == (0 if scores[0] < 0 else min(max_iterations, next(
        (i for i, s in enumerate(scores[1:], 1) if s < 0.9 * scores[0]), max_iterations)))
    assert result.steps == steps
    assert result.good.kept == _kept_after(result.good.total, steps, 0.1)
    assert result.score == scores[steps] and result.s0 == scores[0]
    assert result.random.kept == result.bad.kept == result.good.kept
    # step k was evaluated with exactly k steps of masking applied to the model's weights
    assert calls == [_kept_after(result.good.total, k, 0.1) for k in range(len(calls))]


def test_search_leaves_the_weights_untouched():
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    MP.find_m_mask(model, RTE, self_labelled_split(model, n=8), m_settings(max_iterations=2), seed=1, progress=False)
    after = model.state_dict()  # same names and values (parameter order may differ after unmasking)
    assert sorted(after) == sorted(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules())


def test_real_search_masks_apply_to_the_model():
    from bertlottery.modeling.weight_masks import apply_weight_mask

    model = tiny_bert(seed=3)
    split = self_labelled_split(model, n=40, seed=3)
    result = MP.find_m_mask(model, RTE, split, m_settings(batch_size=16), seed=42, progress=False)
    assert result.s0 == 1.0 and 0 < result.steps < 10
    assert [r["score"] >= 0.9 for r in result.trace] == [r["accepted"] for r in result.trace]
    assert result.trace[result.steps + 1]["score"] < 0.9  # stopped by the rule, not the cap
    for kind in ("good", "random", "bad"):
        mask = getattr(result, kind)
        assert isinstance(mask, WeightMask) and mask.meta["kind"] == kind and mask.meta["seed"] == "42"
        check_weight_mask(mask, model)
    apply_weight_mask(model, result.good)
    score, _ = MP.dev_score(model, RTE, split, 16, False)
    assert score == result.score


def test_kill_and_resume_gives_the_same_masks(tmp_path, killed_then_resumed):
    model = tiny_bert(seed=3)
    split = self_labelled_split(model, n=40, seed=3)
    kwargs = dict(settings=m_settings(batch_size=16, bad_mode="paper"), seed=7, progress=False)
    reference = MP.find_m_mask(model, RTE, split, **kwargs)
    assert len(reference.trace) >= 4

    state_dir = tmp_path / "state"
    search = partial(MP.find_m_mask, model, RTE, split, **kwargs)
    resumed, evaluated = killed_then_resumed(search, state_dir, MP.STATE_FILE, kill_after=2)
    assert evaluated[0] == 3  # steps 0-2 were not evaluated again
    assert resumed.good == reference.good and resumed.random == reference.random and resumed.bad == reference.bad
    assert [r["score"] for r in resumed.trace] == [r["score"] for r in reference.trace]
    assert resumed.steps == reference.steps
    clear_state(state_dir, MP.STATE_FILE)
    assert not state_dir.exists()


def test_command_writes_three_masks_and_summary(tmp_path):
    from bertlottery.glue.prepare import TokenizedArrays, write_split

    model = tiny_bert(seed=3)
    split = self_labelled_split(model, n=24, seed=3)
    model.save_pretrained(tmp_path / "model")
    arrays = TokenizedArrays(split.input_ids.numpy(), split.token_type_ids.numpy(), split.offsets.numpy(), 0, 13)
    (tmp_path / "data" / "splits").mkdir(parents=True)
    write_split(tmp_path / "data" / "splits" / "dev.safetensors", RTE, "dev", arrays, split.labels.numpy(),
                "tiny", 64)
    out = tmp_path / "out"
    MP.main_find_m_mask(["--task", "RTE", "--seed", "86", "--model-dir", str(tmp_path / "model"),
                         "--data-dir", str(tmp_path / "data"), "--out-dir", str(out),
                         "--settings", json.dumps({"batch_size": 8, "bad_mode": "code", "max_iterations": 4})])
    masks = {kind: WeightMask.load(out / f"{kind}.safetensors") for kind in ("good", "random", "bad")}
    assert len({m.kept for m in masks.values()}) == 1
    assert masks["good"].meta["family"] == "m" and masks["bad"].meta["task"] == "RTE"
    summary = json.loads((out / "search.json").read_text())
    trace = json.loads((out / "trace.json").read_text())
    assert summary["mask_size"]["good"]["prunable_kept"] == masks["good"].kept
    assert summary["saved_step"] == trace["saved_step"] <= len(trace["iterations"]) - 1 <= 4
    assert not (out / "search_state").exists()


def test_unknown_settings_are_errors():
    from bertlottery.errors import BertLotteryError
    from bertlottery.settings import MPruningSettings

    with pytest.raises(BertLotteryError, match="max_iteration"):
        MPruningSettings.from_arg('{"max_iteration": 3}', "settings")
    with pytest.raises(BertLotteryError, match="bad_mode"):
        MP.find_m_mask(tiny_bert(), RTE, self_labelled_split(tiny_bert(), n=4),
                       dataclasses.replace(m_settings(), bad_mode="worst"), seed=1)
