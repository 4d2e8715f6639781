#!/usr/bin/env bash
# Install SLURM and MUNGE from Debian (bookworm: SLURM 22.05) unless they are already there.
# Needs root and apt; exits 3 (the test's "skip" code) when it cannot install.
set -euo pipefail

if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: SLURM is not installed and installing it needs root" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null; then
    echo "install.sh: SLURM is not installed and apt-get is not available" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
slurmctld -V
