#!/usr/bin/env bash
# Usage: launch/gpu_host.sh configs/mocca_cifar10.py:normal_class=3 /path/to/workdir [--config.key=value ...]
# One GPU host: installs jax[cuda12] + jaxad in .venv and runs one experiment on all of the host's GPUs.
# Several GPU hosts: run it on every host (each in its own checkout; the workdir on a filesystem all hosts share) with
#   JAX_COORDINATOR_ADDRESS=HOST0:PORT JAXAD_NUM_PROCESSES=N JAXAD_PROCESS_ID=i   (i = 0 on HOST0, ..., N-1)
# or under SLURM (srun, one task per host), where JAX finds them itself; the script then adds --config.multihost=True
# and jaxad.main joins the processes (jaxad/parallel.py, launch/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1 workdir=$2; shift 2
multihost=()
if [ -n "${JAX_COORDINATOR_ADDRESS:-}${JAXAD_NUM_PROCESSES:-}" ] || [ "${SLURM_NTASKS:-1}" -gt 1 ]; then
  multihost=(--config.multihost=True)
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet -U "jax[cuda12]" -e .
exec .venv/bin/python -m jaxad.main --config="$config" --workdir="$workdir" "${multihost[@]}" "$@"
