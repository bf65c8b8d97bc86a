#!/usr/bin/env bash
# Usage: launch/tpu_pod.sh TPU_NAME ZONE configs/mocca_cifar10.py /mnt/shared/workdir [--config.key=value ...]
# Runs the same program on every worker of a pod slice with --config.multihost=True: jax.distributed.initialize()
# finds the workers from the TPU metadata (process ids included), so no coordinates are needed. A
# JAX_COORDINATOR_ADDRESS set here (HOST:PORT of worker 0) is passed on to every worker; per-worker ids cannot be.
set -euo pipefail
cd "$(dirname "$0")/.."
tpu=$1 zone=$2 config=$3 workdir=$4; shift 4
if [ -n "${JAXAD_PROCESS_ID:-}${JAXAD_NUM_PROCESSES:-}" ]; then
  echo "tpu_pod.sh: unset JAXAD_PROCESS_ID / JAXAD_NUM_PROCESSES: on a pod JAX reads each worker's id itself." >&2
  exit 2
fi
coordinator=${JAX_COORDINATOR_ADDRESS:+JAX_COORDINATOR_ADDRESS=$JAX_COORDINATOR_ADDRESS}
gcloud compute tpus tpu-vm scp --recurse --zone="$zone" --worker=all . "$tpu":~/jaxad
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="cd ~/jaxad && python3 -m venv .venv && \
  .venv/bin/pip install --quiet -U 'jax[tpu]' -e . && \
  $coordinator .venv/bin/python -m jaxad.main --config='$config' --workdir='$workdir' --config.multihost=True $*"
