# Analysis (PAPER_SPEC sections 6-8): every metrics JSON into one table, and the statistics on it and on
# the masks. CPU only. Include after subnetworks.smk (its targets list the metrics files) and masks.smk.
# With analysis.original_masks_dir set, the head/MLP mask analyses read the original study's masks
# (<dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy) instead of ours.

rule aggregate:
    input:
        metric_files(),
    output:
        table=f"{ANALYSIS}/metrics.parquet",
        table_csv=f"{ANALYSIS}/metrics.csv",
        summary=f"{ANALYSIS}/summary.parquet",
        summary_csv=f"{ANALYSIS}/summary.csv",
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/analysis/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/aggregate.tsv"
    shell:
        "python -m bertlottery aggregate --inputs {input} --out-dir results/analysis > {log} 2>&1"


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
        masks=mask_source_args,
        alpha=config["analysis"]["alpha"],
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/analysis/mask_stats.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/mask_stats.tsv"
    shell:
        "python -m bertlottery stats masks {params.masks} --heads-only-masks {input.heads_only} --mlps-only-masks {input.mlps_only}"
        " --alpha {params.alpha} --out-dir results/analysis > {log} 2>&1"


rule m_blocks:
    input:
        masks=m_good_masks(),
        model=f"{RESULTS}/finetune/{TASKS[0]}/seed{SEEDS[0]}/model",
    output:
        table=f"{ANALYSIS}/m_blocks.parquet",
        csv=f"{ANALYSIS}/m_blocks.csv",
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/analysis/m_blocks.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/m_blocks.tsv"
    shell:
        "python -m bertlottery stats m-blocks --m-masks {input.masks} --model-config {input.model}/config.json"
        " --output {output.csv} > {log} 2>&1"


rule paired_tests:
    input:
        f"{ANALYSIS}/metrics.parquet",
    output:
        table=f"{ANALYSIS}/paired_tests.parquet",
        csv=f"{ANALYSIS}/paired_tests.csv",
    params:
        bootstrap=config["analysis"]["bootstrap_resamples"],
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/analysis/paired_tests.log",
    benchmark:
        f"{RESULTS}/benchmarks/analysis/paired_tests.tsv"
    shell:
        "python -m bertlottery stats tests --metrics {input} --bootstrap {params.bootstrap} --seed 0 --output {output.csv}"
        " > {log} 2>&1"
