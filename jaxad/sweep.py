"""`run_sweep(config, workdir)`: a table's one-vs-rest classes x seeds trained as one program.

A task (normal class k, seed s) is exactly the run `python -m jaxad.main` makes with `data.normal_class=k` and
`seed=s`: the same sources, data order, keys, phases and evaluators, and its workdir `<workdir>/seed_<s>/class_<k>`
holds the same files (config.json without the sweep, `checkpoints/<phase>/output`, summary.json, plots), so
`jaxad.report`, `--mode=eval` and a later separate run treat it as one. What changes is how the tasks train: every
training phase runs all tasks in one jitted step over a leading task axis of the state (parameters, optimizer
state, the method's extra state such as centers and radii), of the batch (each task's own images in its own order)
and of the step key, compiled once for the whole table. `sweep.strategy` says how that step holds the tasks:

* 'vmap': `jax.vmap` of the task's step. A convolution of T tasks becomes one grouped convolution, which
  accelerators run well and XLA:CPU slowly: the LeNet steps ran at 0.57-0.74x of the unrolled ones' speed per
  image at T = 4 and 16 (benchmarks/sweep_step.py).
* 'unroll': the task's step written T times into one program, every task its own convolutions: on XLA:CPU as fast
  per image as a separate run, for a compilation that grows with T (37 s for the LeNet AE step at T = 16 on 2
  cores, against 3 s vmapped).
* 'auto' (default): 'unroll' on CPU, 'vmap' on GPU and TPU.

(`jax.lax.map` over the tasks, one after another inside a loop, ran 300x slower than separate runs on XLA:CPU:
convolutions inside a loop body lose their fast kernels.)

Fit phases (centers, source weights) and evaluation run per task on the host, cheap next to training, with one
compilation shared by all tasks: a method's functions depend only on the config and the data's shape, which the
sweep checks are the same for every task, so the functions built for the first task serve all of them.

Checkpoints of the stacked state go to `<workdir>/checkpoints/<phase>/steps` every `checkpoint_every_epochs` and on
SIGTERM / SIGINT; the same command resumes from there, and a finished phase (its output in every task's workdir) is
skipped. `<workdir>/sweep.json` records the tasks, their results and the wall time of every phase.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxad import evaluate, files, optim, parallel, train
from jaxad.checkpoint import Checkpointer, output_exists, restore_output, save_output
from jaxad.config import SWEEP_DEFAULTS
from jaxad.data import pipeline
from jaxad.data.examples import device_fields
from jaxad.errors import ConfigError, Preempted, TrainingError
from jaxad.methods.base import DataSpec, FitContext, FitPhase, Output, TrainPhase


def tasks_of(config: ml_collections.ConfigDict) -> list[tuple[int, int]]:
  """The sweep's (normal class, seed) pairs: `data.normal_classes` (or `data.normal_class`) x `sweep.seeds` (or
  `seed`), seed-major as the report's tables read them."""
  classes = tuple(config.data.get("normal_classes", ()) or ()) or (config.data.normal_class,)
  seeds = tuple(config.sweep.get("seeds", ()) or ()) or (config.seed,)
  return [(int(k), int(s)) for s in seeds for k in classes]


def task_config(config: ml_collections.ConfigDict, klass: int, seed: int) -> ml_collections.ConfigDict:
  """The config of one task: the separate run it stands for (one class, one seed, no sweep)."""
  sub = ml_collections.ConfigDict(config.to_dict())
  sub.data.normal_class, sub.data.normal_classes, sub.seed = klass, (), seed
  sub.sweep = ml_collections.ConfigDict(SWEEP_DEFAULTS)  # config.json then equals the separate run's
  return sub


def task_dir(workdir: str, klass: int, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}", f"class_{klass}")


