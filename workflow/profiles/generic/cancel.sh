#!/usr/bin/env bash
# Cancel submitted jobs when Snakemake is interrupted:  cancel.sh JOBID [JOBID ...]
set -uo pipefail

scheduler=${BERTLOTTERY_SCHEDULER:-}
if [ -z "$scheduler" ]; then
    if command -v scancel >/dev/null; then scheduler=slurm
    elif command -v bkill >/dev/null; then scheduler=lsf
    else scheduler=qdel  # PBS and Grid Engine
    fi
fi
case "$scheduler" in
    slurm) scancel "$@" ;;
    lsf) bkill "$@" ;;
    *) qdel "$@" ;;
esac
