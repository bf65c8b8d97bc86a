"""One code path for 1 device, N devices or a TPU pod: jit over a `Mesh` with a 'data' axis.

Parameters and optimizer state are replicated; batches are split along 'data'. BatchNorm statistics are computed
over the global batch because XLA inserts the cross-device reductions, so N devices give the same numbers as one.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def initialize(multihost: bool) -> None:
  """Joins a multi-host job (TPU pod, several GPU hosts); a no-op on one host."""
  if multihost:
    jax.distributed.initialize()


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
