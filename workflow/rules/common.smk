# Config validation, per-task settings and target lists. No science here: that is in src/bertlottery.
# Every function and constant of the workflow lives here: the other .smk files hold only rules (--lint).
import itertools
import json
import os
import shlex

from snakemake.utils import validate
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from bertlottery import jobserver

from bertlottery.analysis.aggregate import PAPER_RESULTS_PATH
from bertlottery.bundle.config import study_config
from bertlottery.bundle.archive import manifest_input
from bertlottery.bundle.unpack import restored_files
from bertlottery.errors import BertLotteryError
from bertlottery.analysis.importance import figure3_run
from bertlottery.families import (FAMILIES, FISHER, IMP, M, MASK_KINDS, S, S_HEADS, S_MLPS, S_MODES, SUPER,
                                  VARIANTS, families_where, switched_variants, variant)
from bertlottery.glue.reading import check_glue_dir
from bertlottery.glue.tasks import CUSTOM_TASKS_ENV, check_task_names, custom_tasks_json
from bertlottery.io import check_writable_folder
from bertlottery.layout import RESULTS_ROOT, Layout, summary_of_mask
from bertlottery.patterns.extract import MODEL_CONFIGS, SELECTIONS, pattern_tasks
from bertlottery.settings import SCHEMA_PATH, check_config, resolve_data, resolve_training, without_neutral_defaults


try:
    # Before any job: one line naming the key, the value and the rule broken (not the whole schema);
    # a local model or glue_dir that does not exist; overrides of tasks not run; --config seeds=[42].
    # config `bundles`: analyse study bundles instead of running the study. Their recorded config replaces
    # this one (tasks and seeds: the bundles' union; no model or glue_dir needed); only the analysis and
    # report rules are included.
    BUNDLES = config.get("bundles") or []
    BUNDLES = [BUNDLES] if isinstance(BUNDLES, str) else [str(b) for b in BUNDLES]
    BUNDLE_FILES = set()
    if BUNDLES:
        ignored = sorted(set(config) - {"bundles"})
        if ignored:  # they would be dropped without a word: the bundles' config replaces them
            raise BertLotteryError(f"config {', '.join(ignored)}: not used with config `bundles` (the analyses "
                                   "run with the settings the bundles recorded); remove them, or run the study")
        bundle_config = study_config(BUNDLES)  # each bundle checked against its manifest first
        config.clear()
        config.update(bundle_config)
        # The results files the bundles restore (their manifests' paths, under results/).
        BUNDLE_FILES = {os.path.normpath(os.path.join(RESULTS_ROOT, path)) for bundle in BUNDLES
                        for path in restored_files(bundle)}
    else:
        check_config(config)
    if workflow.is_main_process:  # a read-only or full results folder: one line, not a traceback
        check_writable_folder(RESULTS_ROOT)
    # Tasks of one's own (docs/protocol.md §Your own task): checked here, handed to every job (get_task reads
    # them from this variable), their files' paths made absolute from the working directory.
    check_task_names(config.get("tasks") or [], config.get("custom_tasks"))
    os.environ[CUSTOM_TASKS_ENV] = custom_tasks_json(config.get("custom_tasks"))
except BertLotteryError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, schema=str(SCHEMA_PATH), set_default=True)  # fills in the defaults of the schema

TASKS = config["tasks"]
SEEDS = [str(s) for s in config["seeds"]]
# Every results path comes from bertlottery.layout (wildcards such as "{task}" pass through it); shell
# commands take them from {input}, {output}, {params} and {log} only. They spell out `python -m
# bertlottery` (the linter wants no outside variables in them); model jobs start with `python -m
# bertlottery with-gpu --`, which claims a free GPU slot on a local multi-GPU box (see devices.py).
LAYOUT = Layout()
# Every rule's software under --sdm conda: environment.yml's packages (workflow/envs/bertlottery.yaml), then
# bertlottery itself from this checkout, installed by bertlottery.post-deploy.sh beside it. That script
# runs from a copy under .snakemake/conda/, so it learns where the checkout is from this variable.
CONDA_ENV = "../envs/bertlottery.yaml"
if os.path.isfile(os.path.join(workflow.basedir, "pyproject.toml")):
    os.environ.setdefault("BERTLOTTERY_SOURCE_DIR", os.path.abspath(workflow.basedir))
