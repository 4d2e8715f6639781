"""Statistics of the study (spec section 8): stability across seeds, overlaps, super-survivors, the
m-pruning block fractions of Figure 1a, paired tests of good vs random vs bad, and the paper's claims
checked on our numbers.

Library routines do the arithmetic: statsmodels (Fleiss' kappa, Cochran's Q, Holm), scipy (hypergeometric
tail, t-test, Wilcoxon, bootstrap, Fisher's combination). Degenerate inputs (two seeds, identical masks,
constant differences) give NaN with a stated reason, never an exception.

Masks come from our files (HeadMlpMask / WeightMask safetensors) or, for the head/MLP analyses, from a
directory in the original study's layout <dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import cochrans_q
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.multitest import multipletests

from bertlottery.aggregate import load_paper, read_table, task_order, write_table
from bertlottery.errors import BertLotteryError
from bertlottery.tasks import GLUE_TASKS

if TYPE_CHECKING:  # bertlottery.masks imports torch: loaded only where masks are read
    from bertlottery.masks import HeadMlpMask, WeightMask

# task -> seed -> mask
MaskSet = dict[str, dict[int, "HeadMlpMask"]]
UNITS = ("heads", "mlps")


# --- loading masks ---------------------------------------------------------------------------------


def _task_seed(path: Path, meta: dict) -> tuple[str, int]:
    """(task, seed) from a mask's metadata, else from its path .../<task>/seed<seed>/<kind>.safetensors."""
    task, seed = meta.get("task"), meta.get("seed")
    if task is None or seed is None:
        match = re.search(r"([^/]+)/seed_?(\d+)/[^/]+$", path.as_posix())
        if not match:
            raise BertLotteryError(f"{path}: no task/seed in the metadata or the path "
                                   "(expected .../<task>/seed<seed>/<kind>.safetensors)")
        task, seed = task or match.group(1), seed or match.group(2)
    return str(task), int(seed)


def load_head_mlp_masks(paths) -> MaskSet:
    """Our HeadMlpMask files, keyed by task and seed."""
    from bertlottery.masks import HeadMlpMask

    out: MaskSet = {}
    for path in map(Path, paths):
        mask = HeadMlpMask.load(path)
        task, seed = _task_seed(path, mask.meta)
        if seed in out.setdefault(task, {}):
            raise BertLotteryError(f"{path}: a second mask for task {task} seed {seed}")
        out[task][seed] = mask
    return _sorted(out)


def _canonical_task(name: str) -> str:
    """The registry spelling of a task directory name (sst-2 -> SST-2); unknown names are kept."""
    by_key = {t.lower().replace("-", ""): t for t in GLUE_TASKS}
    return by_key.get(name.lower().replace("-", "").replace("_", ""), name)


def load_original_masks(root: str | Path) -> MaskSet:
    """Masks in the original study's layout <root>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy."""
    from bertlottery.masks import HeadMlpMask

    root = Path(root)
    dirs = sorted(p.parent for p in root.glob("*/seed*/head_mask.npy"))
    if not dirs:
        raise BertLotteryError(f"{root}: no <TASK>/seed_<S>/head_mask.npy found; expected the original "
                               "study's mask layout (e.g. masks/heads_mlps of sai-prasanna/bert-experiments)")
    out: MaskSet = {}
    for directory in dirs:
        match = re.fullmatch(r"seed_?(\d+)", directory.name)
        if not match:
            raise BertLotteryError(f"{directory}: expected a seed_<S> directory name")
        task = _canonical_task(directory.parent.name)
        out.setdefault(task, {})[int(match.group(1))] = HeadMlpMask.from_original_npy(directory)
    return _sorted(out)


def _sorted(masks: MaskSet) -> MaskSet:
    return {task: dict(sorted(masks[task].items())) for task in task_order(masks)}


def unit_array(mask: "HeadMlpMask", unit: str) -> np.ndarray:
    """The flat boolean survival vector of one unit type ('heads' or 'mlps')."""
    return getattr(mask, unit).numpy().astype(bool).reshape(-1)


# --- agreement across seeds (spec 8.1) -------------------------------------------------------------


def fleiss_kappa_binary(matrix: np.ndarray) -> tuple[float, str]:
    """Fleiss' kappa of a units x raters 0/1 matrix (statsmodels), with a reason when undefined."""
    matrix = np.asarray(matrix, dtype=int)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        return np.nan, "needs at least 2 seeds"
    if matrix.min() == matrix.max():
        return np.nan, f"every element is {'kept' if matrix.max() else 'pruned'} in every seed: agreement undefined"
    table, _ = aggregate_raters(matrix, n_cat=2)
    return float(fleiss_kappa(table, method="fleiss")), ""


def cochran_q_test(matrix: np.ndarray) -> tuple[float, int, float, str]:
    """Cochran's Q of a units x seeds 0/1 matrix (statsmodels): (Q, df, p, reason when undefined)."""
    matrix = np.asarray(matrix, dtype=int)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        return np.nan, 0, np.nan, "needs at least 2 seeds"
    df = matrix.shape[1] - 1
    if (matrix.min(axis=1) == matrix.max(axis=1)).all():
        return np.nan, df, np.nan, "no element differs between seeds: Q undefined (masks identical)"
    result = cochrans_q(matrix)
    return float(result.statistic), int(result.df), float(result.pvalue), ""


