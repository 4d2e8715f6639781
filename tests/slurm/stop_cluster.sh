#!/usr/bin/env bash
# Stop the cluster that start_cluster.sh DIR started: cancel its jobs, then end the daemons by
# their pid files (slurmd, slurmctld, munged), wait for them to exit, drop the /etc/slurm link.
set -uo pipefail

DIR=$(realpath -m "${1:?usage: stop_cluster.sh DIR}")
export SLURM_CONF="$DIR/slurm.conf"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$DIR/slurmctld.pid"; then
    scancel --full --quiet --partition=debug 2>/dev/null || true
    for _ in $(seq 1 20); do
        [ -z "$(squeue --noheader --states=RUNNING,PENDING,COMPLETING 2>/dev/null)" ] && break
        sleep 0.5
    done
fi

status=0
for daemon in slurmd slurmctld munged; do
    pidfile="$DIR/$daemon.pid"
    alive "$pidfile" || continue
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop_cluster.sh: $daemon (pid $pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
        status=1
    fi
done
# Remove the /etc/slurm/slurm.conf link that start_cluster.sh made, if it is still ours.
if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
exit $status
