# Config validation, per-task settings and target lists. No science here: that is in src/bertlottery.
# Every function and constant of the workflow lives here: the other .smk files hold only rules (--lint).
import json
import os

from snakemake.utils import validate

from bertlottery.analysis.aggregate import PAPER_RESULTS_PATH
from bertlottery.errors import BertLotteryError
from bertlottery.settings import SCHEMA_PATH, resolve_training
from bertlottery.analysis.tables import FAMILY_TITLES


validate(config, schema=str(SCHEMA_PATH), set_default=True)  # the schema the package carries

TASKS = config["tasks"]
SEEDS = [str(s) for s in config["seeds"]]
# Shell commands spell out `results/...` and `python -m bertlottery` (the linter wants no outside
# variables in them); model jobs start with `python -m bertlottery with-gpu --`, which claims a free GPU
# slot on a local multi-GPU box (see devices.py).
RESULTS = "results"
# Every rule's software: the project's conda environment (used with --use-conda / --sdm conda).
CONDA_ENV = "../../environment.yml"
# CPU threads per model job (torch intra-op threads): jobs share the machine without oversubscribing it.
MODEL_THREADS = 1

try:
    # Resolve every task now, so a bad override stops the run before any job, naming the key.
    TRAINING = {task: resolve_training(config, task) for task in TASKS}
except BertLotteryError as exc:
    raise WorkflowError(str(exc)) from None


# -- masks.smk: the s-search families (PAPER_SPEC section 4)
S_MODES = {"s": "joint", "s-heads": "heads", "s-mlps": "mlps"}
S_FAMILIES = [fam for fam, mode in S_MODES.items() if mode in config["s_pruning"]["modes"]]

# -- subnetworks.smk: retraining variants (PAPER_SPEC section 5, Appendix D)
RETRAIN_FAMILIES = config["retrain"]["families"]
RETRAIN_VARIANTS = {  # variant -> (mask kind, extra flags)
    "good": ("good", ""),
    "random": ("random", ""),
    "bad": ("bad", ""),
    "bad_6ep": ("bad", ""),
    "randinit_random": ("random_like_bad", "--random-init"),
}

# -- patterns.smk (PAPER_SPEC section 8.4)
PATTERNS = config["patterns"]
PATTERN_CONFIGS = ["finetuned", "pretrained"]
# The paper leaves WNLI out of the pattern analysis (no super-survivor heads).
PATTERN_TASKS = [t for t in TASKS if t != "WNLI"]
PATTERN_LABELLED = PATTERNS["labelled_dir"]
# A CNN for each kind whose labelled maps exist (<labelled_dir>/<kind>/labels.csv); other kinds use the rules.
PATTERN_CNN_KINDS = [
    kind for kind in ("raw", "normed")
    if PATTERN_LABELLED and os.path.isfile(os.path.join(PATTERN_LABELLED, kind, "labels.csv"))
]
if PATTERN_LABELLED and not PATTERN_CNN_KINDS:
    raise WorkflowError(f"config patterns.labelled_dir={PATTERN_LABELLED}: neither raw/labels.csv nor "
                        "normed/labels.csv found there (expected CSV files with columns file,label)")
PATTERN_CNN = [f"{RESULTS}/patterns/cnn/{kind}/card.json" for kind in PATTERN_CNN_KINDS]

# -- analysis.smk and report.smk (PAPER_SPEC sections 6-8)
ANALYSIS = f"{RESULTS}/analysis"
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
# The m-pruning block fractions (an input of the claims and Figure 1) exist when m-masks are retrained.
M_BLOCKS = [f"{ANALYSIS}/m_blocks.parquet"] if "m" in RETRAIN_FAMILIES else []
PAPER_YAML = str(PAPER_RESULTS_PATH)  # the paper_results.yaml the installed package carries
ORIGINAL_MASKS = config["analysis"]["original_masks_dir"]
SEPARATE_FAMILIES = [f for f in S_FAMILIES if f != "s"] if config["retrain"]["separate_searches"] else []
TABLE_FAMILIES = [f for f in ["s", "m", "super"] if f in RETRAIN_FAMILIES] + SEPARATE_FAMILIES
# Figure 3 shows CoLA seed 71 in the paper; other runs use their first task / seed.
FIG3_TASK = "CoLA" if "CoLA" in TASKS else TASKS[0]
FIG3_SEED = "71" if "71" in SEEDS else SEEDS[0]


wildcard_constraints:
    task="|".join(t.replace("-", r"\-") for t in TASKS),
    seed=r"\d+",
    family="m|s|super|s-heads|s-mlps",
    kind="good|random|bad|random_like_bad",


# -- settings as rule params (a task's own settings only, so only that task reruns on a change)
def training_json(task):
    """One task's resolved training settings: a rule's params, so only that task reruns on a change."""
    return json.dumps(TRAINING[task], sort_keys=True)


def data_json():
    return json.dumps(config["data"], sort_keys=True)


def section_json(name):
    return json.dumps(config[name], sort_keys=True)


def finetune_dir(task, seed):
    return f"{RESULTS}/finetune/{task}/seed{seed}"


def retrain_settings(wc):
    """The full model's settings; Appendix D's 6-epoch bad retraining changes only the epochs."""
    settings = dict(TRAINING[wc.task])
    if wc.variant == "bad_6ep":
        settings["epochs"] = 6
    return json.dumps(settings, sort_keys=True)


def pattern_model(wc):
    """Fine-tuned: the (task, seed) model; pre-trained: config `model` (hub id or directory)."""
    return f"{finetune_dir(wc.task, wc.seed)}/model" if wc.pconfig == "finetuned" else config["model"]


