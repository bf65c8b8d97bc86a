"""One code path for 1 device, N devices or a TPU pod: jit over a `Mesh` with a 'data' axis.

Parameters and optimizer state are replicated; batches are split along 'data'. BatchNorm statistics are computed
over the global batch because XLA inserts the cross-device reductions, so N devices give the same numbers as one.
Several processes (`--config.multihost=True`: a TPU pod, GPU hosts, or N processes on one CPU machine through
`launch/cpu_processes.sh`) join through `initialize`; each feeds its own rows of every batch (`shard_batch`) and
gets scores back whole (`to_host`). tests/multihost_test.py checks 2 processes against 1 to 1e-5.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxad.errors import ConfigError

# Where a multi-host job's processes find each other when no cluster manager says so (several GPU hosts, or several
# processes on one CPU machine). JAX itself reads the coordinator's address and the local device ids from the
# environment, but not the number of processes nor this process's id: jaxad reads those two.
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"  # host:port of process 0; read by jax.distributed.initialize itself
NUM_PROCESSES_ENV = "JAXAD_NUM_PROCESSES"
PROCESS_ID_ENV = "JAXAD_PROCESS_ID"
_HOW = (f"set {COORDINATOR_ENV}=HOST:PORT (process 0's address, the same on every process), {NUM_PROCESSES_ENV}=N "
        f"and {PROCESS_ID_ENV}=0..N-1 on each process (launch/README.md shows two processes on one machine), or run "
        "under a cluster JAX detects itself (Cloud TPU pod, SLURM, Open MPI)")


def _env_int(name: str) -> int | None:
  value = os.environ.get(name, "").strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ConfigError(f"{name}={value!r} is not an integer; {_HOW}.") from None


def distributed_env() -> dict[str, str | int | None]:
  """The explicit coordinates of this process in the environment: coordinator_address, num_processes, process_id.

  Values not set are None (then `jax.distributed.initialize` detects them: TPU pods, SLURM, Open MPI).
  """
  address = os.environ.get(COORDINATOR_ENV, "").strip() or None
  num, pid = _env_int(NUM_PROCESSES_ENV), _env_int(PROCESS_ID_ENV)
  if address is not None and ":" not in address.rsplit("]", 1)[-1]:
    raise ConfigError(f"{COORDINATOR_ENV}={address!r} has no port; give HOST:PORT, e.g. 127.0.0.1:12355.")
  if (num is None) != (pid is None):
    given, missing = (NUM_PROCESSES_ENV, PROCESS_ID_ENV) if pid is None else (PROCESS_ID_ENV, NUM_PROCESSES_ENV)
    raise ConfigError(f"{given} is set but {missing} is not; set both (or neither, on a cluster JAX detects).")
  if num is not None:
    if num < 1 or not 0 <= pid < num:
      raise ConfigError(f"{PROCESS_ID_ENV}={pid} must be in 0..{NUM_PROCESSES_ENV}-1 with {NUM_PROCESSES_ENV}={num} "
                        ">= 1.")
    if address is None:
      raise ConfigError(f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} are set but {COORDINATOR_ENV} is not: set it to "
                        "process 0's HOST:PORT on every process.")
  return {"coordinator_address": address, "num_processes": num, "process_id": pid}


def initialize(multihost: bool) -> None:
  """Joins a multi-host job (TPU pod, several GPU hosts, several CPU processes); a no-op on one host.

  Must run before anything touches a JAX backend. The coordinates come from the environment (`distributed_env`);
  what is not set there JAX detects itself (TPU pods, SLURM, Open MPI). Cross-process collectives on CPU go through
  gloo over TCP: without them a CPU job could not all-reduce gradients between processes.

  Raises:
    ConfigError: the environment's coordinates are incomplete or inconsistent, none are found at all, or they are set
      while `multihost` is False (the processes would each train alone into the same workdir).
  """
  coords = distributed_env()
  if not multihost:
    if coords["num_processes"] not in (None, 1):
      raise ConfigError(f"{NUM_PROCESSES_ENV}={coords['num_processes']} is set but --config.multihost is False: "
                        "pass --config.multihost=True on every process (or unset the variable for a one-host run).")
    return
  # Gloo unless the user chose otherwise (e.g. 'mpi'); JAX 0.10 defaults to it, older releases to none (no
  # cross-process collectives on CPU). Only the CPU backend reads this; GPUs and TPUs have their own.
  if jax.config.jax_cpu_collectives_implementation in (None, "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**coords)
  except ValueError as e:  # JAX found no cluster and the environment does not say where process 0 is
    if "coordinator_address" in str(e) or "must be defined" in str(e):
      raise ConfigError(f"--config.multihost=True but no multi-host job was found ({e}): {_HOW}.") from e
    raise


def make_mesh(devices=None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def shard_batch(local_batch, mesh: Mesh):
  """Assembles each process's part of a batch into one global array split along 'data'."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, replicated(mesh))


def to_host(x) -> np.ndarray:
  """A global array as one NumPy array on every host."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def log(msg: str) -> None:
  """One "[jaxad] ..." progress line on stderr, from process 0 only (every process of a multi-host job calls it)."""
  if jax.process_index() == 0:
    print(f"[jaxad] {msg}", file=sys.stderr, flush=True)