# CPU threads per model job (torch intra-op threads): jobs share the machine without oversubscribing it.
MODEL_THREADS = 1

try:
    if config.get("glue_dir") and not BUNDLES:  # a task the folder lacks fails now, not in prepare_data
        check_glue_dir(config["glue_dir"], TASKS)
    # Resolve every task now, so a bad override stops the run before any job, naming the key.
    TRAINING = {task: resolve_training(config, task) for task in TASKS}
    DATA = {task: resolve_data(config, task) for task in TASKS}
except BertLotteryError as exc:
    raise WorkflowError(str(exc)) from None


# -- search.smk: the s-search families of the configured modes (docs/protocol.md §s-pruning); the study's
# families and retraining variants are bertlottery.families' registries
S_FAMILIES = [S_MODES[mode] for mode in S_MODES if mode in config["s_pruning"]["modes"]]
# The families whose random and bad masks derive-s-masks draws from the good mask (s, f, s-heads, s-mlps).
S_RULE_FAMILIES = families_where(deriver="derive-s-masks")

# -- train.smk: the retrained families (docs/protocol.md §Evaluation and retraining)
RETRAIN_FAMILIES = config["retrain"]["families"]
# Family f (beyond the paper, docs/protocol.md §f-pruning): Fisher-based masks sized like the s-good ones.
F_FAMILY = FISHER in RETRAIN_FAMILIES
# Family i (beyond the paper, docs/protocol.md §i-pruning): IMP with rewinding, one fine-tune per round.
I_FAMILY = IMP in RETRAIN_FAMILIES
# Its comparison with m-pruning (analysis/imp_vs_m.py) needs both families' masks.
I_VS_M = I_FAMILY and M in RETRAIN_FAMILIES

# -- patterns.smk (paper §5.2)
PATTERNS = config["patterns"]
PATTERN_CONFIGS = list(MODEL_CONFIGS)
PATTERN_SELECTIONS = list(SELECTIONS)
PATTERN_TASKS = pattern_tasks(TASKS)  # the paper's choice of tasks (bertlottery.patterns.extract)
PATTERN_LABELLED = PATTERNS["labelled_dir"]
# A CNN for each kind whose labelled maps exist (<labelled_dir>/<kind>/labels.csv); other kinds use the rules.
PATTERN_CNN_KINDS = [
    kind for kind in ("raw", "normed")
    if PATTERN_LABELLED and os.path.isfile(os.path.join(PATTERN_LABELLED, kind, "labels.csv"))
]
if PATTERN_LABELLED and not PATTERN_CNN_KINDS:
    raise WorkflowError(f"config patterns.labelled_dir={PATTERN_LABELLED}: neither raw/labels.csv nor "
                        "normed/labels.csv found there (expected CSV files with columns file,label)")
PATTERN_CNN = [LAYOUT.patterns_cnn_card(kind) for kind in PATTERN_CNN_KINDS]

# -- train.smk and report.smk: measured speed of the subnetworks (beyond the paper; speed.enabled)
SPEED = config["speed"]

# -- analysis.smk and report.smk (docs/protocol.md §Outputs)
# The m-pruning block fractions (an input of the claims and Figure 1) exist when m-masks are retrained.
M_BLOCKS = [LAYOUT.analysis_file("m_blocks", "parquet")] if M in RETRAIN_FAMILIES else []
PAPER_YAML = str(PAPER_RESULTS_PATH)  # the paper_results.yaml the installed package carries
ORIGINAL_MASKS = config["analysis"]["original_masks_dir"]
SEPARATE_FAMILIES = [f for f in S_FAMILIES if f != S] if config["retrain"]["separate_searches"] else []
TABLE_FAMILIES = [f for f in FAMILIES if f in RETRAIN_FAMILIES] + SEPARATE_FAMILIES
FIG3_TASK, FIG3_SEED = figure3_run(TASKS, SEEDS)  # the paper's run where this one has it


wildcard_constraints:
    task="|".join(t.replace("-", r"\-") for t in TASKS),
    seed=r"\d+",
    family="|".join(FAMILIES),
    kind="|".join(MASK_KINDS),


# -- settings as rule params (a task's own settings only, so only that task reruns on a change)
def training_json(task):
    """One task's resolved training settings: a rule's params, so only that task reruns on a change."""
    return json.dumps(without_neutral_defaults(TRAINING[task]), sort_keys=True)


