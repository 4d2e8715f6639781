"""What the two mask-search commands (find-s-mask, find-m-mask) share: arguments and inputs."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from bertlottery.glue.splits import load_split
from bertlottery.glue.tasks import TaskSpec, get_task
from bertlottery.modeling.loading import load_classifier
from bertlottery.runtime import configure_torch, pick_device, set_seed
from bertlottery.settings import SECTIONS, Section


def search_parser(prog: str, description: str, section: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--model-dir", required=True, help="fine-tuned model (save_pretrained directory)")
    parser.add_argument("--data-dir", required=True, help="prepared data of the task (prepare-data output)")
    parser.add_argument("--settings", default="{}", help=f"the config's {section} section (JSON)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--state-dir", default=None, help="resumable search state (default <out-dir>/search_state)")
    parser.add_argument("--padding-free", action=argparse.BooleanOptionalAction, default=True,
                        help="the task's training.padding_free: packed forward passes (same numbers to float "
                             "rounding) or the padded HF forward")
    return parser


@dataclass(frozen=True)
class SearchJob:
    """The options every search command shares, typed at the CLI edge."""

    task: str
    seed: int
    model_dir: str
    data_dir: str
    settings: Section  # the command's config section (SPruningSettings, MPruningSettings, FPruningSettings)
    state_dir: Path
    padding_free: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace, section: str) -> SearchJob:
        settings = SECTIONS[section].from_arg(args.settings, "settings", where=f"--settings ({section})")
        state_dir = Path(args.state_dir) if args.state_dir else Path(args.out_dir) / "search_state"
        return cls(args.task, args.seed, args.model_dir, args.data_dir, settings, state_dir, args.padding_free)


@dataclass
class SearchInputs:
    spec: TaskSpec
    settings: Section  # SPruningSettings or MPruningSettings
    state_dir: Path
    started: float
    device: object
    model: object
    dev_split: object


def load_search_inputs(job: SearchJob) -> SearchInputs:
    """The fine-tuned model (eval device) and its dev split (MNLI: matched only, as the original)."""
    spec = get_task(job.task)
    started = time.time()
    configure_torch()  # fp32 matmuls as the paper; BERTLOTTERY_THREADS caps CPU threads
    device = pick_device()
    set_seed(job.seed)  # as the original; matters only for weights missing from the checkpoint
    model = load_classifier(job.model_dir, spec.num_labels).to(device)
    return SearchInputs(spec, job.settings, job.state_dir, started, device, model, load_split(job.data_dir, "dev"))
