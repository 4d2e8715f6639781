# Fine-tuning, evaluation, retraining and measured speed (train/; docs/protocol.md §Fine-tuning,
# §Evaluation and retraining).
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


# One job per (task, seed) scores every pruned mask of that fine-tuned model (loaded once), one
# pruned.json per mask. A changed mask reruns the whole job (all masks of the task and seed): a few
# seconds of dev evaluation each, against a process start-up per mask otherwise (docs/benchmarks.md).
rule evaluate_pruned:
    input:
        model=LAYOUT.finetuned_model("{task}", "{seed}"),
        masks=[LAYOUT.mask_file(family, "{task}", "{seed}", kind) for family, kind in PRUNED_MASKS],
    output:
        [LAYOUT.pruned_metrics(family, kind, "{task}", "{seed}") for family, kind in PRUNED_MASKS],
    params:
        training=lambda wc: training_json(wc.task),
        data_dir=data_dir,
        runs=pruned_eval_args,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("evaluate_pruned", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("evaluate_pruned", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery evaluate-pruned --task {wildcards.task} --seed {wildcards.seed} --model-dir {input.model}"
        " {params.runs} --data-dir {params.data_dir} --training {params.training:q} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


# Measured speed (beyond the paper; speed.enabled): one job per (task, seed) loads the fine-tuned model once,
# prunes every head/MLP mask physically and times them all against it in interleaved rounds; the
# m-masks get their sparsity only (unstructured: no dense speedup).
rule speed:
    input:
        model=LAYOUT.finetuned_model("{task}", "{seed}"),
        card=LAYOUT.data_card("{task}"),
        masks=[LAYOUT.mask_file(family, "{task}", "{seed}", kind) for family, kind in PRUNED_MASKS],
    output:
        LAYOUT.speed_record("{task}", "{seed}"),
    params:
        training=lambda wc: training_json(wc.task),
        speed=section_json("speed"),
        data_dir=data_dir,
        masks=speed_mask_args,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("speed", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("speed", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery speed --task {wildcards.task} --seed {wildcards.seed} --model-dir {input.model}"
        " {params.masks} --data-dir {params.data_dir} --training {params.training:q} --speed {params.speed:q}"
        " --output {output} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule retrain:
    input:
        card=LAYOUT.data_card("{task}"),
        mask=variant_mask,
    output:
        LAYOUT.retrain_metrics("{family}", "{variant}", "{task}", "{seed}"),
    wildcard_constraints:
        family="|".join(FAMILIES),  # every registered family (bertlottery.families)
        variant="|".join(VARIANTS),
    params:
        model=config["model"],
        training=variant_training_json,
        variant_flags=variant_flags,
        save="" if config["retrain"]["keep_weights"] else "--no-save",
        data_dir=data_dir,
        out_dir=retrain_dir,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("retrain", "{family}", "{variant}", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("retrain", "{family}", "{variant}", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery finetune --task {wildcards.task} --seed {wildcards.seed} --model {params.model:q}"
        " --data-dir {params.data_dir} --training {params.training:q} --mask {input.mask}"
        " {params.variant_flags} {params.save} --family {wildcards.family} --variant {wildcards.variant}"
        " --out-dir {params.out_dir} --eval-output {output} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