def run_sweep(config: ml_collections.ConfigDict, workdir: str, *, mode: str = "train",
              stop: train.StopRequests | None = None) -> dict[str, float]:
  """Trains (`mode='train'`) or re-scores (`'eval'`) every task; returns `{'seed_<s>/class_<k>/<metric>': value}`."""
  stop = stop or train.StopRequests()
  tasks = tasks_of(config)
  configs = [task_config(config, k, s) for k, s in tasks]
  built = [train.build(c) for c in configs]  # data first: a bad config or dataset leaves no workdir behind
  specs = {DataSpec.of(sources) for _, sources in built}
  if len(specs) > 1:
    raise ConfigError(f"The sweep's tasks see data of different shapes or class counts {sorted(map(str, specs))}; "
                      "one program needs one shape: run them separately.")
  method = built[0][0]
  for phase in method.phases:
    if isinstance(phase, TrainPhase) and phase.keep != "last":
      raise ConfigError(f"sweep: phase {phase.name!r} keeps its {phase.keep!r} epoch, which the sweep does not "
                        "track per task yet: set keep='last' or run the tasks separately.")
  dirs = [task_dir(workdir, k, s) for k, s in tasks]
  if mode != "train" and not all(os.path.isdir(d) for d in dirs):
    raise ConfigError(f"--mode={mode}: {workdir} lacks some task workdirs ({dirs[0]}, ...); train with --mode=train.")
  mesh = parallel.make_mesh()
  predict = evaluate.make_predict(mesh, config.eval.batch_size)
  for c, d, (_, sources) in zip(configs, dirs, built):
    os.makedirs(d, exist_ok=True)
    train._check_config_json(c, d)  # pylint: disable=protected-access
    evaluate.save_data_spec(d, sources)
  timings: dict[str, float] = {}
  outputs: list[dict[str, Output]] = [{} for _ in tasks]
  ordinal = 0
  for index, phase in enumerate(method.phases):
    out_dirs = [os.path.join(d, "checkpoints", phase.name, "output") for d in dirs]
    if all(output_exists(o) for o in out_dirs):
      for t, o in enumerate(out_dirs):
        outputs[t][phase.name] = restore_output(o)
    elif mode != "train":
      raise ConfigError(f"--mode={mode} needs the trained phase {phase.name!r} of every task ({out_dirs[0]}, ...); "
                        "run --mode=train first.")
    else:
      t0 = time.perf_counter()
      if isinstance(phase, FitPhase):
        for t, ((_, seed), (task_method, sources)) in enumerate(zip(tasks, built)):
          if output_exists(out_dirs[t]):
            outputs[t][phase.name] = restore_output(out_dirs[t])
            continue
          task_predict = lambda fn, v, src, s=sources: predict(fn, v, s[src] if isinstance(src, str) else src)
          ctx = FitContext(previous=dict(outputs[t]), sources=sources, rng=train.fit_key(seed, index),
                           workdir=dirs[t], predict=task_predict)
          _save(out_dirs[t], task_method.phases[index].fit(ctx), configs[t], outputs[t], phase.name)
      else:
        trained = _train_phase(config, workdir, phase, ordinal, tasks, [s for _, s in built], outputs, mesh, stop,
                               dirs)
        for t, out in enumerate(trained):
          _save(out_dirs[t], out, configs[t], outputs[t], phase.name)
      timings[phase.name] = time.perf_counter() - t0
      if stop.signum is not None:
        parallel.log(f"{phase.name}: stopped by {stop.name} after the phase finished; the same command resumes from "
                     "there.")
        raise Preempted(stop.signum)
    ordinal += isinstance(phase, TrainPhase)
  t0 = time.perf_counter()
  summaries = [evaluate.run_evals(c, method, outputs[t], sources, dirs[t], predict)
               for t, (c, (_, sources)) in enumerate(zip(configs, built))]
  timings["evaluate"] = time.perf_counter() - t0
  summary = {f"seed_{s}/class_{k}/{m}": v for (k, s), r in zip(tasks, summaries) for m, v in r.items()}
  if jax.process_index() == 0:
    _write_results(workdir, tasks, summaries, timings)
  return summary


