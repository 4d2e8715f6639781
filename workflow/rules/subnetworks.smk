# Derived masks (subnetworks/): random and bad s-masks, super-survivors (docs/protocol.md §Derived masks).


rule derive_s_masks:
    input:
        good=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "good"),
    output:
        random=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "random"),
        bad=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "bad"),
        random_like_bad=LAYOUT.mask_file("{sfamily}", "{task}", "{seed}", "random_like_bad"),
    wildcard_constraints:
        sfamily="|".join(S_RULE_FAMILIES),  # f too: the s rules applied to the Fisher good mask
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
        goods=[LAYOUT.mask_file(S, "{task}", seed, "good") for seed in SEEDS],
    output:
        masks=[LAYOUT.mask_file(SUPER, "{task}", seed, kind) for seed in SEEDS for kind in FAMILIES[SUPER].kinds],
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