def padding_free_flag(wc):
    """The searches run their forward passes as the task's fine-tuning does (training.padding_free)."""
    return "--padding-free" if TRAINING[wc.task]["padding_free"] else "--no-padding-free"


def custom_task_json(task):
    """A custom task's entry (prepare_data's params: a change of its files, columns or labels reruns it)."""
    return json.dumps(json.loads(os.environ[CUSTOM_TASKS_ENV]).get(task), sort_keys=True)


def data_json(task):
    """One task's data settings (data + its overrides): prepare_data's params, so only that task reruns."""
    return json.dumps(DATA[task], sort_keys=True)


def section_json(name):
    return json.dumps(config[name], sort_keys=True)


def s_pruning_json(wc):
    """The s_pruning section of one search family; heads_only_empty_layers only for the heads-only search,
    the one it changes (the key's arrival or a change of it does not rerun the other searches)."""
    section = dict(config["s_pruning"])
    if FAMILIES[wc.sfamily].s_mode != "heads":
        section.pop("heads_only_empty_layers", None)
    return json.dumps(section, sort_keys=True)


# -- paths of one job as params (functions of its wildcards)
def data_dir(wc):
    return LAYOUT.data_dir(wc.task)


def finetune_dir(wc):
    return LAYOUT.finetune_dir(wc.task, wc.seed)


def s_mask_dir(wc):
    return LAYOUT.mask_dir(wc.sfamily, wc.task, wc.seed)


def f_mask_dir(wc):
    return LAYOUT.mask_dir(FISHER, wc.task, wc.seed)


def m_mask_dir(wc):
    return LAYOUT.mask_dir(M, wc.task, wc.seed)


def i_mask_dir(wc):
    return LAYOUT.mask_dir(IMP, wc.task, wc.seed)


def super_dir(wc):
    return LAYOUT.super_dir(wc.task)


def retrain_dir(wc):
    return LAYOUT.retrain_dir(wc.family, wc.variant, wc.task, wc.seed)


def output_dir(wc, output):
    """The directory of a rule's first output (a command that writes several files into one directory)."""
    return os.path.dirname(output[0])


def table_stem(wc, output):
    """A table rule's html output without extension (write_report_table writes <stem>.{csv,md,tex,html})."""
    return os.path.splitext(output.html)[0]


def figure_stem(wc, output):
    """A figure rule's output without extension (the figure commands write <stem>.png and <stem>.pdf)."""
    return os.path.splitext(output.pdf)[0]


# -- retraining variants
def variant_mask(wc):
    """The mask file a retraining variant starts from (its mask kind in bertlottery.families.VARIANTS)."""
    return LAYOUT.mask_file(wc.family, wc.task, wc.seed, variant(wc.variant).mask_kind)


def variant_flags(wc):
    return " ".join(variant(wc.variant).flags)


def variant_training_json(wc):
    """The full model's settings; a variant may change the epochs (Appendix D's 6-epoch bad retraining)."""
    settings = dict(TRAINING[wc.task])
    epochs = variant(wc.variant).epochs
    if epochs is not None:
        settings["epochs"] = epochs
    return json.dumps(settings, sort_keys=True)


def pattern_model(wc):
    """Fine-tuned: the (task, seed) model; pre-trained: config `model` (hub id or directory)."""
    return LAYOUT.finetuned_model(wc.task, wc.seed) if wc.pconfig == "finetuned" else config["model"]


# -- analysis inputs
def s_good_masks(family=S, task=None):
    """Good masks of one s-search family ('s' joint, 's-heads', 's-mlps'); [] when it does not run."""
    if family not in S_FAMILIES:
        return []
    return [LAYOUT.mask_file(family, t, seed, "good") for t in ([task] if task else TASKS) for seed in SEEDS]


def m_good_masks():
    if M not in RETRAIN_FAMILIES:
        return []
    return [LAYOUT.mask_file(M, task, seed, "good") for task in TASKS for seed in SEEDS]


def in_bundles(path):
    return os.path.normpath(path) in BUNDLE_FILES


def m_block_inputs():
    """What m_blocks reads of each good m-mask: the mask, or (config `bundles`) its summary where the bundles
    hold that in the mask's place (`bundle export --m-masks summary`); m_block_table gives the same table."""
    if not BUNDLES:
        return m_good_masks()
    return [summary_of_mask(mask) if not in_bundles(mask) and in_bundles(summary_of_mask(mask)) else mask
            for mask in m_good_masks()]