def stability(masks: MaskSet, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per task and unit: Fleiss' kappa and Cochran's Q over all seeds, and Q for every seed pair.

    A pair counts as 'similar' when its Q test does not reject (p >= alpha), the original notebook's
    reading (spec 8.1). Statistically a non-rejection does not show similarity; we only count it.
    """
    rows, pair_rows = [], []
    for task, by_seed in masks.items():
        seeds = list(by_seed)
        for unit in UNITS:
            matrix = np.stack([unit_array(by_seed[s], unit) for s in seeds], axis=1)
            kappa, k_reason = fleiss_kappa_binary(matrix)
            q, df, p, q_reason = cochran_q_test(matrix)
            pairs = []
            for a, b in itertools.combinations(range(len(seeds)), 2):
                pq, _, pp, p_reason = cochran_q_test(matrix[:, [a, b]])
                pairs.append(pp)
                pair_rows.append({"task": task, "unit": unit, "seed_a": seeds[a], "seed_b": seeds[b],
                                  "q": pq, "p": pp, "similar": bool(pp >= alpha) if np.isfinite(pp) else None,
                                  "reason": p_reason})
            defined = [p_ for p_ in pairs if np.isfinite(p_)]
            rows.append({
                "task": task, "unit": unit, "n_seeds": len(seeds), "n_units": matrix.shape[0],
                "kept_mean": matrix.sum(axis=0).mean(), "kept_std": _std(matrix.sum(axis=0)),
                "kappa": kappa, "kappa_reason": k_reason, "q": q, "q_df": df, "q_p": p, "q_reason": q_reason,
                "q_rejects": bool(p < alpha) if np.isfinite(p) else None,
                "pairs_similar": sum(p_ >= alpha for p_ in defined), "pairs_defined": len(defined),
                "pairs_total": len(pairs),
            })
    return pd.DataFrame(rows), pd.DataFrame(pair_rows)


def _std(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else np.nan


# --- super-survivors and overlaps (spec 8.2, 8.3) --------------------------------------------------


def super_survivors(masks: MaskSet) -> pd.DataFrame:
    """Per task: counts per seed, super-survivors (kept in every seed), never-surviving elements."""
    rows = []
    for task, by_seed in masks.items():
        row = {"task": task, "n_seeds": len(by_seed), "seeds": " ".join(map(str, by_seed))}
        for unit in UNITS:
            matrix = np.stack([unit_array(m, unit) for m in by_seed.values()], axis=1)
            counts = matrix.sum(axis=0)
            row |= {f"{unit}_total": matrix.shape[0], f"{unit}_per_seed": " ".join(map(str, counts)),
                    f"{unit}_mean": counts.mean(), f"{unit}_std": _std(counts),
                    f"super_{unit}": int(matrix.all(axis=1).sum()), f"never_{unit}": int((~matrix.any(axis=1)).sum())}
        rows.append(row)
    return pd.DataFrame(rows)


def super_mask(by_seed: dict[int, "HeadMlpMask"], unit: str) -> np.ndarray:
    """Elements kept in every seed (the AND of the seeds' masks)."""
    return np.stack([unit_array(m, unit) for m in by_seed.values()]).all(axis=0)


def overlap_counts(a: np.ndarray, b: np.ndarray) -> dict:
    """Shared kept elements of two masks and the hypergeometric expectation and tail under independence.

    With N elements, n_a and n_b kept at random, the overlap X is hypergeometric: E[X] = n_a n_b / N,
    and p = P(X >= observed) is the one-sided test of 'more than expected if independent'.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total, n_a, n_b, k = a.size, int(a.sum()), int(b.sum()), int((a & b).sum())
    expected = n_a * n_b / total if total else np.nan
    p = float(sps.hypergeom.sf(k - 1, total, n_a, n_b)) if total else np.nan
    return {"overlap": k, "n_a": n_a, "n_b": n_b, "total": total, "expected": expected, "p": p}


def overlaps(masks: MaskSet, alpha: float = 0.05) -> pd.DataFrame:
    """Lower-triangular task x task overlaps (Figure 5, Appendix G) for heads and MLPs.

    set 'good': same-seed pairing (task A seed s with task B seed s), mean and std over the shared seeds,
    the mean hypergeometric expectation and Fisher's combination of the per-seed tail p-values.
    set 'super': the super-survivor masks (one per task), with the hypergeometric expectation and tail.
    The diagonal holds each task's own count.
    """
    rows = []
    tasks = list(masks)
    for unit in UNITS:
        for i, task_a in enumerate(tasks):
            for task_b in tasks[: i + 1]:
                rows.append(_good_overlap(masks, unit, task_a, task_b, alpha))
                one = overlap_counts(super_mask(masks[task_a], unit), super_mask(masks[task_b], unit))
                diag = task_a == task_b
                rows.append({"unit": unit, "set": "super", "task_a": task_a, "task_b": task_b, "n_seeds": 1,
                             "mean": float(one["overlap"]), "std": np.nan, "total": one["total"],
                             "expected_mean": np.nan if diag else one["expected"],
                             "p_combined": np.nan if diag else one["p"],
                             "seeds_significant": None if diag else int(one["p"] < alpha), "per_seed": ""})
    return pd.DataFrame(rows)


def _good_overlap(masks: MaskSet, unit: str, task_a: str, task_b: str, alpha: float) -> dict:
    seeds = [s for s in masks[task_a] if s in masks[task_b]]
    per_seed = [overlap_counts(unit_array(masks[task_a][s], unit), unit_array(masks[task_b][s], unit))
                for s in seeds]
    counts = [r["overlap"] for r in per_seed]
    row = {"unit": unit, "set": "good", "task_a": task_a, "task_b": task_b, "n_seeds": len(seeds),
           "mean": float(np.mean(counts)) if counts else np.nan, "std": _std(counts),
           "total": per_seed[0]["total"] if per_seed else np.nan,
           "per_seed": " ".join(f"{s}:{c}" for s, c in zip(seeds, counts))}
    if task_a == task_b or not per_seed:
        return row | {"expected_mean": np.nan, "p_combined": np.nan, "seeds_significant": None}
    ps = [r["p"] for r in per_seed]
    combined = float(sps.combine_pvalues(ps, method="fisher").pvalue) if len(ps) > 1 else ps[0]
    return row | {"expected_mean": float(np.mean([r["expected"] for r in per_seed])), "p_combined": combined,
                  "seeds_significant": int(sum(p < alpha for p in ps))}


def all_tasks_survival(masks: MaskSet, unit: str) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """Appendix B: per element, the number of tasks it survives in, mean and std over the seeds that
    every task has. Returns (mean, std, tasks, seeds) with the unit's shape ([L, H] or [L])."""
    tasks = list(masks)
    seeds = [s for s in next(iter(masks.values())) if all(s in masks[t] for t in tasks)]
    if not seeds:
        raise BertLotteryError(f"no seed is shared by all tasks {tasks}; Appendix B needs same-seed masks")
    counts = np.stack([sum(getattr(masks[t][s], unit).numpy().astype(int) for t in tasks) for s in seeds])
    std = counts.std(axis=0, ddof=1) if len(seeds) > 1 else np.full(counts.shape[1:], np.nan)
    return counts.mean(axis=0), std, tasks, seeds


# --- m-pruning block fractions (Figure 1a, spec 4.1 claim) -----------------------------------------

_LAYER = re.compile(r"layer\.(\d+)\.(.+)$")
_QKV = ("attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
        "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias")
_MLP = ("intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight")


def block_fractions(mask: "WeightMask", num_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kept and total prunable values per head ([L, H]) and per MLP ([L]) of a weight mask.

    A head owns its Q/K/V rows [h*d, (h+1)*d) with their biases and the same columns of the attention
    output dense weight; an MLP owns the intermediate dense (weight, bias) and the output dense weight.
    """
    layers: dict[int, dict[str, np.ndarray]] = {}
    for name, tensor in mask.masks.items():
        match = _LAYER.search(name)
        if match:
            layers.setdefault(int(match.group(1)), {})[match.group(2)] = tensor.numpy().astype(bool)
    if not layers:
        raise BertLotteryError(f"{mask.source}: no encoder 'layer.<i>.' parameters in the weight mask")
    n_layers = max(layers) + 1
    head_kept, head_total = np.zeros((n_layers, num_heads)), np.zeros((n_layers, num_heads))
    mlp_kept, mlp_total = np.zeros(n_layers), np.zeros(n_layers)
    for i, parts in layers.items():
        missing = [p for p in (*_QKV, "attention.output.dense.weight", *_MLP) if p not in parts]
        if missing:
            raise BertLotteryError(f"{mask.source}: layer {i} lacks prunable parameter(s) {missing}")
        rows = parts["attention.self.query.weight"].shape[0]
        if rows % num_heads:
            raise BertLotteryError(f"{mask.source}: {rows} attention rows do not split into {num_heads} heads")
        d = rows // num_heads
        for h in range(num_heads):
            pieces = [parts[p][h * d:(h + 1) * d] for p in _QKV]
            pieces.append(parts["attention.output.dense.weight"][:, h * d:(h + 1) * d])
            head_kept[i, h] = sum(int(p.sum()) for p in pieces)
            head_total[i, h] = sum(p.size for p in pieces)
        mlp_kept[i] = sum(int(parts[p].sum()) for p in _MLP)
        mlp_total[i] = sum(parts[p].size for p in _MLP)
    return head_kept, head_total, mlp_kept, mlp_total


def num_heads_for(mask: "WeightMask", num_heads: int | None, model_config: str | None) -> int:
    """Heads per layer: the mask's metadata, else --num-heads, else the model's config.json."""
    for key in ("num_heads", "num_attention_heads"):
        if key in mask.meta:
            return int(mask.meta[key])
    if num_heads:
        return int(num_heads)
    if model_config:
        try:
            return int(json.loads(Path(model_config).read_text())["num_attention_heads"])
        except (OSError, KeyError, ValueError) as exc:
            raise BertLotteryError(f"{model_config}: no num_attention_heads ({exc})") from None
    raise BertLotteryError(f"{mask.source}: number of heads unknown; pass --num-heads or --model-config")


def m_block_table(paths, num_heads: int | None = None, model_config: str | None = None) -> pd.DataFrame:
    """Long table of surviving fractions per (task, seed, layer, block) of m-pruning weight masks."""
    from bertlottery.masks import WeightMask

    rows = []
    for path in map(Path, paths):
        mask = WeightMask.load(path)
        task, seed = _task_seed(path, mask.meta)
        hk, ht, mk, mt = block_fractions(mask, num_heads_for(mask, num_heads, model_config))
        for (layer, head), kept in np.ndenumerate(hk):
            rows.append({"task": task, "seed": seed, "layer": layer, "block": "head", "head": head,
                         "kept": int(kept), "total": int(ht[layer, head]), "fraction": kept / ht[layer, head]})
        for layer, kept in enumerate(mk):
            rows.append({"task": task, "seed": seed, "layer": layer, "block": "mlp", "head": -1,
                         "kept": int(kept), "total": int(mt[layer]), "fraction": kept / mt[layer]})
    if not rows:
        raise BertLotteryError("no m-pruning masks given")
    return pd.DataFrame(rows)


def block_grid(blocks: pd.DataFrame, task: str | None = None):
    """(head mean [L,H], head std, mlp mean [L], mlp std) over seeds (and tasks when task is None)."""
    part = blocks if task is None else blocks[blocks["task"] == task]
    if part.empty:
        raise BertLotteryError(f"no m-pruning block fractions for task {task}")
    heads = part[part["block"] == "head"].groupby(["layer", "head"])["fraction"]
    mlps = part[part["block"] == "mlp"].groupby("layer")["fraction"]
    shape = (part["layer"].max() + 1, part.loc[part["block"] == "head", "head"].max() + 1)
    return (heads.mean().to_numpy().reshape(shape), heads.std(ddof=1).to_numpy().reshape(shape),
            mlps.mean().to_numpy(), mlps.std(ddof=1).to_numpy())


# --- importance distribution (Figure 3, spec 5.1) --------------------------------------------------


def load_trace(trace_json: str | Path) -> dict[str, np.ndarray]:
    """The per-iteration tensors of an s-search (trace.safetensors beside trace.json)."""
    from safetensors.numpy import load_file

    path = Path(trace_json)
    path = path if path.suffix == ".safetensors" else path.with_name("trace.safetensors")
    if not path.exists():
        raise BertLotteryError(f"{path}: no s-search trace tensors (set s_pruning.save_iterations: true)")
    return load_file(str(path))


def importance_summary(trace_paths) -> pd.DataFrame:
    """Per search and iteration: the share of the still-unpruned heads (MLPs) whose normalised
    importance lies in the lower half of [0, 1]."""
    rows = []
    for path in map(Path, trace_paths):
        trace = load_trace(path)
        match = re.search(r"([^/]+)/seed_?(\d+)/[^/]+$", path.as_posix())
        task, seed = (match.group(1), int(match.group(2))) if match else (path.parent.name, -1)
        for it in range(trace["head_importance"].shape[0]):
            row = {"task": task, "seed": seed, "iteration": it}
            for unit, key in (("heads", "head_importance"), ("mlps", "mlp_importance")):
                alive = trace[unit][it].astype(bool)
                scores = trace[key][it][alive]
                row[f"{unit}_alive"] = int(alive.sum())
                row[f"{unit}_low_share"] = float((scores < 0.5).mean()) if scores.size else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


# --- paired tests across seeds ---------------------------------------------------------------------

COMPARISONS = [("good", "random"), ("good", "bad"), ("random", "bad"), ("bad", "bad_6ep")]


def paired_test(a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired t-test, Wilcoxon signed-rank, Cohen's d_z and a percentile bootstrap 95 % CI of the mean
    difference a - b. Undefined pieces are NaN and `reason` says why."""
    d = np.asarray(a, float) - np.asarray(b, float)
    out = {"n": d.size, "mean_diff": float(d.mean()) if d.size else np.nan, "sd_diff": _std(d),
           "cohen_dz": np.nan, "ci_low": np.nan, "ci_high": np.nan, "t": np.nan, "t_p": np.nan,
           "w": np.nan, "w_p": np.nan, "reason": ""}
    if d.size < 2:
        return out | {"reason": "needs at least 2 paired seeds"}
    reasons = []
    if np.allclose(d, 0, rtol=0, atol=1e-12):
        reasons.append("all paired differences are 0")
    elif np.allclose(d, d[0], rtol=0, atol=1e-12):  # float noise would make t astronomically large
        reasons.append("constant non-zero difference: t and d_z undefined")
    else:
        t = sps.ttest_rel(a, b)
        out |= {"t": float(t.statistic), "t_p": float(t.pvalue), "cohen_dz": out["mean_diff"] / out["sd_diff"]}
    if not np.allclose(d, 0, rtol=0, atol=1e-12):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = sps.wilcoxon(d)
        out |= {"w": float(w.statistic), "w_p": float(w.pvalue)}
        if d.size < 6:
            reasons.append(f"Wilcoxon with n={d.size}: smallest possible two-sided p is {2 / 2 ** d.size:.3g}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = sps.bootstrap((d,), np.mean, n_resamples=n_boot, method="percentile",
                           rng=np.random.default_rng(seed)).confidence_interval
    out |= {"ci_low": float(ci.low), "ci_high": float(ci.high)}
    if d.size < 5:
        reasons.append(f"bootstrap over {d.size} seeds is coarse")
    return out | {"reason": "; ".join(reasons)}


def paired_tests(metrics: pd.DataFrame, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Every task x family x evaluated x comparison of mask kinds, paired by seed, Holm-corrected
    (statsmodels) across all rows of this table, separately for the t-test and the Wilcoxon test."""
    rows = []
    masked = metrics[metrics["family"] != "full"]
    for (task, family, evaluated), part in masked.groupby(["task", "family", "evaluated"], sort=False):
        wide = part.pivot_table(index="seed", columns="kind", values="reported")
        for kind_a, kind_b in COMPARISONS:
            if kind_a not in wide or kind_b not in wide:
                continue
            both = wide[[kind_a, kind_b]].dropna()
            result = paired_test(both[kind_a].to_numpy(), both[kind_b].to_numpy(), n_boot, seed)
            rows.append({"task": task, "family": family, "evaluated": evaluated, "a": kind_a, "b": kind_b,
                         "mean_a": both[kind_a].mean(), "mean_b": both[kind_b].mean()} | result)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for col in ("t_p", "w_p"):
        table[col + "_holm"] = holm(table[col].to_numpy())
    order = ["task", "family", "evaluated", "a", "b", "n", "mean_a", "mean_b", "mean_diff", "sd_diff",
             "cohen_dz", "ci_low", "ci_high", "t", "t_p", "t_p_holm", "w", "w_p", "w_p_holm", "reason"]
    return table[order]


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels multipletests); NaNs stay NaN and are not counted."""
    pvalues = np.asarray(pvalues, float)
    out = np.full_like(pvalues, np.nan)
    ok = np.isfinite(pvalues)
    if ok.any():
        out[ok] = multipletests(pvalues[ok], method="holm")[1]
    return out


# --- claims ----------------------------------------------------------------------------------------

HOLDS, FAILS, UNCHECKABLE = "holds", "does not hold", "cannot be checked"
PAR_TOLERANCE = 0.03      # "on par": the good mean exceeds the other by at most 3 points
FULL_TOLERANCE = 0.02     # "reaches the full model": at most 2 points below it
COMPETITIVE = 0.05        # Table 2: within 5 points of a baseline = competitive


@dataclass
class Numbers:
    """Everything a claim looks at; built from our results or from the paper's published numbers."""

    label: str
    summary: pd.DataFrame  # task, family, kind, evaluated, reported_mean, reported_std, sizes
    stability: pd.DataFrame | None = None
    overlaps: pd.DataFrame | None = None
    survivors: pd.DataFrame | None = None
    m_blocks: pd.DataFrame | None = None
    importance: pd.DataFrame | None = None
    tests: pd.DataFrame | None = None
    majority: dict = field(default_factory=dict)
    glue: dict = field(default_factory=dict)  # Table 2 baseline rows: key -> task -> value


@dataclass
class Verdict:
    verdict: str
    reason: str
    evidence: dict = field(default_factory=dict)


def _cannot(reason: str) -> Verdict:
    return Verdict(UNCHECKABLE, reason)


def _count_verdict(hits: dict, need: float, what: str, items: str = "tasks") -> Verdict:
    """'holds' when the share of tasks (or task pairs) that satisfy the criterion is at least `need`."""
    if not hits:
        return _cannot(f"no {items[:-1]} has the numbers this claim needs")
    share = sum(hits.values()) / len(hits)
    yes = [t for t, ok in hits.items() if ok]
    no = [t for t, ok in hits.items() if not ok]
    reason = (f"{len(yes)}/{len(hits)} {items} {what} (needs >= {need:.0%}); "
              f"yes: {', '.join(yes) or '-'}; no: {', '.join(no) or '-'}")
    return Verdict(HOLDS if share >= need else FAILS, reason, {"per_task": hits})


def _mean(n: Numbers, task: str, family: str, kind: str, evaluated: str, col: str = "reported_mean"):
    s = n.summary
    hit = s[(s["task"] == task) & (s["family"] == family) & (s["kind"] == kind) & (s["evaluated"] == evaluated)]
    if hit.empty or col not in hit or pd.isna(hit.iloc[0][col]):
        return None
    return float(hit.iloc[0][col])


def _tasks(n: Numbers) -> list[str]:
    return task_order(n.summary["task"].unique())


def _per_task(n: Numbers, fn) -> dict:
    """fn(task) -> bool or None (None = this task lacks the numbers); returns task -> bool."""
    out = {}
    for task in _tasks(n):
        value = fn(task)
        if value is not None:
            out[task] = bool(value)
    return out


def _diff(n, task, a: tuple, b: tuple):
    x, y = _mean(n, task, *a), _mean(n, task, *b)
    return None if x is None or y is None else x - y


def claim_good_keeps_90(n: Numbers, family: str) -> Verdict:
    def check(task):
        full, good = _mean(n, task, "full", "none", "full"), _mean(n, task, family, "good", "pruned")
        return None if full is None or good is None else good >= 0.9 * full - 1e-9
    return _count_verdict(_per_task(n, check), 1.0, f"keep >= 90 % of the full model's {family}-pruned score")


def claim_good_beats(n: Numbers, family: str, evaluated: str, margin: float) -> Verdict:
    def check(task):
        d = [_diff(n, task, (family, "good", evaluated), (family, k, evaluated)) for k in ("random", "bad")]
        return None if None in d else min(d) > margin
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9,
                          f"have good {evaluated} > random and bad {evaluated} by > {margin:.2f}")


def claim_m_good_reaches_full(n: Numbers) -> Verdict:
    def check(task):
        d = _diff(n, task, ("m", "good", "retrained"), ("full", "none", "full"))
        return None if d is None else d >= -FULL_TOLERANCE
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9, f"have m good retrained >= full - {FULL_TOLERANCE}")


def claim_s_random_on_par(n: Numbers, tol: float) -> Verdict:
    def check(task):
        d = _diff(n, task, ("s", "good", "retrained"), ("s", "random", "retrained"))
        return None if d is None else d <= tol
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9, f"have s random retrained within {tol:.2f} of good")


def claim_s_bad_trainable(n: Numbers) -> Verdict:
    def check(task):
        bad, maj = _mean(n, task, "s", "bad", "retrained"), n.majority.get(task)
        return None if bad is None or maj is None else bad - maj >= COMPETITIVE
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9,
                          f"have s bad retrained >= majority baseline + {COMPETITIVE:.2f}")


