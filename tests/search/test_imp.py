"""i-pruning (IMP with rewinding, family i): rewinding restores the starting weights and the seeded classifier,
pruned weights stay zero through a round, each round removes 10 % of the remaining weights (round 1 = m's first
step), the stop rule, the random and bad masks, kill and resume, and the command."""

from __future__ import annotations

import json
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from conftest import self_labelled_split

from bertlottery.errors import BertLotteryError
from bertlottery.glue.tasks import get_task
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.structure import prunable_parameters
from bertlottery.modeling.weight_masks import apply_weight_mask
from bertlottery.search import imp as IM
from bertlottery.search import mpruning as MP
from bertlottery.search.state import clear_state
from bertlottery.settings import IPruningSettings, TrainingSettings
from bertlottery.train.loop import starting_model, train

RTE = get_task("RTE")
pytestmark = [pytest.mark.filterwarnings("ignore:A single label was found"), pytest.mark.usefixtures("one_thread")]

# A round of the tiny model: 16 examples, batches of 8, one epoch (2 optimizer steps), no checkpoints.
TRAINING = TrainingSettings.from_dict({"learning_rate": 1e-2, "batch_size": 8, "epochs": 1, "max_seq_length": 32,
                                       "eval_batch_size": 16, "log_every": 1, "checkpoint_every_steps": 1},
                                      where="training")


def i_settings(**values) -> IPruningSettings:
    return IPruningSettings.from_dict({"batch_size": 16} | values, where="i_pruning")


def tiny_bert(seed=0, init=0.1) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2, initializer_range=init)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # fine-tuned biases are not 0
        for name, param in model.named_parameters():
            if name.endswith("bias") and "LayerNorm" not in name:
                param.normal_(0.0, init)
    return model


def effective(model) -> dict[str, torch.Tensor]:
    """The prunable weights as the forward pass sees them (masked under a weight mask)."""
    out = {}
    for name in prunable_parameters(model):
        module_name, attr = name.rsplit(".", 1)
        out[name] = getattr(model.get_submodule(module_name), attr).detach().clone()
    return out


def kept_after(total: int, rounds: int, amount: float = 0.1) -> int:
    kept = total
    for _ in range(rounds):
        kept -= round(amount * kept)
    return kept


# ------------------------------------------------------------------------------------------------
# rewinding and one round


def test_starting_model_is_the_pretrained_encoder_with_the_seeded_classifier(tiny_model_dir):
    a = starting_model(str(tiny_model_dir), RTE, 5, TRAINING)
    b = starting_model(str(tiny_model_dir), RTE, 5, TRAINING)
    c = starting_model(str(tiny_model_dir), RTE, 6, TRAINING)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # the same seed: the same model, classifier included
    assert not torch.equal(sa["classifier.weight"], sc["classifier.weight"])  # the seed initialises it
    assert torch.equal(sa["bert.encoder.layer.0.attention.self.query.weight"],
                       sc["bert.encoder.layer.0.attention.self.query.weight"])  # the pre-trained encoder


def test_rewind_restores_every_weight_and_masks_the_pruned_ones(tiny_model_dir):
    start = starting_model(str(tiny_model_dir), RTE, 5, TRAINING)
    point = {k: v.clone() for k, v in start.state_dict().items()}
    pool = MP.MagnitudePool.from_model(start)
    with torch.no_grad():  # "trained": every weight moved
        for param in start.parameters():
            param.add_(1.0)
    kept = MP.l1_step(pool.magnitude, torch.ones(pool.total, dtype=torch.bool), 0.5)
    IM.rewind(start, point, pool, kept)
    masks = pool.split(kept)
    for name, value in effective(start).items():
        assert torch.equal(value, torch.where(masks[name], point[name], torch.zeros(())))
    fresh = starting_model(str(tiny_model_dir), RTE, 5, TRAINING).state_dict()
    for name in ("classifier.weight", "classifier.bias", "bert.embeddings.word_embeddings.weight",
                 "bert.encoder.layer.1.output.LayerNorm.weight"):
        assert torch.equal(start.state_dict()[name], fresh[name])  # the seeded classifier, the pre-trained rest


