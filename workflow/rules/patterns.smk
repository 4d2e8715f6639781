# Self-attention pattern analysis (paper §5.2, Figure 4, Appendix F).
# One extraction job per (model config, task, seed) classifies every head's raw and normed maps of
# patterns.n_examples dev examples, for all heads and (in the network pruned to them) the task's
# super-survivors; one summary job writes the tables, Figure 4 and the correlation.
if PATTERN_CNN_KINDS and not BUNDLES:

    rule patterns_train_cnn:
        input:
            labels=os.path.join(PATTERN_LABELLED, "{pkind}", "labels.csv"),
        output:
            model=LAYOUT.patterns_cnn_model("{pkind}"),
            card=LAYOUT.patterns_cnn_card("{pkind}"),
        wildcard_constraints:
            pkind="raw|normed",
        params:
            labelled=PATTERN_LABELLED,
            epochs=PATTERNS["cnn_epochs"],
            out_dir=lambda wc: LAYOUT.patterns_cnn_dir(wc.pkind),
        threads: MODEL_THREADS
        resources:
            gpu=1,
        conda:
            CONDA_ENV
        log:
            LAYOUT.log("patterns_train_cnn", "{pkind}"),
        benchmark:
            LAYOUT.benchmark("patterns_train_cnn", "{pkind}")
        shell:
            "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery patterns train-cnn --labelled-dir {params.labelled:q}"
            " --kind {wildcards.pkind} --epochs {params.epochs} --out-dir {params.out_dir}"
            " > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


# With config `bundles` the counts come from the bundles (bundle.smk): no model here.
if not BUNDLES:

    rule patterns_extract:
        input:
            card=LAYOUT.data_card("{task}"),
            model=lambda wc: [pattern_model(wc)] if wc.pconfig == "finetuned" else [],
            super_mask=LAYOUT.mask_file(SUPER, "{task}", "{seed}", "good"),
            cnn=PATTERN_CNN,
        output:
            LAYOUT.pattern_counts("{pconfig}", "{task}", "{seed}"),
        wildcard_constraints:
            pconfig="finetuned|pretrained",
        params:
            model=pattern_model,
            n_examples=PATTERNS["n_examples"],
            cnn=f"--cnn-dir {LAYOUT.patterns_cnn_root()}" if PATTERN_CNN else "",
            data_dir=data_dir,
        threads: MODEL_THREADS
        resources:
            gpu=1,
        conda:
            CONDA_ENV
        log:
            LAYOUT.log("patterns_extract", "{pconfig}", "{task}", seed="{seed}"),
        benchmark:
            LAYOUT.benchmark("patterns_extract", "{pconfig}", "{task}", seed="{seed}")
        shell:
            "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery patterns extract --task {wildcards.task} --seed {wildcards.seed}"
            " --config {wildcards.pconfig} --model {params.model:q} --data-dir {params.data_dir}"
            " --n-examples {params.n_examples} --super-mask {input.super_mask} {params.cnn}"
            " --output {output} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule patterns_summarize:
    input:
        counts=[LAYOUT.pattern_counts(pconfig, task, seed)
                for pconfig in PATTERN_CONFIGS for task in PATTERN_TASKS for seed in SEEDS],
        paper=[PAPER_YAML] if os.path.isfile(PAPER_YAML) else [],
    output:
        figure4=report(LAYOUT.figure_file("figure4_finetuned", "pdf"), caption="../report/patterns_figure4.rst",
                       category="Attention patterns"),
        appendix_f=report(LAYOUT.figure_file("figure4_pretrained", "pdf"), caption="../report/patterns_appendix_f.rst",
                          category="Attention patterns"),
        types=report(LAYOUT.figure_file("figure4a_types", "pdf"), caption="../report/patterns_types.rst",
                     category="Attention patterns"),
        pngs=[LAYOUT.figure_file(name, "png") for name in ("figure4_finetuned", "figure4_pretrained", "figure4a_types")],
        distribution=report(LAYOUT.table_file("patterns_distribution", "csv"), caption="../report/patterns_tables.rst",
                            category="Attention patterns"),
        tables=[LAYOUT.table_file(f"patterns_{pconfig}_{selection}", ext)
                for pconfig in PATTERN_CONFIGS for selection in PATTERN_SELECTIONS for ext in ("csv", "md")],
        correlation=report(LAYOUT.analysis_file("patterns_correlation", "json"),
                           caption="../report/patterns_correlation.rst", category="Attention patterns"),
    params:
        paper=lambda wc, input: f"--paper {input.paper[0]}" if input.paper else "",
        tables_dir=lambda wc, output: os.path.dirname(output.distribution),
        figures_dir=lambda wc, output: os.path.dirname(output.figure4),
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("patterns_summarize"),
    benchmark:
        LAYOUT.benchmark("patterns_summarize")
    shell:
        "python -m bertlottery patterns summarize --counts {input.counts} {params.paper} --tables-dir {params.tables_dir}"
        " --figures-dir {params.figures_dir} --correlation {output.correlation} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
