"""s-pruning: importance scores, normalisation, phases, stop rule, resumability and the command."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import BertConfig, BertForSequenceClassification

from bertlottery.glue.splits import TokenizedSplit
from bertlottery.glue.tasks import get_task
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.soft_masks import attach_soft_masks, detach_soft_masks
from bertlottery.search import spruning as S
from bertlottery.search.selection import lowest_unmasked
from bertlottery.search.state import clear_state
from bertlottery.settings import SPruningSettings

RTE, STSB = get_task("RTE"), get_task("STS-B")
# A masked tiny model may predict one class only; sklearn's MCC then warns (the metric is still defined).
pytestmark = [pytest.mark.filterwarnings("ignore:A single label was found"), pytest.mark.usefixtures("one_thread")]



def s_settings(**values) -> SPruningSettings:
    """The s_pruning section with these values over the schema's defaults."""
    return SPruningSettings.from_dict(values, where="s_pruning")


def tiny_bert(layers=2, heads=4, hidden=32, num_labels=2, seed=0, vocab=60, init=0.02) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=num_labels,
                        initializer_range=init)
    return BertForSequenceClassification(config).eval()


def synthetic_split(n=20, seed=0, vocab=60, regression=False, max_len=14) -> TokenizedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_len, (n,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    ids = torch.randint(1, vocab, (int(offsets[-1]),), generator=g).int()
    types = (torch.rand(int(offsets[-1]), generator=g) > 0.5).to(torch.uint8)
    labels = torch.rand(n, generator=g) * 5 if regression else torch.randint(0, 2, (n,), generator=g)
    return TokenizedSplit(ids, types, offsets, labels)


def self_labelled(model, split: TokenizedSplit) -> TokenizedSplit:
    """Labels = the model's own predictions: S0 = 1.0 and masking degrades the score gradually,
    like a fine-tuned model's (a random model's accuracy on random labels is flat)."""
    with torch.no_grad():
        batch = split.collate(np.arange(len(split)))
        batch.pop("labels")
        labels = model(**batch).logits.argmax(-1)
    return TokenizedSplit(split.input_ids, split.token_type_ids, split.offsets, labels)


# ------------------------------------------------------------------------------------------------
# importance pass


def reference_importance(model, spec, split, heads, mlps, batch_size, accumulation):
    """The original's loop: backward() into the soft masks' .grad, zeroed (per_batch) or never (cumulative)."""
    soft = attach_soft_masks(model, HeadMlpMask(heads, mlps), empty_layer_bias=True).requires_grad_()
    head_sum, mlp_sum, tokens = torch.zeros_like(soft.heads), torch.zeros_like(soft.mlps), 0.0
    try:
        for start in range(0, len(split), batch_size):
            batch = split.collate(np.arange(start, min(start + batch_size, len(split))))
            labels = batch.pop("labels")
            if accumulation == "per_batch":
                soft.zero_grad()
            out = model(**batch, labels=labels.float() if spec.is_regression else labels)
            out.loss.backward()
            head_sum += soft.heads.grad.abs()
            mlp_sum += soft.mlps.grad.abs()
            tokens += float(batch["attention_mask"].sum())
    finally:
        detach_soft_masks(model)
    return head_sum, mlp_sum, tokens


@pytest.mark.parametrize("padding_free", [True, False], ids=["padding_free", "padded"])
@pytest.mark.parametrize("accumulation", ["cumulative", "per_batch"])
@pytest.mark.parametrize("spec", [RTE, STSB], ids=["classification", "regression"])
def test_accumulated_gradients_match_the_originals_backward_loop(accumulation, spec, padding_free):
    model = tiny_bert(num_labels=spec.num_labels)
    split = synthetic_split(n=21, regression=spec.is_regression)  # 3 batches of 8, the last partial
    heads = torch.ones(2, 4, dtype=torch.bool)
    heads[0, 1] = heads[1, 3] = False
    mlps = torch.tensor([True, False])
    expected_heads, expected_mlps, expected_tokens = reference_importance(
        model, spec, split, heads, mlps, 8, accumulation)
    soft = attach_soft_masks(model, empty_layer_bias=True)
    try:
        head_sum, mlp_sum, tokens, logits, _ = S.accumulate_gradients(
            model, soft, spec, split, heads, mlps, batch_size=8, accumulation=accumulation,
            padding_free=padding_free)
    finally:
        detach_soft_masks(model)
    torch.testing.assert_close(head_sum, expected_heads, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(mlp_sum, expected_mlps, rtol=1e-5, atol=1e-8)
    assert tokens == expected_tokens == float(split.lengths.sum())
    assert logits.shape == (21, spec.num_labels)
    assert (head_sum > 0).all()  # masked heads get gradients too (they are ranked, then excluded)


def test_cumulative_and_per_batch_differ_and_equal_for_one_batch():
    model, split = tiny_bert(), synthetic_split(n=16)
    ones_h, ones_m = torch.ones(2, 4, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    soft = attach_soft_masks(model)
    try:
        run = lambda acc, bs: S.accumulate_gradients(  # noqa: E731
            model, soft, RTE, split, ones_h, ones_m, batch_size=bs, accumulation=acc)[0]
        assert not torch.allclose(run("cumulative", 4), run("per_batch", 4))
        torch.testing.assert_close(run("cumulative", 16), run("per_batch", 16))
    finally:
        detach_soft_masks(model)


def test_mask_gradient_equals_finite_difference():
    model = tiny_bert(init=0.3).double()  # larger weights: gradients well above rounding noise
    split = synthetic_split(n=6)
    batch = split.collate(np.arange(6))
    labels = batch.pop("labels")
    soft = attach_soft_masks(model)
    try:
        def loss_at(layer, head, value):
            with torch.no_grad():
                soft.heads.fill_(1.0)
                soft.mlps.fill_(1.0)
                if head is None:
                    soft.mlps[layer] = value
                else:
                    soft.heads[layer, head] = value
                return float(torch.nn.functional.cross_entropy(model(**batch).logits, labels))  # float64
        head_sum, mlp_sum, *_ = S.accumulate_gradients(
            model, soft, RTE, split, torch.ones(2, 4, dtype=torch.bool), torch.ones(2, dtype=torch.bool),
            batch_size=6, accumulation="per_batch")
        eps = 1e-4
        for layer, head, got in [(1, 2, head_sum[1, 2]), (0, None, mlp_sum[0])]:
            numeric = (loss_at(layer, head, 1 + eps) - loss_at(layer, head, 1 - eps)) / (2 * eps)
            assert abs(float(got) - abs(numeric)) <= 1e-3 * max(abs(numeric), 1e-6)
    finally:
        detach_soft_masks(model)


def test_normalisation_per_layer_l2_then_global_min_max():
    raw = torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]])
    per_layer = np.array([[0.6, 0.8, 0.0], [1, 1, 1] / np.sqrt(3)])
    expected = (per_layer - per_layer.min()) / (per_layer.max() - per_layer.min())
    np.testing.assert_allclose(S.normalize_head_importance(raw).numpy(), expected, rtol=1e-6)
    mlp = S.normalize_mlp_importance(torch.tensor([2.0, 6.0, 4.0]), n_tokens=10.0)
    np.testing.assert_allclose(mlp.numpy(), [0.0, 1.0, 0.5])
    # A constant vector (1-layer model) gives zeros where the original divides 0 by 0.
    assert torch.equal(S.normalize_mlp_importance(torch.tensor([5.0]), 3.0), torch.zeros(1))


