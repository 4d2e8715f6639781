# config `bundles` (README "Sharing a study: bundles"): the files the analyses read, restored from study bundles
# (folders or .tar.gz archives, each checked against its manifest first; m-masks unpacked, or their summaries
# restored as they are), instead of the data, fine-tuning, mask and subnetwork rules. Nothing here needs a
# model. Include after common.smk.

rule bundle_unpack:
    input:
        manifests=[manifest_input(bundle) for bundle in BUNDLES],  # a folder's manifest.json, or the archive
    output:
        bundle_outputs(),
    params:
        bundles=" ".join(shlex.quote(bundle) for bundle in BUNDLES),
        root=results_root,
    conda:
        CONDA_ENV
    log:
        LAYOUT.log("bundle_unpack"),
    benchmark:
        LAYOUT.benchmark("bundle_unpack")
    shell:
        "python -m bertlottery bundle unpack --results {params.root} {params.bundles}"
        " > {log} 2>&1 || python -m bertlottery job-failed {log} $?"
