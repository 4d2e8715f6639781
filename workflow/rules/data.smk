rule prepare_data:
    output:
        card=f"{RESULTS}/data/{{task}}/data_card.json",
        splits=directory(f"{RESULTS}/data/{{task}}/splits"),
    params:
        model=config["model"],
        glue_dir=config["glue_dir"] or "",
        data=data_json(),
        max_seq_length=lambda wc: TRAINING[wc.task]["max_seq_length"],
    conda:
        CONDA_ENV
    log:
        f"{RESULTS}/logs/prepare_data/{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_data/{{task}}.tsv"
    shell:
        "python -m bertlottery prepare-data --task {wildcards.task} --model {params.model:q} --glue-dir {params.glue_dir:q}"
        " --data {params.data:q} --max-seq-length {params.max_seq_length}"
        " --out-dir results/data/{wildcards.task} > {log} 2>&1"
