# Self-attention pattern analysis (PAPER_SPEC section 8.4, Figure 4, Appendix F).
# One extraction job per (model config, task, seed) classifies every head's raw and normed maps of
# patterns.n_examples dev examples, for all heads and (in the network pruned to them) the task's
# super-survivors; one summary job writes the tables, Figure 4 and the correlation.
if PATTERN_CNN_KINDS:

    rule patterns_train_cnn:
        input:
            labels=os.path.join(PATTERN_LABELLED, "{pkind}", "labels.csv"),
        output:
            model=f"{RESULTS}/patterns/cnn/{{pkind}}/model.safetensors",
            card=f"{RESULTS}/patterns/cnn/{{pkind}}/card.json",
        wildcard_constraints:
            pkind="raw|normed",
        params:
            labelled=PATTERN_LABELLED,
            epochs=PATTERNS["cnn_epochs"],
        threads: MODEL_THREADS
        resources:
            gpu=1,
        conda:
            CONDA_ENV
        log:
            f"{RESULTS}/logs/patterns_train_cnn/{{pkind}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/patterns_train_cnn/{{pkind}}.tsv"
        shell:
            "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery patterns train-cnn --labelled-dir {params.labelled:q}"
            " --kind {wildcards.pkind} --epochs {params.epochs} --out-dir results/patterns/cnn/{wildcards.pkind}"
            " > {log} 2>&1"


rule patterns_extract:
    input:
        card=f"{RESULTS}/data/{{task}}/data_card.json",
        model=lambda wc: [pattern_model(wc)] if wc.pconfig == "finetuned" else [],
        super_mask=f"{RESULTS}/masks/super/{{task}}/seed{{seed}}/good.safetensors",
        cnn=PATTERN_CNN,
    output:
        f"{RESULTS}/patterns/counts/{{pconfig}}/{{task}}/seed{{seed}}.safetensors",
    wildcard_constraints:
        pconfig="finetuned|pretrained",
    params:
        model=pattern_model,
        n_examples=PATTERNS["n_examples"],
        cnn=f"--cnn-dir {RESULTS}/patterns/cnn" if PATTERN_CNN else "",
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/patterns_extract/{{pconfig}}/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/patterns_extract/{{pconfig}}/{{task}}/seed{{seed}}.tsv"
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery patterns extract --task {wildcards.task} --seed {wildcards.seed}"
        " --config {wildcards.pconfig} --model {params.model:q} --data-dir results/data/{wildcards.task}"
        " --n-examples {params.n_examples} --super-mask {input.super_mask} {params.cnn}"
        " --output {output} > {log} 2>&1"


rule patterns_summarize:
    input:
        counts=expand(f"{RESULTS}/patterns/counts/{{pconfig}}/{{task}}/seed{{seed}}.safetensors",
                      pconfig=PATTERN_CONFIGS, task=PATTERN_TASKS, seed=SEEDS),
        paper=[PAPER_YAML] if os.path.isfile(PAPER_YAML) else [],
    output:
        figure4=report(f"{RESULTS}/figures/figure4_finetuned.pdf", caption="../report/patterns_figure4.rst",
                       category="Attention patterns"),
        appendix_f=report(f"{RESULTS}/figures/figure4_pretrained.pdf", caption="../report/patterns_appendix_f.rst",
                          category="Attention patterns"),
        types=report(f"{RESULTS}/figures/figure4a_types.pdf", caption="../report/patterns_types.rst",
                     category="Attention patterns"),
        pngs=expand(f"{RESULTS}/figures/{{name}}.png", name=["figure4_finetuned", "figure4_pretrained", "figure4a_types"]),
        distribution=report(f"{RESULTS}/tables/patterns_distribution.csv", caption="../report/patterns_tables.rst",
                            category="Attention patterns"),
        tables=expand(f"{RESULTS}/tables/patterns_{{pconfig}}_{{selection}}.{{ext}}", pconfig=PATTERN_CONFIGS,
                      selection=["super", "all"], ext=["csv", "md"]),
        correlation=report(f"{RESULTS}/analysis/patterns_correlation.json",
                           caption="../report/patterns_correlation.rst", category="Attention patterns"),
    params:
        paper=lambda wc, input: f"--paper {input.paper[0]}" if input.paper else "",
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/patterns_summarize.log",
    benchmark:
        f"{RESULTS}/benchmarks/patterns_summarize.tsv"
    shell:
        "python -m bertlottery patterns summarize --counts {input.counts} {params.paper} --tables-dir results/tables"
        " --figures-dir results/figures --correlation {output.correlation} > {log} 2>&1"
