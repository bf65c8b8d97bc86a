#!/usr/bin/env bash
# Usage: launch/cpu_processes.sh N configs/quickstart.py:normal_class=0 /path/to/workdir [--config.key=value ...]
# Runs one experiment as N JAX processes on this machine (--config.multihost=True, CPU collectives over gloo): the
# multi-host code path without a cluster. Each process reads its 1/N of every batch; process 0 writes the workdir.
# The coordinator is 127.0.0.1 on a free port unless JAX_COORDINATOR_ADDRESS is set. PYTHON picks the interpreter
# (default .venv/bin/python, else python3). If one process fails, the others are killed (they would wait for it in
# a collective until JAX's heartbeat timeout) and its exit code is returned; the last checkpoint resumes the run.
set -euo pipefail
cd "$(dirname "$0")/.."
n=$1 config=$2 workdir=$3; shift 3
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if [ -z "${JAX_COORDINATOR_ADDRESS:-}" ]; then
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export JAX_COORDINATOR_ADDRESS=127.0.0.1:$port
fi
export JAXAD_NUM_PROCESSES=$n
pids=()
for ((i = 0; i < n; i++)); do
  JAXAD_PROCESS_ID=$i "$python" -m jaxad.main --config="$config" --workdir="$workdir" --config.multihost=True "$@" &
  pids+=($!)
done
# Ctrl-C / SIGTERM: passed on as SIGTERM, on which each process saves a checkpoint at its next step and exits.
stopping=0
trap 'stopping=1; kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for ((k = 0; k < n; k++)); do  # the first process to end: if it failed, the rest would wait for it forever
  wait -n && continue
  status=$?
  [ "$stopping" = 1 ] && break
  kill -KILL "${pids[@]}" 2>/dev/null || true
  break
done
wait || true
exit "$status"
