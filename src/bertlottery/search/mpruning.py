"""m-pruning (paper §3.2; docs/protocol.md §m-pruning): iterative global magnitude pruning of individual weights.

Each step is `torch.nn.utils.prune.global_unstructured(L1Unstructured, amount)` over the prunable pool
(`model.prunable_parameters`: Q/K/V, attention-output and intermediate weights and biases, output dense
weight; 85,008,384 values in bert-base): it removes round(amount * n) of the n still-unpruned values,
those with the smallest fine-tuned |w|, ranked globally. Weights are never changed; the masks are
applied to the fine-tuned model and the dev score checked after each step. The pool is one flat
tensor, in the original's parameter order (key before query), so ties fall as torch's topk puts them.

Stop rule (find_global_weight_mask.py): continue while score >= threshold * S0, at most
`max_iterations` steps; the saved mask is the one before the last step taken. That is the right one
when the last step failed; when the cap ends the loop after a passing step it is one step short
(`cap_quirk`, max saved sparsity 1 - 0.9^9 = 61.3 %); cap_quirk=False saves the last passing step.
S0 < 0 (T > S0): the loop never runs (the original then crashes on an unassigned mask); the full
mask is saved.

Random and bad masks have exactly the good mask's pruned count (the original recomputed it from a
float32 fraction, which can be off by a few values):
* random: global uniform choice, like RandomUnstructured (prune the top-k of uniform draws), drawn
  from a torch.Generator seeded from (task, seed, "random"), so reruns are identical (the original
  drew from the global torch RNG after set_seed(seed));
* bad, "code" (the original): prune the largest |w|, i.e. keep the smallest-magnitude values;
* bad, "paper" (the paper's wording, §4.2): all pruned-away values plus a random sample of survivors when the pruned
  fraction p < 0.5, else a random sample of the pruned-away values; seeded from (task, seed, "bad").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.nn.utils import parametrize

from bertlottery.errors import BertLotteryError
from bertlottery.glue import metrics as M
from bertlottery.glue.splits import TokenizedSplit
from bertlottery.glue.tasks import TaskSpec
from bertlottery.families import M as M_FAMILY
from bertlottery.io import write_json
from bertlottery.layout import SEARCH_RECORD, SEARCH_TRACE, mask_name
from bertlottery.masks.seeds import M_MASKS, derive_seed, seeded_generator
from bertlottery.masks.types import WeightMask
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.structure import prunable_parameters, prunable_roles
from bertlottery.modeling.weight_masks import apply_weight_mask
from bertlottery.runtime import device_name
from bertlottery.search.inputs import SearchJob, load_search_inputs, search_parser
from bertlottery.search.state import StateStore, split_fingerprint
from bertlottery.search.state import clear_state
from bertlottery.settings import MPruningSettings, config_hash, provenance
from bertlottery.train.evaluation import split_evaluation

BAD_MODES = ("code", "paper")
STATE_FILE = "m_search_state.safetensors"
# The original's per-layer order of the pool (run_glue.parameters_to_prune), by role (structure.PRUNABLE_ROLES);
# it only decides ties. Every encoder family's pool is in this order: K, Q, V (ModernBERT: its fused QKV),
# attention output, MLP in, MLP out.
ORIGINAL_ROLES = (
    "qkv.weight", "qkv.bias", "key.weight", "key.bias", "query.weight", "query.bias", "value.weight", "value.bias",
    "attn_out.weight", "attn_out.bias", "mlp_in.weight", "mlp_in.bias", "mlp_out.weight",
)


def original_order(roles: dict[str, tuple[int, str]]) -> list[str]:
    """Parameter names (structure.prunable_roles) grouped by layer, each layer in ORIGINAL_ROLES order."""
    rank = {role: i for i, role in enumerate(ORIGINAL_ROLES)}
    return sorted(roles, key=lambda name: (roles[name][0], rank[roles[name][1]]))


@dataclass
class MagnitudePool:
    """The prunable values as one flat CPU float32 vector of fine-tuned |w|, with their layout."""

    names: list[str]
    shapes: list[torch.Size]
    magnitude: torch.Tensor

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> "MagnitudePool":
        params = prunable_parameters(model)
        names = original_order(prunable_roles(model))
        with torch.no_grad():
            flat = torch.cat([params[n].detach().reshape(-1).float().cpu() for n in names])
        return cls(names, [params[n].shape for n in names], flat.abs_())

    @property
    def total(self) -> int:
        return self.magnitude.numel()

    def split(self, kept: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat kept-vector as {parameter name: bool tensor of the parameter's shape}."""
        parts = torch.split(kept, [s.numel() for s in self.shapes])
        return {name: part.view(shape) for name, part, shape in zip(self.names, parts, self.shapes)}

    def weight_mask(self, kept: torch.Tensor, **meta) -> "WeightMask":  # noqa: F821
        return WeightMask(self.split(kept), {k: str(v) for k, v in meta.items()})

    def fingerprint(self) -> str:
        return f"{self.total}|{float(self.magnitude.double().sum()):.12e}"