def test_pruned_weights_stay_zero_through_a_round(tmp_path):
    start = tiny_bert(seed=0)
    point = {k: v.clone() for k, v in start.state_dict().items()}
    split = self_labelled_split(tiny_bert(seed=3), n=16)
    pool = MP.MagnitudePool.from_model(start)
    kept = MP.l1_step(pool.magnitude, torch.ones(pool.total, dtype=torch.bool), 0.4)
    score, values, summary, magnitude = IM.run_round(
        start, point, pool, kept, RTE, split, split, i_settings(), TRAINING, seed=1, device=torch.device("cpu"),
        work_dir=tmp_path / "round", progress=False, padding_free=True)
    assert summary["steps"] == 2 and 0 <= score <= 1 and "accuracy" in values
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in start.modules())  # zeros baked in
    trained = torch.cat([p.detach().reshape(-1) for p in
                         (prunable_parameters(start)[n] for n in pool.names)])
    assert torch.all(trained[~kept] == 0) and torch.all(magnitude[~kept] == 0)
    before = torch.cat([point[n].reshape(-1) for n in pool.names])
    assert not torch.equal(trained[kept], before[kept])  # the kept weights were trained
    assert torch.equal(magnitude, trained.abs())


# ------------------------------------------------------------------------------------------------
# the loop, with scripted dev scores and a stand-in fine-tune


def scripted(monkeypatch, scores):
    """Dev scores in call order (S0 first); each 'fine-tune' moves every kept weight by seeded noise."""
    calls = []

    def fake_dev_score(model, spec, split, batch_size, progress, padding_free=True):
        calls.append(sum(int((w != 0).sum()) for w in effective(model).values()))
        return scores[len(calls) - 1], {"accuracy": scores[len(calls) - 1]}

    def fake_train(model, split, settings, seed, *, out_dir, device, progress=True, job=None):
        generator = torch.Generator().manual_seed(len(calls))
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
        return {"steps": 1, "final_loss": 0.5, "train_time_s": 0.0}

    monkeypatch.setattr(IM, "dev_score", fake_dev_score)
    monkeypatch.setattr(IM, "train", fake_train)
    return calls


@pytest.mark.parametrize("scores, max_rounds, good_round, note", [
    ([1.0, 0.95, 0.92, 0.5], 10, 2, "round 3 scored below"),   # the last round above the limit
    ([1.0, 0.9, 0.89], 10, 1, "round 2 scored below"),          # score == T passes
    ([1.0, 0.95, 0.95], 2, 2, "cap of 2 rounds"),               # a passing last round at the cap is saved
    ([1.0, 0.5], 10, 0, "round 1 already scored below"),        # the empty pruning: the full mask
    ([-0.3], 10, 0, "S0 < 0"),                                  # no round at all
])
def test_stop_rule(monkeypatch, scores, max_rounds, good_round, note):
    calls = scripted(monkeypatch, scores)
    finetuned, start = tiny_bert(seed=3), tiny_bert(seed=0)
    split = self_labelled_split(finetuned, n=4)
    result = IM.find_i_mask(finetuned, start, RTE, split, split, i_settings(max_rounds=max_rounds), TRAINING,
                            seed=1, progress=False)
    total = result.good.total
    assert result.rounds_taken == len(scores) - 1 == len(calls) - 1
    assert result.round == good_round and note in result.note
    assert result.good.kept == kept_after(total, good_round)
    assert result.score == scores[good_round] and result.s0 == scores[0]
    assert result.random.kept == result.bad.kept == result.good.kept
    assert [row["accepted"] for row in result.trace] == [s >= 0.9 * scores[0] for s in scores]
    # round k trained and scored a model with exactly k rounds of pruning (10 % of the remaining each)
    assert calls == [kept_after(total, k) for k in range(len(calls))]


