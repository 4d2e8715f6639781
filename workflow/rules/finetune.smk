rule finetune:
    input:
        card=LAYOUT.data_card("{task}"),
    output:
        model=directory(LAYOUT.finetuned_model("{task}", "{seed}")),
        log_csv=LAYOUT.train_log("{task}", "{seed}"),
        summary=LAYOUT.train_summary("{task}", "{seed}"),
    params:
        model=config["model"],
        training=lambda wc: training_json(wc.task),
        data_dir=data_dir,
        out_dir=finetune_dir,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("finetune", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("finetune", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery finetune --task {wildcards.task} --seed {wildcards.seed} --model {params.model:q}"
        " --data-dir {params.data_dir} --training {params.training:q}"
        " --out-dir {params.out_dir} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule evaluate_full:
    input:
        model=LAYOUT.finetuned_model("{task}", "{seed}"),
    output:
        LAYOUT.full_metrics("{task}", "{seed}"),
    params:
        training=lambda wc: training_json(wc.task),
        data_dir=data_dir,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("evaluate_full", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("evaluate_full", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery evaluate-full --task {wildcards.task} --seed {wildcards.seed} --model-dir {input.model}"
        " --data-dir {params.data_dir} --training {params.training:q}"
        " --output {output} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