def l1_step(magnitude: torch.Tensor, kept: torch.Tensor, amount: float) -> torch.Tensor:
    """One global_unstructured(L1Unstructured, amount) step: prune round(amount * n) of the n kept
    values, the smallest |w|; topk runs on the kept values in pool order, as torch's PruningContainer."""
    n_kept = int(kept.sum())
    n_prune = round(amount * n_kept)  # torch's _compute_nparams_toprune (Python round)
    new = kept.clone()
    if n_prune == 0:
        return new
    smallest = torch.topk(magnitude[kept], k=n_prune, largest=False).indices
    sub = torch.ones(n_kept, dtype=torch.bool)
    sub[smallest] = False
    new[kept] = sub
    return new


def _generator(task: str, seed: int, kind: str) -> torch.Generator:
    return seeded_generator(task, seed, kind, recipe=M_MASKS)


def _sample(candidates: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """A uniform random subset of n candidates, as a bool vector."""
    scores = torch.rand(candidates.numel(), generator=generator)
    scores[~candidates] = -1.0
    chosen = torch.zeros_like(candidates)
    chosen[torch.topk(scores, k=n).indices] = True
    return chosen


def random_kept(total: int, n_kept: int, generator: torch.Generator) -> torch.Tensor:
    """RandomUnstructured over the whole pool: prune the total - n_kept largest uniform draws."""
    kept = torch.ones(total, dtype=torch.bool)
    kept[torch.topk(torch.rand(total, generator=generator), k=total - n_kept).indices] = False
    return kept


def bad_kept_code(magnitude: torch.Tensor, n_kept: int) -> torch.Tensor:
    """The original's "inverse magnitude" mask: prune the largest |w|, keep the n_kept smallest."""
    kept = torch.ones(magnitude.numel(), dtype=torch.bool)
    kept[torch.topk(magnitude, k=magnitude.numel() - n_kept, largest=True).indices] = False
    return kept


def bad_kept_paper(good: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The paper's wording (§4.2): the pruned-away values plus random survivors (p < 0.5), or a random sample of the
    pruned-away values (p >= 0.5); always as many kept as the good mask."""
    n_kept = int(good.sum())
    pruned = ~good
    n_pruned = good.numel() - n_kept
    if n_pruned / good.numel() < 0.5:
        return pruned | _sample(good, n_kept - n_pruned, generator)
    return _sample(pruned, n_kept, generator)


# ----------------------------------------------------------------------------------------------
# The search


@dataclass
class MSearchResult:
    good: "WeightMask"  # noqa: F821
    random: "WeightMask"  # noqa: F821
    bad: "WeightMask"  # noqa: F821
    trace: list[dict]  # one row per dev evaluation; row 0 = the full model
    s0: float
    threshold: float  # T = threshold * S0
    score: float  # stop-rule score of the good mask
    steps: int  # pruning steps in the good mask (its kept fraction is ~ (1 - amount) ** steps)


def dev_score(model, spec: TaskSpec, split: TokenizedSplit, batch_size: int, progress: bool,
              padding_free: bool = True):
    values, _ = split_evaluation(model, spec, split, batch_size=batch_size, padding_free=padding_free,
                                 progress=progress)
    return float(M.stop_score(spec, values)), values


def unmask(model: torch.nn.Module) -> None:
    """Drop weight-mask parametrizations and restore the stored (unmasked) weights."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for attr in list(module.parametrizations):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=False)


def _row(step: int, kept: torch.Tensor, score: float, values: dict, accepted: bool) -> dict:
    n = int(kept.sum())
    return {"iteration": step, "prunable_kept": n, "prunable_total": kept.numel(),
            "kept_fraction": n / kept.numel(), "score": score, "accepted": accepted, "metrics": values}


def find_m_mask(
    model: torch.nn.Module,
    spec: TaskSpec,
    dev_split: TokenizedSplit,
    settings: MPruningSettings | None = None,
    *,
    seed: int,
    state_dir: str | Path | None = None,
    progress: bool = True,
    padding_free: bool = True,
    on_iteration: Callable[[int], None] | None = None,
) -> MSearchResult:
    """Good, random and bad weight masks of (task, seed) (see the module docstring), with the config's
    `m_pruning` section (default: the schema's defaults).

    With `state_dir`, the state after every dev evaluation is saved there (no tensors: the masks follow
    from the step count by replaying the deterministic pruning steps); a rerun with the same
    settings, model and data resumes from it. `clear_state(state_dir, STATE_FILE)` removes it."""
    settings = settings or MPruningSettings.from_dict({}, where="m_pruning")
    threshold, amount, max_iterations = settings.threshold, settings.amount, settings.max_iterations
    cap_quirk, batch_size, bad_mode = settings.cap_quirk, settings.batch_size, settings.bad_mode
    if bad_mode not in BAD_MODES:
        raise BertLotteryError(f"m_pruning.bad_mode {bad_mode!r}: expected one of {', '.join(BAD_MODES)}")
    if len(dev_split) == 0:
        raise BertLotteryError("m-pruning: the dev split is empty; expected the task's prepared dev examples")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise BertLotteryError("m-pruning needs the fine-tuned model without a weight mask applied")
    pool = MagnitudePool.from_model(model)
    settings_hash = config_hash({"threshold": threshold, "amount": amount, "max_iterations": max_iterations,
                                 "batch_size": batch_size, "task": spec.name, "pool": pool.fingerprint(),
                                 "dev": split_fingerprint(dev_split)})
    store = StateStore(None if state_dir is None else Path(state_dir), STATE_FILE, settings_hash, "m-pruning")
    state = _load_state(store)
    try:
        if state is None:
            s0, values = dev_score(model, spec, dev_split, batch_size, progress, padding_free)
            state = {"s0": s0, "trace": [_row(0, torch.ones(pool.total, dtype=torch.bool), s0, values, True)],
                     "done": False}
            _save_state(store, state, on_iteration)
        limit = threshold * state["s0"]
        # The masks of the last two steps (the saved one is one of them); replay finished steps on resume.
        previous = kept = torch.ones(pool.total, dtype=torch.bool)
        for _ in range(len(state["trace"]) - 1):
            previous, kept = kept, l1_step(pool.magnitude, kept, amount)
        _check_replay(state, kept)
        while not state["done"]:
            step = len(state["trace"]) - 1
            if step >= max_iterations or not state["trace"][-1]["score"] >= limit:
                state["done"] = True
                _save_state(store, state, None)
                break
            previous, kept = kept, l1_step(pool.magnitude, kept, amount)
            apply_weight_mask(model, pool.weight_mask(kept))
            score, values = dev_score(model, spec, dev_split, batch_size, progress, padding_free)
            state["trace"].append(_row(step + 1, kept, score, values, score >= limit))
            if progress:
                print(f"m-pruning step {step + 1}: kept {int(kept.sum()) / pool.total:.4f}, score {score:.4f} "
                      f"({'pass' if score >= limit else 'fail'}; limit {limit:.4f})")
            _save_state(store, state, on_iteration)
    finally:
        unmask(model)
    steps = saved_steps(state["trace"], limit, max_iterations, cap_quirk)
    good = kept if steps == len(state["trace"]) - 1 else previous
    return _derive(pool, state, good, steps, limit, spec.name, seed, bad_mode)


def saved_steps(trace: list[dict], limit: float, max_iterations: int, cap_quirk: bool) -> int:
    """Steps in the saved mask: the one before the last step taken (the original), or the last step
    itself when it passed at the cap and cap_quirk is off. No step taken (S0 < T): 0."""
    taken = len(trace) - 1
    if taken == 0:
        return 0
    if not cap_quirk and taken == max_iterations and trace[-1]["score"] >= limit:
        return taken
    return taken - 1


# How the random and bad weight masks are drawn, by m_pruning.bad_mode (their masks' `method`).
RANDOM_METHOD = "global uniform random, same count"
BAD_METHODS = {"code": "keep the smallest |w|, same count", "paper": "pruned-away plus random, same count (paper text)"}


def random_and_bad(pool: MagnitudePool, good: torch.Tensor, *, task: str, seed: int, bad_mode: str,
                   draw_prefix: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """The random and bad kept-vectors of a good weight mask, each keeping exactly as many values: m's rules
    (module docstring), for every weight-mask family. "code" ranks the pool's magnitudes (the fine-tuned
    |w|). The draws come from the generators of (task, seed, draw_prefix + "random" / "bad"): m's own have
    no prefix, so its masks stay what they were; another family names its own draws (family i: "i-")."""
    if bad_mode not in BAD_MODES:
        raise BertLotteryError(f"bad_mode {bad_mode!r}: expected one of {', '.join(BAD_MODES)}")
    n_kept = int(good.sum())
    random = random_kept(pool.total, n_kept, _generator(task, seed, f"{draw_prefix}random"))
    if bad_mode == "code":
        return random, bad_kept_code(pool.magnitude, n_kept)
    return random, bad_kept_paper(good, _generator(task, seed, f"{draw_prefix}bad"))


def _derive(pool: MagnitudePool, state: dict, good: torch.Tensor, steps: int, limit: float, task: str, seed: int,
            bad_mode: str) -> MSearchResult:
    """The result: the good mask, its random and bad counterparts (same kept count) and the summary."""
    random, bad = random_and_bad(pool, good, task=task, seed=seed, bad_mode=bad_mode)
    meta = {"task": task, "seed": seed, "family": M_FAMILY, "iteration": steps}
    methods = {"good": "global L1 magnitude (iterative)", "random": RANDOM_METHOD, "bad": BAD_METHODS[bad_mode]}
    masks = {kind: pool.weight_mask(kept, kind=kind, method=methods[kind], **meta)
             for kind, kept in (("good", good), ("random", random), ("bad", bad))}
    trace = state["trace"]
    return MSearchResult(masks["good"], masks["random"], masks["bad"], trace, state["s0"], limit,
                         trace[steps]["score"], steps)


def _check_replay(state: dict, kept: torch.Tensor) -> None:
    expected = state["trace"][-1]["prunable_kept"]
    if int(kept.sum()) != expected:
        raise BertLotteryError(f"m-pruning state: replaying {len(state['trace']) - 1} steps kept {int(kept.sum())} "
                               f"values, the saved state says {expected}; delete the state directory")


def _save_state(store: StateStore, state: dict, on_iteration) -> None:
    store.save(state)
    if on_iteration is not None:
        on_iteration(len(state["trace"]) - 1)


def _load_state(store: StateStore) -> dict | None:
    saved = store.load()
    return None if saved is None else {k: saved[0][k] for k in ("s0", "trace", "done")}


# ----------------------------------------------------------------------------------------------
# Outputs and command line


def write_outputs(result: MSearchResult, out_dir: str | Path, *, spec: TaskSpec, seed: int, settings: MPruningSettings,
                  model_config, started: float | None = None, device: str = "cpu") -> None:
    """The good, random and bad masks, the trace (per-step scores) and the search record (summary, sizes)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    masks = {"good": result.good, "random": result.random, "bad": result.bad}
    for kind, mask in masks.items():
        mask.save(out_dir / mask_name(kind))
    write_json(out_dir / SEARCH_TRACE, {"task": spec.name, "seed": seed, "s0": result.s0,
                                        "threshold": result.threshold, "saved_step": result.steps,
                                        "iterations": result.trace})
    write_json(out_dir / SEARCH_RECORD, {
        "task": spec.name, "seed": seed, "family": M_FAMILY, "stop_metric": spec.stop_metric, "s0": result.s0,
        "threshold_fraction": settings.threshold, "threshold": result.threshold, "score": result.score,
        "steps_taken": len(result.trace) - 1, "saved_step": result.steps,
        "pruned_fraction": 1 - result.good.fraction,
        "mask_size": {kind: size_of(model_config, mask) for kind, mask in masks.items()},
        "settings": settings.to_dict(), "random_seed": derive_seed(spec.name, seed, "random", recipe=M_MASKS),
        **provenance(started, settings, device),
    })


def main_find_m_mask(argv: list[str]) -> None:
    parser = search_parser("bertlottery find-m-mask", __doc__.split("\n")[0], "m_pruning")
    args = parser.parse_args(argv)
    inputs = load_search_inputs(SearchJob.from_args(args, "m_pruning"))
    spec, settings, state_dir, started = inputs.spec, inputs.settings, inputs.state_dir, inputs.started
    model, split, device = inputs.model, inputs.dev_split, inputs.device
    result = find_m_mask(model, spec, split, settings, seed=args.seed, state_dir=state_dir,
                         padding_free=args.padding_free)
    write_outputs(result, args.out_dir, spec=spec, seed=args.seed, settings=settings, model_config=model.config,
                  started=started, device=device_name(device))
    clear_state(state_dir, STATE_FILE)
    print(f"{spec.name} seed {args.seed} m-pruning: kept {result.good.fraction:.4f} of the prunable weights "
          f"after {result.steps} steps, {spec.stop_metric} {result.score:.4f} "
          f"(S0 {result.s0:.4f}, limit {result.threshold:.4f})")