def test_round_one_prunes_what_m_prunes_first_and_later_rounds_rank_the_retrained_weights(monkeypatch):
    calls = scripted(monkeypatch, [1.0, 0.99, 0.98, 0.97, 0.0])
    finetuned, start = tiny_bert(seed=3), tiny_bert(seed=0)
    split = self_labelled_split(finetuned, n=4)
    result = IM.find_i_mask(finetuned, start, RTE, split, split, i_settings(), TRAINING, seed=1, progress=False)
    assert result.round == 3 and len(calls) == 5
    pool = MP.MagnitudePool.from_model(finetuned)
    full = torch.ones(pool.total, dtype=torch.bool)
    m_steps = [full]
    for _ in range(3):
        m_steps.append(MP.l1_step(pool.magnitude, m_steps[-1], 0.1))
    flat = torch.cat([result.good.masks[n].reshape(-1) for n in pool.names])
    rounds = [row["prunable_kept"] for row in result.trace]
    assert rounds == [int(m.sum()) for m in m_steps] + [kept_after(pool.total, 4)]  # the same counts as m
    assert not torch.equal(flat, m_steps[3])  # but rounds 2-3 ranked the retrained weights, not the fine-tuned


def test_round_one_equals_m_step_one(monkeypatch):
    scripted(monkeypatch, [1.0, 0.95, 0.0])
    finetuned, start = tiny_bert(seed=3), tiny_bert(seed=0)
    split = self_labelled_split(finetuned, n=4)
    result = IM.find_i_mask(finetuned, start, RTE, split, split, i_settings(), TRAINING, seed=1, progress=False)
    pool = MP.MagnitudePool.from_model(finetuned)
    step1 = MP.l1_step(pool.magnitude, torch.ones(pool.total, dtype=torch.bool), 0.1)
    assert result.round == 1 and result.good == pool.weight_mask(step1)


def test_random_and_bad_masks_follow_m_rules_with_their_own_draws(monkeypatch):
    scripted(monkeypatch, [1.0, 0.95, 0.95, 0.0])
    finetuned, start = tiny_bert(seed=3), tiny_bert(seed=0)
    split = self_labelled_split(finetuned, n=4)
    result = IM.find_i_mask(finetuned, start, RTE, split, split, i_settings(), TRAINING, seed=1, progress=False)
    pool = MP.MagnitudePool.from_model(finetuned)
    good = torch.cat([result.good.masks[n].reshape(-1) for n in pool.names])
    n_kept = int(good.sum())
    bad = torch.cat([result.bad.masks[n].reshape(-1) for n in pool.names])
    assert torch.equal(bad, MP.bad_kept_code(pool.magnitude, n_kept))  # code: keep the smallest fine-tuned |w|
    random = torch.cat([result.random.masks[n].reshape(-1) for n in pool.names])
    m_random = MP.random_kept(pool.total, n_kept, MP._generator("RTE", 1, "random"))
    i_random = MP.random_kept(pool.total, n_kept, MP._generator("RTE", 1, "i-random"))
    assert torch.equal(random, i_random) and not torch.equal(random, m_random)
    for kind in ("good", "random", "bad"):
        mask = getattr(result, kind)
        assert mask.meta["family"] == "i" and mask.meta["kind"] == kind and mask.meta["round"] == "2"


def test_bad_settings_are_errors():
    finetuned = tiny_bert(seed=3)
    split = self_labelled_split(finetuned, n=4)
    with pytest.raises(BertLotteryError, match="max_round"):
        IPruningSettings.from_arg('{"max_round": 3}', "settings")
    with pytest.raises(BertLotteryError, match="bad_mode 'worst'"):
        IM.find_i_mask(finetuned, tiny_bert(), RTE, split, split, i_settings(bad_mode="worst"), TRAINING, seed=1)
    apply_weight_mask(finetuned, MP.MagnitudePool.from_model(finetuned).weight_mask(
        torch.ones(MP.MagnitudePool.from_model(finetuned).total, dtype=torch.bool)))
    with pytest.raises(BertLotteryError, match="without a weight mask"):
        IM.find_i_mask(finetuned, tiny_bert(), RTE, split, split, i_settings(), TRAINING, seed=1)


# ------------------------------------------------------------------------------------------------
# real rounds: resuming, and retraining the good mask repeats its round