def test_pass_score_is_the_stop_metric_of_the_dev_predictions():
    from bertlottery.glue.metrics import stop_score, task_metrics
    from bertlottery.train.evaluation import predict

    model, split = tiny_bert(num_labels=1, seed=3), synthetic_split(n=30, regression=True)
    expected = stop_score(STSB, task_metrics(STSB, *(lambda p: (p.logits, p.labels))(predict(model, split))))
    soft = attach_soft_masks(model)
    try:
        result = S.importance_pass(model, soft, STSB, split, torch.ones(2, 4, dtype=torch.bool),
                                   torch.ones(2, dtype=torch.bool), batch_size=7)
    finally:
        detach_soft_masks(model)
    assert result.score == pytest.approx(expected, abs=1e-6)
    assert set(result.metrics) >= {"pearson", "spearman", "pearson_spearman", "loss"}
    assert float(result.head_importance.min()) == 0.0 and float(result.head_importance.max()) == 1.0


def test_lowest_unmasked_skips_masked_and_breaks_ties_by_index():
    importance = torch.tensor([[0.5, 0.1, 0.1], [0.0, 0.9, 0.3]])
    kept = torch.tensor([[True, True, True], [False, True, True]])
    assert lowest_unmasked(importance, kept, 3).tolist() == [1, 2, 5]
    assert lowest_unmasked(importance, kept, 10).tolist() == [1, 2, 5, 0, 4]  # only the 5 kept
    assert lowest_unmasked(importance, torch.zeros_like(kept), 2).tolist() == []


