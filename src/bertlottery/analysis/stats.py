"""Statistics of the study (docs/protocol.md §Statistics): stability across seeds, overlaps, super-survivors, the
m-pruning block fractions of Figure 1a, paired tests of good vs random vs bad, and the sensitivity of the
searches' stopping to dev-set sampling (sensitivity.py). The paper's claims
checked on these numbers are in claims.py.

Library routines do the arithmetic: statsmodels (Fleiss' kappa, Cochran's Q, Holm), scipy (hypergeometric
tail, t-test, Wilcoxon, bootstrap, Fisher's combination). Degenerate inputs (two seeds, identical masks,
constant differences) give NaN with a stated reason, never an exception.

Masks come from our files (HeadMlpMask / WeightMask safetensors, or for the m-blocks a WeightMask's summary
from a study bundle) or, for the head/MLP analyses, from a directory in the original study's layout
<dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bertlottery.analysis.aggregate import read_table, write_frame
from bertlottery.analysis.m_blocks import m_block_table
from bertlottery.analysis.masksets import load_head_mlp_masks, load_original_masks
from bertlottery.analysis.paired_tests import paired_tests
from bertlottery.analysis import sensitivity
from bertlottery.analysis.table_format import write_report_table
from bertlottery.analysis.stability import overlaps, stability, super_survivors
from bertlottery.errors import BertLotteryError
from bertlottery.layout import Layout

RESULTS = Layout()  # the CLI's default paths

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
        write_frame(table.assign(mask_source=source), out / f"{args.prefix}{name}")
    print(f"mask statistics of {len(masks)} task(s) from {source} -> {out}")


def _cmd_m_blocks(args) -> None:
    table = m_block_table(args.m_masks, args.model_config)
    write_frame(table, Path(args.output).with_suffix(""))
    print(f"{table[['task', 'seed']].drop_duplicates().shape[0]} m-masks -> {args.output}")


def _cmd_tests(args) -> None:
    table = paired_tests(read_table(args.metrics), args.bootstrap, args.seed)
    write_frame(table, Path(args.output).with_suffix(""))
    print(f"{len(table)} paired comparisons -> {args.output}")


def _cmd_sensitivity(args) -> None:
    table = sensitivity.sensitivity(read_table(args.metrics), pd.read_parquet(args.dev_bootstrap),
                                    dict(args.thresholds))
    write_frame(table, Path(args.output).with_suffix(""))
    written = write_report_table(Path(args.table).with_suffix(""), table, sensitivity.display(table),
                                 sensitivity.CAPTION, sensitivity.notes(table))
    print(f"sensitivity: {len(table)} (task, seed, family) rows -> {args.output}, {written[1]}; "
          f"{int(table['nonconverged'].sum())} of {int(table['retrained'].sum())} retrainings not converged")


def main_stats(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bertlottery stats", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("masks", help="stability (kappa, Cochran's Q), super-survivors, overlaps of s-masks")
    p.add_argument("--s-masks", nargs="*", default=[], help="our joint-search good HeadMlpMask files")
    p.add_argument("--original-masks", help="instead: <dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy")
    p.add_argument("--heads-only-masks", nargs="*", default=[], help="good masks of the heads-only search")
    p.add_argument("--mlps-only-masks", nargs="*", default=[], help="good masks of the MLPs-only search")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--out-dir", default=RESULTS.analysis_dir())
    p.add_argument("--prefix", default="", help="before each output's name (f_: the f-good masks' statistics)")
    p.set_defaults(func=_cmd_masks)

    p = sub.add_parser("m-blocks", help="surviving fraction per head and MLP of m-pruning weight masks")
    p.add_argument("--m-masks", nargs="+", required=True,
                   help="m-pruning WeightMask files, or their summaries (<kind>.summary.json) from a study bundle "
                        "exported with --m-masks summary: the same table")
    p.add_argument("--model-config", required=True,
                   help="config.json of the model the masks were found on (its layers, heads and parameter roles)")
    p.add_argument("--output", default=RESULTS.analysis_file("m_blocks", "csv"), help="CSV (a .parquet copy is written too)")
    p.set_defaults(func=_cmd_m_blocks)

    p = sub.add_parser("tests", help="paired tests of good vs random vs bad across seeds")
    p.add_argument("--metrics", required=True, help="metrics.parquet or .csv from `aggregate`")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
    p.add_argument("--output", default=RESULTS.analysis_file("paired_tests", "csv"))
    p.set_defaults(func=_cmd_tests)

    p = sub.add_parser("sensitivity", help="the 90 %% stopping band against dev-set sampling error; retrainings "
                                           "not converged")
    p.add_argument("--metrics", required=True, help="metrics.parquet (or .csv) from `aggregate`")
    p.add_argument("--dev-bootstrap", required=True, help="dev_bootstrap.parquet from `aggregate`")
    p.add_argument("--thresholds", nargs="*", default=[], type=sensitivity.threshold_arg,
                   help="FAMILY=THRESHOLD of each threshold search (m=0.9 s=0.9 ...); none: only the retrainings")
    p.add_argument("--output", default=RESULTS.analysis_file("sensitivity", "csv"), help="CSV (a .parquet copy too)")
    p.add_argument("--table", default=RESULTS.table_file("sensitivity", "csv"), help="the table (.csv, .md, .tex, .html)")
    p.set_defaults(func=_cmd_sensitivity)

    args = parser.parse_args(argv)
    args.func(args)
