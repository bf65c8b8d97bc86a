#!/usr/bin/env bash
# Usage: launch/gpu_host.sh configs/mocca_cifar10.py:normal_class=3 /path/to/workdir [--config.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
config=$1 workdir=$2; shift 2
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet -U "jax[cuda12]" -e .
exec .venv/bin/python -m jaxad.main --config="$config" --workdir="$workdir" "$@"
