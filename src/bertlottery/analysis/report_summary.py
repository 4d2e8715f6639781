"""`bertlottery report-summary`: the first thing the HTML report (`snakemake --report`) shows: what ran
(model, tasks, seeds, compute), the claims table with marked verdicts, and the headline Figure 2 with the
paper's marks. One self-contained HTML fragment (the figure inlined), included by workflow/report/workflow.rst."""

from __future__ import annotations

import argparse
import base64
import html
import json
from pathlib import Path

from bertlottery.analysis.aggregate import read_table, task_order
from bertlottery.analysis.claims_report import STYLE, claims_table_html, verdict_counts
from bertlottery.io import write_text


def what_ran(metrics, model: str) -> str:
    """One paragraph: the model, tasks, seeds, runs and their summed wall time."""
    tasks = task_order(metrics["task"].unique())
    seeds = sorted(int(s) for s in metrics["seed"].unique())
    hours = float(metrics["wall_time_s"].fillna(0).sum()) / 3600 if "wall_time_s" in metrics else 0.0
    devices = ", ".join(sorted(str(d) for d in metrics["device"].dropna().unique())) if "device" in metrics else "?"
    return (f"<p><b>What ran.</b> Model <code>{html.escape(model)}</code>; {len(tasks)} task(s): "
            f"{html.escape(', '.join(tasks))}; seeds {', '.join(map(str, seeds))}; {len(metrics)} evaluated runs "
            f"(full, pruned, retrained), {hours:.1f} hours of evaluation and retraining jobs on {html.escape(devices)} "
            "(the per-job benchmarks hold every step's time).</p>")


def figure_html(path: Path | None, caption: str) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img style='max-width:100%' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def summary_html(claims: dict, metrics, model: str, figure: Path | None) -> str:
    items = claims["claims"]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in claims.get("notes", []))
    return (f"{STYLE}<h2>Summary</h2>{what_ran(metrics, model)}"
            f"<p><b>The paper's claims on this run:</b> {html.escape(verdict_counts(items))} "
            "(✔ holds, ◐ partly holds, ? not shown, ✘ does not hold, – cannot be checked; docs/protocol.md §Claims). "
            "Each verdict gives every task's effect with its interval; the last column is the same criterion on "
            f"the paper's published numbers.</p>{claims_table_html(items)}"
            + figure_html(figure, "Figure 2 (headline): good, random and bad subnetworks, pruned and retrained, "
                                  "against the full model (dashed: its mean - 1 std) and BiLSTM+GloVe (dotted); "
                                  "the paper's values are marked beside ours. Titles: the share of prunable "
                                  "weights kept.")
            + f"<details><summary>Notes</summary><ul>{notes}</ul></details>\n")


def main_report_summary(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery report-summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", required=True, help="claims.json from `claims`")
    parser.add_argument("--metrics", required=True, help="metrics.parquet from `aggregate`")
    parser.add_argument("--model", required=True, help="the pre-trained model the run used (config `model`)")
    parser.add_argument("--figure", help="the headline Figure 2 as PNG (optional)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    claims = json.loads(Path(args.claims).read_text())
    page = summary_html(claims, read_table(args.metrics), args.model, Path(args.figure) if args.figure else None)
    write_text(args.output, page)
    print(f"report summary -> {args.output}")
