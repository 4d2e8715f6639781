# Config validation, per-task settings and target lists. No science here: that is in src/bertlottery.
import json

from snakemake.utils import validate

from bertlottery.errors import BertLotteryError
from bertlottery.settings import config_hash, resolve_training


validate(config, schema="../schemas/config.schema.yaml", set_default=True)

TASKS = config["tasks"]
SEEDS = [str(s) for s in config["seeds"]]
RESULTS = "results"
PY = "python -m bertlottery"
# Prefix of every GPU job: claims a free GPU slot on a local multi-GPU box (see devices.py).
GPU = f"{PY} with-gpu --"
# CPU threads per model job (torch intra-op threads): jobs share the machine without oversubscribing it.
MODEL_THREADS = 1

try:
    # Resolve every task now, so a bad override stops the run before any job, naming the key.
    TRAINING = {task: resolve_training(config, task) for task in TASKS}
except BertLotteryError as exc:
    raise WorkflowError(str(exc)) from None


wildcard_constraints:
    task="|".join(t.replace("-", r"\-") for t in TASKS),
    seed=r"\d+",
    family="m|s|super|s-heads|s-mlps",
    kind="good|random|bad|random_like_bad",


def training_json(task):
    """One task's resolved training settings: a rule's params, so only that task reruns on a change."""
    return json.dumps(TRAINING[task], sort_keys=True)


def data_json():
    return json.dumps(config["data"], sort_keys=True)


def section_json(name):
    return json.dumps(config[name], sort_keys=True)


def finetune_dir(task, seed):
    return f"{RESULTS}/finetune/{task}/seed{seed}"


def all_targets():
    targets = expand(f"{RESULTS}/finetune/{{task}}/seed{{seed}}/metrics.json", task=TASKS, seed=SEEDS)
    targets += [t for extra in EXTRA_TARGETS for t in extra()]
    return targets


# Later stages append functions that return their targets.
EXTRA_TARGETS = []