# ------------------------------------------------------------------------------------------------
# phases and stop rule, with a scripted sequence of dev scores


class ScriptedPasses:
    """Stands in for the importance pass: scripted scores, seeded random importances, a call log."""

    def __init__(self, scores):
        self.scores = list(scores)
        self.calls = []  # (heads, mlps, head_importance) per pass
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, model, soft, spec, split, heads, mlps, **kwargs):
        head_imp = torch.rand(heads.shape, generator=self.generator)
        mlp_imp = torch.rand(mlps.shape, generator=self.generator)
        self.calls.append((heads.clone(), mlps.clone(), head_imp))
        return S.PassResult(head_imp, mlp_imp, {"accuracy": self.scores[len(self.calls) - 1]},
                            self.scores[len(self.calls) - 1])


@pytest.fixture
def wide12():
    return tiny_bert(layers=12, heads=12, hidden=48)  # bert-base's 12 x 12 heads at a tiny width


def scripted_search(monkeypatch, model, scores, **kwargs):
    script = ScriptedPasses(scores)
    monkeypatch.setattr(S, "importance_pass", script)
    result = S.find_s_mask(model, RTE, synthetic_split(n=4), progress=False, **kwargs)
    assert len(script.calls) == len(result.trace)  # every pass is traced
    return result, script


def test_joint_phases_counts_and_reverts(monkeypatch, wide12):
    # S0 = 1, T = 0.9: joint passes twice then fails; heads-only passes 3x then fails; MLP-only 1x then fails.
    scores = [1.0, 0.95, 0.93, 0.5, 0.92, 0.91, 0.9, 0.2, 0.95, 0.1]
    result, script = scripted_search(monkeypatch, wide12, scores)
    rows = [(r["phase"], r["heads_kept"], r["mlps_kept"], r["accepted"]) for r in result.trace]
    assert rows == [
        ("initial", 144, 12, True),
        ("joint", 130, 11, True), ("joint", 116, 10, True), ("joint", 102, 9, False),
        ("heads", 109, 10, True), ("heads", 102, 10, True), ("heads", 95, 10, True), ("heads", 88, 10, False),
        ("mlps", 95, 9, True), ("mlps", 95, 8, False),
    ]
    # 144 - 14a - 7b heads and 12 - a - c MLPs with a, b, c = 2, 3, 1 (score == T counts as kept)
    assert (result.mask.heads_kept, result.mask.mlps_kept) == (95, 9)
    assert torch.equal(result.mask.heads, script.calls[6][0]) and torch.equal(result.mask.mlps, script.calls[8][1])
    assert result.s0 == 1.0 and result.threshold == pytest.approx(0.9) and result.score == 0.95
    # Phase 2 starts from the last accepted masks and ranks with the failed pass's importance.
    good_heads, failed_importance = script.calls[2][0], script.calls[3][2]
    first_heads_step = script.calls[4][0]
    newly_masked = (good_heads & ~first_heads_step).reshape(-1).nonzero().flatten()
    expected = lowest_unmasked(failed_importance, good_heads, 7)
    assert sorted(newly_masked.tolist()) == sorted(expected.tolist())
    assert not (~good_heads & first_heads_step).any()  # nothing masked comes back
    # The returned importances are the last pass's (as the original's head_importance.npy).
    assert torch.equal(result.head_importance, script.calls[-1][2])


