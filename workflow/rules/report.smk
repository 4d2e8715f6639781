# Presentation (PAPER_SPEC section 7): the claims check, the paper's tables and figures, all marked for
# `snakemake --report results/report.html` with captions from workflow/report/*.rst. CPU only.
# Include after analysis.smk.

rule claims:
    input:
        **mask_tables(),
        summary=f"{ANALYSIS}/summary.parquet",
        tests=f"{ANALYSIS}/paired_tests.parquet",
        m_blocks=M_BLOCKS,
        traces=s_traces(),
    output:
        html=report(f"{ANALYSIS}/claims.html", caption="../report/claims.rst", category="1. Claims",
                    labels={"name": "the paper's claims on our numbers"}),
        md=f"{ANALYSIS}/claims.md",
        json=f"{ANALYSIS}/claims.json",
    params:
        masks=mask_table_args(),
        blocks=lambda wc, input: optional_flag("--m-blocks", input.m_blocks),
        alpha=config["analysis"]["alpha"],
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/report/claims.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/claims.tsv"
    shell:
        "python -m bertlottery claims --summary {input.summary} --tests {input.tests} {params.masks} {params.blocks}"
        " --traces {input.traces} --alpha {params.alpha} --out-dir results/analysis > {log} 2>&1"


rule tables:
    input:
        **mask_tables(),
        summary=f"{ANALYSIS}/summary.parquet",
        tests=f"{ANALYSIS}/paired_tests.parquet",
        paper=PAPER_YAML,
    output:
        **{name: report(f"{TABLES}/{name}.html", caption=f"../report/{rst}.rst", category="2. Tables",
                        labels={"name": name}) for name, rst in table_names().items()},
        other=[f"{TABLES}/{name}.{ext}" for name in table_names() for ext in ("csv", "md", "tex")],
    params:
        masks=mask_table_args(),
        truncate=str(config["analysis"]["truncate_table2"]).lower(),
        families=" ".join(TABLE_FAMILIES),
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/report/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/tables.tsv"
    shell:
        "python -m bertlottery tables --summary {input.summary} --tests {input.tests} {params.masks} --paper {input.paper}"
        " --truncate-table2 {params.truncate} --families {params.families} --out-dir results/tables > {log} 2>&1"


rule figure1:
    input:
        masks=lambda wc: [ORIGINAL_MASKS] if ORIGINAL_MASKS else s_good_masks("s", wc.task),
        blocks=M_BLOCKS,
    output:
        png=report(f"{FIGURES}/fig1_{{task}}.png", caption="../report/fig1.rst", category="3. Figures",
                   subcategory="Figure 1: survival heatmaps", labels={"name": "Figure 1", "task": "{task}"}),
        pdf=f"{FIGURES}/fig1_{{task}}.pdf",
    params:
        masks=mask_source_args,
        blocks=lambda wc, input: optional_flag("--m-blocks", input.blocks),
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/report/figure1/{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/figure1/{{task}}.tsv"
    shell:
        "python -m bertlottery figures fig1 --task {wildcards.task} {params.masks} {params.blocks}"
        " --out results/figures/fig1_{wildcards.task} > {log} 2>&1"


rule figure2:
    input:
        summary=f"{ANALYSIS}/summary.parquet",
        paper=PAPER_YAML,
    output:
        png=report(f"{FIGURES}/fig2_{{fig_family}}.png", caption="../report/fig2.rst", category="3. Figures",
                   subcategory="Figure 2 and Appendix E: good, random, bad", labels={"name": "Figure 2",
                                                                                     "family": "{fig_family}"}),
        pdf=f"{FIGURES}/fig2_{{fig_family}}.pdf",
    wildcard_constraints:
        fig_family="|".join(RETRAIN_FAMILIES + SEPARATE_FAMILIES),
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/report/figure2/{{fig_family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/figure2/{{fig_family}}.tsv"
    shell:
        "python -m bertlottery figures fig2 --summary {input.summary} --paper {input.paper} --family {wildcards.fig_family}"
        " --out results/figures/fig2_{wildcards.fig_family} > {log} 2>&1"


rule figure3:
    input:
        trace=f"{RESULTS}/masks/s/{FIG3_TASK}/seed{FIG3_SEED}/trace.json",
    output:
        png=report(f"{FIGURES}/fig3_importance.png", caption="../report/fig3.rst", category="3. Figures",
                   subcategory="Figure 3: importance scores", labels={"name": "Figure 3"}),
        pdf=f"{FIGURES}/fig3_importance.pdf",
    params:
        amount=config["s_pruning"]["amount"],
        task=FIG3_TASK,
        seed=FIG3_SEED,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/report/figure3.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/figure3.tsv"
    shell:
        "python -m bertlottery figures fig3 --trace {input.trace} --task {params.task} --seed {params.seed} --iteration 0"
        " --amount {params.amount} --out results/figures/fig3_importance > {log} 2>&1"


rule figure5:
    input:
        f"{ANALYSIS}/overlaps.parquet",
    output:
        png=report(f"{FIGURES}/overlap_{{set}}_{{unit}}.png", caption="../report/fig5.rst", category="3. Figures",
                   subcategory="Figure 5 and Appendix G: overlaps", labels={"name": "overlap", "set": "{set}",
                                                                            "unit": "{unit}"}),
        pdf=f"{FIGURES}/overlap_{{set}}_{{unit}}.pdf",
    wildcard_constraints:
        set="good|super",
        unit="heads|mlps",
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/report/figure5/{{set}}_{{unit}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/figure5/{{set}}_{{unit}}.tsv"
    shell:
        "python -m bertlottery figures fig5 --overlaps {input} --set {wildcards.set} --unit {wildcards.unit}"
        " --out results/figures/overlap_{wildcards.set}_{wildcards.unit} > {log} 2>&1"


rule appendix_b:
    input:
        masks=[ORIGINAL_MASKS] if ORIGINAL_MASKS else s_good_masks(),
        heads_only=s_good_masks("s-heads"),
        mlps_only=s_good_masks("s-mlps"),
        blocks=M_BLOCKS,
    output:
        png=report(f"{FIGURES}/appendix_b_all_tasks.png", caption="../report/appendix_b.rst", category="3. Figures",
                   subcategory="Figure 1: survival heatmaps", labels={"name": "Appendix B", "task": "all tasks"}),
        pdf=f"{FIGURES}/appendix_b_all_tasks.pdf",
    params:
        masks=mask_source_args,
        blocks=lambda wc, input: optional_flag("--m-blocks", input.blocks),
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/report/appendix_b.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/appendix_b.tsv"
    shell:
        "python -m bertlottery figures appb {params.masks} --heads-only-masks {input.heads_only} --mlps-only-masks {input.mlps_only}"
        " {params.blocks} --out results/figures/appendix_b_all_tasks > {log} 2>&1"
