"""`train_and_evaluate(config, workdir)`: data, mesh, the method's stages, jitted steps, checkpoints, evaluation.

One code path for one CPU, N GPUs or a TPU pod: the step is `jax.jit` with `NamedSharding`s over a mesh with a
'data' axis (state replicated, batch split). Durations are given in epochs and resolved to steps once.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from jaxad import evaluate, parallel
from jaxad.checkpoint import Checkpointer
from jaxad.data import make_task, pipeline
from jaxad.errors import ConfigError, TrainingError
from jaxad.methods import get_method
from jaxad.methods.base import Stage


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  extra: Any  # the method's own state, e.g. hypersphere centers and radii
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @property
  def variables(self):
    return {"params": self.params, "batch_stats": self.batch_stats}


def make_optimizer(optim: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """Coupled weight decay (PyTorch's `weight_decay`) before Adam/SGD; lr x `lr_decay` at each milestone epoch.

  `optim.trainable`, if set, is a list of `(regex, trainable)` pairs over '/'-joined parameter names; the first
  pattern that matches (`re.search`) decides, and a parameter no pattern matches is an error. Frozen parameters
  get zero updates (no weight decay either), e.g. ADRA: `[('adapter|bn|head', True), ('.*', False)]`.
  """
  lr = optax.piecewise_constant_schedule(
      optim.lr, {int(m) * steps_per_epoch: optim.lr_decay for m in optim.milestones})
  if optim.optimizer == "adam":
    base = optax.adam(lr)
  elif optim.optimizer == "sgd":
    base = optax.sgd(lr, momentum=optim.momentum or None, nesterov=optim.nesterov)
  else:
    raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {optim.optimizer!r}.")
  tx = optax.chain(optax.add_decayed_weights(optim.weight_decay), base)
  rules = optim.get("trainable")
  if not rules:
    return tx
  return optax.multi_transform({True: tx, False: optax.set_to_zero()},
                               lambda params: trainable_mask(params, [(p, bool(t)) for p, t in rules]))


def trainable_mask(params, rules: list[tuple[str, bool]]):
  """A pytree of bools: for each parameter, the `trainable` of the first rule whose regex matches its name."""

  def decide(path, _):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    for pattern, trainable in rules:
      if re.search(pattern, name):
        return trainable
    raise ConfigError(f"No optim.trainable rule matches parameter {name!r}; end the list with ('.*', False).")

  return jax.tree_util.tree_map_with_path(decide, params)


def make_train_step(stage: Stage, steps_per_epoch: int) -> Callable:
  """A pure `(state, batch) -> (state, metrics)` for one stage.

  Parameters that `optim.trainable` freezes enter the loss through `stop_gradient`: their gradients are zeros that
  XLA never computes (and `grad_norm` covers the trainable ones only); the optimizer gives them zero updates.
  """
  rules = [(p, bool(t)) for p, t in stage.optim.get("trainable") or ()]

  def stage_loss(params, state, batch, epoch):
    if rules:  # frozen leaves are constants: XLA then drops their weight-gradient convolutions (ADRA's saving)
      params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params,
                            trainable_mask(params, rules))
    return stage.loss(params, state, batch, epoch)

  def train_step(state: TrainState, batch):
    epoch = state.step // steps_per_epoch
    grad_fn = jax.value_and_grad(lambda p: stage_loss(p, state, batch, epoch), has_aux=True)
    (loss, (batch_stats, aux, metrics)), grads = grad_fn(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    extra = stage.update_extra(state.extra, aux, epoch) if stage.update_extra else state.extra
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                              extra=extra)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}

  return train_step


def init_state(stage: Stage, rng, images: np.ndarray, previous: TrainState | None, tx, predict) -> TrainState:
  sample = jnp.asarray(images[:1])
  if stage.init_variables is not None:
    variables = stage.init_variables(rng, sample, previous)
  else:
    variables = stage.model.init(rng, sample, train=False)
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  extra = stage.init_extra(variables, predict, images) if stage.init_extra else {}
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"], batch_stats=variables["batch_stats"],
                    opt_state=tx.init(variables["params"]), extra=extra, tx=tx)


def run_stage(stage: Stage, index: int, config, workdir: str, images: np.ndarray, previous: TrainState | None,
              mesh, predict, *, train: bool = True, labels: np.ndarray | None = None) -> TrainState:
  """Trains one stage to its last step, resuming from its latest checkpoint if there is one.

  `labels` (class labels of `images`, protocol 'classification') go to the stage's `batches` as `labels=`.
  """
  optim = stage.optim
  make_batches = stage.batches or pipeline.train_batches
  if labels is not None and stage.batches is None:
    raise ConfigError(f"data.protocol='classification' gives class labels; method {config.method!r} does not train "
                      "on them (use method 'supervised', or an anomaly-detection protocol).")
  with_labels = {} if labels is None else {"labels": labels}
  data, spe = make_batches(images, global_batch_size=optim.batch_size, seed=config.seed * 1000 + index,
                           num_epochs=optim.epochs, **with_labels)
  total = optim.epochs * spe
  tx = make_optimizer(optim, spe)
  rng = jax.random.fold_in(jax.random.key(config.seed), index)
  state = parallel.replicate(init_state(stage, rng, images, previous, tx, predict), mesh)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints", stage.name))
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
    _log(f"{stage.name}: resumed from step {int(state.step)} of {total}.")
  elif not train:
    raise ConfigError(f"--mode=eval needs a trained checkpoint in {ckpt.directory}; run --mode=train first.")
  start = int(state.step)
  if train and start < total:
    state = _train_loop(stage, config, workdir, data, state, mesh, ckpt, spe, total, start)
  ckpt.close()
  return state


def _train_loop(stage, config, workdir, data, state, mesh, ckpt, spe, total, start):
  step_fn = jax.jit(make_train_step(stage, spe), in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                    out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)), donate_argnums=0)
  bs = stage.optim.batch_size
  bar = tqdm.tqdm(total=total, initial=start, desc=stage.name, unit="step", file=sys.stderr, dynamic_ncols=True,
                  mininterval=1.0 if sys.stderr.isatty() else 30.0, disable=jax.process_index() != 0)
  log_path = os.path.join(workdir, "metrics.jsonl")
  t0, n0 = time.perf_counter(), start
  for step in range(start, total):
    state, metrics = step_fn(state, parallel.shard_batch(data[step], mesh))
    done = step + 1
    is_epoch_end = done % spe == 0
    if done % config.log_every_steps == 0 or is_epoch_end or done == total:
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not all(math.isfinite(v) for v in metrics.values()):
        ckpt.close()
        raise TrainingError(
            f"{stage.name}: non-finite metrics at step {done} (epoch {done / spe:.2f}): {metrics}. The last good "
            f"checkpoint (step {ckpt.latest_step()}) in {ckpt.directory} is kept; lower {stage.name}.lr or check "
            "the data.")
      elapsed = time.perf_counter() - t0
      img_s = (done - n0) * bs / max(elapsed, 1e-9)
      t0, n0 = time.perf_counter(), done
      record = {"stage": stage.name, "step": done, "epoch": done / spe, "img_per_s": img_s, **metrics}
      if jax.process_index() == 0:
        with open(log_path, "a") as f:
          f.write(json.dumps(record) + "\n")
      bar.set_postfix(loss=f"{metrics['loss']:.4g}", img_s=f"{img_s:.0f}", refresh=False)
    if (is_epoch_end and (done // spe) % config.checkpoint_every_epochs == 0) or done == total:
      ckpt.save(state)
    bar.update(1)
  bar.close()
  return state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, mode: str = "train") -> dict[str, Any]:
  """Runs one experiment, or one per class when `config.data.normal_classes` lists several; returns the summary."""
  if mode not in ("train", "eval"):
    raise ConfigError(f"--mode must be 'train' or 'eval', got {mode!r}.")
  classes = tuple(config.data.get("normal_classes", ()) or ())
  if not classes:
    return _run_one(config, workdir, mode)
  results = {}
  for k in classes:
    sub = ml_collections.ConfigDict(config.to_dict())
    sub.data.normal_class, sub.data.normal_classes = int(k), ()
    results[int(k)] = _run_one(sub, os.path.join(workdir, f"class_{k}"), mode)
  summary = {f"class_{k}/{m}": v for k, r in results.items() for m, v in r.items()}
  for m in next(iter(results.values())):
    vals = [r[m] for r in results.values()]
    summary[f"mean/{m}"] = float(np.mean(vals))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2, sort_keys=True)
    table = results_table(results)
    with open(os.path.join(workdir, "results.md"), "w") as f:
      f.write(table + "\n")
    print(table)
  return summary


def results_table(results: dict[int, dict[str, float]]) -> str:
  """A markdown table: one row per normal class, one column per `<split>/<scorer>/auroc`, and the mean."""
  cols = [m for m in next(iter(results.values())) if m.endswith("/auroc")]
  lines = ["| normal class | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
  for k, r in results.items():
    lines.append(f"| {k} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
  lines.append("| **mean** | " + " | ".join(f"**{np.mean([r[c] for r in results.values()]):.3f}**" for c in cols)
               + " |")
  return "\n".join(lines)


def _run_one(config: ml_collections.ConfigDict, workdir: str, mode: str) -> dict[str, float]:
  # Data and stages first (they may load datasets or source weights): a user error leaves no workdir behind.
  task = make_task(config.data)
  stages = get_method(config.method)(config, task.x_train.shape[1:])
  os.makedirs(workdir, exist_ok=True)
  _check_config_json(config, workdir)
  mesh = parallel.make_mesh()
  predict = evaluate.make_predict(mesh, config.eval.batch_size)
  state, raw = None, {}
  for i, stage in enumerate(stages):
    state = run_stage(stage, i, config, workdir, task.x_train, state, mesh, predict, train=mode == "train",
                      labels=task.train_labels)
    if stage.finalize_extra is not None:
      state = state.replace(extra=stage.finalize_extra(state.variables, state.extra, predict, task.x_train))
    if stage.score is not None:  # every stage that can score is evaluated, e.g. the AE's reconstruction error
      raw.update(predict(lambda v, b, score=stage.score: score(v[0], v[1], b), (state.variables, state.extra),
                         task.x_test))
  if config.data.protocol == "classification":  # a source model: its stage scores {'logits': [N, K]}
    summary = evaluate.write_classification_results(workdir, raw["logits"], task.test_classes)
  else:
    summary = evaluate.write_results(workdir, raw, task.test_labels, task.test_classes, secondary=task.test_secondary)
  if config.get("export_source") and mode == "train":  # the final weights as a `transfer.source` directory
    from jaxad.methods import transfer  # pylint: disable=g-import-not-at-top
    path = transfer.save_source(os.path.join(workdir, "source"), state.variables)
    _log(f"source weights for ADIB/ADRA/...: {path} (use source={path})")
  _log(f"{workdir}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items() if k.endswith(("auroc", "top1"))))
  return summary


# Keys that may change between a run and its resumption: where the data is, logging and checkpoint cadence.
_RESUMABLE_KEYS = frozenset({"data.data_dir", "data.source", "multihost", "log_every_steps",
                             "checkpoint_every_epochs", "eval.batch_size"})


def _check_config_json(config, workdir: str) -> None:
  """Writes config.json; refuses to resume a workdir that was trained with a different config."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json())
  if os.path.exists(path):
    with open(path) as f:
      before, now = _flat(json.load(f)), _flat(current)
    # A key missing from the old file was added to jaxad after that run was made: tolerated, so that upgrading
    # jaxad does not strand old workdirs (the run behaved as the key's default did).
    diff = sorted(k for k in now if k in before and before[k] != now[k] and k not in _RESUMABLE_KEYS)
    diff += sorted(k for k in before if k not in now)
    if diff:
      raise ConfigError(f"{workdir} holds a run with a different config (keys {diff}); use a new --workdir or "
                        "delete that one.")
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(current, f, indent=2, sort_keys=True)


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(f"[jaxad] {msg}", file=sys.stderr, flush=True)