def test_all_steps_pass_until_nothing_is_left(monkeypatch, wide12):
    result, _ = scripted_search(monkeypatch, wide12, [0.7] * 20)
    phases = [r["phase"] for r in result.trace]
    # 10 joint steps of 14 heads, an 11th with the last 4 heads; then heads-only has nothing left and
    # the MLP-only phase masks the last MLP.
    assert phases == ["initial"] + ["joint"] * 11 + ["mlps"]
    assert [r["heads_kept"] for r in result.trace][-3:] == [4, 0, 0]
    assert (result.mask.heads_kept, result.mask.mlps_kept) == (0, 0)


def test_separate_modes(monkeypatch, wide12):
    heads_only, _ = scripted_search(monkeypatch, wide12, [1.0, 0.95, 0.91, 0.89], mode="heads")
    assert [r["heads_kept"] for r in heads_only.trace] == [144, 130, 116, 102]
    assert (heads_only.mask.heads_kept, heads_only.mask.mlps_kept) == (116, 12)
    mlps_only, _ = scripted_search(monkeypatch, wide12, [1.0, 0.95, 0.5], mode="mlps")
    assert [r["mlps_kept"] for r in mlps_only.trace] == [12, 11, 10]
    assert (mlps_only.mask.heads_kept, mlps_only.mask.mlps_kept) == (144, 11)


def test_negative_and_zero_original_score(monkeypatch, wide12):
    # S0 < 0: T = 0.9 * S0 > S0, the literal rule rejects the full model itself: nothing is pruned.
    negative, _ = scripted_search(monkeypatch, wide12, [-0.2, -0.1])
    assert len(negative.trace) == 1 and negative.mask == HeadMlpMask.full(12, 12)
    assert negative.threshold == pytest.approx(-0.18)
    # S0 = 0: T = 0, a step scoring 0 is kept and one scoring below 0 is reverted.
    zero, _ = scripted_search(monkeypatch, wide12, [0.0, 0.0, -0.01, -0.5, -0.5])
    assert [r["accepted"] for r in zero.trace] == [True, True, False, False, False]
    assert (zero.mask.heads_kept, zero.mask.mlps_kept) == (130, 11)


def test_bad_settings_are_errors(wide12):
    from bertlottery.errors import BertLotteryError

    with pytest.raises(BertLotteryError, match="mode"):
        S.find_s_mask(wide12, RTE, synthetic_split(n=4), mode="layers", progress=False)
    with pytest.raises(BertLotteryError, match="gradient_accumulation"):
        S.find_s_mask(wide12, RTE, synthetic_split(n=4), replace(s_settings(), gradient_accumulation="sum"),
                      progress=False)


# ------------------------------------------------------------------------------------------------
# real searches on tiny models


def test_real_search_follows_the_count_formula_and_keeps_the_rule():
    model = tiny_bert(layers=12, heads=12, hidden=48, init=0.07)  # predictions vary, so masking costs
    split = self_labelled(model, synthetic_split(n=48, seed=1))
    result = S.find_s_mask(model, RTE, split, s_settings(batch_size=16), progress=False)
    assert result.s0 == 1.0
    assert {r["phase"] for r in result.trace if not r["accepted"]} >= {"joint", "heads", "mlps"}
    steps = {phase: sum(r["accepted"] for r in result.trace if r["phase"] == phase)
             for phase in ("joint", "heads", "mlps")}
    assert result.mask.heads_kept == 144 - 14 * steps["joint"] - 7 * steps["heads"]
    assert result.mask.mlps_kept == 12 - steps["joint"] - steps["mlps"]
    assert all((r["score"] >= 0.9) == r["accepted"] for r in result.trace)
    assert result.score >= 0.9 and len(result.trace) > 2
    # Masks are applied by soft masks during the search only: the model is left without hooks.
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_kill_and_resume_gives_the_same_masks(tmp_path, killed_then_resumed):
    model = tiny_bert(layers=3, heads=4, hidden=32, seed=5, init=0.1)
    split = self_labelled(model, synthetic_split(n=40, seed=2))
    kwargs = dict(settings=s_settings(batch_size=8, threshold=0.95, amount=0.2), progress=False)
    reference = S.find_s_mask(model, RTE, split, **kwargs)
    assert len(reference.trace) >= 5 and not all(r["accepted"] for r in reference.trace)

    state_dir = tmp_path / "state"
    search = partial(S.find_s_mask, model, RTE, split, **kwargs)
    resumed, passes = killed_then_resumed(search, state_dir, S.STATE_FILE, kill_after=3)
    assert passes[0] == 4  # passes 0-3 were not rerun
    assert resumed.mask == reference.mask
    assert torch.equal(resumed.head_importance, reference.head_importance)
    assert [r["score"] for r in resumed.trace] == [r["score"] for r in reference.trace]
    for a, b in zip(resumed.trace, reference.trace):
        assert torch.equal(a["heads"], b["heads"]) and torch.equal(a["head_importance"], b["head_importance"])
    # A finished state short-cuts a rerun; other settings ignore it; clear_state removes it.
    again = []
    S.find_s_mask(model, RTE, split, state_dir=state_dir, on_iteration=again.append, **kwargs)
    assert again == []
    other = []
    S.find_s_mask(model, RTE, split, state_dir=state_dir, on_iteration=other.append,
                  **(kwargs | {"settings": s_settings(batch_size=8, threshold=0.5, amount=0.2)}))
    assert other[0] == 0
    clear_state(state_dir, S.STATE_FILE)
    assert not state_dir.exists()


