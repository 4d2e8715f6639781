#!/usr/bin/env bash
# Print one word for a submitted job: running, success or failed (the cluster-generic contract).
#   status.sh JOBID
# Scheduler: as in submit.sh. A job the scheduler no longer knows is reported as success: Snakemake
# then checks that its outputs exist and fails the job if they do not.
set -uo pipefail

id=${1:?usage: status.sh JOBID}
scheduler=${BERTLOTTERY_SCHEDULER:-}
if [ -z "$scheduler" ]; then
    if command -v sbatch >/dev/null; then scheduler=slurm
    elif command -v bsub >/dev/null; then scheduler=lsf
    elif [ -n "${SGE_ROOT:-}" ]; then scheduler=sge
    else scheduler=pbs
    fi
fi

case "$scheduler" in
    slurm)
        state=$(squeue --noheader --states=all --jobs="$id" --format=%T 2>/dev/null | head -n 1)
        if [ -z "$state" ]; then  # aged out of slurmctld: ask the accounting database
            state=$(sacct --noheader --allocations --parsable2 --jobs="$id" --format=State 2>/dev/null | head -n 1)
        fi
        case "${state%% *}" in
            COMPLETED | "") echo success ;;
            FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) echo failed ;;
            *) echo running ;;  # PENDING, RUNNING, COMPLETING, REQUEUED, PREEMPTED (requeued), ...
        esac
        ;;
    pbs)
        info=$(qstat -fx "$id" 2>/dev/null || qstat -f "$id" 2>/dev/null)
        state=$(sed -n 's/^ *job_state = //p' <<<"$info")
        code=$(sed -n 's/^ *[Ee]xit_status = //p' <<<"$info")
        case "$state" in
            F | C) [ "${code:-0}" = 0 ] && echo success || echo failed ;;
            "") echo success ;;
            *) echo running ;;
        esac
        ;;
    sge)
        if qstat -j "$id" >/dev/null 2>&1; then
            qstat -j "$id" | grep -q '^error reason' && echo failed || echo running
        else
            info=$(qacct -j "$id" 2>/dev/null)
            failed=$(awk '$1 == "failed" {print $2}' <<<"$info")
            code=$(awk '$1 == "exit_status" {print $2}' <<<"$info")
            [ "${failed:-0}" = 0 ] && [ "${code:-0}" = 0 ] && echo success || echo failed
        fi
        ;;
    lsf)
        case "$(bjobs -noheader -o stat "$id" 2>/dev/null)" in
            DONE | "") echo success ;;
            EXIT) echo failed ;;
            *) echo running ;;
        esac
        ;;
    *)
        echo "status.sh: unknown scheduler '$scheduler'" >&2; exit 2 ;;
esac
