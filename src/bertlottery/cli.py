"""`python -m bertlottery <command> [args]`: one sub-command per Snakemake rule.

Each command lives in the module that does the work, as a `main(argv)` function with its own argparse
parser; this dispatcher imports only the module a command needs, so `--help` and light commands start fast.
"""

from __future__ import annotations

import importlib
import os
import sys

from bertlottery.errors import BertLotteryError

COMMANDS: dict[str, tuple[str, str]] = {
    # command: (module, one-line help)
    "prepare-data": ("bertlottery.glue.prepare", "load, validate, subsample and tokenize one GLUE task"),
    "finetune": ("bertlottery.train.loop", "fine-tune a (masked) model on one task with one seed"),
    "evaluate-full": ("bertlottery.train.evaluation", "dev metrics of a fine-tuned model"),
    "find-s-mask": ("bertlottery.search.spruning", "s-pruning search (heads and MLPs) on a fine-tuned model"),
    "find-m-mask": ("bertlottery.search.mpruning", "m-pruning search (global magnitude) on a fine-tuned model"),
    "derive-s-masks": ("bertlottery.subnetworks.derive", "random and bad s-masks from a good one"),
    "super-masks": ("bertlottery.subnetworks.super", "super-survivor good / random / bad masks of a task"),
    "evaluate-pruned": ("bertlottery.train.evaluation", "dev metrics of a fine-tuned model with a mask applied"),
    "aggregate": ("bertlottery.analysis.aggregate", "all metric JSONs into one tidy table"),
    "stats": ("bertlottery.analysis.stats", "stability, overlaps, m-blocks, paired tests"),
    "claims": ("bertlottery.analysis.claims_report", "the paper's claims checked on our numbers"),
    "tables": ("bertlottery.analysis.tables", "Table 2, Appendix C/E tables, sizes"),
    "figures": ("bertlottery.analysis.figures", "Figures 1, 2, 3, 5 and the Appendix B heatmaps"),
    "patterns": ("bertlottery.patterns.cli", "self-attention pattern extraction and classification"),
    "with-gpu": ("bertlottery.devices", "run a command on its own free GPU (CUDA_VISIBLE_DEVICES; CPU without GPUs)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m bertlottery <command> [options]", "       python -m bertlottery --version", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def version() -> str:
    """The installed package's version (its metadata); the source's __version__ when not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as metadata_version

    try:
        return metadata_version("bertlottery")
    except PackageNotFoundError:
        from bertlottery import __version__

        return __version__


def _limit_threads() -> None:
    """Honour BERTLOTTERY_THREADS (set by the rules from Snakemake's `threads`) before torch starts work."""
    threads = os.environ.get("BERTLOTTERY_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return
    if argv[0] in {"-V", "--version"}:
        print(f"bertlottery {version()}")
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        sys.exit(f"bertlottery: unknown command {command!r}\n\n{_usage()}")
    if command != "with-gpu":  # with-gpu execs the real command, which sets the threads itself: no torch here
        _limit_threads()
    module = importlib.import_module(COMMANDS[command][0])
    entry = getattr(module, "main_" + command.replace("-", "_"))
    try:
        entry(rest)
    except BertLotteryError as exc:
        sys.exit(f"bertlottery {command}: error: {exc}")
