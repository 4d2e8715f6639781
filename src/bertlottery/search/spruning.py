"""s-pruning (paper §3.3; docs/protocol.md §s-pruning): iterative importance-based masking of attention heads and MLPs.

One *importance pass* runs the dev set (eval mode, file order) through the model with soft masks
xi [L,H] and nu [L] as leaf tensors and accumulates |dLoss/dmask| per batch; the same pass gives the
dev predictions, hence the stop-rule score. The search then masks the lowest-importance elements
step by step while the score stays >= threshold * S0, in the original's phases:

* joint: 14 = int(amount * L * H) heads + 1 MLP per step, then 7 = 14 // 2 heads per step,
  then 1 MLP per step; each phase starts from the last accepted masks and its first step ranks
  with the importance computed at the failed step (find_head_mlp_masks.py);
* heads: 14 heads per step (find_head_masks.py), never a layer's last head (search/selection.py);
  mlps: 1 MLP per step (find_mlp_masks.py).

Fidelity notes (differences from the original code, all in corner cases):
* S0 < 0 (e.g. a CoLA model with negative MCC): T = 0.9 * S0 > S0, so the unpruned model already
  fails its own rule (the comparison is kept literally: score >= T). The original then crashes
  (its "last good" mask is never assigned); here every phase is skipped and the full mask is returned.
  S0 = 0 gives T = 0: every step with score >= 0 is accepted.
* Ties in importance are broken by the lower flat index (stable sort); the original's sort was unstable.
* Min-max scaling of a constant vector (e.g. a 1-layer model's single MLP) gives zeros, not 0/0 = NaN.
* When phase 1 runs out of heads after accepting a step, the original restores that step's MLP
  (its saved MLP mask is one step stale); here the accepted masks are kept as they are.
* The original divides head importance by the token count in the heads-only script only; it is
  undone by the per-layer normalisation, so it is not done here.
WNLI: S0 = 0.338 is below a constant predictor's accuracy, so T = 0.304 is always met and nearly
everything is pruned, as in the paper's masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bertlottery.errors import BertLotteryError
from bertlottery.glue import metrics as M
from bertlottery.glue.splits import TokenizedSplit
from bertlottery.glue.tasks import TaskSpec
from bertlottery.families import family_of_mode
from bertlottery.io import save_tensors, write_json
from bertlottery.layout import SEARCH_RECORD, SEARCH_TRACE, SEARCH_TRACE_TENSORS, mask_name
from bertlottery.masks.types import HeadMlpMask
from bertlottery.modeling.fit import full_head_mlp_mask
from bertlottery.modeling.sizes import size_of
from bertlottery.modeling.soft_masks import attach_soft_masks, detach_soft_masks
from bertlottery.modeling.unpadded import PackedBatch, classify
from bertlottery.progress import tqdm
from bertlottery.runtime import device_name
from bertlottery.search.inputs import SearchJob, load_search_inputs, search_parser
from bertlottery.search.selection import MODES, Phase, phases_for, propose
from bertlottery.search.state import StateStore, model_fingerprint
from bertlottery.search.state import clear_state
from bertlottery.settings import SPruningSettings, config_hash, provenance
from bertlottery.train.evaluation import iterate_batches, to_device

ACCUMULATIONS = ("cumulative", "per_batch")
STATE_FILE = "s_search_state.safetensors"


# ----------------------------------------------------------------------------------------------
# Importance pass


@dataclass
class PassResult:
    head_importance: torch.Tensor  # normalised [L, H], CPU float32
    mlp_importance: torch.Tensor  # normalised [L]
    metrics: dict[str, float]
    score: float  # the stop-rule metric


def task_loss(spec: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean loss of a batch, as the model's own: cross-entropy, or MSE for regression (STS-B)."""
    if spec.is_regression:
        return F.mse_loss(logits.reshape(-1).float(), labels.reshape(-1).float())
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).long())


