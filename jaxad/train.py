"""`train_and_evaluate(config, workdir)`: sources, the method's phases, jitted steps, checkpoints, evaluation.

One code path for one CPU, N GPUs or a TPU pod: the step is `jax.jit` with `NamedSharding`s over a mesh with a
'data' axis (state replicated, batch split). Durations are given in epochs and resolved to steps once. The trainer
runs a method's phases in order and knows no method, protocol or dataset by name: a `TrainPhase` is trained to its
last step (resuming from its latest checkpoint), a `FitPhase` is fitted once; each leaves an `Output` under
`checkpoints/<phase>/output`, and a phase whose output exists is skipped when the run is started again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from jaxad import checkpoint, evaluate, files, optim, parallel
from jaxad.checkpoint import MANIFEST, Checkpointer, output_exists, restore_output, save_output, saved_config
from jaxad.config import config_diff
from jaxad.data import Source, make_sources, pipeline
from jaxad.data.examples import device_fields
from jaxad.errors import ConfigError, Preempted, TrainingError, UserError
from jaxad.methods import get_method
from jaxad.methods.base import Context, DataSpec, FitContext, FitPhase, Method, Output, TrainPhase, default_init
from jaxad.validate import validate, validate_batches, validate_data

MODES = ("train", "eval")
_STEP_KEY_TAG = 0x5EED  # the per-step keys of a phase derive from its init key folded with this tag


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  extra: Any  # the method's own state, e.g. hypersphere centers and radii
  loss_sum: jax.Array  # the sum of this epoch's losses so far (keep='min_loss')
  best: jax.Array  # the best criterion so far, lower is better (keep='min_loss' / 'best_val'); +inf before any
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @property
  def variables(self):
    return {"params": self.params, "batch_stats": self.batch_stats}

  def output(self) -> Output:
    return Output(self.variables, self.extra)


def fit_key(seed: int, index: int) -> jax.Array:
  """The rng of fit phase `index` (its position among all phases) of a run with `seed`."""
  return jax.random.fold_in(jax.random.key(seed), 1000 + index)


def phase_key(seed: int, ordinal: int) -> jax.Array:
  """The rng of training phase `ordinal` (0 for the first training phase): its init, then its step key."""
  return jax.random.fold_in(jax.random.key(seed), ordinal)


def step_key(phase_rng: jax.Array) -> jax.Array:
  """The key a training phase's steps draw from (`make_train_step`), derived from its `phase_key`."""
  return jax.random.fold_in(phase_rng, _STEP_KEY_TAG)


def train_batches(sources, phase: TrainPhase, seed: int, ordinal: int) -> pipeline.TrainBatches:
  """Training phase `ordinal`'s batches, in the order a run with `seed` sees them."""
  return pipeline.TrainBatches(sources, phase.mix, seed=seed * 1000 + ordinal, num_epochs=phase.optim.epochs,
                               drop_remainder=phase.drop_remainder)


def make_train_step(phase: TrainPhase, steps_per_epoch: int, step_key: jax.Array) -> Callable:
  """A pure `(state, batch) -> (state, metrics)` for one training phase; step `t` draws its randomness from
  `fold_in(step_key, t)`.

  Parameters that `optim.trainable` freezes enter the loss through `stop_gradient`: their gradients are zeros that
  XLA never computes (and `grad_norm` covers the trainable ones only); the optimizer gives them zero updates.
  """
  keyed_step = make_keyed_train_step(phase, steps_per_epoch)
  return lambda state, batch: keyed_step(state, batch, step_key)


