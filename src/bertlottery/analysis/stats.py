"""Statistics of the study (spec section 8): stability across seeds, overlaps, super-survivors, the
m-pruning block fractions of Figure 1a, and paired tests of good vs random vs bad. The paper's claims
checked on these numbers are in claims.py.

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
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import cochrans_q
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.multitest import multipletests

from bertlottery.analysis.aggregate import read_table, task_order, write_table
from bertlottery.errors import BertLotteryError
from bertlottery.glue.tasks import GLUE_TASKS
from bertlottery.masks.types import HeadMlpMask, WeightMask

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

    args = parser.parse_args(argv)
    args.func(args)
