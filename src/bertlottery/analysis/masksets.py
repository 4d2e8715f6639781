"""Head/MLP mask sets keyed by task and seed: our HeadMlpMask files, or a directory in the original
study's layout <dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertlottery.analysis.aggregate import task_order
from bertlottery.errors import BertLotteryError
from bertlottery.glue.tasks import GLUE_TASKS
from bertlottery.layout import run_of, seed_of_dir
from bertlottery.masks.types import HeadMlpMask

# task -> seed -> mask
MaskSet = dict[str, dict[int, "HeadMlpMask"]]
UNITS = ("heads", "mlps")


# --- loading masks ---------------------------------------------------------------------------------


def _task_seed(path: Path, meta: dict) -> tuple[str, int]:
    """(task, seed) from a mask's metadata, else from its path .../<task>/seed<seed>/<kind>.safetensors."""
    task, seed = meta.get("task"), meta.get("seed")
    if task is None or seed is None:
        run = run_of(path)
        if run is None:
            raise BertLotteryError(f"{path}: no task/seed in the metadata or the path "
                                   "(expected .../<task>/seed<seed>/<kind>.safetensors)")
        task, seed = task or run[0], seed or run[1]
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
        seed = seed_of_dir(directory.name)
        if seed is None:
            raise BertLotteryError(f"{directory}: expected a seed_<S> directory name")
        task = _canonical_task(directory.parent.name)
        out.setdefault(task, {})[int(seed)] = HeadMlpMask.from_original_npy(directory)
    return _sorted(out)


def _sorted(masks: MaskSet) -> MaskSet:
    return {task: dict(sorted(masks[task].items())) for task in task_order(masks)}


def unit_array(mask: "HeadMlpMask", unit: str) -> np.ndarray:
    """The flat boolean survival vector of one unit type ('heads' or 'mlps')."""
    return getattr(mask, unit).numpy().astype(bool).reshape(-1)
