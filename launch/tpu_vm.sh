#!/usr/bin/env bash
# Usage: launch/tpu_vm.sh TPU_NAME ZONE configs/mocca_cifar10.py /mnt/shared/workdir [--config.key=value ...]
# Copies this checkout to the TPU VM, installs jax[tpu] and jaxad there, and runs one experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
tpu=$1 zone=$2 config=$3 workdir=$4; shift 4
gcloud compute tpus tpu-vm scp --recurse --zone="$zone" . "$tpu":~/jaxad
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --command="cd ~/jaxad && python3 -m venv .venv && \
  .venv/bin/pip install --quiet -U 'jax[tpu]' -e . && \
  .venv/bin/python -m jaxad.main --config='$config' --workdir='$workdir' $*"
