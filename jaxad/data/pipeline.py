"""Batching: training batches mixed from named sources, eval batches, and a prefetching thread.

Training batches are a pure function of (seed, step), so `batches[step]` can be read in any order (exact resume), and
the global batch does not depend on the number of processes: each process gets its slice of every source's rows.
Every source is read as a stream of grain-shuffled permutations (a fresh one per pass, `MapDataset.shuffle` folds
the pass into its seed). With `drop_remainder`, an epoch is one permutation of the first source and its last partial
batch is dropped (Deep SVDD's loaders); without it the streams wrap into their next permutation and an epoch is
ceil(N / rows) steps, so no batch is ever partial (TransferAD's 64 normal + 64 OE mixing).
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from typing import Any, Callable, Iterator, Mapping

import grain
import jax
import numpy as np

from jaxad.data.examples import Source
from jaxad.errors import ConfigError

# Each source's stream has its own shuffle seed, derived from the phase seed and the source's position in the mix.
_STREAM_SEED_STRIDE = 7919


def local_batch_size(global_batch_size: int) -> int:
  n_proc, n_dev = jax.process_count(), jax.device_count()
  if global_batch_size % n_dev:
    raise ConfigError(f"Batch size {global_batch_size} is not divisible by the {n_dev} devices; pick a multiple.")
  return global_batch_size // n_proc


class _Stream:
  """Positions p = 0, 1, ... over n items: pass k = p // n is grain's k-th shuffle of range(n) under `seed`."""

  def __init__(self, n: int, seed: int):
    self.n = n
    self._shuffled = grain.MapDataset.range(n).shuffle(seed=seed).repeat(None)

  @functools.lru_cache(maxsize=4)
  def _permutation(self, k: int) -> np.ndarray:
    return np.fromiter((self._shuffled[k * self.n + j] for j in range(self.n)), np.int64, self.n)

  def take(self, positions: np.ndarray) -> np.ndarray:
    passes = positions // self.n
    out = np.empty(len(positions), np.int64)
    for k in np.unique(passes):
      sel = passes == k
      out[sel] = self._permutation(int(k))[positions[sel] % self.n]
    return out


class TrainBatches:
  """`batches[step]`: this process's part of training step `step`, the mix's sources concatenated in order.

  Every batch carries the sources' fields (`image` preprocessed float32, `label`, `class`, ...) and `source`: the
  index of each row's source in the mix.
  """

  def __init__(self, sources: Mapping[str, Source], mix: Mapping[str, int], *, seed: int, num_epochs: int,
               drop_remainder: bool):
    missing = [name for name in mix if name not in sources]
    if missing:
      raise ConfigError(f"The batch mix {dict(mix)} needs sources {missing}; this run has {sorted(sources)}.")
    n_proc = jax.process_count()
    global_batch_size = sum(mix.values())
    local_batch_size(global_batch_size)  # checks divisibility by the device count
    for name, rows in mix.items():
      if rows <= 0 or rows % n_proc:
        raise ConfigError(f"Each source's rows per batch must be a positive multiple of the {n_proc} processes; "
                          f"got {name}: {rows}.")
      if not len(sources[name]):
        raise ConfigError(f"Source {name!r} has no examples.")
    self.mix = dict(mix)
    self.sources = {name: sources[name] for name in mix}
    shapes = {name: tuple(src.shape) for name, src in self.sources.items()}
    if len(set(shapes.values())) > 1:
      raise ConfigError(f"The sources of one batch have images of different shapes {shapes}: they must match "
                        "(set data.image_size, which resizes the normal and OE images alike).")
    first, first_rows = next(iter(self.mix.items()))
    n_first = len(self.sources[first])
    if drop_remainder:
      if n_first < first_rows:
        raise ConfigError(f"Only {n_first} {first!r} examples, fewer than one batch of {first_rows}: lower the "
                          "batch size.")
      self.steps_per_epoch = n_first // first_rows
    else:
      self.steps_per_epoch = math.ceil(n_first / first_rows)
    self.drop_remainder = drop_remainder
    self.num_steps = num_epochs * self.steps_per_epoch
    self._streams = {name: _Stream(len(self.sources[name]), seed + _STREAM_SEED_STRIDE * i)
                     for i, name in enumerate(self.mix)}
    # Step -> batch as a grain map: the examples are gathered, decoded and preprocessed inside it.
    self.dataset = grain.MapDataset.range(self.num_steps).map(self._make)

  def __len__(self) -> int:
    return self.num_steps

  def _positions(self, name: str, step: int) -> np.ndarray:
    rows = self.mix[name]
    if self.drop_remainder and name == next(iter(self.mix)):  # one permutation per epoch, its tail dropped
      epoch, b = divmod(step, self.steps_per_epoch)
      start = epoch * len(self.sources[name]) + b * rows
    else:
      start = step * rows
    return np.arange(start, start + rows)

  def __getitem__(self, step: int) -> dict[str, np.ndarray]:
    return self.dataset[int(step)]

  def _make(self, step: int) -> dict[str, np.ndarray]:
    n_proc, proc = jax.process_count(), jax.process_index()
    parts = []
    for i, (name, rows) in enumerate(self.mix.items()):
      local = rows // n_proc
      idx = self._streams[name].take(self._positions(name, int(step)))[proc * local:(proc + 1) * local]
      part = self.sources[name].batch(idx)
      part["source"] = np.full(local, i, np.int32)
      parts.append(part)
    return concatenate(parts)


def concatenate(parts: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Row-wise concatenation of batches; a field some parts lack is filled with -1 (e.g. OE rows have no mask)."""
  keys = [k for k in dict.fromkeys(k for p in parts for k in p)]
  out = {}
  for k in keys:
    ref = next(p[k] for p in parts if k in p)
    chunks = [p[k] if k in p else np.full((len(next(iter(p.values()))), *ref.shape[1:]), -1, ref.dtype)
              for p in parts]
    out[k] = np.concatenate(chunks)
  return out


def eval_batches(source: Source, global_batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """In-order batches padded to a full global batch: yields (this process's part, number of valid examples)."""
  n = len(source)
  local = local_batch_size(global_batch_size)
  start_in_batch = jax.process_index() * local
  for start in range(0, n, global_batch_size):
    valid = min(global_batch_size, n - start)
    idx = np.arange(start + start_in_batch, start + start_in_batch + local)
    idx = np.minimum(idx, n - 1)  # pad by repeating the last example; padded rows are dropped after scoring
    yield source.batch(idx), valid


def prefetch(make: Callable[[int], Any], steps: range, *, depth: int = 2) -> Iterator[Any]:
  """`make(step)` for each step, computed `depth` steps ahead in a background thread.

  The host builds the next batches (gather, preprocessing, sharding onto the devices) while the device runs the
  current step, so the jitted step never waits on numpy. Exceptions in the thread re-raise in the consumer.
  """
  q: queue.Queue = queue.Queue(maxsize=depth)
  stop = threading.Event()
  done = object()

  def worker():
    try:
      for step in steps:
        if stop.is_set():
          return
        q.put((step, make(step)))
    except BaseException as e:  # pylint: disable=broad-except  (handed to the consumer)
      q.put((None, e))
      return
    q.put((None, done))

  thread = threading.Thread(target=worker, daemon=True, name="jaxad-prefetch")
  thread.start()
  try:
    while True:
      step, item = q.get()
      if item is done:
        return
      if step is None:
        raise item
      yield item
  finally:
    stop.set()
    while thread.is_alive():  # unblock a worker waiting on a full queue
      try:
        q.get_nowait()
      except queue.Empty:
        pass
      thread.join(timeout=0.05)