def make_keyed_train_step(phase: TrainPhase, steps_per_epoch: int) -> Callable:
  """`make_train_step` with the phase's step key as a third argument: `(state, batch, step_key)`, the form
  `jaxad.sweep` maps over tasks (each task its own key)."""
  rules = optim.trainable_rules(phase.optim)

  def phase_loss(params, ctx, batch):
    if rules:  # frozen leaves are constants: XLA then drops their weight-gradient convolutions (ADRA's saving)
      params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params,
                            optim.trainable_mask(params, rules))
    return phase.loss(params, ctx, batch)

  def train_step(state: TrainState, batch, step_key):
    rng = jax.random.fold_in(step_key, state.step)
    if phase.augment is not None:
      batch = phase.augment(batch, jax.random.fold_in(rng, 1))
    ctx = Context(batch_stats=state.batch_stats, extra=state.extra, step=state.step,
                  epoch=state.step // steps_per_epoch, rng=jax.random.fold_in(rng, 0))
    grad_fn = jax.value_and_grad(lambda p: phase_loss(p, ctx, batch), has_aux=True)
    (loss, (batch_stats, aux, metrics)), grads = grad_fn(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = phase.update_extra(state.extra, aux, ctx) if phase.update_extra else state.extra
    loss_sum = jnp.where(state.step % steps_per_epoch == 0, 0.0, state.loss_sum) + loss
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                              extra=extra, loss_sum=loss_sum)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}

  return train_step


def init_state(phase: TrainPhase, rng, sample, previous: Mapping[str, Output], tx) -> TrainState:
  out = (phase.init or default_init(phase.model))(rng, sample, previous)
  variables = {"params": out.variables["params"], "batch_stats": out.variables.get("batch_stats", {})}
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"], batch_stats=variables["batch_stats"],
                    opt_state=tx.init(variables["params"]), extra=out.extra, loss_sum=jnp.zeros((), jnp.float32),
                    best=jnp.full((), jnp.inf, jnp.float32), tx=tx)


