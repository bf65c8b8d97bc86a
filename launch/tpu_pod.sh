#!/usr/bin/env bash
# Usage: launch/tpu_pod.sh TPU_NAME ZONE configs/mocca_cifar10.py /mnt/shared/workdir [--config.key=value ...]
# Runs the same program on every worker of a pod slice; jax.distributed.initialize() joins them.
set -euo pipefail
cd "$(dirname "$0")/.."
tpu=$1 zone=$2 config=$3 workdir=$4; shift 4
gcloud compute tpus tpu-vm scp --recurse --zone="$zone" --worker=all . "$tpu":~/jaxad
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="cd ~/jaxad && python3 -m venv .venv && \
  .venv/bin/pip install --quiet -U 'jax[tpu]' -e . && \
  .venv/bin/python -m jaxad.main --config='$config' --workdir='$workdir' --config.multihost=True $*"
