#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost, everything under DIR (keep DIR short: the MUNGE
# socket path must fit in 108 bytes). Needs root. Prints the environment clients need, e.g.
#   eval "$(tests/slurm/start_cluster.sh /tmp/slurm)"; sbatch --gpus=1 --wrap 'env'
# The node has 4 fake GPUs: character devices (c 1 3, like /dev/null; SLURM rejects regular
# files), so SLURM sets CUDA_VISIBLE_DEVICES for jobs that ask for GPUs. Accounting is off
# (no slurmdbd): `sacct` does not work, so Snakemake must query job status with `squeue`.
# Stop it with tests/slurm/stop_cluster.sh DIR.
#   CPUS (default 8): the node's CPUs as SLURM sees them (config_overrides: may exceed the real
#   ones, so several GPU jobs fit at once on a small machine). MEM_MB (default 8000): its memory.
set -euo pipefail

DIR=$(realpath -m "${1:?usage: start_cluster.sh DIR}")
CPUS=${CPUS:-8}
MEM_MB=${MEM_MB:-8000}
NGPUS=4

if [ "$(id -u)" -ne 0 ]; then
    echo "start_cluster.sh: needs root (daemons, mknod)" >&2
    exit 3
fi
for f in slurmctld.pid slurmd.pid munged.pid; do
    if [ -s "$DIR/$f" ] && kill -0 "$(cat "$DIR/$f")" 2>/dev/null; then
        echo "start_cluster.sh: $DIR/$f: already running" >&2
        exit 1
    fi
done
mkdir -p "$DIR"/{munge,state,spool,log,dev}
chmod 700 "$DIR" "$DIR/munge"

# MUNGE: a fresh key and a private socket, so nothing touches /etc/munge or /run/munge.
if [ ! -s "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$DIR/munge/munge.key"
SOCKET="$DIR/munge/munge.socket.2"
munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCKET" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"

for i in $(seq 0 $((NGPUS - 1))); do
    [ -c "$DIR/dev/fakegpu$i" ] || mknod "$DIR/dev/fakegpu$i" c 1 3
done

cat >"$DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=localhost Name=gpu File=$DIR/dev/fakegpu[0-$((NGPUS - 1))]
EOF

cat >"$DIR/slurm.conf" <<EOF
ClusterName=bertlottery
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
# Finished jobs stay visible to squeue this long: Snakemake's status polling needs that.
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# The plugin's job step drops every SLURM_* variable, SLURM_CONF included, before its inner
# `srun`, which then reads the default /etc/slurm/slurm.conf (as on a real cluster): point that at
# this cluster, unless a real configuration is there.
ETC_CONF=/etc/slurm/slurm.conf
if [ -e "$ETC_CONF" ] && [ ! -L "$ETC_CONF" ]; then
    echo "start_cluster.sh: $ETC_CONF exists (a real cluster?); not replacing it" >&2
    exit 3
fi
mkdir -p /etc/slurm
ln -sfn "$DIR/slurm.conf" "$ETC_CONF"

export SLURM_CONF="$DIR/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost

# Ready when the node is idle (it starts as unknown, then registers).
for _ in $(seq 1 60); do
    state=$(sinfo --noheader --nodes=localhost --format=%T 2>/dev/null || true)
    if [ "$state" = "idle" ]; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 1
done
echo "start_cluster.sh: node not idle after 60 s (state: '${state:-none}'); logs in $DIR/log" >&2
tail -n 20 "$DIR"/log/*.log >&2 || true
exit 1