class Runner:
  """Runs one method's phases on one set of sources, into one workdir."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, method: Method, sources: Mapping[str, Source],
               mesh, *, mode: str = "train", stop: StopRequests | None = None):
    self.config, self.workdir, self.method, self.sources, self.mesh, self.mode = (
        config, workdir, method, sources, mesh, mode)
    self.stop = stop or StopRequests()  # not entered: no signal handlers (library use), multi-host notices only
    self.predict = evaluate.make_predict(mesh, config.eval.batch_size)
    self._config_dict = json.loads(config.to_json())  # stored in every checkpoint (jaxad_config.json)

  def phase_dir(self, name: str) -> str:
    return os.path.join(self.workdir, "checkpoints", name)

  def run(self) -> dict[str, Output]:
    """Every phase in order; returns their outputs by name."""
    outputs: dict[str, Output] = {}
    train_ordinal = 0
    for i, phase in enumerate(self.method.phases):
      out_dir = os.path.join(self.phase_dir(phase.name), "output")
      if self.mode == "train":
        restored = _restore_unless_corrupt(out_dir)
      else:
        restored = restore_output(out_dir) if output_exists(out_dir) else None
      if restored is not None:
        outputs[phase.name] = restored
      elif self.mode != "train":
        raise ConfigError(f"--mode={self.mode} needs the trained phase {phase.name!r} in {out_dir}; run --mode=train "
                          "first (the same command resumes an interrupted run).")
      else:  # not done yet, or its output was corrupt and moved aside: (re)do it, from its last intact step
        if isinstance(phase, TrainPhase):
          out = self.train_phase(phase, train_ordinal, outputs)
        else:
          out = self.fit_phase(phase, i, outputs)
        save_output(out_dir, out, config=self._config_dict)
        outputs[phase.name] = restore_output(out_dir)  # the saved copy: a resumed run continues from the same bits
        if self.stop.signum is not None:  # a signal during a fit phase (or the last step): its output is the save
          parallel.log(f"{phase.name}: stopped by {self.stop.name} after the phase finished; saved {out_dir}. The "
                       "same command resumes from there.")
          raise Preempted(self.stop.signum)
      train_ordinal += isinstance(phase, TrainPhase)
    return outputs

  def fit_phase(self, phase: FitPhase, index: int, previous: Mapping[str, Output]) -> Output:
    rng = fit_key(self.config.seed, index)
    parallel.log(f"{phase.name}: fitting.")
    predict = lambda fn, variables, source: self.predict(
        fn, variables, self.sources[source] if isinstance(source, str) else source)
    return phase.fit(FitContext(previous=dict(previous), sources=self.sources, predict=predict, rng=rng,
                                workdir=self.workdir))

  def train_phase(self, phase: TrainPhase, ordinal: int, previous: Mapping[str, Output]) -> Output:
    config, mesh = self.config, self.mesh
    batches = train_batches(self.sources, phase, config.seed, ordinal)
    spe, total = batches.steps_per_epoch, len(batches)
    tx = optim.make_optimizer(phase.optim, spe)
    rng = phase_key(config.seed, ordinal)
    sample = jax.tree.map(jnp.asarray, device_fields(batches[0]))
    state = parallel.replicate(init_state(phase, rng, sample, previous, tx), mesh)
    ckpt = Checkpointer(os.path.join(self.phase_dir(phase.name), "steps"), config=self._config_dict)
    if ckpt.latest_step() is not None:
      state = ckpt.restore(state)
      parallel.log(f"{phase.name}: resumed from step {int(state.step)} of {total}.")
    start = int(state.step)
    _forget_metrics_after(os.path.join(self.workdir, "metrics.jsonl"), phase.name, start)
    if start < total:
      state = self._train_loop(phase, batches, state, ckpt, step_key(rng), start)
    ckpt.close()
    if phase.keep == "last":
      return state.output()
    best = os.path.join(self.phase_dir(phase.name), "best")
    if (restored := _restore_unless_corrupt(best)) is not None:
      return restored
    # The best epoch's weights are gone (moved aside as corrupt, or lost) and the steps cannot bring them back:
    # set the finished steps aside too (nothing is deleted) and train the phase again from its start.
    moved = checkpoint.move_aside(ckpt.directory, ckpt.directory + "-without-best")
    parallel.log(f"{phase.name}: its best-epoch weights {best} are missing; moved its steps aside to {moved} and "
                 "trains the phase again.")
    return self.train_phase(phase, ordinal, previous)

  def _train_loop(self, phase: TrainPhase, batches, state, ckpt, step_key, start):
    config, mesh = self.config, self.mesh
    spe, total = batches.steps_per_epoch, len(batches)
    step_fn = jax.jit(make_train_step(phase, spe, step_key),
                      in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                      out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)), donate_argnums=0)
    bar = tqdm.tqdm(total=total, initial=start, desc=phase.name, unit="step", file=sys.stderr, dynamic_ncols=True,
                    mininterval=1.0 if sys.stderr.isatty() else 30.0, disable=jax.process_index() != 0)
    log_path = os.path.join(self.workdir, "metrics.jsonl")
    t0, n0 = time.perf_counter(), start
    first_check = True  # no metrics fetched since the (re)start yet
    shard = lambda step: parallel.shard_batch(device_fields(batches[step]), mesh)
    try:  # the bar ends its line first, so that an error message starts on a line of its own
      for step, batch in zip(range(start, total), pipeline.prefetch(shard, range(start, total))):
        state, metrics = step_fn(state, batch)
        done = step + 1
        is_epoch_end = done % spe == 0
        record = None
        if done % config.log_every_steps == 0 or is_epoch_end or done == total:
          metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
          if not all(math.isfinite(v) for v in metrics.values()):
            ckpt.close()
            raise _non_finite_error(phase.name, done, spe, metrics, ckpt, resumed_from=start if first_check else 0)
          first_check = False
          elapsed = time.perf_counter() - t0
          img_s = (done - n0) * phase.batch_size / max(elapsed, 1e-9)
          t0, n0 = time.perf_counter(), done
          record = {"stage": phase.name, "step": done, "epoch": done / spe, "img_per_s": img_s, **metrics}
          bar.set_postfix(loss=f"{metrics['loss']:.4g}", img_s=f"{img_s:.0f}", refresh=False)
        if is_epoch_end and phase.keep != "last":
          state, criterion = self._keep_best(phase, state, spe)
          record = {**(record or {"stage": phase.name, "step": done, "epoch": done / spe}), **criterion}
        if record is not None and jax.process_index() == 0:
          with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        stopping = self.stop.requested(done)
        if (is_epoch_end and (done // spe) % config.checkpoint_every_epochs == 0) or done == total or stopping:
          ckpt.save(state)
        bar.update(1)
        if stopping:  # SIGTERM / SIGINT / a preemption notice: saved at this step boundary, then leave
          ckpt.close()
          bar.close()
          parallel.log(f"{phase.name}: stopped by {self.stop.name} at step {done} of {total}; saved "
                       f"{ckpt.directory}/{done}. The same command resumes from there.")
          raise Preempted(self.stop.signum)
    finally:
      bar.close()
    return state

  def _keep_best(self, phase: TrainPhase, state: TrainState, spe: int):
    """At an epoch end: the phase's criterion (lower is better); saves the weights under `best` when it improves."""
    if phase.keep == "min_loss":
      value = float(jax.device_get(state.loss_sum)) / spe
      logged = {"epoch_loss": value}
    elif phase.keep == "best_val":
      auroc = evaluate.source_auroc(self.predict, self.method.scorers[phase.val_scorer], state.output(),
                                    self.sources["val"])
      value, logged = -auroc, {f"val/{phase.val_scorer}/auroc": auroc}
    else:
      raise ConfigError(f"{phase.name}: keep must be 'last', 'min_loss' or 'best_val', got {phase.keep!r}.")
    if value < float(jax.device_get(state.best)):
      save_output(os.path.join(self.phase_dir(phase.name), "best"), state.output(), config=self._config_dict)
      state = state.replace(best=parallel.replicate(jnp.asarray(value, jnp.float32), self.mesh))
    return state, logged