def claim_m_more_compression(n: Numbers) -> Verdict:
    def check(task):
        size = "paper_fraction_mean"
        d = _diff(n, task, ("s", "good", "pruned", size), ("m", "good", "pruned", size))
        return None if d is None else round(100 * d) >= 10
    return _count_verdict(_per_task(n, check), 7 / 9 - 1e-9, "prune >= 10 points more weights with m than with s")


def claim_subnetworks_large(n: Numbers) -> Verdict:
    def check(task):
        fr = [_mean(n, task, f, "good", "pruned", "whole_fraction_mean") for f in ("s", "m")]
        return None if None in fr else min(fr) > 0.5
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9,
                          "have s and m good subnetworks > 50 % of the whole model's parameters")


def claim_super_small(n: Numbers) -> Verdict:
    def check(task):
        fr = _mean(n, task, "super", "good", "pruned", "paper_fraction_mean")
        return None if fr is None else 0.095 <= fr <= 0.265
    return _count_verdict(_per_task(n, check), 0.5 + 1e-9, "have super-survivor subnetworks of 10-26 % (paper's %)")


def claim_super_loss(n: Numbers) -> Verdict:
    losses = {t: d for t in _tasks(n) if t != "WNLI"
              and (d := _diff(n, t, ("full", "none", "full"), ("super", "good", "retrained"))) is not None}
    if not losses:
        return _cannot("no task (WNLI excluded) has both full and super good retrained numbers")
    mean = float(np.mean(list(losses.values())))
    ok = mean <= 0.15
    return Verdict(HOLDS if ok else FAILS, f"mean loss {100 * mean:.1f} points over {len(losses)} tasks "
                   "(WNLI excluded; 'about 10' read as <= 15)",
                   {"loss_points": {t: 100 * v for t, v in losses.items()}})


