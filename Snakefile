# bertlottery: "When BERT Plays the Lottery, All Tickets Are Winning" (Prasanna et al., EMNLP 2020), end to end.
#   snakemake --cores 8 --resources gpu=4                      # the paper (config/config.yaml)
#   snakemake --cores 2 --configfile config/smoke.yaml ...     # a minutes-long smoke run
#   snakemake --cores 8 task_SST2                              # one task's runs only (a chunk of a study)
from snakemake.utils import min_version

min_version("9.0")


# With config `bundles` the bundles' recorded config replaces this one (common.smk): it is not read then,
# so the analyses run in any working directory.
if not config.get("bundles"):

    configfile: "config/config.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# config `bundles`: the analyses from study bundles, no model: their files restored instead of the study run.
if BUNDLES:

    include: "workflow/rules/bundle.smk"

else:

    include: "workflow/rules/glue.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/search.smk"
    include: "workflow/rules/subnetworks.smk"


include: "workflow/rules/patterns.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True


# One target rule per task: its fine-tunes, searches, masks, pruned and retrained runs (no cross-task
# analyses), so a long study can run in chunks, e.g. `snakemake --cores 2 task_CoLA`, then `snakemake`.
# (Not with config `bundles`: there is no study to run then.)
for _task in [] if BUNDLES else TASKS:

    rule:
        name:
            chunk_rule_name(_task)
        input:
            task_targets(_task),
