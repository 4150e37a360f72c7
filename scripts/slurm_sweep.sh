#!/usr/bin/env bash
# Run a sweep on a SLURM allocation: one Ray head on the first node, one Ray worker on each other node, then
# `lightning-privacy sweep --address` on the head (Ray's documented SLURM recipe:
# https://docs.ray.io/en/latest/cluster/vms/user-guides/community/slurm.html).
# UNTESTED on a real cluster (none was available): it passes `bash -n` and shellcheck.
#
#   sbatch scripts/slurm_sweep.sh conf/sweeps/quickstart_demo.yaml [extra fit args, e.g. --data.root /data]
#
# Point MLFLOW_TRACKING_URI at a tracking server every node reaches (the embedded sqlite store is one machine's).
#SBATCH --job-name=lp-sweep
#SBATCH --nodes=2
#SBATCH --exclusive
#SBATCH --tasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --gpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=lp-sweep-%j.log
set -euo pipefail

SWEEP=${1:?usage: sbatch scripts/slurm_sweep.sh conf/sweeps/<name>.yaml [fit args...]}
shift
PYTHON=${PYTHON:-.venv/bin/python}
RAY=${RAY:-$(dirname "$PYTHON")/ray}
PORT=${RAY_PORT:-6379}
CPUS=${SLURM_CPUS_PER_TASK:-1}
GPUS=${SLURM_GPUS_PER_TASK:-0}

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD=${NODES[0]}
HEAD_IP=$(srun --nodes=1 --ntasks=1 -w "$HEAD" hostname --ip-address | awk '{print $1}')
ADDRESS="$HEAD_IP:$PORT"
echo "Ray head: $HEAD ($ADDRESS); workers: ${NODES[*]:1}"

srun --nodes=1 --ntasks=1 -w "$HEAD" \
  "$RAY" start --head --node-ip-address="$HEAD_IP" --port="$PORT" \
  --num-cpus="$CPUS" --num-gpus="$GPUS" --block &
sleep 20

for node in "${NODES[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" \
    "$RAY" start --address="$ADDRESS" --num-cpus="$CPUS" --num-gpus="$GPUS" --block &
  sleep 5
done

"$PYTHON" -m lightning_privacy.cli sweep --config "$SWEEP" --address "$ADDRESS" -- "$@"
