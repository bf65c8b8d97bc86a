"""Wall time of jitted train steps, shared by the throughput benchmarks (import after XLA_FLAGS is set).

Also the one way both benchmarks get a method's fit phases done (hypersphere centers, ADIB's source weights) without
a dataset: `fit_phase` runs a `FitPhase` as the trainer's `Runner` does, on random images as the 'normal' source.
"""

import tempfile
import time

import jax
import numpy as np

from jaxad import train
from jaxad.data import Source


def run_steps(step, state, batch, n: int):
  """`n` calls of `step(state, batch) -> (state, metrics)`; returns the final state and their wall time in seconds.

  The clock stops once the last metrics are ready, so asynchronous dispatch does not hide any work.
  """
  t0 = time.perf_counter()
  for _ in range(n):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return state, time.perf_counter() - t0


def compiled_step(phase, state, batch, steps_per_epoch: int):
  """The phase's jitted step exactly as the trainer builds it (donated state), compiled: `(run, facts)`.

  `run(n)` does `n` steps from the state the previous call left and returns their wall time in seconds; `facts`
  holds the parameter count, the compile time and XLA's memory and cost analysis of the step.
  """
  from jaxad.models import count_params  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  step = jax.jit(train.make_train_step(phase, steps_per_epoch, jax.random.key(1)), donate_argnums=0)
  step = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  mem = step.memory_analysis()
  cost = step.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  holder = {"state": state}

  def run(n: int) -> float:
    t0 = time.perf_counter()
    s = holder["state"]
    for _ in range(n):
      s, metrics = step(s, batch)
    jax.block_until_ready(metrics)  # asynchronous dispatch: the clock stops once the last step is done
    holder["state"] = s
    return time.perf_counter() - t0

  return run, {"params": count_params(state.params), "compile_s": compile_s,
               "xla_temp_mib": mem.temp_size_in_bytes / 2**20, "xla_argument_mib": mem.argument_size_in_bytes / 2**20,
               "xla_flops_per_step": float((cost or {}).get("flops", float("nan")))}


def fit_phase(config, method, index: int, previous: dict, images: np.ndarray, mesh, *, batch_size: int = 0):
  """The `Output` of `method.phases[index]` (a `FitPhase`) given the earlier phases' outputs `previous`.

  It runs through `jaxad.train.Runner.fit_phase` (the trainer's `FitContext`: the phase's rng, a `predict` over the
  mesh in eval batches of `batch_size`, default `config.eval.batch_size`), with `images` (float32, already network
  inputs) as the 'normal' source and a throwaway workdir. Not timed: the benchmarks time training phases only.
  """
  if batch_size:
    config = config.copy_and_resolve_references()
    config.eval.batch_size = batch_size
  with tempfile.TemporaryDirectory() as workdir:
    runner = train.Runner(config, workdir, method, {"normal": Source.of(images)}, mesh)
    return runner.fit_phase(method.phases[index], index, previous)


def transfer_step_inputs(config, image_size: int):
  """A transfer config's (ADIB, ADRA, HSC, ...) one training phase, ready to compile on random images:
  `(phase, state, batch)`, with state replicated and the batch (the config's batch size, half labelled 0 and half
  1 as normal and OE examples) sharded over `parallel.make_mesh()`.

  The fit phases before it (the 'source' weights, ADIB's theta_0, a center if any) run untimed on 8 of the images.
  """
  from jaxad import optim, parallel  # pylint: disable=g-import-not-at-top
  from jaxad.methods import get_method  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import DataSpec, FitPhase, TrainPhase  # pylint: disable=g-import-not-at-top

  mesh = parallel.make_mesh()
  bs = config.train.batch_size
  x = np.random.default_rng(0).normal(size=(bs, image_size, image_size, 3)).astype(np.float32)
  batch = parallel.shard_batch({"image": x, "label": np.repeat(np.int32([0, 1]), bs // 2)}, mesh)
  built = get_method(config.method)(config, DataSpec(x.shape[1:]))
  (index, phase), = [(i, p) for i, p in enumerate(built.phases) if isinstance(p, TrainPhase)]
  outputs = {}
  for i, p in enumerate(built.phases[:index]):
    assert isinstance(p, FitPhase), p
    outputs[p.name] = fit_phase(config, built, i, outputs, x[:8], mesh, batch_size=8)
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=79)
  state = parallel.replicate(train.init_state(phase, jax.random.key(0), {"image": x[:1]}, outputs, tx), mesh)
  return phase, state, batch