def _save(out_dir: str, out: Output, config, outputs: dict[str, Output], name: str) -> None:
  save_output(out_dir, out, config=json.loads(config.to_json()))
  outputs[name] = restore_output(out_dir)  # the saved copy, as a separate run continues from


def _train_phase(config, workdir: str, phase: TrainPhase, ordinal: int, tasks, sources_list, outputs, mesh,
                 stop: train.StopRequests, dirs) -> list[Output]:
  """One training phase for every task at once; returns each task's final `Output`."""
  batches = [train.train_batches(sources, phase, seed, ordinal) for (_, seed), sources in zip(tasks, sources_list)]
  shapes = {(b.steps_per_epoch, len(b)) for b in batches}
  if len(shapes) > 1:
    raise ConfigError(f"sweep: phase {phase.name!r} has a different number of steps per task (steps per epoch, "
                      f"total: {sorted(shapes)}), from classes of different sizes; one program steps all tasks "
                      "together: run them separately, or set data.train_limit to equalise them.")
  spe, total = batches[0].steps_per_epoch, len(batches[0])
  tx = optim.make_optimizer(phase.optim, spe)
  keys = [train.phase_key(seed, ordinal) for _, seed in tasks]
  states = [train.init_state(phase, key, jax.tree.map(jnp.asarray, device_fields(b[0])), previous, tx)
            for key, b, previous in zip(keys, batches, outputs)]
  state = parallel.replicate(jax.tree.map(lambda *xs: jnp.stack(xs), *states), mesh)
  step_keys = jnp.stack([jax.random.key_data(train.step_key(k)) for k in keys])
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints", phase.name, "steps"), config=json.loads(config.to_json()))
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
    parallel.log(f"{phase.name}: resumed all {len(tasks)} tasks from step {int(state.step[0])} of {total}.")
  start = int(state.step[0])
  for d in dirs:
    train._forget_metrics_after(os.path.join(d, "metrics.jsonl"), phase.name, start)  # pylint: disable=protected-access
  if start < total:
    state = _loop(config, phase, batches, state, step_keys, ckpt, mesh, stop, dirs, start)
  ckpt.close()
  return [Output(jax.tree.map(lambda x, t=t: x[t], state.variables), jax.tree.map(lambda x, t=t: x[t], state.extra))
          for t in range(len(tasks))]


