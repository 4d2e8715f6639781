# Ticket finders (search/): the good masks of the fine-tuned models (docs/protocol.md §s-pruning, §m-pruning).
rule find_s_mask:
    input:
        model=LAYOUT.finetuned_model("{task}", "{seed}"),
        card=LAYOUT.data_card("{task}"),
    output:
        good=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "good"),
        search=LAYOUT.search_record("{sfamily}", "{task}", "{seed}"),
        trace=LAYOUT.search_trace("{sfamily}", "{task}", "{seed}"),
        # every iteration's masks and importances (s_pruning.save_iterations)
        iterations=[LAYOUT.search_trace_tensors("{sfamily}", "{task}", "{seed}")]
        if config["s_pruning"]["save_iterations"] else [],
    wildcard_constraints:
        sfamily="|".join(S_MODES.values()),
    params:
        mode=lambda wc: FAMILIES[wc.sfamily].s_mode,
        settings=s_pruning_json,
        data_dir=data_dir,
        out_dir=s_mask_dir,
        padding_free=padding_free_flag,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("find_s_mask", "{sfamily}", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("find_s_mask", "{sfamily}", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery find-s-mask --task {wildcards.task} --seed {wildcards.seed} --mode {params.mode}"
        " --model-dir {input.model} --data-dir {params.data_dir} --settings {params.settings:q}"
        " --out-dir {params.out_dir} {params.padding_free} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


rule find_m_mask:
    input:
        model=LAYOUT.finetuned_model("{task}", "{seed}"),
        card=LAYOUT.data_card("{task}"),
    output:
        good=LAYOUT.mask_file(M, "{task}", "{seed}", "good"),
        random=LAYOUT.mask_file(M, "{task}", "{seed}", "random"),
        bad=LAYOUT.mask_file(M, "{task}", "{seed}", "bad"),
        search=LAYOUT.search_record(M, "{task}", "{seed}"),
    params:
        settings=section_json("m_pruning"),
        data_dir=data_dir,
        out_dir=m_mask_dir,
        padding_free=padding_free_flag,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("find_m_mask", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("find_m_mask", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery find-m-mask --task {wildcards.task} --seed {wildcards.seed}"
        " --model-dir {input.model} --data-dir {params.data_dir} --settings {params.settings:q}"
        " --out-dir {params.out_dir} {params.padding_free} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


# Family f (beyond the paper; docs/protocol.md §f-pruning): one Fisher pass over training examples, as many
# heads and MLPs kept as the s-good mask of the same task and seed.
rule find_f_mask:
    input:
        model=LAYOUT.finetuned_model("{task}", "{seed}"),
        card=LAYOUT.data_card("{task}"),
        reference=LAYOUT.mask_file(S, "{task}", "{seed}", "good"),
    output:
        good=LAYOUT.mask_file(FISHER, "{task}", "{seed}", "good"),
        search=LAYOUT.search_record(FISHER, "{task}", "{seed}"),
    params:
        settings=section_json("f_pruning"),
        data_dir=data_dir,
        out_dir=f_mask_dir,
        padding_free=padding_free_flag,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("find_f_mask", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("find_f_mask", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery find-f-mask --task {wildcards.task} --seed {wildcards.seed}"
        " --model-dir {input.model} --data-dir {params.data_dir} --reference {input.reference} --settings {params.settings:q}"
        " --out-dir {params.out_dir} {params.padding_free} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"


# Family i (beyond the paper; docs/protocol.md §i-pruning): IMP with rewinding. Every round prunes 10 % of the
# remaining weights by magnitude, rewinds to the pre-trained model (the classifier to its seeded init) and
# fine-tunes it again with the task's training settings: one fine-tune per round, up to i_pruning.max_rounds.
rule find_i_mask:
    input:
        model=LAYOUT.finetuned_model("{task}", "{seed}"),
        card=LAYOUT.data_card("{task}"),
    output:
        good=LAYOUT.mask_file(IMP, "{task}", "{seed}", "good"),
        random=LAYOUT.mask_file(IMP, "{task}", "{seed}", "random"),
        bad=LAYOUT.mask_file(IMP, "{task}", "{seed}", "bad"),
        search=LAYOUT.search_record(IMP, "{task}", "{seed}"),
        trace=LAYOUT.search_trace(IMP, "{task}", "{seed}"),
    params:
        pretrained=config["model"],
        training=lambda wc: training_json(wc.task),
        settings=section_json("i_pruning"),
        data_dir=data_dir,
        out_dir=i_mask_dir,
        padding_free=padding_free_flag,
    threads: MODEL_THREADS
    resources:
        gpu=1,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("find_i_mask", "{task}", seed="{seed}"),
    benchmark:
        LAYOUT.benchmark("find_i_mask", "{task}", seed="{seed}")
    shell:
        "BERTLOTTERY_THREADS={threads} python -m bertlottery with-gpu -- python -m bertlottery find-i-mask --task {wildcards.task} --seed {wildcards.seed}"
        " --model-dir {input.model} --pretrained {params.pretrained:q} --data-dir {params.data_dir} --training {params.training:q}"
        " --settings {params.settings:q} --out-dir {params.out_dir} {params.padding_free} > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
