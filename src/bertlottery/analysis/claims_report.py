"""`bertlottery claims`: the claims of claims.py evaluated on our numbers and on the paper's published numbers
(the packaged resources/paper_results.yaml, in the same `Numbers` shape), written as claims.{json,md,html}."""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bertlottery.analysis.aggregate import load_paper, read_table
from bertlottery.analysis.claims import (
    FAILS,
    HOLDS,
    PAR_TOLERANCE,
    UNCHECKABLE,
    Numbers,
    Verdict,
    _cannot,
    _tasks,
    claim_list,
)
from bertlottery.analysis.claims_f import f_claims, has_f
from bertlottery.analysis.importance import importance_summary
from bertlottery.analysis.masksets import UNITS
from bertlottery.errors import BertLotteryError


def evaluate_claims(ours: Numbers, paper: Numbers | None, alpha: float, par_tolerance: float) -> list[dict]:
    """Each claim's verdict on our numbers and, for reference, on the paper's own published numbers."""
    out = []
    extra = f_claims(alpha, par_tolerance) if has_f(ours) else []  # beyond the paper: the optional family f
    for cid, section, text, criterion, fn in claim_list(alpha, par_tolerance) + extra:
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
    """The published numbers (resources/paper_results.yaml) as a Numbers bundle, so each claim can also be
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
             "published numbers (bertlottery/resources/paper_results.yaml).", ""]
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
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return ("<html><head><meta charset='utf-8'><title>Claims</title><style>td,th{border:1px solid #ccc;"
            "padding:4px;vertical-align:top;font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
            "</style></head><body><h1>The paper's claims checked on our numbers</h1>"
            f"<ul>{notes_html}</ul>{table.to_html(index=False, escape=True)}</body></html>\n")


def _optional(path):
    return read_table(path) if path and Path(path).exists() else None


def cmd_claims(args) -> None:
    paper = load_paper(args.paper)
    importance = importance_summary(args.traces) if args.traces else None
    ours = our_numbers(read_table(args.summary), paper, stability=_optional(args.stability),
                       overlaps=_optional(args.overlaps), survivors=_optional(args.survivors),
                       m_blocks=_optional(args.m_blocks), importance=importance, tests=_optional(args.tests),
                       stability_f=_optional(args.f_stability))
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


def main_claims(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bertlottery claims", description="the paper's claims checked on our numbers")
    p.add_argument("--summary", required=True, help="summary.parquet or .csv from `aggregate`")
    for name in ("stability", "overlaps", "survivors", "m-blocks", "tests", "f-stability"):
        p.add_argument(f"--{name}", help=f"{name.replace('-', '_')} table (optional)")
    p.add_argument("--traces", nargs="*", default=[], help="s-search trace.json files (Figure 3 claim)")
    p.add_argument("--paper", help="paper results YAML (default: the packaged resources/paper_results.yaml)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--par-tolerance", type=float, default=PAR_TOLERANCE)
    p.add_argument("--out-dir", default="results/analysis")
    cmd_claims(p.parse_args(argv))