def f_good_masks():
    if not F_FAMILY:
        return []
    return [LAYOUT.mask_file(FISHER, task, seed, "good") for task in TASKS for seed in SEEDS]


def good_masks_and_records(family):
    """Good masks and search records of every task and seed of one weight-mask family (i-vs-m comparison)."""
    return {"masks": [LAYOUT.mask_file(family, task, seed, "good") for task in TASKS for seed in SEEDS],
            "records": [LAYOUT.search_record(family, task, seed) for task in TASKS for seed in SEEDS]}


def i_vs_m_inputs():
    """The i-vs-m comparison's mask and search-record inputs (none without both families)."""
    if not I_VS_M:
        return {}
    i, m = good_masks_and_records(IMP), good_masks_and_records(M)
    return {"i_masks": i["masks"], "i_records": i["records"], "m_masks": m["masks"], "m_records": m["records"]}


def f_stats_tables():
    """The stability statistics of the f-good masks across seeds (family f only)."""
    return {"f_stability": LAYOUT.analysis_file("f_stability", "parquet")} if F_FAMILY else {}


def s_traces():
    """Joint s-search traces (Figure 3 and the low-importance claim), when the search saves them."""
    if S not in S_FAMILIES or not config["s_pruning"]["save_iterations"]:
        return []
    return [LAYOUT.search_trace(S, task, seed) for task in TASKS for seed in SEEDS]


def threshold_searches():
    """family -> threshold of each configured search that stops on its pruned score (m, the s-searches); the
    sensitivity table reads them. Without one, it still counts the non-converged retrainings."""
    found = {f: config["s_pruning"]["threshold"] for f in S_FAMILIES}
    if M in RETRAIN_FAMILIES:
        found[M] = config["m_pruning"]["threshold"]
    return found


def has_mask_stats():
    return bool(ORIGINAL_MASKS) or S in S_FAMILIES


def metric_files():
    """Exactly the metrics JSONs the DAG makes: full models, and the pruned / retrained runs of the
    configured families, kinds and variants."""
    return full_metric_files() + pruned_metric_files() + retrain_metric_files()


def table_names():
    """Every table the `tables` rule writes for this configuration, with its caption file."""
    names = {"table2": "table2", "sizes": "sizes", "paired_tests": "paired_tests"}
    names |= {FAMILIES[f].table: "appendix_c" for f in TABLE_FAMILIES}
    if F_FAMILY:
        names["stability_f"] = "stability"
    if has_mask_stats():
        names |= {"s_counts": "s_counts", "stability": "stability"}
        names |= {f"overlaps_{s}{u}": "overlaps" for s in ("", "super_") for u in ("heads", "mlps")}
    return names


def mask_tables():
    """The mask-statistics tables, when there are head/MLP masks to analyse."""
    if not has_mask_stats():
        return {}
    return {name: LAYOUT.analysis_file(name, "parquet") for name in ("stability", "overlaps", "survivors")}


def mask_table_args():
    return " ".join(f"--{name} {path}" for name, path in mask_tables().items())


def mask_pair_tables():
    """The per-seed-pair agreement table (claims), when there are head/MLP masks to analyse."""
    return {"stability_pairs": LAYOUT.analysis_file("stability_pairs", "parquet")} if has_mask_stats() else {}


def claims_mask_args():
    """The claims' mask-statistics arguments: the tables, and the per-seed-pair agreement."""
    pairs = [f"--stability-pairs {path}" for path in mask_pair_tables().values()]
    return " ".join([mask_table_args(), *pairs])


def optional_flag(flag, paths):
    return f"{flag} {paths[0]}" if paths else ""


def mask_source_args(wc, input):
    """The mask source of the head/MLP analyses (input.masks): the original study's masks directory, or
    our joint good masks."""
    return f"--original-masks {ORIGINAL_MASKS}" if ORIGINAL_MASKS else "--s-masks " + " ".join(input.masks)


def f_stats_args(wc, input):
    return f"--f-stability {input.f_stability}" if F_FAMILY else ""


# -- targets
def runs(families, names):
    """(family, kind or variant, task, seed) of every task and seed, in expand()'s order."""
    return list(itertools.product(families, names, TASKS, SEEDS))