def claim_bad_6ep(n: Numbers) -> Verdict:
    def check(task):
        d = _diff(n, task, ("s", "bad_6ep", "retrained"), ("s", "bad", "retrained"))
        return None if d is None else d < 0
    hits = _per_task(n, check)
    if not hits:
        return _cannot("no 6-epoch bad retraining (retrain.bad_6_epochs: false, or not in the paper's numbers)")
    return _count_verdict(hits, 0.5 + 1e-9, "score lower after 6 epochs than after 3")


def claim_m_bad_behind(n: Numbers) -> Verdict:
    def check(task):
        d = _diff(n, task, ("s", "bad", "retrained"), ("m", "bad", "retrained"))
        return None if d is None else round(100 * d) >= 5
    return _count_verdict(_per_task(n, check), 6 / 9 - 1e-9, "have m bad >= 5 points (rounded) behind s bad")


def claim_m_bad_cola_stsb(n: Numbers) -> Verdict:
    gaps = {t: d for t in _tasks(n)
            if (d := _diff(n, t, ("s", "bad", "retrained"), ("m", "bad", "retrained"))) is not None}
    if not {"CoLA", "STS-B"} <= set(gaps):
        return _cannot("needs s and m bad retrained results for both CoLA and STS-B")
    top2 = sorted(gaps, key=gaps.get, reverse=True)[:2]
    ok = set(top2) == {"CoLA", "STS-B"}
    return Verdict(HOLDS if ok else FAILS, f"largest s-bad minus m-bad gaps: {', '.join(top2)}",
                   {"gap_points": {t: 100 * g for t, g in gaps.items()}})