def test_command_writes_masks_trace_and_summary(tmp_path, capsys):
    from bertlottery.glue.prepare import TokenizedArrays, write_split

    model = tiny_bert(layers=2, heads=4, seed=7, init=0.1)
    split = self_labelled(model, synthetic_split(n=24, seed=3))
    model.save_pretrained(tmp_path / "model")
    arrays = TokenizedArrays(split.input_ids.numpy(), split.token_type_ids.numpy(), split.offsets.numpy(), 0, 13)
    (tmp_path / "data" / "splits").mkdir(parents=True)
    write_split(tmp_path / "data" / "splits" / "dev.safetensors", RTE, "dev", arrays, split.labels.numpy(),
                "tiny", 64)
    out = tmp_path / "out"
    S.main_find_s_mask(["--task", "RTE", "--seed", "42", "--model-dir", str(tmp_path / "model"),
                        "--data-dir", str(tmp_path / "data"), "--mode", "joint", "--out-dir", str(out),
                        "--settings", json.dumps({"batch_size": 8, "threshold": 0.9, "modes": ["joint"]})])
    good = HeadMlpMask.load(out / "good.safetensors")
    assert good.meta["task"] == "RTE" and good.meta["seed"] == "42" and good.meta["family"] == "s"
    assert good.head_importance.shape == (2, 4) and good.mlp_importance.shape == (2,)
    trace = json.loads((out / "trace.json").read_text())
    summary = json.loads((out / "search.json").read_text())
    assert summary["s0"] == 1.0 and summary["heads_kept"] == good.heads_kept
    assert summary["mask_size"]["heads_kept"] == good.heads_kept
    with safe_open(str(out / "trace.safetensors"), framework="pt") as f:
        assert f.get_tensor("heads").shape == (len(trace["iterations"]), 2, 4)
        assert f.get_tensor("mlp_importance").shape == (len(trace["iterations"]), 2)
    assert good.heads.tolist() == _last_accepted(trace, out)
    assert not (out / "search_state").exists()


def _last_accepted(trace: dict, out) -> list:
    with safe_open(str(out / "trace.safetensors"), framework="pt") as f:
        heads = f.get_tensor("heads")
    last = max(i for i, r in enumerate(trace["iterations"]) if r["accepted"])
    return heads[last].bool().tolist()


@pytest.mark.slow
def test_bert_base_shaped_joint_search_runs_on_cpu():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).eval()  # real bert-base sizes
    split = self_labelled(model, synthetic_split(n=8, vocab=30522, max_len=10))
    result = S.find_s_mask(model, RTE, split, s_settings(batch_size=64), progress=False)
    assert result.mask.heads.shape == (12, 12) and result.s0 == 1.0
    assert all((r["score"] >= 0.9) == r["accepted"] for r in result.trace)
    last = max(i for i, r in enumerate(result.trace) if r["accepted"])
    assert torch.equal(result.mask.heads, result.trace[last]["heads"])
    assert torch.equal(result.mask.mlps, result.trace[last]["mlps"])
