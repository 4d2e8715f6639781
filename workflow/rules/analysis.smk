# Analysis (docs/protocol.md §Statistics): every metrics JSON into one table, and the statistics on it and on
# the masks. CPU only. Include after train.smk (its targets list the metrics files) and search.smk.
# With analysis.original_masks_dir set, the head/MLP mask analyses read the original study's masks
# (<dir>/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy) instead of ours.

rule aggregate:
    input:
        metric_files(),
    output:
        table=LAYOUT.analysis_file("metrics", "parquet"),
        table_csv=LAYOUT.analysis_file("metrics", "csv"),
        summary=LAYOUT.analysis_file("summary", "parquet"),
        summary_csv=LAYOUT.analysis_file("summary", "csv"),
        dev_bootstrap=LAYOUT.analysis_file("dev_bootstrap", "parquet"),
    params:
        out_dir=output_dir,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("analysis", "aggregate"),
    benchmark:
        LAYOUT.benchmark("analysis", "aggregate")
    shell:
        "python -m bertlottery aggregate --inputs {input} --out-dir {params.out_dir} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule mask_stats:
    input:
        masks=[ORIGINAL_MASKS] if ORIGINAL_MASKS else s_good_masks(),
        heads_only=s_good_masks(S_HEADS),
        mlps_only=s_good_masks(S_MLPS),
    output:
        stability=LAYOUT.analysis_file("stability", "parquet"),
        pairs=LAYOUT.analysis_file("stability_pairs", "parquet"),
        survivors=LAYOUT.analysis_file("survivors", "parquet"),
        overlaps=LAYOUT.analysis_file("overlaps", "parquet"),
        csvs=[LAYOUT.analysis_file(name, "csv") for name in ("stability", "stability_pairs", "survivors", "overlaps")],
    params:
        masks=mask_source_args,
        alpha=config["analysis"]["alpha"],
        out_dir=output_dir,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("analysis", "mask_stats"),
    benchmark:
        LAYOUT.benchmark("analysis", "mask_stats")
    shell:
        "python -m bertlottery stats masks {params.masks} --heads-only-masks {input.heads_only} --mlps-only-masks {input.mlps_only}"
        " --alpha {params.alpha} --out-dir {params.out_dir} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


# Family f (beyond the paper): the same stability statistics of the f-good masks, as f_<name> tables.
rule f_mask_stats:
    input:
        masks=f_good_masks(),
    output:
        stability=LAYOUT.analysis_file("f_stability", "parquet"),
        pairs=LAYOUT.analysis_file("f_stability_pairs", "parquet"),
        survivors=LAYOUT.analysis_file("f_survivors", "parquet"),
        overlaps=LAYOUT.analysis_file("f_overlaps", "parquet"),
        csvs=[LAYOUT.analysis_file(f"f_{name}", "csv") for name in ("stability", "stability_pairs", "survivors", "overlaps")],
    params:
        alpha=config["analysis"]["alpha"],
        out_dir=output_dir,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("analysis", "f_mask_stats"),
    benchmark:
        LAYOUT.benchmark("analysis", "f_mask_stats")
    shell:
        "python -m bertlottery stats masks --s-masks {input.masks} --prefix f_"
        " --alpha {params.alpha} --out-dir {params.out_dir} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule m_blocks:
    input:
        masks=m_block_inputs(),
        model=m_blocks_model(),
    output:
        table=LAYOUT.analysis_file("m_blocks", "parquet"),
        csv=LAYOUT.analysis_file("m_blocks", "csv"),
    params:
        model_config=m_blocks_model_config,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("analysis", "m_blocks"),
    benchmark:
        LAYOUT.benchmark("analysis", "m_blocks")
    shell:
        "python -m bertlottery stats m-blocks --m-masks {input.masks} --model-config {params.model_config}"
        " --output {output.csv} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule paired_tests:
    input:
        LAYOUT.analysis_file("metrics", "parquet"),
    output:
        table=LAYOUT.analysis_file("paired_tests", "parquet"),
        csv=LAYOUT.analysis_file("paired_tests", "csv"),
    params:
        bootstrap=config["analysis"]["bootstrap_resamples"],
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("analysis", "paired_tests"),
    benchmark:
        LAYOUT.benchmark("analysis", "paired_tests")
    shell:
        "python -m bertlottery stats tests --metrics {input} --bootstrap {params.bootstrap} --seed 0 --output {output.csv}"
        " > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


# Sensitivity (docs/protocol.md §Statistics): each threshold search's 90 % band against the dev set's sampling
# error, the share of resampled dev sets on which its good mask stays good, and the non-converged retrainings.
rule sensitivity:
    input:
        metrics=LAYOUT.analysis_file("metrics", "parquet"),
        dev_bootstrap=LAYOUT.analysis_file("dev_bootstrap", "parquet"),
    output:
        table=LAYOUT.analysis_file("sensitivity", "parquet"),
        csv=LAYOUT.analysis_file("sensitivity", "csv"),
        html=report(LAYOUT.table_file("sensitivity", "html"), caption="../report/sensitivity.rst", category="2. Tables",
                    labels={"name": "sensitivity"}),
        other=[LAYOUT.table_file("sensitivity", ext) for ext in ("csv", "md", "tex")],
    params:
        thresholds=" ".join(f"{family}={threshold}" for family, threshold in threshold_searches().items()),
        table=table_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("analysis", "sensitivity"),
    benchmark:
        LAYOUT.benchmark("analysis", "sensitivity")
    shell:
        "python -m bertlottery stats sensitivity --metrics {input.metrics} --dev-bootstrap {input.dev_bootstrap}"
        " --thresholds {params.thresholds} --output {output.csv} --table {params.table}.csv > {log} 2>&1"
        " || python -m bertlottery job-failed {log} $?"


# Family i (beyond the paper; docs/protocol.md §i-pruning): IMP's good masks against m-pruning's, per task and
# seed: sparsity, overlap of the kept weights, pruned and retrained scores side by side; its table and figure.
rule i_vs_m:
    input:
        **i_vs_m_inputs(),
        metrics=LAYOUT.analysis_file("metrics", "parquet"),
    output:
        table=LAYOUT.analysis_file("i_vs_m", "parquet"),
        csv=LAYOUT.analysis_file("i_vs_m", "csv"),
        html=report(LAYOUT.table_file("i_vs_m", "html"), caption="../report/i_vs_m.rst", category="2. Tables",
                    labels={"name": "i_vs_m"}),
        other=[LAYOUT.table_file("i_vs_m", ext) for ext in ("csv", "md", "tex")],
        png=report(LAYOUT.figure_file("i_vs_m", "png"), caption="../report/i_vs_m_figure.rst", category="3. Figures",
                   subcategory="Beyond the paper: IMP against m-pruning", labels={"name": "i vs m"}),
        pdf=LAYOUT.figure_file("i_vs_m", "pdf"),
    params:
        table=table_stem,
        figure=figure_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("analysis", "i_vs_m"),
    benchmark:
        LAYOUT.benchmark("analysis", "i_vs_m")
    shell:
        "python -m bertlottery i-vs-m --i-masks {input.i_masks} --i-records {input.i_records} --m-masks {input.m_masks}"
        " --m-records {input.m_records} --metrics {input.metrics} --output {output.table} --table {params.table}"
        " --figure {params.figure} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