def claim_s_bad_vs_glove(n: Numbers) -> Verdict:
    glove = n.glue.get("bilstm_glove", {})
    diffs = {t: bad - glove[t] for t in _tasks(n)
             if t in glove and (bad := _mean(n, t, "s", "bad", "retrained")) is not None}
    if not diffs:
        return _cannot("no s bad retrained results for a task with a BiLSTM+GloVe baseline")
    win = sum(d >= COMPETITIVE for d in diffs.values())
    lose = sum(d <= -COMPETITIVE for d in diffs.values())
    comp = len(diffs) - win - lose
    ok = np.mean(list(diffs.values())) >= -COMPETITIVE
    return Verdict(HOLDS if ok else FAILS,
                   f"vs BiLSTM+GloVe over {len(diffs)} tasks: {comp} within {COMPETITIVE:.2f}, {win} wins, {lose} "
                   f"large losses (paper: 5/2/2 of 9); mean difference {np.mean(list(diffs.values())):+.3f}",
                   {"diff": diffs})


def claim_random_init_beats_m_bad(n: Numbers) -> Verdict:
    pairs = {t: (r, m) for t in _tasks(n) if (r := _mean(n, t, "s", "randinit_random", "retrained")) is not None
             and (m := _mean(n, t, "m", "bad", "retrained")) is not None}
    if not pairs:
        return _cannot("no random-init + random s-pruning runs (retrain.random_init_random_s: false) "
                       "or no m bad retrained runs")
    r, m = (float(np.mean([p[i] for p in pairs.values()])) for i in (0, 1))
    return Verdict(HOLDS if r >= m else FAILS,
                   f"average over {len(pairs)} tasks: random init {r:.3f} vs m bad {m:.3f}")


def claim_kappa_range(n: Numbers) -> Verdict:
    st = _unit(n.stability, "heads")
    if st is None:
        return _cannot("no head masks")
    kappas = {r.task: r.kappa for r in st.itertuples() if r.task != "WNLI" and np.isfinite(r.kappa)}
    if not kappas:
        return _cannot("kappa undefined for every task (fewer than 2 seeds or identical masks)")
    inside = {t: 0.15 <= np.trunc(k * 100) / 100 <= 0.32 for t, k in kappas.items()}
    lo, hi = min(kappas.values()), max(kappas.values())
    return Verdict(HOLDS if all(inside.values()) else FAILS,
                   f"head kappa {lo:.3f}..{hi:.3f} over {len(kappas)} tasks (WNLI excluded); paper 0.15-0.32",
                   {"kappa": kappas})


def claim_cochran_differs(n: Numbers, alpha: float) -> Verdict:
    st = _unit(n.stability, "heads")
    if st is None:
        return _cannot("no head masks")
    ps = {r.task: r.q_p for r in st.itertuples() if np.isfinite(r.q_p)}
    if not ps:
        return _cannot("Cochran's Q undefined for every task (fewer than 2 seeds or identical masks)")
    rejects = {t: p < alpha for t, p in ps.items()}
    v = _count_verdict(rejects, 1.0, f"reject equal survival rates across seeds (Cochran's Q p < {alpha})")
    v.evidence["q_p"] = ps
    return v


def claim_some_pairs_similar(n: Numbers) -> Verdict:
    st = _unit(n.stability, "heads")
    if st is None or st["pairs_defined"].sum() == 0:
        return _cannot("no seed pair with a defined Cochran's Q")
    total = int(st["pairs_similar"].sum())
    return Verdict(HOLDS if total > 0 else FAILS, f"{total} of {int(st['pairs_defined'].sum())} seed pairs "
                   "do not reject (p >= alpha) over all tasks",
                   {"per_task": dict(zip(st["task"], st["pairs_similar"].astype(int)))})


def claim_low_importance(n: Numbers) -> Verdict:
    imp = n.importance
    if imp is None or imp.empty:
        return _cannot("no s-search traces (s_pruning.save_iterations) or the paper's per-iteration scores "
                       "(not published)")
    heads, mlps = imp["heads_low_share"].median(), imp["mlps_low_share"].median()
    ok = heads > 0.5 and (not np.isfinite(mlps) or mlps > 0.5)
    return Verdict(HOLDS if ok else FAILS, f"median share of unpruned elements with normalised importance < 0.5: "
                   f"heads {heads:.2f}, MLPs {mlps:.2f} over {len(imp)} search iterations")


def _unit(table: pd.DataFrame | None, unit: str, set_: str | None = None):
    if table is None or table.empty:
        return None
    part = table[table["unit"] == unit]
    if set_ is not None:
        part = part[part["set"] == set_]
    return None if part.empty else part


def claim_overlap_above_chance(n: Numbers, unit: str, alpha: float) -> Verdict:
    ov = _unit(n.overlaps, unit, "good")
    if ov is None:
        return _cannot("no overlaps")
    off = ov[(ov["task_a"] != ov["task_b"]) & ov["task_a"].ne("WNLI") & ov["task_b"].ne("WNLI")]
    off = off[np.isfinite(off["expected_mean"])]
    if off.empty:
        return _cannot("needs at least 2 tasks (WNLI excluded) with masks on shared seeds")
    with_p = np.isfinite(off["p_combined"]).all()
    hits = {f"{r.task_a}-{r.task_b}": bool(r.mean > r.expected_mean and (not with_p or r.p_combined < alpha))
            for r in off.itertuples()}
    test = f"hypergeometric, Fisher-combined p < {alpha}" if with_p else "per-seed counts unavailable: no p-value"
    return _count_verdict(hits, 0.5 + 1e-9, f"share more {unit} than expected under independence ({test})",
                          items="task pairs")


def _overlap(n: Numbers, a: str, b: str, unit: str = "heads"):
    ov = _unit(n.overlaps, unit, "good")
    if ov is None:
        return None
    hit = ov[((ov["task_a"] == a) & (ov["task_b"] == b)) | ((ov["task_a"] == b) & (ov["task_b"] == a))]
    return None if hit.empty else float(hit.iloc[0]["mean"])


def claim_mrpc_qnli_half(n: Numbers) -> Verdict:
    shared, own_a, own_b = _overlap(n, "MRPC", "QNLI"), _overlap(n, "MRPC", "MRPC"), _overlap(n, "QNLI", "QNLI")
    if None in (shared, own_a, own_b):
        return _cannot("needs MRPC and QNLI head masks")
    ok = shared > 0.5 * max(own_a, own_b)
    return Verdict(HOLDS if ok else FAILS, f"MRPC-QNLI share {shared:.1f} heads; MRPC keeps {own_a:.1f}, "
                   f"QNLI {own_b:.1f} (mean over seeds)")


def claim_mrpc_qqp_mnli(n: Numbers) -> Verdict:
    qqp, mnli = _overlap(n, "MRPC", "QQP"), _overlap(n, "MRPC", "MNLI")
    if None in (qqp, mnli):
        return _cannot("needs MRPC, QQP and MNLI head masks")
    return Verdict(HOLDS if qqp < mnli else FAILS, f"MRPC-QQP {qqp:.1f} vs MRPC-MNLI {mnli:.1f} shared heads")


def claim_m_half(n: Numbers) -> Verdict:
    if n.m_blocks is None or n.m_blocks.empty:
        return _cannot("no m-pruning masks (the paper's m-masks are not published)")
    per_block = n.m_blocks.groupby(["task", "layer", "block", "head"])["fraction"].mean()
    pruned = 1 - per_block
    inside = ((pruned >= 0.40) & (pruned <= 0.60)).mean()
    return Verdict(HOLDS if inside >= 0.9 else FAILS,
                   f"pruned share per head/MLP (mean over seeds) {pruned.min():.2f}..{pruned.max():.2f}; "
                   f"{inside:.0%} of blocks within 0.40-0.60 (needs >= 90 %)")


