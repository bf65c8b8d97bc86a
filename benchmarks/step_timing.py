"""Wall time of jitted train steps, shared by the throughput benchmarks (import after XLA_FLAGS is set)."""

import time

import jax


def run_steps(step, state, batch, n: int):
  """`n` calls of `step(state, batch) -> (state, metrics)`; returns the final state and their wall time in seconds.

  The clock stops once the last metrics are ready, so asynchronous dispatch does not hide any work.
  """
  t0 = time.perf_counter()
  for _ in range(n):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return state, time.perf_counter() - t0
