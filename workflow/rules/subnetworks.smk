# Derived masks (random, bad, super-survivors), pruned evaluation and retraining (docs/protocol.md §Derived masks, §Evaluation and retraining).


rule derive_s_masks:
    input:
        good=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "good"),
    output:
        random=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "random"),
        bad=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "bad"),
        random_like_bad=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "random_like_bad"),
    wildcard_constraints:
        sfamily="s|s-heads|s-mlps|f",  # f: the s rules applied to the Fisher good mask
    params:
        mode=config["subnetworks"]["random_mode"],
        out_dir=s_mask_dir,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("derive_s_masks", "{sfamily}", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("derive_s_masks", "{sfamily}", "{task}", seed="{seed}")
    shell:
        "python -m bertlottery derive-s-masks --task {wildcards.task} --seed {wildcards.seed} --good {input.good}"
        " --mode {params.mode} --out-dir {params.out_dir}"
        " > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule super_masks:
    input:
        goods=[LAYOUT.mask_file("s", "{task}", seed, "good") for seed in SEEDS],
    output:
        masks=[LAYOUT.mask_file("super", "{task}", seed, kind) for seed in SEEDS for kind in ("good", "random", "bad")],
        summary=LAYOUT.super_summary("{task}"),
    params:
        seeds=" ".join(SEEDS),
        out_root=super_dir,
        topup=config["subnetworks"]["super_bad_topup"],
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("super_masks", "{task}"),
    benchmark:
        LAYOUT.benchmark("super_masks", "{task}")
    shell:
        "python -m bertlottery super-masks --task {wildcards.task} --seeds {params.seeds} --goods {input.goods}"
        " --out-root {params.out_root} --bad-topup {params.topup} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


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
        family="m|s|super|s-heads|s-mlps|f",
        variant="|".join(RETRAIN_VARIANTS),
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