def pruned_runs():
    """(family, mask kind, task, seed) of every pruned evaluation: the configured families and kinds, and
    the separate searches' good and random masks."""
    pruned = runs(config["retrain"]["families"], config["retrain"]["kinds"])
    if config["retrain"]["separate_searches"]:
        pruned += runs(SEPARATE_FAMILIES, ["good", "random"])
    return pruned


def retrain_runs():
    """(family, variant, task, seed) of every retraining: each pruned run's mask retrained (the variant
    named as its mask kind), then the variants config `retrain` switches on (Appendix D's 6-epoch bad and
    Table 2's random-init random s-masks)."""
    extras = []
    for extra in switched_variants(config["retrain"]):
        extras += runs(extra.families, [extra.name])
    return pruned_runs() + extras


# (family, mask kind) of the pruned evaluations; the same for every task and seed (evaluate_pruned's outputs)
PRUNED_MASKS = list(dict.fromkeys((family, kind) for family, kind, _, _ in pruned_runs()))


def pruned_eval_args(wc, input, output):
    """evaluate-pruned's --mask/--family/--kind/--output for each of PRUNED_MASKS, in input order."""
    return " ".join(
        f"--mask {shlex.quote(mask)} --family {family} --kind {kind} --output {shlex.quote(out)}"
        for (family, kind), mask, out in zip(PRUNED_MASKS, input.masks, output)
    )


def speed_mask_args(wc, input):
    """speed's --mask/--family/--kind for each of PRUNED_MASKS, in input order (m-masks: sparsity only)."""
    return " ".join(f"--mask {shlex.quote(mask)} --family {family} --kind {kind}"
                    for (family, kind), mask in zip(PRUNED_MASKS, input.masks))


def speed_files():
    """One speed JSON per (task, seed) when speed.enabled."""
    if not SPEED["enabled"]:
        return []
    return [LAYOUT.speed_record(task, seed) for task in TASKS for seed in SEEDS]


def full_metric_files():
    return [LAYOUT.full_metrics(task, seed) for task in TASKS for seed in SEEDS]


def pruned_metric_files():
    return [LAYOUT.pruned_metrics(*run) for run in pruned_runs()]


def retrain_metric_files():
    return [LAYOUT.retrain_metrics(*run) for run in retrain_runs()]


def subnetwork_targets():
    searches = [LAYOUT.search_record(fam, task, seed) for fam in S_FAMILIES + [FISHER] * F_FAMILY + [IMP] * I_FAMILY
                for task in TASKS for seed in SEEDS]
    return pruned_metric_files() + retrain_metric_files() + searches


def pattern_targets():
    if not PATTERNS["enabled"] or not PATTERN_TASKS:
        return []
    return [LAYOUT.analysis_file("patterns_correlation", "json"), LAYOUT.figure_file("figure4_finetuned", "pdf")]


# The family of the report summary's Figure 2: s-pruning's (the paper's headline), else the first retrained
HEADLINE_FAMILY = S if S in RETRAIN_FAMILIES else next(iter(RETRAIN_FAMILIES), None)


def analysis_targets():
    """Everything the analysis and report stages make for this configuration."""
    targets = [LAYOUT.analysis_file("claims", ext) for ext in ("html", "md", "json")]
    targets.append(LAYOUT.analysis_file("report_summary", "html"))
    targets += [LAYOUT.table_file(name, ext) for name in table_names() for ext in ("csv", "md", "tex", "html")]
    figures = [f"fig2_{fam}" for fam in RETRAIN_FAMILIES + SEPARATE_FAMILIES]
    if has_mask_stats() or M in RETRAIN_FAMILIES:
        figures += [f"fig1_{task}" for task in TASKS] + ["appendix_b_all_tasks"]
    if has_mask_stats():
        figures += [f"overlap_{s}_{u}" for s in ("good", SUPER) for u in ("heads", "mlps")]
    if s_traces():
        figures.append("fig3_importance")
    if speed_files():
        targets += [LAYOUT.table_file("subnetwork_speed", ext) for ext in ("csv", "md", "tex", "html")]
        figures.append("subnetwork_speed")
    targets += [LAYOUT.table_file("sensitivity", ext) for ext in ("csv", "md", "tex", "html")]
    if I_VS_M:
        targets += [LAYOUT.table_file("i_vs_m", ext) for ext in ("csv", "md", "tex", "html")]
        figures.append("i_vs_m")
    targets += [LAYOUT.figure_file(name, ext) for name in figures for ext in ("png", "pdf")]
    return targets


