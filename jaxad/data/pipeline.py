"""grain pipelines: deterministic for a seed, sharded per process, random access by step for exact resume."""

from __future__ import annotations

from typing import Iterator

import grain
import jax
import numpy as np

from jaxad.errors import ConfigError


class _Examples:
  """A grain random-access source over in-memory arrays: element i = {name: array[i]}."""

  def __init__(self, **arrays: np.ndarray):
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
      raise ValueError(f"Arrays of different lengths: { {k: len(a) for k, a in arrays.items()} }")
    self._arrays = arrays
    self._len = lengths.pop()

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i):
    return {k: a[i] for k, a in self._arrays.items()}


def local_batch_size(global_batch_size: int) -> int:
  n_proc, n_dev = jax.process_count(), jax.device_count()
  if global_batch_size % n_dev:
    raise ConfigError(f"Batch size {global_batch_size} is not divisible by the {n_dev} devices; pick a multiple.")
  return global_batch_size // n_proc


def train_batches(images: np.ndarray, *, global_batch_size: int, seed: int,
                  num_epochs: int) -> tuple[grain.MapDataset, int]:
  """Shuffled batches of normal images: `(ds, steps_per_epoch)`; `ds[step]` is this process's part of that step.

  Each epoch is a fresh permutation (grain folds the epoch into the shuffle seed); the last partial batch of an
  epoch is dropped so every step has the same shape and the train step compiles once.
  """
  local = local_batch_size(global_batch_size)
  if len(images) < global_batch_size:
    raise ConfigError(f"Only {len(images)} training images, fewer than one batch of {global_batch_size}: lower the "
                      "batch size.")
  ds = grain.MapDataset.source(_Examples(image=images)).shuffle(seed=seed)
  ds = ds[jax.process_index()::jax.process_count()].batch(local, drop_remainder=True)
  return ds.repeat(num_epochs), len(images) // global_batch_size


def eval_batches(global_batch_size: int, **arrays: np.ndarray) -> Iterator[tuple[dict, int]]:
  """In-order batches padded to a full global batch: yields (this process's part, number of valid examples)."""
  n = len(next(iter(arrays.values())))
  local = local_batch_size(global_batch_size)
  start_in_batch = jax.process_index() * local
  for start in range(0, n, global_batch_size):
    valid = min(global_batch_size, n - start)
    idx = np.arange(start + start_in_batch, start + start_in_batch + local)
    idx = np.minimum(idx, n - 1)  # pad by repeating the last example; padded rows are dropped after scoring
    yield {k: a[idx] for k, a in arrays.items()}, valid