def _non_finite_error(phase: str, done: int, spe: int, metrics: Mapping[str, float], ckpt: Checkpointer, *,
                      resumed_from: int) -> TrainingError:
  """The error for a NaN/inf loss; right after a resume (`resumed_from` > 0) it blames the checkpoint, not the lr."""
  where = f"{phase}: non-finite metrics at step {done} (epoch {done / spe:.2f})"
  if resumed_from:
    return TrainingError(
        f"{where}, right after resuming from checkpoint step {resumed_from} in {ckpt.directory}: that checkpoint is "
        f"suspect. Fix: move {ckpt.directory}/{resumed_from} aside (e.g. to corrupt-{resumed_from}) and run the same "
        f"command to resume from the step before it; lower {phase}.lr only if the NaN comes back from there.")
  last = ckpt.latest_step()
  kept = (f"The last good checkpoint (step {last}) in {ckpt.directory} is kept" if last is not None else
          "No checkpoint of this phase was written yet")
  return TrainingError(f"{where}: {metrics}. {kept}; lower {phase}.lr or check the data.")


def _restore_unless_corrupt(directory: str) -> Output | None:
  """The phase output in `directory`; None when there is none or it was corrupt (then moved aside, one line)."""
  if not output_exists(directory):
    return None
  try:
    return restore_output(directory)
  except UserError:
    if output_exists(directory):  # not moved aside: not a corrupt copy but another problem
      raise
    return None


