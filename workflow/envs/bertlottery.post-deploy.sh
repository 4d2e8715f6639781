#!/usr/bin/env bash
# Installs bertlottery into the per-rule conda environment built from bertlottery.yaml.
#
# How Snakemake runs this file (Snakemake 9, snakemake/deployment/conda.py, Env.create and
# execute_deployment_script; docs: "Providing post-deployment scripts"): it finds it beside the env
# file (same name, .yaml -> .post-deploy.sh), copies it to <conda-prefix>/<env hash>.post-deploy.sh
# (by default <working dir>/.snakemake/conda/), activates the new environment (so CONDA_PREFIX is
# set) and runs the copy with the interpreter of the shebang, in Snakemake's working directory, with
# Snakemake's environment variables. So this script's own location says nothing about the
# repository. The workflow (workflow/rules/common.smk) exports BERTLOTTERY_SOURCE_DIR, the directory
# of its Snakefile; without it, the working directory is used when it holds bertlottery's
# pyproject.toml.
#
# The install is editable (like `-e .` in environment.yml): the environment is rebuilt only when the
# env file or this script changes, so an editable install keeps the jobs on the checkout's current
# code instead of a stale copy. --no-deps: the env file already lists every dependency.
set -euo pipefail

if [ -z "${CONDA_PREFIX:-}" ]; then
    echo "bertlottery post-deploy: CONDA_PREFIX is not set; expected Snakemake to activate the new environment" >&2
    exit 1
fi

is_source() { [ -f "$1/pyproject.toml" ] && grep -q '^name = "bertlottery"' "$1/pyproject.toml"; }

source_dir="${BERTLOTTERY_SOURCE_DIR:-$PWD}"
if ! is_source "$source_dir"; then
    echo "bertlottery post-deploy: no bertlottery pyproject.toml in '$source_dir'" \
         "(BERTLOTTERY_SOURCE_DIR=${BERTLOTTERY_SOURCE_DIR:-unset}, working directory $PWD);" \
         "expected the repository root: set BERTLOTTERY_SOURCE_DIR to it" >&2
    exit 1
fi

echo "bertlottery post-deploy: pip install --no-deps -e $source_dir into $CONDA_PREFIX"
"$CONDA_PREFIX/bin/python" -m pip install --no-deps -e "$source_dir"
