# Presentation (docs/protocol.md §Outputs, §Claims): the claims check, the paper's tables and figures, all marked for
# `snakemake --report results/report.html` with captions from workflow/report/*.rst. CPU only.
# Include after analysis.smk.

rule claims:
    input:
        **mask_tables(),
        **mask_pair_tables(),
        **f_stats_tables(),
        summary=LAYOUT.analysis_file("summary", "parquet"),
        metrics=LAYOUT.analysis_file("metrics", "parquet"),
        dev_bootstrap=LAYOUT.analysis_file("dev_bootstrap", "parquet"),
        tests=LAYOUT.analysis_file("paired_tests", "parquet"),
        m_blocks=M_BLOCKS,
        traces=s_traces(),
    output:
        html=report(LAYOUT.analysis_file("claims", "html"), caption="../report/claims.rst", category="1. Claims",
                    labels={"name": "the paper's claims on our numbers"}),
        md=LAYOUT.analysis_file("claims", "md"),
        json=LAYOUT.analysis_file("claims", "json"),
    params:
        masks=claims_mask_args(),
        f_stats=f_stats_args,
        blocks=lambda wc, input: optional_flag("--m-blocks", input.m_blocks),
        alpha=config["analysis"]["alpha"],
        out_dir=output_dir,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "claims"),
    benchmark:
        LAYOUT.benchmark("report", "claims")
    shell:
        "python -m bertlottery claims --summary {input.summary} --metrics {input.metrics} --dev-bootstrap {input.dev_bootstrap} --tests {input.tests} {params.masks} {params.f_stats} {params.blocks}"
        " --traces {input.traces} --alpha {params.alpha} --out-dir {params.out_dir} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule report_summary:
    input:
        claims=LAYOUT.analysis_file("claims", "json"),
        metrics=LAYOUT.analysis_file("metrics", "parquet"),
        figure=[LAYOUT.figure_file(f"fig2_{HEADLINE_FAMILY}", "png")] if HEADLINE_FAMILY else [],
    output:
        report(LAYOUT.analysis_file("report_summary", "html"), caption="../report/report_summary.rst",
               category="1. Claims", labels={"name": "summary: what ran, the claims, Figure 2"}),
    params:
        model=config["model"],
        figure=lambda wc, input: optional_flag("--figure", input.figure),
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "report_summary"),
    benchmark:
        LAYOUT.benchmark("report", "report_summary")
    shell:
        "python -m bertlottery report-summary --claims {input.claims} --metrics {input.metrics} --model '{params.model}'"
        " {params.figure} --output {output} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule tables:
    input:
        **mask_tables(),
        **f_stats_tables(),
        summary=LAYOUT.analysis_file("summary", "parquet"),
        tests=LAYOUT.analysis_file("paired_tests", "parquet"),
        paper=PAPER_YAML,
    output:
        **{name: report(LAYOUT.table_file(name, "html"), caption=f"../report/{rst}.rst", category="2. Tables",
                        labels={"name": name}) for name, rst in table_names().items()},
        other=[LAYOUT.table_file(name, ext) for name in table_names() for ext in ("csv", "md", "tex")],
    params:
        masks=mask_table_args(),
        f_stats=f_stats_args,
        truncate=str(config["analysis"]["truncate_table2"]).lower(),
        families=" ".join(TABLE_FAMILIES),
        out_dir=output_dir,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "tables"),
    benchmark:
        LAYOUT.benchmark("report", "tables")
    shell:
        "python -m bertlottery tables --summary {input.summary} --tests {input.tests} {params.masks} {params.f_stats} --paper {input.paper}"
        " --truncate-table2 {params.truncate} --families {params.families} --out-dir {params.out_dir} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule subnetwork_speed:
    input:
        speed=speed_files(),
        metrics=LAYOUT.analysis_file("metrics", "parquet"),
    output:
        html=report(LAYOUT.table_file("subnetwork_speed", "html"), caption="../report/subnetwork_speed.rst",
                    category="2. Tables", labels={"name": "subnetwork_speed"}),
        other=[LAYOUT.table_file("subnetwork_speed", ext) for ext in ("csv", "md", "tex")],
        png=report(LAYOUT.figure_file("subnetwork_speed", "png"), caption="../report/subnetwork_speed_figure.rst",
                   category="3. Figures", subcategory="Beyond the paper: measured speed",
                   labels={"name": "subnetwork speed"}),
        pdf=LAYOUT.figure_file("subnetwork_speed", "pdf"),
    params:
        table=table_stem,
        figure=figure_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "subnetwork_speed"),
    benchmark:
        LAYOUT.benchmark("report", "subnetwork_speed")
    shell:
        "python -m bertlottery speed-report --speed {input.speed} --metrics {input.metrics} --table {params.table}"
        " --figure {params.figure} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule figure1:
    input:
        masks=lambda wc: [ORIGINAL_MASKS] if ORIGINAL_MASKS else s_good_masks(S, wc.task),
        blocks=M_BLOCKS,
    output:
        png=report(LAYOUT.figure_file("fig1_{task}", "png"), caption="../report/fig1.rst", category="3. Figures",
                   subcategory="Figure 1: survival heatmaps", labels={"name": "Figure 1", "task": "{task}"}),
        pdf=LAYOUT.figure_file("fig1_{task}", "pdf"),
    params:
        masks=mask_source_args,
        blocks=lambda wc, input: optional_flag("--m-blocks", input.blocks),
        out=figure_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "figure1", "{task}"),
    benchmark:
        LAYOUT.benchmark("report", "figure1", "{task}")
    shell:
        "python -m bertlottery figures fig1 --task {wildcards.task} {params.masks} {params.blocks}"
        " --out {params.out} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule figure2:
    input:
        summary=LAYOUT.analysis_file("summary", "parquet"),
        paper=PAPER_YAML,
    output:
        png=report(LAYOUT.figure_file("fig2_{fig_family}", "png"), caption="../report/fig2.rst", category="3. Figures",
                   subcategory="Figure 2 and Appendix E: good, random, bad", labels={"name": "Figure 2",
                                                                                     "family": "{fig_family}"}),
        pdf=LAYOUT.figure_file("fig2_{fig_family}", "pdf"),
    wildcard_constraints:
        fig_family="|".join(RETRAIN_FAMILIES + SEPARATE_FAMILIES),
    params:
        out=figure_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "figure2", "{fig_family}"),
    benchmark:
        LAYOUT.benchmark("report", "figure2", "{fig_family}")
    shell:
        "python -m bertlottery figures fig2 --summary {input.summary} --paper {input.paper} --family {wildcards.fig_family}"
        " --out {params.out} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule figure3:
    input:
        trace=LAYOUT.search_trace(S, FIG3_TASK, FIG3_SEED),
    output:
        png=report(LAYOUT.figure_file("fig3_importance", "png"), caption="../report/fig3.rst", category="3. Figures",
                   subcategory="Figure 3: importance scores", labels={"name": "Figure 3"}),
        pdf=LAYOUT.figure_file("fig3_importance", "pdf"),
    params:
        amount=config["s_pruning"]["amount"],
        task=FIG3_TASK,
        seed=FIG3_SEED,
        out=figure_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "figure3"),
    benchmark:
        LAYOUT.benchmark("report", "figure3")
    shell:
        "python -m bertlottery figures fig3 --trace {input.trace} --task {params.task} --seed {params.seed} --iteration 0"
        " --amount {params.amount} --out {params.out} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule figure5:
    input:
        LAYOUT.analysis_file("overlaps", "parquet"),
    output:
        png=report(LAYOUT.figure_file("overlap_{set}_{unit}", "png"), caption="../report/fig5.rst", category="3. Figures",
                   subcategory="Figure 5 and Appendix G: overlaps", labels={"name": "overlap", "set": "{set}",
                                                                            "unit": "{unit}"}),
        pdf=LAYOUT.figure_file("overlap_{set}_{unit}", "pdf"),
    wildcard_constraints:
        set="good|super",
        unit="heads|mlps",
    params:
        out=figure_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "figure5", "{set}_{unit}"),
    benchmark:
        LAYOUT.benchmark("report", "figure5", "{set}_{unit}")
    shell:
        "python -m bertlottery figures fig5 --overlaps {input} --set {wildcards.set} --unit {wildcards.unit}"
        " --out {params.out} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule appendix_b:
    input:
        masks=[ORIGINAL_MASKS] if ORIGINAL_MASKS else s_good_masks(),
        heads_only=s_good_masks(S_HEADS),
        mlps_only=s_good_masks(S_MLPS),
        blocks=M_BLOCKS,
    output:
        png=report(LAYOUT.figure_file("appendix_b_all_tasks", "png"), caption="../report/appendix_b.rst", category="3. Figures",
                   subcategory="Figure 1: survival heatmaps", labels={"name": "Appendix B", "task": "all tasks"}),
        pdf=LAYOUT.figure_file("appendix_b_all_tasks", "pdf"),
    params:
        masks=mask_source_args,
        blocks=lambda wc, input: optional_flag("--m-blocks", input.blocks),
        out=figure_stem,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("report", "appendix_b"),
    benchmark:
        LAYOUT.benchmark("report", "appendix_b")
    shell:
        "python -m bertlottery figures appb {params.masks} --heads-only-masks {input.heads_only} --mlps-only-masks {input.mlps_only}"
        " {params.blocks} --out {params.out} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
