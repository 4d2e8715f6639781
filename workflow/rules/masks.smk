# Mask searches on the fine-tuned models (PAPER_SPEC sections 3 and 4).
rule find_s_mask:
    input:
        model=f"{RESULTS}/finetune/{{task}}/seed{{seed}}/model",
        card=f"{RESULTS}/data/{{task}}/data_card.json",
    output:
        good=f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/good.safetensors",
        search=f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/search.json",
        trace=f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/trace.json",
        # every iteration's masks and importances (s_pruning.save_iterations)
        iterations=[f"{RESULTS}/masks/{{sfamily}}/{{task}}/seed{{seed}}/trace.safetensors"]
        if config["s_pruning"]["save_iterations"] else [],
    wildcard_constraints:
        sfamily="s|s-heads|s-mlps",
    params:
        mode=lambda wc: S_MODES[wc.sfamily],
        settings=section_json("s_pruning"),
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/find_s_mask/{{sfamily}}/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/find_s_mask/{{sfamily}}/{{task}}/seed{{seed}}.tsv"
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery find-s-mask --task {wildcards.task} --seed {wildcards.seed} --mode {params.mode}"
        " --model-dir {input.model} --data-dir results/data/{wildcards.task} --settings {params.settings:q}"
        " --out-dir results/masks/{wildcards.sfamily}/{wildcards.task}/seed{wildcards.seed} > {log} 2>&1"


rule find_m_mask:
    input:
        model=f"{RESULTS}/finetune/{{task}}/seed{{seed}}/model",
        card=f"{RESULTS}/data/{{task}}/data_card.json",
    output:
        good=f"{RESULTS}/masks/m/{{task}}/seed{{seed}}/good.safetensors",
        random=f"{RESULTS}/masks/m/{{task}}/seed{{seed}}/random.safetensors",
        bad=f"{RESULTS}/masks/m/{{task}}/seed{{seed}}/bad.safetensors",
        search=f"{RESULTS}/masks/m/{{task}}/seed{{seed}}/search.json",
    params:
        settings=section_json("m_pruning"),
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/find_m_mask/{{task}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/find_m_mask/{{task}}/seed{{seed}}.tsv"
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery find-m-mask --task {wildcards.task} --seed {wildcards.seed}"
        " --model-dir {input.model} --data-dir results/data/{wildcards.task} --settings {params.settings:q}"
        " --out-dir results/masks/m/{wildcards.task}/seed{wildcards.seed} > {log} 2>&1"