def pattern_count_files():
    if not PATTERNS["enabled"]:
        return []
    return [LAYOUT.pattern_counts(pconfig, task, seed) for pconfig in PATTERN_CONFIGS for task in PATTERN_TASKS
            for seed in SEEDS]


def task_targets(task):
    """Every per-run file of one task (fine-tuning, searches, masks, pruned and retrained runs, pattern
    counts, speed): one chunk of a study, run as `snakemake task_<TASK>` (the Snakefile's chunk rules)."""
    files = full_metric_files() + subnetwork_targets() + pattern_count_files() + speed_files()
    return [path for path in files if LAYOUT.parse(path).task == task]


def chunk_rule_name(task):
    """task_CoLA, task_SST2, task_STSB, ...: the target rule of one task's chunk."""
    return "task_" + "".join(ch for ch in task if ch.isalnum())


def all_targets():
    if BUNDLES:
        return analysis_targets() + pattern_targets()
    return full_metric_files() + subnetwork_targets() + pattern_targets() + analysis_targets()


# -- bundles (config `bundles`): what `bundle unpack` restores that the analyses read
def m_blocks_model():
    """The model whose config.json m_blocks reads: the fine-tuned model folder of a run, or (bundles) the
    bundle's copy of its config.json."""
    task, seed = TASKS[0], SEEDS[0]
    return LAYOUT.finetuned_model_config(task, seed) if BUNDLES else LAYOUT.finetuned_model(task, seed)


def m_blocks_model_config(wc, input):
    return LAYOUT.finetuned_model_config(TASKS[0], SEEDS[0])


def results_root(wc):
    """The results folder `bundle unpack` restores into."""
    return LAYOUT.root


def bundle_outputs():
    """The files the analyses read, all restored from the bundles."""
    files = metric_files() + m_block_inputs() + f_good_masks() + s_traces() + speed_files()
    files += [mask for family in S_FAMILIES for mask in s_good_masks(family)]
    files += [m_blocks_model()] if M_BLOCKS else []
    files += [path for paths in i_vs_m_inputs().values() for path in paths]
    if pattern_targets():
        files += [LAYOUT.pattern_counts(pconfig, task, seed)
                  for pconfig in PATTERN_CONFIGS for task in PATTERN_TASKS for seed in SEEDS]
    return list(dict.fromkeys(files))


def check_bundles_complete():
    """Stop before any job when the bundles lack a file the analyses read (a chunk exported before it
    finished, or a task without one of the seeds), naming the files."""
    missing = [path for path in bundle_outputs() if not in_bundles(path)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        summarized = [path for path in missing if summary_of_mask(path) and in_bundles(summary_of_mask(path))]
        hint = (f"; {len(summarized)} of them are masks the bundles hold only the summary of (--m-masks summary), "
                f"e.g. {summary_of_mask(summarized[0])}: regenerate each from the run with the command its summary's "
                "`regenerate` names and check it against the summary's sha256, or export with --m-masks full") \
            if summarized else ""
        raise WorkflowError(f"bundles {', '.join(BUNDLES)}: {len(missing)} file(s) the analyses read are in none of "
                            f"them: {shown}; export each chunk after it has finished (every task needs every seed)"
                            + hint)


if BUNDLES:
    check_bundles_complete()


# -- the job server (bertlottery/jobserver.py; config job_server, BERTLOTTERY_JOB_SERVER=0/1 overrides it):
# a local run starts every job as a fork of one process that imported torch and transformers once,
# instead of a new interpreter importing them again (about 4 CPU-seconds a job). Never for cluster jobs
# (other machines) or per-rule conda environments (other software).
JOB_SERVER = {}


def job_server_wanted():
    switch = os.environ.get(jobserver.ENV)
    wanted = {"0": False, "1": True}.get(switch, config.get("job_server", False))
    return (wanted and workflow.local_exec
            and DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method)


def start_job_server():
    if job_server_wanted():
        process, path = jobserver.start(os.path.join(".snakemake", "bertlottery", "job-server.log"))
        JOB_SERVER.update(process=process, path=path)
        os.environ[jobserver.ENV] = path


def stop_job_server():
    if JOB_SERVER:
        jobserver.stop(JOB_SERVER.pop("process"), JOB_SERVER.pop("path"))


onstart:
    start_job_server()


onsuccess:
    stop_job_server()


onerror:
    stop_job_server()