def claim_m_early_layers(n: Numbers, alpha: float) -> Verdict:
    if n.m_blocks is None or n.m_blocks.empty:
        return _cannot("no m-pruning masks (the paper's m-masks are not published)")
    per_layer = n.m_blocks.groupby("layer")["fraction"].mean()
    if len(per_layer) < 3:
        return _cannot("needs at least 3 layers for a rank correlation")
    rho, p = sps.spearmanr(per_layer.index, per_layer.to_numpy())
    return Verdict(HOLDS if rho > 0 and p < alpha else FAILS,
                   f"Spearman rho(layer, surviving fraction) = {rho:.2f}, p = {p:.3g} over {len(per_layer)} layers",
                   {"per_layer": per_layer.round(4).to_dict()})


def claim_separate_fewer(n: Numbers) -> Verdict:
    sv = n.survivors
    if sv is None or "set" not in sv or not {"heads-only", "mlps-only"} & set(sv["set"]):
        return _cannot("no separate (heads-only / MLPs-only) searches (s_pruning.modes)")
    joint = sv[sv["set"] == "joint"].set_index("task")
    parts = []
    for set_, unit in (("heads-only", "heads"), ("mlps-only", "mlps")):
        sep = sv[sv["set"] == set_].set_index("task")
        tasks = [t for t in sep.index if t in joint.index]
        if tasks:
            j = float((joint.loc[tasks, f"{unit}_mean"] / joint.loc[tasks, f"{unit}_total"]).mean())
            s = float((sep.loc[tasks, f"{unit}_mean"] / sep.loc[tasks, f"{unit}_total"]).mean())
            parts.append((unit, j, s))
    if not parts:
        return _cannot("separate and joint searches share no task")
    ok = all(s < j for _, j, s in parts)
    text = "; ".join(f"{u}: {100 * j:.0f} % joint vs {100 * s:.0f} % separate" for u, j, s in parts)
    return Verdict(HOLDS if ok else FAILS, text + " (paper: heads 49 vs 22, MLPs 75 vs 50)")


def claim_list(alpha: float, par_tolerance: float) -> list[tuple]:
    """(id, section, claim as the paper puts it, how we check it, function of Numbers -> Verdict)."""
    return [
        ("m-half", "4.1", "m-pruning: all architecture blocks lose about half the weights (42-57 %)",
         "pruned share of >= 90 % of heads/MLPs within 0.40-0.60", claim_m_half),
        ("m-early", "4.1", "m-pruning: the earlier layers get pruned more",
         "Spearman correlation of layer index and surviving fraction > 0, p < alpha",
         lambda n: claim_m_early_layers(n, alpha)),
        ("separate-fewer", "4.1 / App. B", "fewer heads (MLPs) remain when heads and MLPs are pruned separately",
         "mean surviving share of heads-only (MLPs-only) searches < joint search", claim_separate_fewer),
        ("s-good-90", "4.2", "'good' s-subnetworks keep >= 90 % of the full model's dev score (by construction)",
         "every task: s good pruned >= 0.9 x full (reported metric)", lambda n: claim_good_keeps_90(n, "s")),
        ("m-good-90", "4.2", "'good' m-subnetworks keep >= 90 % of the full model's dev score (by construction)",
         "every task: m good pruned >= 0.9 x full (reported metric)", lambda n: claim_good_keeps_90(n, "m")),
        ("m-good-best-pruned", "4.2 / abstract", "similarly-sized random and 'bad' m-subnetworks perform worse "
         "than 'good' ones (pruned)", f"most tasks: good pruned > random and bad pruned by > {par_tolerance}",
         lambda n: claim_good_beats(n, "m", "pruned", par_tolerance)),
        ("s-good-best-pruned", "4.2 / abstract", "similarly-sized random and 'bad' s-subnetworks perform worse "
         "than 'good' ones (pruned)", f"most tasks: good pruned > random and bad pruned by > {par_tolerance}",
         lambda n: claim_good_beats(n, "s", "pruned", par_tolerance)),
        ("m-good-retrained-full", "4.2", "retrained 'good' m-subnetworks reach the full model's performance",
         f"most tasks: m good retrained >= full - {FULL_TOLERANCE}", claim_m_good_reaches_full),
        ("m-good-best-retrained", "4.2", "after retraining, random and 'bad' m-subnetworks stay behind 'good' ones",
         f"most tasks: good retrained > random and bad retrained by > {par_tolerance}",
         lambda n: claim_good_beats(n, "m", "retrained", par_tolerance)),
        ("s-random-on-par", "4.2", "random s-subnetworks (retrained) mostly perform on par with 'good' ones",
         f"most tasks: s good retrained - s random retrained <= {par_tolerance} (true random runs, not the "
         "published Figure 2a bars)", lambda n: claim_s_random_on_par(n, par_tolerance)),
        ("s-bad-trainable", "4.3 / abstract", "even the worst ('bad') s-subnetworks remain highly trainable",
         f"most tasks: s bad retrained >= majority baseline + {COMPETITIVE}", claim_s_bad_trainable),
        ("m-more-compression", "4.2 / 6.3", "for 7 of 9 tasks m-pruning prunes 10-15 % more weights than s-pruning",
         ">= 7/9 of tasks: s good minus m good '% surviving weights' >= 10 points", claim_m_more_compression),
        ("subnetworks-large", "4.2 / 6.3", "subnetworks are relatively large with both methods (mostly over 50 % "
         "of the full model)", "most tasks: s and m good keep > 50 % of all parameters", claim_subnetworks_large),
        ("super-small", "4.2 / App. E", "super-survivor subnetworks contain only about 10-26 % of the weights "
         "for most tasks", "most tasks: super good '% surviving weights' within 10-26 %", claim_super_small),
        ("super-loss", "4.2 / App. E", "super-survivor subnetworks lose only about 10 points on average",
         "mean over tasks (WNLI excluded) of full - super good retrained <= 15 points", claim_super_loss),
        ("bad-6ep", "4.3 / App. D", "'bad' s-subnetworks trained for 6 epochs: on most tasks performance went down",
         "most tasks: s bad 6-epoch retrained < s bad 3-epoch retrained", claim_bad_6ep),
        ("m-bad-behind", "4.3 / Table 2", "m-bad is >= 5 points behind s-bad on 6/9 tasks",
         ">= 6/9 of tasks: round(100 x (s bad - m bad)) >= 5 (retrained)", claim_m_bad_behind),
        ("m-bad-cola-stsb", "4.3 / Table 2", "m-bad is particularly bad on CoLA and STS-B",
         "CoLA and STS-B have the two largest s-bad minus m-bad gaps", claim_m_bad_cola_stsb),
        ("s-bad-glove", "4.3 / Table 2", "s-bad is comparable to BiLSTM+GloVe (competitive on 5/9, loses by a "
         "large margin on 2, wins on 2)", f"mean difference to BiLSTM+GloVe >= -{COMPETITIVE}; counts reported",
         claim_s_bad_vs_glove),
        ("randinit-vs-m-bad", "4.3 / Table 2", "random init + random s-pruning is slightly better than m-bad",
         "average over tasks: random init >= m bad", claim_random_init_beats_m_bad),
        ("kappa-range", "5.1", "Fleiss' kappa on head survival across seeds is 0.15-0.32 for all tasks",
         "every task (WNLI excluded): kappa truncated to 2 decimals within [0.15, 0.32]", claim_kappa_range),
        ("cochran-unstable", "5.1", "Cochran's Q did not show the seeds' head masks to be similar (alpha 0.05)",
         f"every task: Cochran's Q over all seeds rejects (p < {alpha})", lambda n: claim_cochran_differs(n, alpha)),
        ("pairs-similar", "5.1", "masks obtained with some pairs of seeds were similar",
         f"at least one seed pair with pairwise Q p >= {alpha}", claim_some_pairs_similar),
        ("low-importance", "5.1 / Figure 3",
         "at any pruning iteration most heads and MLPs have a low importance score",
         "median over searches and iterations of the share of unpruned elements with normalised importance < 0.5 "
         "is > 0.5", claim_low_importance),
        ("overlap-heads", "5.3", "good head subnetworks of different tasks overlap more than expected if independent",
         f"most task pairs: mean overlap > hypergeometric expectation and combined p < {alpha}",
         lambda n: claim_overlap_above_chance(n, "heads", alpha)),
        ("overlap-mlps", "5.3", "MLPs show a similar overlap pattern",
         f"most task pairs: mean MLP overlap > expectation and combined p < {alpha}",
         lambda n: claim_overlap_above_chance(n, "mlps", alpha)),
        ("mrpc-qnli", "5.3", "MRPC and QNLI share over a half of their 'good' subnetworks",
         "mean shared heads > half of the larger task's mean head count", claim_mrpc_qnli_half),
        ("mrpc-qqp-mnli", "5.3", "MRPC and QQP have less in common than MRPC and MNLI",
         "mean shared heads MRPC-QQP < MRPC-MNLI", claim_mrpc_qqp_mnli),
    ]


