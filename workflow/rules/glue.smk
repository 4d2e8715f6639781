# Data (glue/): each task's splits read, subsampled and tokenized once (docs/protocol.md §Data and metrics).
rule prepare_data:
    output:
        card=LAYOUT.data_card("{task}"),
        splits=directory(LAYOUT.data_splits("{task}")),
    params:
        model=config["model"],
        glue_dir=config["glue_dir"] or "",
        data=lambda wc: data_json(wc.task),
        custom_task=lambda wc: custom_task_json(wc.task),
        max_seq_length=lambda wc: TRAINING[wc.task]["max_seq_length"],
        out_dir=data_dir,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("prepare_data", "{task}"),
    benchmark:
        LAYOUT.benchmark("prepare_data", "{task}")
    shell:
        "python -m bertlottery prepare-data --task {wildcards.task} --model {params.model:q} --glue-dir {params.glue_dir:q}"
        " --data {params.data:q} --max-seq-length {params.max_seq_length}"
        " --out-dir {params.out_dir} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
