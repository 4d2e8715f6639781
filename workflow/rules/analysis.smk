# Analysis (PAPER_SPEC sections 6-8): every metrics JSON into one table, and the statistics on it and on
# the masks. CPU only. Include after subnetworks.smk (its targets list the metrics files) and masks.smk.
# With analysis.original_masks_dir set, the head/MLP mask analyses read the original study's masks
# (<dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy) instead of ours.

from bertlottery.aggregate import PAPER_RESULTS_PATH

ANALYSIS = f"{RESULTS}/analysis"
PAPER_YAML = str(PAPER_RESULTS_PATH)  # config/paper_results.yaml of the installed source tree
ORIGINAL_MASKS = config["analysis"]["original_masks_dir"]
RETRAIN_FAMILIES = config["retrain"]["families"]


def metric_files():
    """Exactly the metrics JSONs the DAG makes: full models, and the pruned / retrained runs that
    subnetworks.smk targets for the configured families, kinds and extras."""
    full = expand(f"{RESULTS}/finetune/{{task}}/seed{{seed}}/metrics.json", task=TASKS, seed=SEEDS)
    runs = [p for p in subnetwork_targets() if p.endswith("/pruned.json") or p.startswith(f"{RESULTS}/retrain/")]
    return full + runs


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


def mask_args():
    """The mask source of the head/MLP analyses: the original masks directory or our joint good masks."""
    if ORIGINAL_MASKS:
        return f"--original-masks {ORIGINAL_MASKS}"
    return "--s-masks " + " ".join(s_good_masks())


def has_mask_stats():
    return bool(ORIGINAL_MASKS) or "s" in S_FAMILIES


rule aggregate:
    input:
        metric_files(),
    output:
        table=f"{ANALYSIS}/metrics.parquet",
        table_csv=f"{ANALYSIS}/metrics.csv",
        summary=f"{ANALYSIS}/summary.parquet",
        summary_csv=f"{ANALYSIS}/summary.csv",
    log:
        f"{RESULTS}/logs/analysis/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/aggregate.tsv"
    shell:
        "{PY} aggregate --inputs {input} --out-dir {ANALYSIS} > {log} 2>&1"


rule mask_stats:
    input:
        masks=[ORIGINAL_MASKS] if ORIGINAL_MASKS else s_good_masks(),
        heads_only=s_good_masks("s-heads"),
        mlps_only=s_good_masks("s-mlps"),
    output:
        stability=f"{ANALYSIS}/stability.parquet",
        pairs=f"{ANALYSIS}/stability_pairs.parquet",
        survivors=f"{ANALYSIS}/survivors.parquet",
        overlaps=f"{ANALYSIS}/overlaps.parquet",
        csvs=expand(f"{ANALYSIS}/{{name}}.csv", name=["stability", "stability_pairs", "survivors", "overlaps"]),
    params:
        masks=mask_args(),
        alpha=config["analysis"]["alpha"],
    log:
        f"{RESULTS}/logs/analysis/mask_stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/mask_stats.tsv"
    shell:
        "{PY} stats masks {params.masks} --heads-only-masks {input.heads_only} --mlps-only-masks {input.mlps_only}"
        " --alpha {params.alpha} --out-dir {ANALYSIS} > {log} 2>&1"


rule m_blocks:
    input:
        masks=m_good_masks(),
        model=f"{RESULTS}/finetune/{TASKS[0]}/seed{SEEDS[0]}/model",
    output:
        table=f"{ANALYSIS}/m_blocks.parquet",
        csv=f"{ANALYSIS}/m_blocks.csv",
    log:
        f"{RESULTS}/logs/analysis/m_blocks.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/m_blocks.tsv"
    shell:
        "{PY} stats m-blocks --m-masks {input.masks} --model-config {input.model}/config.json"
        " --output {output.csv} > {log} 2>&1"


rule paired_tests:
    input:
        f"{ANALYSIS}/metrics.parquet",
    output:
        table=f"{ANALYSIS}/paired_tests.parquet",
        csv=f"{ANALYSIS}/paired_tests.csv",
    params:
        bootstrap=config["analysis"]["bootstrap_resamples"],
    log:
        f"{RESULTS}/logs/analysis/paired_tests.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/paired_tests.tsv"
    shell:
        "{PY} stats tests --metrics {input} --bootstrap {params.bootstrap} --seed 0 --output {output.csv}"
        " > {log} 2>&1"
