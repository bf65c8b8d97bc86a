r"""Host time per training step outside the jitted step, on the real pipeline.

  JAXAD_DATA_DIR=DIR python benchmarks/host_overhead.py --out=benchmarks/results/host_overhead.json

Deep SVDD's CIFAR-10 autoencoder phase (configs/dsvdd_cifar10.py, class 3: 5,000 normal images, batch 200), and
ADIB's training phase (configs/adib_cifar10.py, 64 normal + 64 OE). For each, in rounds:
* `build_ms`: the host's work for one batch (gather the examples, preprocess, shard onto the devices), timed alone;
* `wait_ms`: in the trainer's loop (batches built ahead by the prefetching thread, metrics read back every
  `log_every_steps`), the time the main thread waits for the next batch between two steps;
* `wait_sequential_ms`: the same loop with the batch built on the main thread before each step, as jaxad did
  before the prefetching thread;
* `step_ms` / `loop_ms`: the jitted step alone on one batch already on the device, and the whole loop, per step.
"""

import argparse
import json
import os
import platform
import sys
import time

from jaxad import xla_flags

xla_flags.apply_cpu_defaults()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from jaxad import optim, parallel, train  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.config import load_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.data.examples import device_fields  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxad.methods.base import TrainPhase  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
WORKLOADS = {"dsvdd_ae": "dsvdd_cifar10.py:normal_class=3", "adib": "adib_cifar10.py:normal_class=3"}


def setup(name: str):
  config = load_config(os.path.join(CONFIGS, WORKLOADS[name]))
  if name == "adib":
    config.oe.limit = 10000  # CIFAR-100 OE: a fixed 10,000 of the 50,000 keeps the set-up short
  method, sources = train.build(config)
  phase = next(p for p in method.phases if isinstance(p, TrainPhase))
  previous = {}
  runner = train.Runner(config, "/tmp/unused", method, sources, parallel.make_mesh())
  for p in method.phases:  # fit phases before the first training phase (e.g. ADIB's source weights)
    if p is phase:
      break
    previous[p.name] = runner.fit_phase(p, 0, previous)
  mesh = runner.mesh
  batches = pipeline.TrainBatches(sources, phase.mix, seed=1, num_epochs=phase.optim.epochs,
                                  drop_remainder=phase.drop_remainder)
  spe = batches.steps_per_epoch
  tx = optim.make_optimizer(phase.optim, spe)
  sample = jax.tree.map(np.asarray, device_fields(batches[0]))
  state = parallel.replicate(train.init_state(phase, jax.random.key(0), sample, previous, tx), mesh)
  step = jax.jit(train.make_train_step(phase, spe, jax.random.key(1)),
                 in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)), donate_argnums=0)
  shard = lambda s: parallel.shard_batch(device_fields(batches[s]), mesh)
  return config, step, state, shard


def time_loop(step, state, shard, start, n, log_every, *, prefetch):
  """(state, seconds per step of the whole loop, seconds per step the main thread waited for its batch)."""
  steps = range(start, start + n)
  source = iter(pipeline.prefetch(shard, steps) if prefetch else (shard(s) for s in steps))
  waited = 0.0
  t0 = time.perf_counter()
  for i in steps:
    t = time.perf_counter()
    batch = next(source)
    waited += time.perf_counter() - t
    state, metrics = step(state, batch)
    if (i + 1) % log_every == 0:
      jax.device_get(metrics)
  jax.block_until_ready(metrics)
  return state, (time.perf_counter() - t0) / n, waited / n


def time_build(shard, start, n):
  t0 = time.perf_counter()
  for s in range(start, start + n):
    jax.block_until_ready(shard(s))
  return (time.perf_counter() - t0) / n


def time_step(step, state, batch, n):
  t0 = time.perf_counter()
  for _ in range(n):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return state, (time.perf_counter() - t0) / n


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workloads", default="dsvdd_ae,adib")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  results = {"jax": jax.__version__, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
             "steps": args.steps, "rounds": args.rounds, "workloads": {}}
  for name in args.workloads.split(","):
    config, step, state, shard = setup(name)
    batch = shard(0)
    state, _ = time_step(step, state, batch, 2)  # compile + warm up
    rows = {k: [] for k in ("build_ms", "wait_ms", "wait_sequential_ms", "step_ms", "loop_ms")}
    cursor = 1
    for _ in range(args.rounds):
      rows["build_ms"].append(1000 * time_build(shard, cursor, args.steps))
      state, t, waited = time_loop(step, state, shard, cursor, args.steps, config.log_every_steps, prefetch=True)
      rows["loop_ms"].append(1000 * t)
      rows["wait_ms"].append(1000 * waited)
      cursor += args.steps
      state, t = time_step(step, state, batch, args.steps)
      rows["step_ms"].append(1000 * t)
      state, _, waited = time_loop(step, state, shard, cursor, args.steps, config.log_every_steps, prefetch=False)
      rows["wait_sequential_ms"].append(1000 * waited)
      cursor += args.steps
    med = {k: float(np.median(v)) for k, v in rows.items()}
    results["workloads"][name] = {"config": WORKLOADS[name], "median": med, "rounds": rows}
    print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()), flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=2)
  json.dump(results, sys.stdout, indent=1)


if __name__ == "__main__":
  main()