def tasks_step(keyed_step, strategy: str, n_tasks: int):
  """`(state, batch, key_data) -> (state, metrics)` on a leading task axis of each, from one task's keyed step
  (`train.make_keyed_train_step`); `strategy` as `sweep.strategy` (module docstring)."""
  def one(s, b, k):
    return keyed_step(s, b, jax.random.wrap_key_data(k))

  if strategy == "auto":
    strategy = "unroll" if jax.default_backend() == "cpu" else "vmap"
  if strategy == "vmap":
    return jax.vmap(one)

  def unrolled(s, b, k):
    outs = [one(*jax.tree.map(lambda x, t=t: x[t], (s, b, k))) for t in range(n_tasks)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
  return unrolled


def _loop(config, phase: TrainPhase, batches, state, step_keys, ckpt, mesh, stop, dirs, start: int):
  spe, total, n_tasks = batches[0].steps_per_epoch, len(batches[0]), len(batches)
  step = tasks_step(train.make_keyed_train_step(phase, spe), config.sweep.strategy, n_tasks)
  tasks_sharded = NamedSharding(mesh, P(None, "data"))  # [T, B, ...]: every task's rows split over the devices
  step_fn = jax.jit(step, in_shardings=(parallel.replicated(mesh), tasks_sharded, parallel.replicated(mesh)),
                    out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)), donate_argnums=0)

  def make(i):
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *[device_fields(b[i]) for b in batches])
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(tasks_sharded, x), stacked)

  bar = tqdm.tqdm(total=total, initial=start, desc=f"{phase.name} x{n_tasks}", unit="step", file=sys.stderr,
                  dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                  disable=jax.process_index() != 0)
  t0, n0 = time.perf_counter(), start
  try:
    for i, batch in zip(range(start, total), pipeline.prefetch(make, range(start, total))):
      state, metrics = step_fn(state, batch, step_keys)
      done = i + 1
      is_epoch_end = done % spe == 0
      if done % config.log_every_steps == 0 or is_epoch_end or done == total:
        metrics = {k: np.asarray(v, np.float64) for k, v in jax.device_get(metrics).items()}  # each [T]
        bad = sorted({t for v in metrics.values() for t in np.flatnonzero(~np.isfinite(v))})
        if bad:
          ckpt.close()
          raise TrainingError(f"{phase.name}: non-finite metrics at step {done} (epoch {done / spe:.2f}) in tasks "
                              f"{[dirs[t] for t in bad]}. The last good checkpoint in {ckpt.directory} is kept; "
                              f"lower {phase.name}.lr or check the data.")
        elapsed = time.perf_counter() - t0
        img_s = (done - n0) * phase.batch_size * n_tasks / max(elapsed, 1e-9)
        t0, n0 = time.perf_counter(), done
        bar.set_postfix(loss=f"{np.mean(metrics['loss']):.4g}", img_s=f"{img_s:.0f}", refresh=False)
        if jax.process_index() == 0:
          for t, d in enumerate(dirs):
            record = {"stage": phase.name, "step": done, "epoch": done / spe, "img_per_s": img_s / n_tasks,
                      **{k: float(v[t]) for k, v in metrics.items()}}
            with open(os.path.join(d, "metrics.jsonl"), "a") as f:
              f.write(json.dumps(record) + "\n")
      stopping = stop.requested(done)
      if (is_epoch_end and (done // spe) % config.checkpoint_every_epochs == 0) or done == total or stopping:
        ckpt.save(state)
      bar.update(1)
      if stopping:
        ckpt.close()
        bar.close()
        parallel.log(f"{phase.name}: stopped by {stop.name} at step {done} of {total}; saved "
                     f"{ckpt.directory}/{done}. The same command resumes from there.")
        raise Preempted(stop.signum)
  finally:
    bar.close()
  return state


def _write_results(workdir: str, tasks, summaries, timings) -> None:
  """sweep.json (every task's summary, the phases' wall times) and results.md (mean +- std over seeds per class)."""
  record = {"tasks": [{"class": k, "seed": s, "summary": r} for (k, s), r in zip(tasks, summaries)],
            "seconds": timings, "devices": jax.device_count(), "platform": jax.default_backend()}
  with files.atomic_open(os.path.join(workdir, "sweep.json")) as f:
    json.dump(record, f, indent=2, sort_keys=True)
  table = results_table(tasks, summaries)
  with files.atomic_open(os.path.join(workdir, "results.md")) as f:
    f.write(table + "\n")
  print(table)


def results_table(tasks, summaries: list[Mapping[str, float]]) -> str:
  """One row per normal class, one column per AUROC metric: mean +- population std over the seeds, and the mean."""
  cols = [m for m in summaries[0] if m.endswith("/auroc")]
  by_class: dict[int, list[Mapping[str, float]]] = {}
  for (k, _), r in zip(tasks, summaries):
    by_class.setdefault(k, []).append(r)
  fmt = lambda v: f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"
  seeds = sorted({s for _, s in tasks})
  lines = [f"| normal class (seeds {', '.join(map(str, seeds))}) | " + " | ".join(cols) + " |",
           "|---|" + "---|" * len(cols)]
  for k, runs in by_class.items():
    lines.append(f"| {k} | " + " | ".join(fmt([r[c] for r in runs]) for c in cols) + " |")
  lines.append("| **mean** | " + " | ".join(f"**{np.mean([r[c] for r in summaries]):.3f}**" for c in cols) + " |")
  return "\n".join(lines)