def evaluate_claims(ours: Numbers, paper: Numbers | None, alpha: float, par_tolerance: float) -> list[dict]:
    """Each claim's verdict on our numbers and, for reference, on the paper's own published numbers."""
    out = []
    for cid, section, text, criterion, fn in claim_list(alpha, par_tolerance):
        mine = _safe(fn, ours)
        theirs = _safe(fn, paper) if paper is not None else None
        out.append({"id": cid, "section": section, "claim": text, "criterion": criterion,
                    "verdict": mine.verdict, "reason": mine.reason, "evidence": _jsonable(mine.evidence),
                    "paper_verdict": theirs.verdict if theirs else None,
                    "paper_reason": theirs.reason if theirs else None})
    return out


def _safe(fn, numbers: Numbers) -> Verdict:
    try:
        return fn(numbers)
    except (KeyError, ValueError, BertLotteryError) as exc:  # missing columns in partial inputs
        return _cannot(f"{type(exc).__name__}: {exc}")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else round(float(obj), 6)
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj


# --- the paper's numbers in the same shape as ours -------------------------------------------------


def paper_numbers(paper: dict) -> Numbers:
    """The published numbers (config/paper_results.yaml) as a Numbers bundle, so each claim can also be
    checked on the paper's own values."""
    rows = []
    for family, kinds in paper["performance"].items():
        for kind, evals in kinds.items():
            for evaluated, tasks in evals.items():
                for task, (mean, std) in tasks.items():
                    rows.append({"task": task, "family": family, "kind": kind, "evaluated": evaluated,
                                 "reported_mean": mean, "reported_std": std})
    rinit = paper["table2"]["rows"]["random_init"]
    rows += [{"task": t, "family": "s", "kind": "randinit_random", "evaluated": "retrained", "reported_mean": v,
              "reported_std": np.nan} for t, v in rinit["values"].items()]
    summary = pd.DataFrame(rows)
    for family, tasks in paper["sizes_percent"].items():
        for task, (mean, _) in tasks.items():
            sel = (summary["task"] == task) & (summary["family"] == family) & (summary["kind"] == "good")
            summary.loc[sel, "paper_fraction_mean"] = mean / 100
            summary.loc[sel, "whole_fraction_mean"] = mean / 100 + 0.21
    return Numbers("paper", summary, stability=_paper_stability(paper), overlaps=_paper_overlaps(paper),
                   survivors=_paper_survivors(paper), majority=paper["majority_baseline"],
                   glue={k: row["values"] for k, row in paper["table2"]["rows"].items()})


def _paper_stability(paper: dict) -> pd.DataFrame:
    rows = []
    for task, s in paper["stability"].items():
        for unit in UNITS:
            kappa, p = s.get(f"kappa_{unit}"), s.get(f"q_p_{unit}")
            rows.append({"task": task, "unit": unit, "n_seeds": 5,
                         "kappa": np.nan if kappa is None else kappa, "q_p": np.nan if p is None else p,
                         "pairs_similar": s["pairs_similar"] if unit == "heads" else 0,
                         "pairs_defined": 10 if unit == "heads" else 0, "pairs_total": 10})
    return pd.DataFrame(rows)


def _paper_overlaps(paper: dict) -> pd.DataFrame:
    """The published overlaps, with expectations from the mean counts (approximate: the per-seed counts
    are not published, so there is no p-value)."""
    rows = []
    totals = {"heads": paper["architecture"]["layers"] * paper["architecture"]["heads"],
              "mlps": paper["architecture"]["mlps"]}
    for unit in UNITS:
        table = paper["overlaps"][unit]
        for task_a, cols in table.items():
            for task_b, (mean, std) in cols.items():
                row = {"unit": unit, "set": "good", "task_a": task_a, "task_b": task_b, "mean": mean, "std": std,
                       "total": totals[unit], "expected_mean": np.nan, "p_combined": np.nan}
                if task_a != task_b:
                    n_a, n_b = table[task_a][task_a][0], table[task_b][task_b][0]
                    row["expected_mean"] = n_a * n_b / totals[unit]
                rows.append(row)
    return pd.DataFrame(rows)


def _paper_survivors(paper: dict) -> pd.DataFrame:
    rows = []
    for task, c in paper["s_counts"].items():
        rows.append({"task": task, "set": "joint", "heads_total": 144, "mlps_total": 12,
                     "heads_mean": np.mean(c["heads"]), "mlps_mean": np.mean(c["mlps"])})
    for task, c in paper.get("s_counts_separate", {}).items():
        rows.append({"task": task, "set": "heads-only", "heads_total": 144, "heads_mean": np.mean(c["heads"])})
        rows.append({"task": task, "set": "mlps-only", "mlps_total": 12, "mlps_mean": np.mean(c["mlps"])})
    return pd.DataFrame(rows)


# --- our numbers -----------------------------------------------------------------------------------


def our_numbers(summary: pd.DataFrame, paper: dict, **tables) -> Numbers:
    summary = summary.copy()
    if {"params_kept_mean", "params_total_mean"} <= set(summary):
        summary["whole_fraction_mean"] = summary["params_kept_mean"] / summary["params_total_mean"]
    return Numbers("ours", summary, majority=paper["majority_baseline"],
                   glue={k: row["values"] for k, row in paper["table2"]["rows"].items()}, **tables)


def claims_markdown(claims: list[dict], notes: list[str]) -> str:
    icon = {HOLDS: "holds", FAILS: "does not hold", UNCHECKABLE: "cannot be checked"}
    lines = ["# The paper's claims checked on our numbers", "",
             "Each claim of Prasanna et al. (2020) with its verdict on our results, the criterion used, the "
             "numbers behind it, and (for reference) the verdict the same criterion gives on the paper's own "
             "published numbers (config/paper_results.yaml).", ""]
    lines += [f"- {note}" for note in notes] + [""]
    counts = pd.Series([c["verdict"] for c in claims]).value_counts()
    lines += ["Summary: " + ", ".join(f"{counts.get(v, 0)} {icon[v]}" for v in (HOLDS, FAILS, UNCHECKABLE)), ""]
    for c in claims:
        lines += [f"## [{c['section']}] {c['claim']}", "",
                  f"**{icon[c['verdict']].upper()}** on our numbers: {c['reason']}", "",
                  f"- criterion: {c['criterion']}",
                  f"- on the paper's numbers: {c['paper_verdict'] or '-'}"
                  + (f" ({c['paper_reason']})" if c["paper_reason"] else ""),
                  ""]
    return "\n".join(lines)


