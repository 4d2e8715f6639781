# Derived masks (random, bad, super-survivors), pruned evaluation and retraining (PAPER_SPEC section 5).


rule derive_s_masks:
    input:
        good=f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/good.safetensors",
    output:
        random=f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/random.safetensors",
        bad=f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/bad.safetensors",
        random_like_bad=f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/random_like_bad.safetensors",
    wildcard_constraints:
        sfamily="s|s-heads|s-mlps",
    params:
        mode=config["subnetworks"]["random_mode"],
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/derive_s_masks/{{sfamily}}/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/derive_s_masks/{{sfamily}}/{{task}}/seed{{seed}}.tsv"
    shell:
        "python -m bertlottery derive-s-masks --task {wildcards.task} --seed {wildcards.seed} --good {input.good}"
        " --mode {params.mode} --out-dir results/masks/{wildcards.sfamily}/{wildcards.task}/seed{wildcards.seed}"
        " > {log} 2>&1"


rule super_masks:
    input:
        goods=expand(f"{RESULTS}/masks/s/{{{{task}}}}/seed{{seed}}/good.safetensors", seed=SEEDS),
    output:
        masks=expand(f"{RESULTS}/masks/super/{{{{task}}}}/seed{{seed}}/{{kind}}.safetensors",
                     seed=SEEDS, kind=["good", "random", "bad"]),
        summary=f"{RESULTS}/masks/super/{{task}}/summary.json",
    params:
        seeds=" ".join(SEEDS),
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/super_masks/{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/super_masks/{{task}}.tsv"
    shell:
        "python -m bertlottery super-masks --task {wildcards.task} --seeds {params.seeds} --goods {input.goods}"
        " --out-root results/masks/super/{wildcards.task} > {log} 2>&1"


rule evaluate_pruned:
    input:
        model=f"{RESULTS}/finetune/{{task}}/seed{{seed}}/model",
        mask=f"{RESULTS}/masks/{{family}}/{{task}}/seed{{seed}}/{{kind}}.safetensors",
    output:
        f"{RESULTS}/eval/{{family}}/{{kind}}/{{task}}/seed{{seed}}/pruned.json",
    params:
        training=lambda wc: training_json(wc.task),
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/evaluate_pruned/{{family}}/{{kind}}/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_pruned/{{family}}/{{kind}}/{{task}}/seed{{seed}}.tsv"
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery evaluate-pruned --task {wildcards.task} --seed {wildcards.seed} --model-dir {input.model}"
        " --mask {input.mask} --family {wildcards.family} --kind {wildcards.kind}"
        " --data-dir results/data/{wildcards.task} --training {params.training:q} --output {output} > {log} 2>&1"


rule retrain:
    input:
        card=f"{RESULTS}/data/{{task}}/data_card.json",
        mask=lambda wc: f"{RESULTS}/masks/{wc.family}/{wc.task}/seed{wc.seed}/{RETRAIN_VARIANTS[wc.variant][0]}.safetensors",
    output:
        f"{RESULTS}/retrain/{{family}}/{{variant}}/{{task}}/seed{{seed}}/metrics.json",
    wildcard_constraints:
        family="m|s|super|s-heads|s-mlps",
        variant="|".join(RETRAIN_VARIANTS),
    params:
        model=config["model"],
        training=retrain_settings,
        flags=lambda wc: RETRAIN_VARIANTS[wc.variant][1],
        save="" if config["retrain"]["keep_weights"] else "--no-save",
        out_dir=lambda wc: f"{RESULTS}/retrain/{wc.family}/{wc.variant}/{wc.task}/seed{wc.seed}",
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/retrain/{{family}}/{{variant}}/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/retrain/{{family}}/{{variant}}/{{task}}/seed{{seed}}.tsv"
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery finetune --task {wildcards.task} --seed {wildcards.seed} --model {params.model:q}"
        " --data-dir results/data/{wildcards.task} --training {params.training:q} --mask {input.mask}"
        " {params.flags} {params.save} --family {wildcards.family} --kind {wildcards.variant}"
        " --out-dir {params.out_dir} --eval-output {output} > {log} 2>&1"
