"""i-pruning: iterative magnitude pruning with rewinding (IMP; Chen et al. 2020, "The Lottery Ticket Hypothesis for
Pre-trained BERT Networks"; open_lth's `lottery` levels), family i, beyond the paper (docs/protocol.md §i-pruning).

Round 0 is the full fine-tune of (task, seed): the fine-tuned model every search starts from, whose dev score is
S0. Round k >= 1:

1. prune: remove `amount` (10 %) of the prunable values still kept, those with the smallest |w| of round k - 1's
   trained weights, ranked globally over m-pruning's pool (`mpruning.MagnitudePool` and `mpruning.l1_step`: the
   same pool, order, rounding and ties as an m-step, so round 1 prunes exactly what m's first step prunes);
2. rewind: every weight back to the model a fine-tune of this seed starts from (`train.loop.starting_model`: the
   pre-trained encoder, and the classifier as the seed initialises it), the mask applied as a weight-mask
   parametrization, so pruned values are exactly 0 through the whole round;
3. retrain: one fine-tune (`train.loop.train`: the task's training settings, epochs and data, the same seed),
   then the dev score S_k of the trained masked model.

Stop rule: continue while S_k >= threshold x S0, for at most `max_rounds` rounds; the good mask is that of the last
round that passed (round 0, the full mask, when round 1 already fails or S0 < 0). Unlike m-pruning's cap quirk,
a passing last round at the cap is saved. Retraining the good mask (rule retrain, variant good) repeats the
accepted round's fine-tune.

Random and bad masks keep exactly the good mask's count, by m's rules (`mpruning.random_and_bad`, ranked by the
fine-tuned |w|), from draws of their own: the generators of (task, seed, "i-random" / "i-bad").

Cost: one fine-tune and one dev evaluation per round, up to `max_rounds` rounds. The state (trace and the masks
as tensors) is saved after every round and a round's fine-tune checkpoints like any fine-tune, so a killed
job resumes at the round, and step, where it was.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn.utils import parametrize

from bertlottery.errors import BertLotteryError
from bertlottery.families import IMP
from bertlottery.glue.splits import TokenizedSplit, load_split
from bertlottery.glue.tasks import TaskSpec
from bertlottery.io import write_json
from bertlottery.layout import SEARCH_RECORD, SEARCH_TRACE, mask_name
from bertlottery.masks.seeds import M_MASKS, derive_seed
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.weight_masks import apply_weight_mask, remove_weight_mask
from bertlottery.runtime import configure_torch, device_name
from bertlottery.search.inputs import SearchJob, load_search_inputs, search_parser
from bertlottery.search.mpruning import (
    BAD_METHODS,
    BAD_MODES,
    RANDOM_METHOD,
    MagnitudePool,
    dev_score,
    l1_step,
    random_and_bad,
    unmask,
)
from bertlottery.search.state import StateStore, clear_state, model_fingerprint, split_fingerprint
from bertlottery.settings import IPruningSettings, TrainingSettings, config_hash, provenance
from bertlottery.train.loop import starting_model, train

STATE_FILE = "i_search_state.safetensors"
ROUND_DIR = "round"  # the running round's fine-tune folder (its resumable checkpoint) inside the state folder
DRAW_PREFIX = f"{IMP}-"  # the random and bad masks' draws: (task, seed, "i-random" / "i-bad")
GOOD_METHOD = "iterative magnitude pruning with rewinding to the pre-trained weights (IMP)"


@dataclass
class ISearchResult:
    good: WeightMask
    random: WeightMask
    bad: WeightMask
    trace: list[dict]  # row 0: the fine-tuned model (S0); row k: round k
    s0: float
    threshold: float  # T = threshold * S0
    score: float  # the good round's dev score (round 0: S0)
    round: int  # the good mask's round (0: nothing pruned)
    note: str  # why the good mask is the one it is

    @property
    def rounds_taken(self) -> int:
        return len(self.trace) - 1


def mask_digest(kept: torch.Tensor) -> str:
    """sha256 of a flat kept-vector: a round's fine-tune fingerprint names its mask (the weight-mask buffer is not
    in the state dict the fingerprint sums)."""
    return hashlib.sha256(kept.to(torch.uint8).cpu().numpy().tobytes()).hexdigest()


def rewind(model: torch.nn.Module, rewind_point: dict[str, torch.Tensor], pool: MagnitudePool,
           kept: torch.Tensor) -> None:
    """Every weight of `model` back to `rewind_point` (the pre-trained encoder and the seeded classifier), then the
    mask `kept` applied as a parametrization: pruned values are 0 in every forward and get no update."""
    unmask(model)
    model.load_state_dict(rewind_point)
    apply_weight_mask(model, pool.weight_mask(kept))


def run_round(model: torch.nn.Module, rewind_point: dict[str, torch.Tensor], pool: MagnitudePool,
              kept: torch.Tensor, spec: TaskSpec, train_split: TokenizedSplit, dev_split: TokenizedSplit,
              settings: IPruningSettings, training: TrainingSettings, *, seed: int, device: torch.device,
              work_dir: Path, progress: bool, padding_free: bool,
              job: dict | None = None) -> tuple[float, dict, dict, torch.Tensor]:
    """One round on `model`: rewind, mask with `kept`, fine-tune, score on dev. Returns the score, the metrics,
    the fine-tune's summary and the trained |w| of the pool (0 where pruned); `model` is left trained, its mask
    baked in as stored zeros."""
    rewind(model, rewind_point, pool, kept)
    identity = {"search": "i-pruning", "mask": mask_digest(kept), **(job or {})}
    summary = train(model, train_split, training, seed, out_dir=work_dir, device=device, progress=progress,
                    job=identity)
    score, values = dev_score(model, spec, dev_split, settings.batch_size, progress, padding_free)
    remove_weight_mask(model)
    return score, values, summary, MagnitudePool.from_model(model).magnitude


def _row(round_: int, kept: torch.Tensor, score: float, values: dict, accepted: bool, **extra) -> dict:
    n = int(kept.sum())
    return {"round": round_, "prunable_kept": n, "prunable_total": kept.numel(), "kept_fraction": n / kept.numel(),
            "sparsity": 1 - n / kept.numel(), "score": score, "accepted": accepted, "metrics": values, **extra}


def _check_inputs(finetuned: torch.nn.Module, start: torch.nn.Module, train_split: TokenizedSplit,
                  dev_split: TokenizedSplit, settings: IPruningSettings) -> None:
    if settings.bad_mode not in BAD_MODES:
        raise BertLotteryError(f"i_pruning.bad_mode {settings.bad_mode!r}: expected one of {', '.join(BAD_MODES)}")
    if len(dev_split) == 0 or len(train_split) == 0:
        raise BertLotteryError("i-pruning: the train or dev split is empty; expected the task's prepared examples")
    for what, model in (("fine-tuned", finetuned), ("starting", start)):
        if any(parametrize.is_parametrized(m) for m in model.modules()):
            raise BertLotteryError(f"i-pruning needs the {what} model without a weight mask applied")


def find_i_mask(
    finetuned: torch.nn.Module,
    start: torch.nn.Module,
    spec: TaskSpec,
    train_split: TokenizedSplit,
    dev_split: TokenizedSplit,
    settings: IPruningSettings | None = None,
    training: TrainingSettings | None = None,
    *,
    seed: int,
    device: torch.device | None = None,
    state_dir: str | Path | None = None,
    progress: bool = True,
    padding_free: bool = True,
    on_iteration: Callable[[int], None] | None = None,
) -> ISearchResult:
    """Good, random and bad weight masks of (task, seed) by IMP with rewinding (module docstring).

    `finetuned`: the full fine-tune of this seed (round 0: S0 and the first round's magnitudes; left unchanged).
    `start`: the model that fine-tune started from (`train.loop.starting_model` with the same seed); its weights
    are the rewind point, and every round trains it in place. `training`: the task's training settings.
    With `state_dir`, the state after every round is saved there and a rerun with the same inputs resumes from
    it; `clear_state(state_dir, STATE_FILE)` removes it (the round folder goes at the end of the search)."""
    settings = settings or IPruningSettings.from_dict({}, where="i_pruning")
    training = training or TrainingSettings.from_dict({}, where="training")
    device = device or next(start.parameters()).device
    _check_inputs(finetuned, start, train_split, dev_split, settings)
    pool = MagnitudePool.from_model(finetuned)
    start_pool = MagnitudePool.from_model(start)
    if start_pool.names != pool.names or start_pool.shapes != pool.shapes:
        raise BertLotteryError("i-pruning: the fine-tuned and the starting model have different prunable weights "
                               "(another architecture or model?)")
    rewind_point = {k: v.detach().cpu().clone() for k, v in start.state_dict().items()}
    fingerprint = config_hash({"settings": settings.to_dict(), "training": training.to_dict(), "seed": seed,
                               "task": spec.name, "pool": pool.fingerprint(), "dev": split_fingerprint(dev_split),
                               "start": model_fingerprint(start, train_split), "padding_free": padding_free})
    store = StateStore(None if state_dir is None else Path(state_dir), STATE_FILE, fingerprint, "i-pruning")
    scratch = tempfile.TemporaryDirectory(prefix="i-pruning-") if state_dir is None else None
    work_dir = Path(scratch.name if scratch else state_dir) / ROUND_DIR
    try:
        state, tensors = _load_state(store)
        if state is None:
            t0, c0 = time.time(), time.process_time()
            s0, values = dev_score(finetuned, spec, dev_split, settings.batch_size, progress, padding_free)
            full = torch.ones(pool.total, dtype=torch.bool)
            row = _row(0, full, s0, values, s0 >= settings.threshold * s0, wall_time_s=round(time.time() - t0, 3),
                       cpu_time_s=round(time.process_time() - c0, 3), train=None)
            state = {"s0": s0, "trace": [row], "done": False}
            tensors = {"good": full, "next": l1_step(pool.magnitude, full, settings.amount)}
            _save_state(store, state, tensors, on_iteration)
        limit = settings.threshold * state["s0"]
        while not state["done"]:
            k = len(state["trace"])
            if k > settings.max_rounds or not state["trace"][-1]["accepted"]:
                state["done"] = True
                tensors.pop("next", None)
                _save_state(store, state, tensors, None)
                break
            kept = tensors["next"]
            t0, c0 = time.time(), time.process_time()
            score, values, summary, magnitude = run_round(
                start, rewind_point, pool, kept, spec, train_split, dev_split, settings, training, seed=seed,
                device=device, work_dir=work_dir, progress=progress, padding_free=padding_free,
                job={"task": spec.name, "round": k})
            accepted = score >= limit
            train_row = {key: summary.get(key) for key in ("steps", "final_loss", "train_time_s")}
            state["trace"].append(_row(k, kept, score, values, accepted, wall_time_s=round(time.time() - t0, 3),
                                       cpu_time_s=round(time.process_time() - c0, 3), train=train_row))
            if accepted:
                tensors = {"good": kept, "next": l1_step(magnitude, kept, settings.amount)}
            if progress:
                print(f"i-pruning round {k}: kept {int(kept.sum()) / pool.total:.4f}, score {score:.4f} "
                      f"({'pass' if accepted else 'fail'}; limit {limit:.4f}; {time.time() - t0:.1f} s)")
            _save_state(store, state, tensors, on_iteration)
    finally:
        unmask(start)
        if scratch is not None:
            scratch.cleanup()
    shutil.rmtree(work_dir, ignore_errors=True)
    return _result(pool, state, tensors["good"], limit, spec.name, seed, settings)


def _result(pool: MagnitudePool, state: dict, good: torch.Tensor, limit: float, task: str, seed: int,
            settings: IPruningSettings) -> ISearchResult:
    trace = state["trace"]
    good_round = max((row["round"] for row in trace if row["accepted"]), default=0)
    if int(good.sum()) != trace[good_round]["prunable_kept"]:
        raise BertLotteryError(f"i-pruning state: the good mask keeps {int(good.sum())} values, round {good_round} "
                               f"kept {trace[good_round]['prunable_kept']}; delete the state directory")
    rounds = len(trace) - 1
    if not trace[0]["accepted"]:
        note = "S0 < 0: the limit is above S0, no round was run; the good mask is the full mask"
    elif good_round == 0:
        note = ("round 1 already scored below the limit: the good mask is the full mask (nothing pruned), "
                "the empty pruning")
    elif good_round == rounds:
        note = f"every round passed; stopped at the cap of {settings.max_rounds} rounds: the good mask is round {rounds}'s"
    else:
        note = f"round {rounds} scored below the limit: the good mask is round {good_round}'s, the last above it"
    random, bad = random_and_bad(pool, good, task=task, seed=seed, bad_mode=settings.bad_mode, draw_prefix=DRAW_PREFIX)
    meta = {"task": task, "seed": seed, "family": IMP, "round": good_round}
    methods = {"good": GOOD_METHOD, "random": RANDOM_METHOD, "bad": BAD_METHODS[settings.bad_mode]}
    masks = {kind: pool.weight_mask(kept, kind=kind, method=methods[kind], **meta)
             for kind, kept in (("good", good), ("random", random), ("bad", bad))}
    return ISearchResult(masks["good"], masks["random"], masks["bad"], trace, state["s0"], limit,
                         trace[good_round]["score"], good_round, note)


def _save_state(store: StateStore, state: dict, tensors: dict[str, torch.Tensor], on_iteration) -> None:
    store.save(state, tensors)
    if on_iteration is not None:
        on_iteration(len(state["trace"]) - 1)


def _load_state(store: StateStore) -> tuple[dict | None, dict[str, torch.Tensor]]:
    saved = store.load()
    if saved is None:
        return None, {}
    record, tensors = saved
    return {k: record[k] for k in ("s0", "trace", "done")}, {k: v.bool() for k, v in tensors.items()}


# ----------------------------------------------------------------------------------------------
# Outputs and command line


def write_outputs(result: ISearchResult, out_dir: str | Path, *, spec: TaskSpec, seed: int,
                  settings: IPruningSettings, training: TrainingSettings, model_config, started: float | None = None,
                  device: str = "cpu") -> None:
    """The good, random and bad masks, the trace (every round) and the search record (summary, cost, sizes)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    masks = {"good": result.good, "random": result.random, "bad": result.bad}
    for kind, mask in masks.items():
        mask.save(out_dir / mask_name(kind))
    write_json(out_dir / SEARCH_TRACE, {"task": spec.name, "seed": seed, "s0": result.s0, "threshold": result.threshold,
                                        "good_round": result.round, "rounds": result.trace})
    rounds = result.trace[1:]
    write_json(out_dir / SEARCH_RECORD, {
        "task": spec.name, "seed": seed, "family": IMP, "stop_metric": spec.stop_metric, "s0": result.s0,
        "threshold_fraction": settings.threshold, "threshold": result.threshold, "score": result.score,
        "rounds_taken": result.rounds_taken, "good_round": result.round, "note": result.note,
        "pruned_fraction": 1 - result.good.fraction,
        # per round: its sparsity, dev score, pass or fail and what it cost (one fine-tune + one dev evaluation)
        "rounds": [{key: row[key] for key in ("round", "sparsity", "score", "accepted", "wall_time_s", "cpu_time_s")}
                   for row in result.trace],
        "cost": {"fine_tunes": len(rounds), "wall_time_s": round(sum(r["wall_time_s"] for r in rounds), 3),
                 "cpu_time_s": round(sum(r["cpu_time_s"] for r in rounds), 3),
                 "per_round": "one fine-tune (training settings of the task) and one dev evaluation"},
        "mask_size": {kind: size_of(model_config, mask) for kind, mask in masks.items()},
        "settings": settings.to_dict(), "training_config_hash": config_hash(training),
        "random_seed": derive_seed(spec.name, seed, f"{DRAW_PREFIX}random", recipe=M_MASKS),
        **provenance(started, settings, device),
    })


def main_find_i_mask(argv: list[str]) -> None:
    parser = search_parser("bertlottery find-i-mask", __doc__.split("\n")[0], "i_pruning")
    parser.add_argument("--pretrained", required=True,
                        help="the pre-trained model every round rewinds to (config `model`: hub id or folder)")
    parser.add_argument("--training", required=True, help="the task's resolved training settings (JSON)")
    args = parser.parse_args(argv)
    training = TrainingSettings.from_arg(args.training, "training")
    inputs = load_search_inputs(SearchJob.from_args(args, "i_pruning"))
    configure_torch(training.tf32, training.deterministic)  # as every fine-tune of the task
    spec, settings, device = inputs.spec, inputs.settings, inputs.device
    start = starting_model(args.pretrained, spec, args.seed, training).to(device)
    train_split = load_split(args.data_dir, "train")
    result = find_i_mask(inputs.model, start, spec, train_split, inputs.dev_split, settings, training, seed=args.seed,
                         device=device, state_dir=inputs.state_dir, padding_free=args.padding_free)
    write_outputs(result, args.out_dir, spec=spec, seed=args.seed, settings=settings, training=training,
                  model_config=inputs.model.config, started=inputs.started, device=device_name(device))
    clear_state(inputs.state_dir, STATE_FILE)
    print(f"{spec.name} seed {args.seed} i-pruning: kept {result.good.fraction:.4f} of the prunable weights after "
          f"round {result.round} of {result.rounds_taken}, {spec.stop_metric} {result.score:.4f} "
          f"(S0 {result.s0:.4f}, limit {result.threshold:.4f}); {result.note}")