class StopRequests:
  """Turns SIGTERM and SIGINT into a request to stop at the next step boundary, for the duration of a `with`.

  The training loop asks `requested(step)` after each step; on multi-host jobs that also covers the platform's
  preemption notice (`multihost_utils.reached_preemption_sync_point`, which JAX's coordination service sets on
  every host at the same step). Signal handlers can only be set from the main thread; elsewhere (a notebook's
  worker thread) signals keep their default behaviour.
  """

  def __init__(self):
    self.signum, self._previous = None, {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now, the last checkpoint stays
      raise KeyboardInterrupt
    self.signum = signum

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else "a preemption notice"

  def requested(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self.signum is not None
    # Every process must stop at the same step, or one saves a checkpoint (a collective) while the others run the
    # next step and both wait on each other until the heartbeat timeout: a signal seen by any process stops all.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if multihost_utils.process_allgather(np.int32(self.signum is not None)).any():
      self.signum = self.signum or signal.SIGTERM
      return True
    if multihost_utils.reached_preemption_sync_point(step):
      self.signum = signal.SIGTERM
      return True
    return False


def _forget_metrics_after(path: str, phase: str, step: int) -> None:
  """Drops `phase`'s metrics records after `step` (logged by a run killed before its next checkpoint), so that a
  resumed run leaves each step in metrics.jsonl once."""
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = []
  for line in lines:
    try:
      record = json.loads(line)
    except json.JSONDecodeError:  # a line cut short by the kill
      continue
    if not (record.get("stage") == phase and record.get("step", 0) > step):
      keep.append(line)
  if len(keep) != len(lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(keep)
    os.replace(tmp, path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, mode: str = "train") -> dict[str, Any]:
  """Runs one experiment, or one per class when `config.data.normal_classes` lists several; returns the summary."""
  if mode not in MODES:
    raise ConfigError(f"--mode must be one of {MODES} here, got {mode!r}.")
  validate(config)  # every value, in every mode: before any data is loaded, any workdir made or any step run
  if mode == "train":
    check_workdir(workdir)
  try:
    return _train_and_evaluate(config, workdir, mode)
  except UserError:
    raise
  except Exception as e:  # a full disk or a read-only workdir: one line, no half-written save left behind
    message = files.disk_error_message(e, workdir)
    if message is None:
      raise
    if jax.process_index() == 0:
      files.remove_partial_saves(workdir)
    raise files.DiskError(message) from e


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, mode: str) -> dict[str, Any]:
  # SIGTERM / SIGINT are requests to stop at the next boundary (a step, a finished phase, the next class) for the
  # whole run, not only inside a training loop: a signal between two loops is never lost.
  with StopRequests() as stop:
    if config.get("sweep", {}).get("enabled", False):
      from jaxad import sweep  # pylint: disable=g-import-not-at-top  (jaxad.sweep builds on this module)
      with removed_unless_trained(workdir):
        return sweep.run_sweep(config, workdir, mode=mode, stop=stop)
    classes = tuple(config.data.get("normal_classes", ()) or ())
    if not classes:
      return run_one(config, workdir, mode, stop=stop)
    results = {}
    with removed_unless_trained(workdir):
      for k in classes:
        if stop.signum is not None:
          parallel.log(f"stopped by {stop.name} before class {k}; the same command resumes from there.")
          raise Preempted(stop.signum)
        sub = ml_collections.ConfigDict(config.to_dict())
        sub.data.normal_class, sub.data.normal_classes = int(k), ()
        results[int(k)] = run_one(sub, os.path.join(workdir, f"class_{k}"), mode, stop=stop)
  summary = {f"class_{k}/{m}": v for k, r in results.items() for m, v in r.items()}
  for m in next(iter(results.values())):
    vals = [r[m] for r in results.values()]
    summary[f"mean/{m}"] = float(np.mean(vals))
  if jax.process_index() == 0:
    with files.atomic_open(os.path.join(workdir, "summary.json")) as f:
      json.dump(summary, f, indent=2, sort_keys=True)
    table = results_table(results)
    with files.atomic_open(os.path.join(workdir, "results.md")) as f:
      f.write(table + "\n")
    print(table)
  return summary


def check_workdir(workdir: str) -> None:
  """One clear error, before any data is loaded, when `workdir` cannot be a folder this process writes into."""
  path = os.path.abspath(workdir)
  existing = path
  while not os.path.exists(existing):  # the nearest existing ancestor: where the workdir would be created
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    what = "is a file" if existing == path else f"is below the file {existing}"
    raise ConfigError(f"--workdir={workdir} {what}, not a folder: pass a folder path (it is created if missing).")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ConfigError(f"--workdir={workdir}: {existing} is not writable by this user (errno {errno.EACCES}, "
                      "permission denied): pick a writable folder or change its permissions.")


@contextlib.contextmanager
def removed_unless_trained(workdir: str):
  """Removes `workdir` when the block fails, if the block created it and no checkpoint has been written into it.

  An error before the first checkpoint (bad data found late, a NaN at step 3, Ctrl-C while loading) would
  otherwise leave a workdir with a config.json and nothing else, which the next run with another config refuses to
  resume. Once any checkpoint exists the workdir is kept whatever happens: no trained work is ever deleted.
  """
  created = not os.path.exists(workdir)
  try:
    yield
  except BaseException:
    if created and os.path.isdir(workdir) and not _holds_checkpoints(workdir) and jax.process_index() == 0:
      shutil.rmtree(workdir, ignore_errors=True)
    raise


def _holds_checkpoints(workdir: str) -> bool:
  """Whether any finished checkpoint step or phase output (each has a manifest) lies under `workdir`."""
  return any(MANIFEST in names for _, _, names in os.walk(workdir))


def results_table(results: dict[int, dict[str, float]]) -> str:
  """A markdown table: one row per normal class, one column per `<split>/<scorer>/auroc`, and the mean."""
  cols = [m for m in next(iter(results.values())) if m.endswith("/auroc")]
  lines = ["| normal class | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
  for k, r in results.items():
    lines.append(f"| {k} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
  lines.append("| **mean** | " + " | ".join(f"**{np.mean([r[c] for r in results.values()]):.3f}**" for c in cols)
               + " |")
  return "\n".join(lines)


def build(config: ml_collections.ConfigDict) -> tuple[Method, dict[str, Source]]:
  """The method and the sources it needs (data is loaded here; source weights are read by the method's phases)."""
  spec = get_method(config.method)  # the method's needs decide which sources to load (validate: method vs protocol)
  sources = make_sources(config, spec.source_names(config) | evaluate.sources_of(config))
  validate_data(config, sources)
  method = spec(config, DataSpec.of(sources))
  validate_batches(config, method, sources)
  return method, sources


def run_one(config: ml_collections.ConfigDict, workdir: str, mode: str, *,
            stop: StopRequests | None = None) -> dict[str, float]:
  # Data and method first: a user error in the config or the data leaves no workdir behind.
  if mode != "train" and not os.path.isdir(workdir):
    raise ConfigError(f"--mode={mode}: {workdir} does not exist; train into it first with --mode=train.")
  method, sources = build(config)
  with removed_unless_trained(workdir):
    os.makedirs(workdir, exist_ok=True)
    _check_config_json(config, workdir)
    evaluate.save_data_spec(workdir, sources)
    mesh = parallel.make_mesh()
    runner = Runner(config, workdir, method, sources, mesh, mode=mode, stop=stop)
    outputs = runner.run()
    summary = evaluate.run_evals(config, method, outputs, sources, workdir, runner.predict)
  parallel.log(f"{workdir}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items() if k.endswith(("auroc", "top1"))))
  return summary


def _check_config_json(config, workdir: str) -> None:
  """Writes config.json; refuses to resume a workdir that was trained with a different config.

  Without config.json (deleted, or lost with a copied workdir) the config stored in the workdir's checkpoints is
  the reference, so a resume can never mix two configs in one run.
  """
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json())
  before, origin = None, path
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
  elif (saved := saved_config(workdir)) is not None:
    before, origin = saved
  if before is not None:
    diff = config_diff(before, current)
    if diff:
      raise ConfigError(f"{workdir} holds a run with a different config (keys {diff}); its config is {origin}. Use "
                        "a new --workdir, or the config it was trained with.")
  if jax.process_index() == 0:
    with files.atomic_open(path) as f:
      json.dump(current, f, indent=2, sort_keys=True)
