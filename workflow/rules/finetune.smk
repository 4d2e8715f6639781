rule finetune:
    input:
        card=f"{RESULTS}/data/{{task}}/data_card.json",
    output:
        model=directory(f"{RESULTS}/finetune/{{task}}/seed{{seed}}/model"),
        log_csv=f"{RESULTS}/finetune/{{task}}/seed{{seed}}/train_log.csv",
        summary=f"{RESULTS}/finetune/{{task}}/seed{{seed}}/train_summary.json",
    params:
        model=config["model"],
        training=lambda wc: training_json(wc.task),
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/finetune/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{{task}}/seed{{seed}}.tsv"
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery finetune --task {wildcards.task} --seed {wildcards.seed} --model {params.model:q}"
        " --data-dir results/data/{wildcards.task} --training {params.training:q}"
        " --out-dir results/finetune/{wildcards.task}/seed{wildcards.seed} > {log} 2>&1"


rule evaluate_full:
    input:
        model=f"{RESULTS}/finetune/{{task}}/seed{{seed}}/model",
    output:
        f"{RESULTS}/finetune/{{task}}/seed{{seed}}/metrics.json",
    params:
        training=lambda wc: training_json(wc.task),
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/evaluate_full/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_full/{{task}}/seed{{seed}}.tsv"
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery evaluate-full --task {wildcards.task} --seed {wildcards.seed} --model-dir {input.model}"
        " --data-dir results/data/{wildcards.task} --training {params.training:q}"
        " --output {output} > {log} 2>&1"
