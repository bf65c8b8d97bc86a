"""Optimizers and learning-rate schedules of a training phase, built from its `optim` config.

A phase's `optim` ConfigDict names any optax optimizer and one schedule from `SCHEDULES`, each with its keyword
arguments, so that a paper's recipe is written down as config instead of code:

  optimizer='sgd', optimizer_kwargs={'momentum': 0.9, 'nesterov': True}, lr=0.1, weight_decay=5e-4, epochs=40,
  schedule='step', schedule_kwargs={'milestones': (20, 30, 35), 'decay': 0.1},
  trainable=[('adapter|bn|head', True), ('.*', False)]

Durations are given in epochs (as the papers give them) and resolved to optimizer steps here, once. `weight_decay`
is PyTorch's coupled L2 decay (`g + wd * p` before the optimizer), because the reference implementations use it;
decoupled AdamW-style decay is `optimizer='adamw'` with `optimizer_kwargs={'weight_decay': ...}`.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections
import optax

from jaxad.errors import ConfigError

# Top-level keys of the former optim layout; a config that still sets them would silently train at a constant lr.
_MOVED_KEYS = {
    "milestones": "schedule='step' with schedule_kwargs={'milestones': ...}",
    "lr_decay": "schedule='step' with schedule_kwargs={'decay': ...}",
    "momentum": "optimizer_kwargs={'momentum': ...}",
    "nesterov": "optimizer_kwargs={'nesterov': ...}",
}
# optax optimizers whose `update` needs more than (grads, state, params), which the jitted train step passes.
_NEEDS_EXTRA_UPDATE_ARGS = {"lbfgs": "its line search needs the loss value and a value_fn in every update"}
_EXAMPLE_OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop", "lamb", "lion")


# --------------------------------------------------------------------------------------------------------------------
# Schedules: builder(lr, steps_per_epoch, total_epochs, **kwargs) -> optax.Schedule. Keyword-only arguments are the
# schedule's `schedule_kwargs`; those without a default are required.


def _constant(lr: float, steps_per_epoch: int, total_epochs: int) -> optax.Schedule:
  """`lr` at every step."""
  del steps_per_epoch, total_epochs
  return optax.constant_schedule(lr)


def _step(lr: float, steps_per_epoch: int, total_epochs: int, *, milestones, decay: float = 0.1) -> optax.Schedule:
  """lr x `decay` at each milestone epoch: PyTorch's `MultiStepLR(milestones, gamma=decay)` stepped once per epoch.

  Milestones are whole epochs in (0, total_epochs]; a milestone listed twice decays twice, as in PyTorch.
  """
  if isinstance(milestones, (str, Mapping)) or not hasattr(milestones, "__iter__"):
    raise ConfigError(f"optim.schedule_kwargs.milestones must be a tuple of epochs, got {milestones!r}.")
  milestones = tuple(milestones)
  for m in milestones:
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m != int(m):
      raise ConfigError(f"optim.schedule_kwargs.milestones must be whole epochs, got {milestones!r}.")
    if not 0 < m <= total_epochs:
      raise ConfigError(f"optim.schedule_kwargs.milestones={milestones!r}: milestone {m} is outside (0, epochs] = "
                        f"(0, {total_epochs}]; a milestone after the last epoch would never take effect.")
  _check_positive("schedule_kwargs.decay", decay)
  scales = {}
  for m in milestones:
    boundary = int(m) * steps_per_epoch
    scales[boundary] = scales.get(boundary, 1.0) * decay
  return optax.piecewise_constant_schedule(lr, scales)


def _cosine(lr: float, steps_per_epoch: int, total_epochs: int, *, end_value: float = 0.0) -> optax.Schedule:
  """Cosine decay from `lr` at step 0 to `end_value` (an absolute lr) at the last step of `total_epochs`."""
  _check_end_value(end_value, lr)
  return optax.cosine_decay_schedule(lr, decay_steps=total_epochs * steps_per_epoch, alpha=end_value / lr)


def _warmup_cosine(lr: float, steps_per_epoch: int, total_epochs: int, *, warmup_epochs: float,
                   init_value: float = 0.0, end_value: float = 0.0) -> optax.Schedule:
  """Linear warm-up from `init_value` to `lr` over `warmup_epochs` (may be fractional), then cosine to `end_value`.

  The cosine ends at the last step of `total_epochs` (the warm-up counts towards them), as in optax.
  """
  _check_end_value(end_value, lr)
  if not isinstance(init_value, (int, float)) or not 0 <= init_value <= lr:
    raise ConfigError(f"optim.schedule_kwargs.init_value must be in [0, lr] = [0, {lr}], got {init_value!r}.")
  if not isinstance(warmup_epochs, (int, float)) or not 0 <= warmup_epochs < total_epochs:
    raise ConfigError(f"optim.schedule_kwargs.warmup_epochs must be in [0, epochs) = [0, {total_epochs}) so that "
                      f"some epochs are left for the cosine, got {warmup_epochs!r}.")
  total_steps = total_epochs * steps_per_epoch
  warmup_steps = min(round(warmup_epochs * steps_per_epoch), total_steps - 1)
  return optax.warmup_cosine_decay_schedule(init_value=init_value, peak_value=lr, warmup_steps=warmup_steps,
                                            decay_steps=total_steps, end_value=end_value)


def _inverse_time(lr: float, steps_per_epoch: int, total_epochs: int, *, decay: float) -> optax.Schedule:
  """Keras' legacy SGD `decay`: lr / (1 + decay * iteration), with the iteration counted in optimizer STEPS.

  `decay` is the one schedule argument given per step rather than per epoch, because that is how Keras defines
  it; a paper that trained with `SGD(lr, decay=1e-6)` (e.g. Minhas & Zelek) sets `decay=1e-6` here unchanged.
  """
  del steps_per_epoch, total_epochs
  if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay >= 0:
    raise ConfigError(f"optim.schedule_kwargs.decay must be >= 0 (per step, as in Keras), got {decay!r}.")
  return lambda count: lr / (1.0 + decay * count)


SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "constant": _constant,
    "step": _step,
    "cosine": _cosine,
    "warmup_cosine": _warmup_cosine,
    "inverse_time": _inverse_time,
    # The same schedule under the name of the Keras argument it reproduces (keras.optimizers.SGD(decay=...)), which
    # is what the papers that use it write (Minhas & Zelek: lr 1e-3, decay 1e-6).
    "keras_decay": _inverse_time,
}


def make_schedule(optim: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate per optimizer step, from `optim.lr`, `optim.epochs`, `optim.schedule` (default 'constant')
  and `optim.schedule_kwargs` (durations in epochs, resolved with `steps_per_epoch`).

  Args:
    optim: a training phase's optimizer config.
    steps_per_epoch: optimizer steps per epoch, >= 1.

  Returns:
    An optax schedule: step count (0 for the first update) -> learning rate.

  Example:
    >>> import ml_collections
    >>> optim = ml_collections.ConfigDict(dict(lr=0.1, epochs=3, schedule='step',
    ...                                        schedule_kwargs=dict(milestones=(1, 2))))
    >>> schedule = make_schedule(optim, steps_per_epoch=2)
    >>> print([round(float(schedule(s)), 6) for s in range(6)])
    [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
  """
  if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch must be an int >= 1, got {steps_per_epoch!r}.")
  _check_moved_keys(optim)
  lr = _check_positive("lr", _require(optim, "lr"))
  epochs = _require(optim, "epochs")
  if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs != int(epochs) or epochs < 1:
    raise ConfigError(f"optim.epochs must be a whole number of epochs >= 1, got {epochs!r}.")
  name = optim.get("schedule") or "constant"
  if name not in SCHEDULES:
    raise ConfigError(f"optim.schedule={name!r} is not a known schedule{_did_you_mean(name, SCHEDULES)}; "
                      f"choose one of {sorted(SCHEDULES)}.")
  builder = SCHEDULES[name]
  kwargs = _as_dict(optim.get("schedule_kwargs"))
  _check_kwargs(builder, kwargs, skip=3, key="schedule_kwargs", what=f"schedule {name!r}")
  return builder(float(lr), steps_per_epoch, int(epochs), **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Optimizer.


def make_optimizer(optim: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
  """`optax.<optimizer>(learning_rate=schedule, **optimizer_kwargs)` after coupled weight decay, with freezing.

  Coupled decay (`optax.add_decayed_weights(weight_decay)` chained before the optimizer) is PyTorch's
  `weight_decay` argument, which the reference implementations use; it is chained even when 0 so the optimizer
  state keeps one structure (and old checkpoints restore). `optim.trainable`, if set, is a list of
  `(regex, trainable)` pairs over '/'-joined parameter names; the first pattern that matches (`re.search`) decides,
  and a parameter no pattern matches is an error. Frozen parameters get zero updates (no weight decay either),
  e.g. ADRA: `[('adapter|bn|head', True), ('.*', False)]`.

  Args:
    optim: a training phase's optimizer config: `optimizer` (any optax optimizer taking `learning_rate`),
      `optimizer_kwargs` (default {}), `lr`, `weight_decay` (default 0), `epochs`, `schedule` (default
      'constant'), `schedule_kwargs` (default {}), `trainable` (default: all parameters train).
    steps_per_epoch: optimizer steps per epoch, >= 1.

  Returns:
    The gradient transformation; its `update` needs `params` (for the decay and the trainable mask).
  """
  name = _require(optim, "optimizer")
  factory = _optax_optimizer(name)
  kwargs = _as_dict(optim.get("optimizer_kwargs"))
  if "learning_rate" in kwargs:
    raise ConfigError("optim.optimizer_kwargs.learning_rate is not allowed: set optim.lr and optim.schedule.")
  _check_kwargs(factory, kwargs, skip=0, key="optimizer_kwargs", what=f"optax.{name}", ignore=("learning_rate",))
  weight_decay = optim.get("weight_decay", 0.0)
  if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
    raise ConfigError(f"optim.weight_decay must be >= 0 (0 = none), got {weight_decay!r}.")
  tx = optax.chain(optax.add_decayed_weights(weight_decay),
                   factory(learning_rate=make_schedule(optim, steps_per_epoch), **kwargs))
  rules = trainable_rules(optim)
  if not rules:
    return tx
  return optax.multi_transform({True: tx, False: optax.set_to_zero()},
                               lambda params: trainable_mask(params, rules))


def trainable_rules(optim) -> list[tuple[str, bool]]:
  """`optim.trainable` as `[(regex, trainable)]`; empty when unset (everything trains)."""
  rules = []
  for rule in optim.get("trainable") or ():
    if isinstance(rule, str) or not isinstance(rule, (tuple, list)) or len(rule) != 2:
      raise ConfigError(f"optim.trainable must be a list of (regex, trainable) pairs, got the entry {rule!r}.")
    pattern, trainable = rule
    try:
      re.compile(pattern)
    except (re.error, TypeError) as e:
      raise ConfigError(f"optim.trainable has an invalid regex {pattern!r}: {e}.") from None
    rules.append((pattern, bool(trainable)))
  return rules


def trainable_mask(params, rules: list[tuple[str, bool]]):
  """A pytree of bools: for each parameter, the `trainable` of the first rule whose regex matches its name."""

  def decide(path, _):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    for pattern, trainable in rules:
      if re.search(pattern, name):
        return trainable
    raise ConfigError(f"No optim.trainable rule matches parameter {name!r}; end the list with ('.*', False).")

  return jax.tree_util.tree_map_with_path(decide, params)


# --------------------------------------------------------------------------------------------------------------------
# Validation helpers.


def _require(optim, key: str) -> Any:
  if key not in optim:
    raise ConfigError(f"optim.{key} is missing; the phase's optim config has only {sorted(optim.keys())}.")
  return optim[key]


def _check_positive(key: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
    raise ConfigError(f"optim.{key} must be a finite number > 0, got {value!r}.")
  return value


def _check_end_value(end_value: Any, lr: float) -> None:
  if isinstance(end_value, bool) or not isinstance(end_value, (int, float)) or not 0 <= end_value <= lr:
    raise ConfigError(f"optim.schedule_kwargs.end_value is an absolute lr in [0, lr] = [0, {lr}], "
                      f"got {end_value!r}.")


def _check_moved_keys(optim) -> None:
  for key, instead in _MOVED_KEYS.items():
    if key in optim:
      raise ConfigError(f"optim.{key}={optim[key]!r} is no longer read (it would be ignored); use {instead}.")


def _as_dict(value: Any) -> dict[str, Any]:
  if value is None:
    return {}
  if hasattr(value, "to_dict"):
    return value.to_dict()
  if isinstance(value, Mapping):
    return dict(value)
  raise ConfigError(f"Expected a dict of keyword arguments, got {value!r}.")


def _did_you_mean(name: str, choices) -> str:
  close = difflib.get_close_matches(str(name), list(choices), n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def _check_kwargs(fn: Callable, kwargs: dict[str, Any], *, skip: int, key: str, what: str,
                  ignore: tuple[str, ...] = ()) -> None:
  """Unknown and missing keyword arguments of `fn` (after its first `skip` parameters) as ConfigErrors."""
  params = list(inspect.signature(fn).parameters.values())[skip:]
  if any(p.kind is p.VAR_KEYWORD for p in params):
    return
  accepted = [p.name for p in params if p.kind is not p.VAR_POSITIONAL and p.name not in ignore]
  for kw in kwargs:
    if kw not in accepted:
      raise ConfigError(f"optim.{key}.{kw}={kwargs[kw]!r} is not an argument of {what}"
                        f"{_did_you_mean(kw, accepted)}; it accepts: {', '.join(accepted) or 'none'}.")
  for p in params:
    if p.default is p.empty and p.name in accepted and p.name not in kwargs:
      raise ConfigError(f"{what} needs optim.{key}.{p.name}; it accepts: {', '.join(accepted)}.")


def _optax_optimizer(name: Any) -> Callable[..., optax.GradientTransformation]:
  """`getattr(optax, name)` if it is an optimizer that takes `learning_rate`, else a ConfigError with examples."""
  factory = getattr(optax, name, None) if isinstance(name, str) and not name.startswith("_") else None
  try:
    takes_lr = (callable(factory) and not isinstance(factory, type) and not name.startswith("scale_by")
                and "learning_rate" in inspect.signature(factory).parameters)
  except (TypeError, ValueError):  # no signature
    takes_lr = False
  if not takes_lr:
    raise ConfigError(f"optim.optimizer={name!r} is not an optax optimizer that takes learning_rate"
                      f"{_did_you_mean(name, _all_optimizers())}; e.g. {', '.join(map(repr, _EXAMPLE_OPTIMIZERS))} "
                      f"(any of {', '.join(_all_optimizers())}).")
  if name in _NEEDS_EXTRA_UPDATE_ARGS:
    raise ConfigError(f"optim.optimizer={name!r} is not supported: {_NEEDS_EXTRA_UPDATE_ARGS[name]}, which the "
                      "train step does not pass.")
  return factory


def _all_optimizers() -> list[str]:
  names = []
  for n in dir(optax):
    f = getattr(optax, n)
    if n.startswith(("_", "scale_by")) or n in _NEEDS_EXTRA_UPDATE_ARGS or not callable(f) or isinstance(f, type):
      continue
    try:
      if "learning_rate" in inspect.signature(f).parameters:
        names.append(n)
    except (TypeError, ValueError):
      pass
  return names