def min_max(x: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1]; a constant vector (where the original divides 0 by 0) gives zeros."""
    if not torch.isfinite(x).all():
        raise BertLotteryError(f"importance scores: {int((~torch.isfinite(x)).sum())} of {x.numel()} are NaN or "
                               "infinite (a diverged model?); they cannot be ranked")
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else torch.zeros_like(x)


def normalize_head_importance(raw: torch.Tensor) -> torch.Tensor:
    """Per-layer l2 normalisation (+1e-20), then min-max over all heads, masked ones included."""
    per_layer = raw / (raw.pow(2).sum(-1, keepdim=True).pow(0.5) + 1e-20)
    return min_max(per_layer)


def normalize_mlp_importance(raw: torch.Tensor, n_tokens: float) -> torch.Tensor:
    """Divide by the number of non-padding tokens (no effect after scaling), then min-max over layers."""
    return min_max(raw / n_tokens)


def accumulate_gradients(
    model: torch.nn.Module,
    soft,
    spec: TaskSpec,
    split: TokenizedSplit,
    heads: torch.Tensor,
    mlps: torch.Tensor,
    *,
    batch_size: int = 64,
    accumulation: str = "cumulative",
    padding_free: bool = True,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, float, np.ndarray, float]:
    """Raw |gradient| sums of the head and MLP masks over the split, the token count, the logits and
    the mean loss per example.

    "cumulative" adds |G_t| with G_t = g_1 + ... + g_t, as the original (whose mask gradients were
    never zeroed between batches); "per_batch" adds |g_t| (Michel et al.'s intent). padding_free packs
    each batch's real tokens (the same rows in the same batches: same gradients to float rounding).
    """
    if accumulation not in ACCUMULATIONS:
        raise BertLotteryError(f"gradient_accumulation {accumulation!r}: expected one of {ACCUMULATIONS}")
    model.eval()  # no dropout, as the original's search
    device = soft.heads.device
    with torch.no_grad():
        soft.heads.copy_(heads.to(device, soft.heads.dtype))
        soft.mlps.copy_(mlps.to(device, soft.mlps.dtype))
    soft.heads.requires_grad_(True)
    soft.mlps.requires_grad_(True)
    head_sum, mlp_sum = torch.zeros_like(soft.heads), torch.zeros_like(soft.mlps)
    head_run, mlp_run = torch.zeros_like(soft.heads), torch.zeros_like(soft.mlps)
    # Sums stay on the device: no host sync per batch.
    n_tokens, loss_sum, logits = torch.zeros((), device=device), torch.zeros((), device=device), []
    total = -(-len(split) // batch_size)
    for batch in tqdm(iterate_batches(split, batch_size), total=total, desc="importance",
                      disable=not progress, leave=False):
        labels = batch.pop("labels").to(device)
        n_tokens += batch["attention_mask"].sum().to(device)
        batch = PackedBatch.from_padded(batch).to(device) if padding_free else to_device(batch, device)
        out = classify(model, batch)
        loss = task_loss(spec, out.logits, labels)
        # Gradients of the masks only: the weights' gradients are never needed.
        g_heads, g_mlps = torch.autograd.grad(loss, [soft.heads, soft.mlps], allow_unused=True)
        g_heads = torch.zeros_like(head_sum) if g_heads is None else g_heads
        g_mlps = torch.zeros_like(mlp_sum) if g_mlps is None else g_mlps
        if accumulation == "cumulative":
            head_run += g_heads
            mlp_run += g_mlps
            head_sum += head_run.abs()
            mlp_sum += mlp_run.abs()
        else:
            head_sum += g_heads.abs()
            mlp_sum += g_mlps.abs()
        loss_sum += loss.detach() * len(labels)
        logits.append(out.logits.detach().float())
    soft.heads.requires_grad_(False)
    soft.mlps.requires_grad_(False)
    return (head_sum.detach().cpu().float(), mlp_sum.detach().cpu().float(), float(n_tokens),
            torch.cat(logits).cpu().numpy(), float(loss_sum) / max(len(split), 1))


def importance_pass(model, soft, spec, split, heads, mlps, **kwargs) -> PassResult:
    """One forward+backward over the dev set with the given masks: normalised importances and score."""
    head_raw, mlp_raw, n_tokens, logits, loss = accumulate_gradients(model, soft, spec, split, heads, mlps, **kwargs)
    values = M.task_metrics(spec, logits, split.labels.numpy()) | {"loss": loss}
    return PassResult(normalize_head_importance(head_raw), normalize_mlp_importance(mlp_raw, max(n_tokens, 1.0)),
                      values, float(M.stop_score(spec, values)))


# ----------------------------------------------------------------------------------------------
# Search state (resumable after a kill) and the search loop


@dataclass
class SearchState:
    """Everything the loop needs to continue after its last finished importance pass."""

    phase_index: int
    heads: torch.Tensor  # last accepted (bool)
    mlps: torch.Tensor
    head_importance: torch.Tensor  # of the latest pass (accepted or not): the next ranking
    mlp_importance: torch.Tensor
    s0: float
    score: float  # of the last accepted masks
    trace: list[dict] = field(default_factory=list)  # rows incl. tensors (see trace_row)


def trace_row(iteration: int, phase: str, heads, mlps, result: PassResult, accepted: bool) -> dict:
    return {
        "iteration": iteration, "phase": phase, "heads_kept": int(heads.sum()), "mlps_kept": int(mlps.sum()),
        "score": result.score, "accepted": accepted, "metrics": result.metrics,
        "heads": heads.clone(), "mlps": mlps.clone(),
        "head_importance": result.head_importance.clone(), "mlp_importance": result.mlp_importance.clone(),
    }


TRACE_TENSORS = ("heads", "mlps", "head_importance", "mlp_importance")


def split_trace(trace: list[dict]) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Trace rows as JSON-able dicts and stacked tensors (heads/mlps as uint8, 1 = kept)."""
    rows = [{k: v for k, v in row.items() if k not in TRACE_TENSORS} for row in trace]
    tensors = {}
    for key in TRACE_TENSORS:
        stacked = torch.stack([row[key] for row in trace])
        tensors[key] = stacked.to(torch.uint8) if stacked.dtype == torch.bool else stacked.float()
    return rows, {k: v.contiguous() for k, v in tensors.items()}


def join_trace(rows: list[dict], tensors: dict[str, torch.Tensor]) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        row["heads"], row["mlps"] = tensors["heads"][i].bool(), tensors["mlps"][i].bool()
        row["head_importance"], row["mlp_importance"] = tensors["head_importance"][i], tensors["mlp_importance"][i]
        out.append(row)
    return out


def save_state(store: StateStore, state: SearchState) -> None:
    """The state as tensors (masks, importances, the trace's tensors) and JSON (the rest)."""
    rows, tensors = split_trace(state.trace)
    tensors = {f"trace_{k}": v for k, v in tensors.items()} | {
        "heads": state.heads.to(torch.uint8), "mlps": state.mlps.to(torch.uint8),
        "head_importance": state.head_importance.float(), "mlp_importance": state.mlp_importance.float(),
    }
    store.save({"phase_index": state.phase_index, "s0": state.s0, "score": state.score, "trace": rows}, tensors)


def load_state(store: StateStore) -> SearchState | None:
    """The saved state if it exists and was made with the same settings, model and data; else None."""
    saved = store.load()
    if saved is None:
        return None
    meta, tensors = saved
    trace = join_trace(meta["trace"], {k.removeprefix("trace_"): v for k, v in tensors.items()
                                       if k.startswith("trace_")})
    return SearchState(meta["phase_index"], tensors["heads"].bool(), tensors["mlps"].bool(),
                       tensors["head_importance"], tensors["mlp_importance"], meta["s0"], meta["score"], trace)


@dataclass
class SearchResult:
    mask: "HeadMlpMask"  # noqa: F821  the last accepted masks
    head_importance: torch.Tensor  # of the last importance pass (the original's head_importance.npy)
    mlp_importance: torch.Tensor
    trace: list[dict]  # one row per importance pass; row 0 = the full model
    s0: float
    threshold: float  # T = threshold * S0
    score: float  # stop-rule score of the returned masks

    @property
    def iterations(self) -> int:
        return len(self.trace) - 1


def find_s_mask(
    model: torch.nn.Module,
    spec: TaskSpec,
    dev_split: TokenizedSplit,
    settings: SPruningSettings | None = None,
    *,
    mode: str = "joint",
    state_dir: str | Path | None = None,
    progress: bool = True,
    padding_free: bool = True,
    on_iteration: Callable[[int], None] | None = None,
) -> SearchResult:
    """The s-pruning search (docs/protocol.md §s-pruning) on a fine-tuned model (see the module docstring),
    with the config's `s_pruning` section (default: the schema's defaults).

    With `state_dir`, the state after every finished importance pass is saved there and a rerun with
    the same settings, model and data resumes from it; `clear_state(state_dir, STATE_FILE)` removes it once the
    caller has written its outputs. `on_iteration(i)` is called after pass i is saved (tests use it).
    `empty_layer_bias=True` keeps a layer's attention output bias when all its heads are masked, as the
    original's soft head mask did during its search (False: as physical pruning, LayerNorm(input)).
    `heads_only_empty_layers=False` keeps one head per layer in mode "heads", as the original's masks
    (True: a heads-only step may remove a layer's last head); the other modes ignore it.
    """
    settings = settings or SPruningSettings.from_dict({}, where="s_pruning")
    threshold, amount, batch_size = settings.threshold, settings.amount, settings.batch_size
    accumulation, empty_layer_bias = settings.gradient_accumulation, settings.empty_layer_bias
    heads_only_empty_layers = settings.heads_only_empty_layers
    if len(dev_split) == 0:
        raise BertLotteryError("s-pruning: the dev split is empty; expected the task's prepared dev examples")
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    phases = phases_for(mode, n_layers, n_heads, amount, heads_only_empty_layers)
    if accumulation not in ACCUMULATIONS:
        raise BertLotteryError(f"gradient_accumulation {accumulation!r}: expected one of {ACCUMULATIONS}")
    identity = {"mode": mode, "threshold": threshold, "amount": amount, "batch_size": batch_size,
                "accumulation": accumulation, "empty_layer_bias": empty_layer_bias, "task": spec.name,
                "fingerprint": model_fingerprint(model, dev_split)}
    if mode == "heads":  # only there does it change the search (other modes' saved states stay valid)
        identity["heads_only_empty_layers"] = heads_only_empty_layers
    store = StateStore(None if state_dir is None else Path(state_dir), STATE_FILE, config_hash(identity), "s-pruning")
    soft = attach_soft_masks(model, empty_layer_bias=empty_layer_bias)
    run = partial(importance_pass, model, soft, spec, dev_split, batch_size=batch_size,
                  accumulation=accumulation, padding_free=padding_free,
                  progress=progress)  # run(heads, mlps) -> PassResult
    try:
        state = load_state(store)
        if state is None:
            full = full_head_mlp_mask(model)
            heads, mlps = full.heads, full.mlps
            first = run(heads, mlps)
            state = SearchState(0, heads, mlps, first.head_importance, first.mlp_importance, first.score,
                                first.score, [trace_row(0, "initial", heads, mlps, first, True)])
            _checkpoint(state, store, on_iteration)
        elif progress:
            print(f"s-pruning: resuming after pass {len(state.trace) - 1} (phase {state.phase_index})")
        _search(state, phases, threshold * state.s0, run, store, on_iteration, progress)
    finally:
        detach_soft_masks(model)
    last = state.trace[-1]
    mask = HeadMlpMask(state.heads.clone(), state.mlps.clone(), {"mode": mode},
                       head_importance=last["head_importance"], mlp_importance=last["mlp_importance"])
    return SearchResult(mask, last["head_importance"], last["mlp_importance"], state.trace, state.s0,
                        threshold * state.s0, state.score)


def _checkpoint(state: SearchState, store: StateStore, on_iteration) -> None:
    save_state(store, state)
    if on_iteration is not None:
        on_iteration(len(state.trace) - 1)


def _search(state: SearchState, phases: list[Phase], limit: float, run, store: StateStore, on_iteration,
            progress: bool) -> None:
    """Advance `state` through the phases. Literal rule: a step is accepted iff score >= limit."""
    if not state.s0 >= limit:  # S0 < 0: the full model fails its own rule; nothing is pruned
        state.phase_index = len(phases)
    while state.phase_index < len(phases):
        phase = phases[state.phase_index]
        candidate = propose(phase, state.heads, state.mlps, state.head_importance, state.mlp_importance)
        if candidate is None:  # nothing left to prune in this phase
            state.phase_index += 1
            _checkpoint(state, store, None)
            continue
        heads, mlps = candidate
        result = run(heads, mlps)
        accepted = result.score >= limit
        state.trace.append(trace_row(len(state.trace), phase.name, heads, mlps, result, accepted))
        # The next ranking always uses this pass's importance, even when the step is reverted.
        state.head_importance, state.mlp_importance = result.head_importance, result.mlp_importance
        if accepted:
            state.heads, state.mlps, state.score = heads, mlps, result.score
        else:
            state.phase_index += 1
        if progress:
            print(f"s-pruning {phase.name}: heads {int(heads.sum())} mlps {int(mlps.sum())} "
                  f"score {result.score:.4f} ({'kept' if accepted else 'reverted'}; limit {limit:.4f})")
        _checkpoint(state, store, on_iteration)


# ----------------------------------------------------------------------------------------------
# Outputs and command line


def write_outputs(result: SearchResult, out_dir: str | Path, *, spec: TaskSpec, seed: int, mode: str,
                  settings: SPruningSettings, model_config, save_iterations: bool = True, started: float | None = None,
                  device: str = "cpu") -> None:
    """The good mask (with its final importances), the trace (JSON and tensors) and the search record."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    family = family_of_mode(mode)
    meta = {"task": spec.name, "seed": str(seed), "family": family, "kind": "good",
            "method": f"s-pruning {mode} ({settings.gradient_accumulation} gradients)",
            "iteration": str(result.iterations)}
    result.mask.save(out_dir / mask_name("good"), head_importance=result.head_importance,
                     mlp_importance=result.mlp_importance, **meta)
    rows, tensors = split_trace(result.trace)
    write_json(out_dir / SEARCH_TRACE, {"task": spec.name, "seed": seed, "mode": mode, "s0": result.s0,
                                        "threshold": result.threshold, "iterations": rows})
    if save_iterations:
        save_tensors(out_dir / SEARCH_TRACE_TENSORS, tensors, {k: str(v) for k, v in meta.items()})
    write_json(out_dir / SEARCH_RECORD, {
        "task": spec.name, "seed": seed, "family": family, "mode": mode, "stop_metric": spec.stop_metric,
        "s0": result.s0, "threshold_fraction": settings.threshold, "threshold": result.threshold,
        "score": result.score, "iterations": result.iterations,
        "accepted_steps": sum(bool(r["accepted"]) for r in rows[1:]),
        "heads_kept": int(result.mask.heads.sum()), "mlps_kept": int(result.mask.mlps.sum()),
        "mask_size": size_of(model_config, result.mask), "settings": settings.to_dict(),
        **provenance(started, settings, device),
    })


def main_find_s_mask(argv: list[str]) -> None:
    parser = search_parser("bertlottery find-s-mask", __doc__.split("\n")[0], "s_pruning")
    parser.add_argument("--mode", choices=MODES, default="joint")
    args = parser.parse_args(argv)
    inputs = load_search_inputs(SearchJob.from_args(args, "s_pruning"))
    spec, settings, state_dir, started = inputs.spec, inputs.settings, inputs.state_dir, inputs.started
    model, split, device = inputs.model, inputs.dev_split, inputs.device
    result = find_s_mask(model, spec, split, settings, mode=args.mode, state_dir=state_dir,
                         padding_free=args.padding_free)
    write_outputs(result, args.out_dir, spec=spec, seed=args.seed, mode=args.mode, settings=settings,
                  model_config=model.config, save_iterations=settings.save_iterations, started=started,
                  device=device_name(device))
    clear_state(state_dir, STATE_FILE)
    print(f"{spec.name} seed {args.seed} s-{args.mode}: heads {int(result.mask.heads.sum())}, "
          f"MLPs {int(result.mask.mlps.sum())}, {spec.stop_metric} {result.score:.4f} "
          f"(S0 {result.s0:.4f}, limit {result.threshold:.4f})")