# -- analysis inputs
def s_good_masks(family="s", task=None):
    """Good masks of one s-search family ('s' joint, 's-heads', 's-mlps'); [] when it does not run."""
    if family not in S_FAMILIES:
        return []
    return expand(f"{RESULTS}/masks/{family}/{{task}}/seed{{seed}}/good.safetensors",
                  task=[task] if task else TASKS, seed=SEEDS)


def m_good_masks():
    if "m" not in RETRAIN_FAMILIES:
        return []
    return expand(f"{RESULTS}/masks/m/{{task}}/seed{{seed}}/good.safetensors", task=TASKS, seed=SEEDS)


def s_traces():
    """Joint s-search traces (Figure 3 and the low-importance claim), when the search saves them."""
    if "s" not in S_FAMILIES or not config["s_pruning"]["save_iterations"]:
        return []
    return expand(f"{RESULTS}/masks/s/{{task}}/seed{{seed}}/trace.json", task=TASKS, seed=SEEDS)


def has_mask_stats():
    return bool(ORIGINAL_MASKS) or "s" in S_FAMILIES


def metric_files():
    """Exactly the metrics JSONs the DAG makes: full models, and the pruned / retrained runs that
    subnetwork_targets lists for the configured families, kinds and extras."""
    full = expand(f"{RESULTS}/finetune/{{task}}/seed{{seed}}/metrics.json", task=TASKS, seed=SEEDS)
    runs = [p for p in subnetwork_targets() if p.endswith("pruned.json") or p.startswith(f"{RESULTS}/retrain/")]
    return full + runs


def table_names():
    """Every table the `tables` rule writes for this configuration, with its caption file."""
    names = {"table2": "table2", "sizes": "sizes", "paired_tests": "paired_tests"}
    names |= {FAMILY_TITLES[f][0]: "appendix_c" for f in TABLE_FAMILIES}
    if has_mask_stats():
        names |= {"s_counts": "s_counts", "stability": "stability"}
        names |= {f"overlaps_{s}{u}": "overlaps" for s in ("", "super_") for u in ("heads", "mlps")}
    return names


def mask_tables():
    """The mask-statistics tables, when there are head/MLP masks to analyse."""
    if not has_mask_stats():
        return {}
    return {name: f"{ANALYSIS}/{name}.parquet" for name in ("stability", "overlaps", "survivors")}


def mask_table_args():
    return " ".join(f"--{name} {path}" for name, path in mask_tables().items())


def optional_flag(flag, paths):
    return f"{flag} {paths[0]}" if paths else ""


def mask_source_args(wc, input):
    """The mask source of the head/MLP analyses (input.masks): the original study's masks directory, or
    our joint good masks."""
    return f"--original-masks {ORIGINAL_MASKS}" if ORIGINAL_MASKS else "--s-masks " + " ".join(input.masks)


# -- targets
def subnetwork_targets():
    families = config["retrain"]["families"]
    kinds = config["retrain"]["kinds"]
    pattern = "{family}/{kind}/{task}/seed{seed}"
    units = expand(pattern, family=families, kind=kinds, task=TASKS, seed=SEEDS)
    extras = []
    if config["retrain"]["bad_6_epochs"]:
        extras += expand(pattern, family="s", kind="bad_6ep", task=TASKS, seed=SEEDS)
    if config["retrain"]["random_init_random_s"]:
        extras += expand(pattern, family="s", kind="randinit_random", task=TASKS, seed=SEEDS)
    if config["retrain"]["separate_searches"]:
        separate = [fam for fam in S_FAMILIES if fam != "s"]
        units += expand(pattern, family=separate, kind=["good", "random"], task=TASKS, seed=SEEDS)
    return (
        [f"{RESULTS}/eval/{unit}/pruned.json" for unit in units]
        + [f"{RESULTS}/retrain/{unit}/metrics.json" for unit in units + extras]
        + [f"{RESULTS}/masks/{fam}/{task}/seed{seed}/search.json" for fam in S_FAMILIES for task in TASKS for seed in SEEDS]
    )


def pattern_targets():
    if not PATTERNS["enabled"] or not PATTERN_TASKS:
        return []
    return [f"{ANALYSIS}/patterns_correlation.json", f"{FIGURES}/figure4_finetuned.pdf"]


def analysis_targets():
    """Everything the analysis and report stages make for this configuration."""
    targets = [f"{ANALYSIS}/claims.{ext}" for ext in ("html", "md", "json")]
    targets += [f"{TABLES}/{name}.{ext}" for name in table_names() for ext in ("csv", "md", "tex", "html")]
    figures = [f"fig2_{fam}" for fam in RETRAIN_FAMILIES + SEPARATE_FAMILIES]
    if has_mask_stats() or "m" in RETRAIN_FAMILIES:
        figures += [f"fig1_{task}" for task in TASKS] + ["appendix_b_all_tasks"]
    if has_mask_stats():
        figures += [f"overlap_{s}_{u}" for s in ("good", "super") for u in ("heads", "mlps")]
    if s_traces():
        figures.append("fig3_importance")
    targets += [f"{FIGURES}/{name}.{ext}" for name in figures for ext in ("png", "pdf")]
    return targets


def all_targets():
    targets = expand(f"{RESULTS}/finetune/{{task}}/seed{{seed}}/metrics.json", task=TASKS, seed=SEEDS)
    return targets + subnetwork_targets() + pattern_targets() + analysis_targets()