def claims_html(claims: list[dict], notes: list[str]) -> str:
    table = pd.DataFrame([{"section": c["section"], "claim": c["claim"], "verdict (ours)": c["verdict"],
                           "evidence (ours)": c["reason"], "criterion": c["criterion"],
                           "verdict (paper's numbers)": c["paper_verdict"] or "-"} for c in claims])
    notes_html = "".join(f"<li>{n}</li>" for n in notes)
    return ("<html><head><meta charset='utf-8'><title>Claims</title><style>td,th{border:1px solid #ccc;"
            "padding:4px;vertical-align:top;font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
            "</style></head><body><h1>The paper's claims checked on our numbers</h1>"
            f"<ul>{notes_html}</ul>{table.to_html(index=False, escape=True)}</body></html>\n")


# --- CLI -------------------------------------------------------------------------------------------


def _cmd_masks(args) -> None:
    if bool(args.s_masks) == bool(args.original_masks):
        raise BertLotteryError("give exactly one of --s-masks (our files) or --original-masks (a directory)")
    masks = load_original_masks(args.original_masks) if args.original_masks else load_head_mlp_masks(args.s_masks)
    out = Path(args.out_dir)
    stab, pairs = stability(masks, args.alpha)
    survivors = super_survivors(masks).assign(set="joint")
    over = overlaps(masks, args.alpha).assign(search="joint")
    for set_, paths in (("heads-only", args.heads_only_masks), ("mlps-only", args.mlps_only_masks)):
        if paths:
            extra = load_head_mlp_masks(paths)
            survivors = pd.concat([survivors, super_survivors(extra).assign(set=set_)], ignore_index=True)
            over = pd.concat([over, overlaps(extra, args.alpha).assign(search=set_)], ignore_index=True)
    source = args.original_masks or "ours"
    outputs = {"stability": stab, "stability_pairs": pairs, "survivors": survivors, "overlaps": over}
    for name, table in outputs.items():
        write_table(table.assign(mask_source=source), out / name)
    print(f"mask statistics of {len(masks)} task(s) from {source} -> {out}")


def _cmd_m_blocks(args) -> None:
    table = m_block_table(args.m_masks, args.num_heads, args.model_config)
    write_table(table, Path(args.output).with_suffix(""))
    print(f"{table[['task', 'seed']].drop_duplicates().shape[0]} m-masks -> {args.output}")


def _cmd_tests(args) -> None:
    table = paired_tests(read_table(args.metrics), args.bootstrap, args.seed)
    write_table(table, Path(args.output).with_suffix(""))
    print(f"{len(table)} paired comparisons -> {args.output}")


def _optional(path):
    return read_table(path) if path and Path(path).exists() else None


def _cmd_claims(args) -> None:
    paper = load_paper(args.paper)
    importance = importance_summary(args.traces) if args.traces else None
    ours = our_numbers(read_table(args.summary), paper, stability=_optional(args.stability),
                       overlaps=_optional(args.overlaps), survivors=_optional(args.survivors),
                       m_blocks=_optional(args.m_blocks), importance=importance, tests=_optional(args.tests))
    if ours.overlaps is not None and "search" in ours.overlaps:
        ours.overlaps = ours.overlaps[ours.overlaps["search"] == "joint"]
    claims = evaluate_claims(ours, paper_numbers(paper), args.alpha, args.par_tolerance)
    notes = _claim_notes(ours, args)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps({"notes": notes, "claims": claims}, indent=2) + "\n")
    (out / "claims.md").write_text(claims_markdown(claims, notes))
    (out / "claims.html").write_text(claims_html(claims, notes))
    print(f"{len(claims)} claims -> {out}/claims.{{md,json,html}}")


def _claim_notes(ours: Numbers, args) -> list[str]:
    tasks = _tasks(ours)
    seeds = ours.summary["n_seeds"].max() if "n_seeds" in ours.summary else "?"
    notes = [f"Our run: {len(tasks)} task(s) ({', '.join(tasks)}), up to {seeds} seed(s). 'Most tasks' means more "
             "than half of the tasks that have the needed numbers; counts such as '7 of 9' are checked as shares.",
             f"alpha = {args.alpha}; 'on par' tolerance = {args.par_tolerance}; std with ddof = 1 everywhere.",
             "The published Figure 2a plots the good-retrained bars as 'random (retrained)'; the s-random-on-par "
             "claim is checked against the true random-retrained runs (ours and the paper's table).",
             "Paired tests (good vs random vs bad, per task, family and evaluation; t-test and Wilcoxon with Holm "
             "correction, d_z, bootstrap CI) are in paired_tests.csv; with 5 seeds the Wilcoxon test cannot reach "
             "p < 0.05 (smallest two-sided p = 0.0625)."]
    st = ours.stability
    if st is not None and "mask_source" in st and (st["mask_source"] != "ours").any():
        notes.append(f"Head/MLP mask analyses use the original study's masks from {st['mask_source'].iloc[0]}.")
    return notes


def main_stats(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery stats", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("masks", help="stability (kappa, Cochran's Q), super-survivors, overlaps of s-masks")
    p.add_argument("--s-masks", nargs="*", default=[], help="our joint-search good HeadMlpMask files")
    p.add_argument("--original-masks", help="instead: <dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy")
    p.add_argument("--heads-only-masks", nargs="*", default=[], help="good masks of the heads-only search")
    p.add_argument("--mlps-only-masks", nargs="*", default=[], help="good masks of the MLPs-only search")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--out-dir", default="results/analysis")
    p.set_defaults(func=_cmd_masks)

    p = sub.add_parser("m-blocks", help="surviving fraction per head and MLP of m-pruning weight masks")
    p.add_argument("--m-masks", nargs="+", required=True)
    p.add_argument("--num-heads", type=int, help="heads per layer (else the masks' metadata or --model-config)")
    p.add_argument("--model-config", help="a model config.json with num_attention_heads")
    p.add_argument("--output", default="results/analysis/m_blocks.csv", help="CSV (a .parquet copy is written too)")
    p.set_defaults(func=_cmd_m_blocks)

    p = sub.add_parser("tests", help="paired tests of good vs random vs bad across seeds")
    p.add_argument("--metrics", required=True, help="metrics.parquet or .csv from `aggregate`")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
    p.add_argument("--output", default="results/analysis/paired_tests.csv")
    p.set_defaults(func=_cmd_tests)

    p = sub.add_parser("claims", help="the paper's claims checked on our numbers")
    p.add_argument("--summary", required=True, help="summary.parquet or .csv from `aggregate`")
    for name in ("stability", "overlaps", "survivors", "m-blocks", "tests"):
        p.add_argument(f"--{name}", help=f"{name.replace('-', '_')} table (optional)")
    p.add_argument("--traces", nargs="*", default=[], help="s-search trace.json files (Figure 3 claim)")
    p.add_argument("--paper", help="paper results YAML (default config/paper_results.yaml)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--par-tolerance", type=float, default=PAR_TOLERANCE)
    p.add_argument("--out-dir", default="results/analysis")
    p.set_defaults(func=_cmd_claims)

    args = parser.parse_args(argv)
    args.func(args)
