"""`python -m bertlottery <command> [args]`: one sub-command per Snakemake rule.

Each command lives in the module that does the work, as a `main(argv)` function with its own argparse
parser; this dispatcher imports only the module a command needs, so `--help` and light commands start fast.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from bertlottery import jobserver
from bertlottery.errors import BertLotteryError

COMMANDS: dict[str, tuple[str, str]] = {
    # command: (module, one-line help)
    "prepare-data": ("bertlottery.glue.prepare", "load, validate, subsample and tokenize one GLUE task"),
    "finetune": ("bertlottery.train.loop", "fine-tune a (masked) model on one task with one seed"),
    "evaluate-full": ("bertlottery.train.evaluation", "dev metrics of a fine-tuned model"),
    "find-s-mask": ("bertlottery.search.spruning", "s-pruning search (heads and MLPs) on a fine-tuned model"),
    "find-m-mask": ("bertlottery.search.mpruning", "m-pruning search (global magnitude) on a fine-tuned model"),
    "find-f-mask": ("bertlottery.search.fisher", "Fisher-based head/MLP mask sized like the s-good mask (family f)"),
    "find-i-mask": ("bertlottery.search.imp", "IMP with rewinding: prune, rewind, fine-tune per round (family i)"),
    "derive-s-masks": ("bertlottery.subnetworks.derive", "random and bad s-masks from a good one"),
    "super-masks": ("bertlottery.subnetworks.super", "super-survivor good / random / bad masks of a task"),
    "evaluate-pruned": ("bertlottery.train.evaluation", "dev metrics of a fine-tuned model with a mask applied"),
    "speed": ("bertlottery.train.speed", "measured inference and training speed of every head/MLP subnetwork"),
    "aggregate": ("bertlottery.analysis.aggregate", "all metric JSONs into one tidy table"),
    "stats": ("bertlottery.analysis.stats", "stability, overlaps, m-blocks, paired tests"),
    "claims": ("bertlottery.analysis.claims_report", "the paper's claims checked on our numbers"),
    "report-summary": ("bertlottery.analysis.report_summary", "the report's opening page: what ran, the claims, Figure 2"),
    "tables": ("bertlottery.analysis.tables", "Table 2, Appendix C/E tables, sizes"),
    "figures": ("bertlottery.analysis.figures", "Figures 1, 2, 3, 5 and the Appendix B heatmaps"),
    "i-vs-m": ("bertlottery.analysis.imp_vs_m", "i-pruning (IMP) against m-pruning: masks' overlap and scores"),
    "speed-report": ("bertlottery.analysis.speed_report", "the subnetwork_speed table and figure"),
    "bundle": ("bertlottery.bundle.cli", "study bundles: export a chunk's small artifacts, verify, unpack"),
    "patterns": ("bertlottery.patterns.cli", "self-attention pattern extraction and classification"),
    "job-failed": ("bertlottery.cli", "a failed rule's shell: the error line of its log on stderr, its exit status"),
    "doctor": ("bertlottery.doctor", "what a model job here would use (device, GPUs, threads, model, data) and why"),
    "with-gpu": ("bertlottery.devices", "run a command on its own free GPU (CUDA_VISIBLE_DEVICES; CPU without GPUs)"),
    "job-server": ("bertlottery.cli", "serve a workflow's jobs from one process that imported torch once (forks)"),
}
# Commands a job runs in its own process even with a job server: they import nothing heavy.
LOCAL_COMMANDS = {"with-gpu", "job-failed", "job-server", "doctor"}
# What the job server imports before it forks its first job: the imports every model job pays for.
PRELOADED = ("torch", "transformers", "transformers.models.bert.modeling_bert", "bertlottery.train.loop",
             "bertlottery.train.evaluation", "bertlottery.search.spruning", "bertlottery.search.mpruning",
             "bertlottery.subnetworks.derive", "bertlottery.analysis.aggregate")


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


ERROR_LINE = re.compile(r"bertlottery [a-z][\w-]*: error: .*")


def failure_summary(log_text: str, status: int) -> list[str]:
    """What the console shows for a failed job: the signal that killed it, and its log's error line (the
    one-line `bertlottery <command>: error: ...`, else a traceback's last line, else the log's last lines)."""
    import signal

    lines = [line.rstrip() for line in log_text.replace("\r", "\n").splitlines() if line.strip()]
    out = []
    if status > 128:
        try:
            name = signal.Signals(status - 128).name
        except ValueError:
            name = f"signal {status - 128}"
        hint = " (out of memory, or a scheduler's time limit?)" if name == "SIGKILL" else ""
        out.append(f"job killed by {name} (exit status {status}){hint}")
    # anywhere in a line: a progress bar without a final newline glues the next line to its end
    errors = [match.group(0) for match in map(ERROR_LINE.search, lines) if match]
    if errors:
        out.append(errors[-1])
    elif any(line.startswith("Traceback") for line in lines):
        out.append(lines[-1])
    else:
        out += [line if len(line) <= 300 else line[:297] + "..." for line in lines[-5:]]
    return out


def main_job_failed(argv: list[str]) -> None:
    """`job-failed LOG STATUS`: the rules run it after their command failed (`cmd > log 2>&1 || ...`)."""
    if len(argv) != 2 or not argv[1].lstrip("-").isdigit():
        raise BertLotteryError("usage: python -m bertlottery job-failed LOG STATUS")
    log, status = argv[0], int(argv[1])
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            text = handle.read()[-200_000:]
    except OSError:
        text = ""
    for line in failure_summary(text, status):
        print(f"{log}: {line}", file=sys.stderr)
    sys.exit(status or 1)


def main_job_server(argv: list[str]) -> None:
    """`job-server --socket PATH [--parent PID]`: the workflow's fork server (bertlottery.jobserver)."""
    import argparse

    parser = argparse.ArgumentParser(prog="bertlottery job-server", description=main_job_server.__doc__)
    parser.add_argument("--socket", required=True, help="the Unix socket to listen on")
    parser.add_argument("--parent", type=int, help="stop when this process (the one that started it) is gone")
    args = parser.parse_args(argv)
    listener = jobserver.listen(args.socket)  # jobs may connect from now on; they wait for the imports
    # Imports only: no torch operation may run before a fork (OpenMP threads and CUDA do not survive it).
    for module in PRELOADED:
        importlib.import_module(module)
    from transformers import AutoModelForSequenceClassification
    from transformers.models.bert import BertConfig

    AutoModelForSequenceClassification._model_mapping[BertConfig]  # resolves the auto class's lazy imports
    jobserver.serve(listener, main, parent=args.parent)


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
    if command not in LOCAL_COMMANDS and (server := jobserver.server_path()):
        status = jobserver.forward(server, [sys.argv[0], *argv])
        if status is not None:
            sys.exit(status)
        print(f"bertlottery: no job server at {server}; running {command} in this process", file=sys.stderr)
    if command != "with-gpu":  # with-gpu execs the real command, which sets the threads itself: no torch here
        _limit_threads()
    module = importlib.import_module(COMMANDS[command][0])
    entry = getattr(module, "main_" + command.replace("-", "_"))
    try:
        entry(rest)
    except BertLotteryError as exc:
        sys.exit(f"bertlottery {command}: error: {exc}")