def test_retraining_the_good_mask_from_a_fresh_start_repeats_the_accepted_round():
    finetuned = tiny_bert(seed=3)
    split = self_labelled_split(finetuned, n=16, seed=3)
    settings = i_settings(max_rounds=2, threshold=0.1)
    result = IM.find_i_mask(finetuned, tiny_bert(seed=0), RTE, split, split, settings, TRAINING, seed=4,
                            progress=False)
    assert result.round >= 1
    fresh = tiny_bert(seed=0)  # the same starting model, built anew: what `finetune --mask` starts from
    apply_weight_mask(fresh, result.good)
    train(fresh, split, TRAINING, 4, out_dir=_tmp_dir(), device=torch.device("cpu"), progress=False)
    score, _ = MP.dev_score(fresh, RTE, split, 16, False)
    assert score == result.score


def _tmp_dir():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="imp-test-"))


def test_kill_and_resume_gives_the_same_masks(tmp_path, killed_then_resumed):
    finetuned = tiny_bert(seed=3)
    split = self_labelled_split(finetuned, n=16, seed=3)
    settings = i_settings(max_rounds=3, threshold=0.1)
    reference = IM.find_i_mask(finetuned, tiny_bert(seed=0), RTE, split, split, settings, TRAINING, seed=4,
                               progress=False)
    assert reference.rounds_taken == 3
    state_dir = tmp_path / "state"
    def search(**kwargs):  # a new process: the starting model loaded anew (a round trains it in place)
        return IM.find_i_mask(finetuned, tiny_bert(seed=0), RTE, split, split, settings, TRAINING, seed=4,
                              progress=False, **kwargs)

    resumed, reported = killed_then_resumed(search, state_dir, IM.STATE_FILE, kill_after=1)
    assert reported[0] == 2  # round 1 came from the state
    assert resumed.good == reference.good and resumed.random == reference.random and resumed.bad == reference.bad
    assert [r["score"] for r in resumed.trace] == [r["score"] for r in reference.trace]
    assert not (state_dir / IM.ROUND_DIR).exists()
    clear_state(state_dir, IM.STATE_FILE)
    assert not state_dir.exists()


def test_command_writes_three_masks_the_record_and_the_trace(tmp_path, tiny_model_dir, rte_small):
    training = {"learning_rate": 1e-3, "batch_size": 32, "epochs": 1, "max_seq_length": 64, "eval_batch_size": 48,
                "checkpoint_every_steps": 0}
    settings = TrainingSettings.from_dict(training, where="training")
    starting_model(str(tiny_model_dir), RTE, 86, settings).save_pretrained(tmp_path / "finetuned")
    out = tmp_path / "out"
    IM.main_find_i_mask(["--task", "RTE", "--seed", "86", "--model-dir", str(tmp_path / "finetuned"),
                         "--pretrained", str(tiny_model_dir), "--data-dir", str(rte_small), "--out-dir", str(out),
                         "--training", json.dumps(training),
                         "--settings", json.dumps({"max_rounds": 2, "threshold": 0.5, "batch_size": 48})])
    masks = {kind: WeightMask.load(out / f"{kind}.safetensors") for kind in ("good", "random", "bad")}
    assert len({m.kept for m in masks.values()}) == 1 and masks["good"].meta["family"] == "i"
    record = json.loads((out / "search.json").read_text())
    trace = json.loads((out / "trace.json").read_text())
    assert record["family"] == "i" and record["mask_size"]["good"]["prunable_kept"] == masks["good"].kept
    assert record["good_round"] == trace["good_round"] and record["rounds_taken"] == len(trace["rounds"]) - 1 <= 2
    assert record["cost"]["fine_tunes"] == record["rounds_taken"] and record["note"]
    assert [r["round"] for r in record["rounds"]] == list(range(record["rounds_taken"] + 1))
    assert all(r["wall_time_s"] >= 0 and r["cpu_time_s"] >= 0 for r in record["rounds"])
    kept = [r["prunable_kept"] for r in trace["rounds"]]
    assert kept == [kept_after(kept[0], k) for k in range(len(kept))]
    assert not (out / "search_state").exists()
