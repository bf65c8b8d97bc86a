"""Config validation: every value a run reads is checked here, before any data is loaded or any step runs.

`validate(config)` raises one `ConfigError` for the first problem it finds, naming the key, the value, the allowed
range and the fix, e.g. `train.epochs=0 is out of range: an int >= 1 (whole epochs of training). Fix: set
--config.train.epochs to an int >= 1.`. Without it, a bad value surfaced late and far from its cause: an epoch count
of 0 as a numpy traceback after a whole earlier phase had trained, a NaN learning rate as a "non-finite loss", and
a soft-boundary warm-up as long as training as a silent hard boundary.

What is checked:

* every training phase (a top-level sub-dict with `epochs` and `batch_size`, e.g. `pretrain`, `train`): epochs and
  batch size ints >= 1, `lr` finite > 0, `weight_decay` finite >= 0, and the optimizer, its keyword arguments, the
  schedule and the trainable rules through `jaxad.optim.make_optimizer` (the checks it would make at the phase's
  start);
* the run's own keys: `seed`, `eval.batch_size`, `log_every_steps`, `checkpoint_every_epochs`, `threshold.*`,
  `sweep.*`, `method` and the evaluators (`evals`);
* `model.dtype` ('float32' or 'bfloat16') and `model.remat` (a bool), and that a non-default value is on a model
  that supports it (`jaxad.models.compute_kwargs`);
* `data.*`: the dataset and protocol by name, the normal class(es) against the dataset's class count, limits,
  `val_fraction`, `label_mode`, the preprocessing and its constants, small-modes' secondary class and amplitude;
* cross-field rules: a soft boundary's `objective.warmup_epochs` < `train.epochs`, `objective.nu` in (0, 1], the
  rows per batch of OE and labelled anomalies below the batch size, `data.train_limit` (> 0) at least one batch
  of each phase that drops its last partial batch, and an anomaly-detection method never on the 'classification'
  protocol;
* every float anywhere in the config is finite (NaN / inf are always a mistake in a hyperparameter).

Checks that need the data itself (label ranges, empty classes, file kinds) or the devices (batch divisibility) are
made where those are known, still before the first step.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from jaxad import optim
from jaxad.errors import ConfigError

# Training shuffles seed grain with `seed * 1000 + phase + 7919 * source` (jaxad.train, jaxad.data.pipeline), which
# must stay below 2**32.
MAX_SEED = 2**22
# Phases that drop the last partial batch of each epoch (`TrainPhase.drop_remainder`, jaxad/methods/), by method: a
# `data.train_limit` below their batch size would leave them no step. Methods not listed mix sources endlessly
# (drop_remainder=False), which cannot run short. tests/validate_test.py checks this table against the methods.
DROPS_REMAINDER = {
    "dsvdd": ("pretrain", "train"),
    "mocca": ("pretrain", "train"),
    "mocca_video": ("train",),
    "deep_sad": ("pretrain",),  # its 'train' mixes normal images with labelled anomalies
    "ssl_multitask": ("train",),
    "mhrot": ("train",),
    "geotrans": ("train",),
}
# Protocols that read `data.normal_class` (as the normal, held-out, primary or, for 'anomaly_vs_rest_sample', anomaly
# class); 'ood' and 'classification' use every class.
CLASS_PROTOCOLS = ("one_vs_rest", "leave_one_out", "small_modes", "anomaly_vs_rest_sample")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every value of a run's config; raises a `ConfigError` naming the first bad key, its value and the fix.

  Cheap (milliseconds, no file is read), so `jaxad.train.train_and_evaluate` calls it first, in every mode.

  Args:
    config: a run's config, as a config file's `get_config` returns it (with any overrides applied).

  Raises:
    ConfigError: `<key>=<value> is out of range: <allowed>. Fix: <what to set>.` (or `is not valid` for a wrong
      type or name).

  Example:
    >>> config = ml_collections.ConfigDict(dict(train=dict(epochs=3, batch_size=8, optimizer='adam', lr=1e-3)))
    >>> validate(config)
    >>> config.train.epochs = 0
    >>> try:
    ...   validate(config)
    ... except ConfigError as e:
    ...   print(e)  # doctest: +NORMALIZE_WHITESPACE
    train.epochs=0 is out of range: an int >= 1 (whole epochs of training).
    Fix: set --config.train.epochs to an int >= 1.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"A run's config must be an ml_collections.ConfigDict (what a config file's get_config returns), "
                      f"got {type(config).__name__}.")
  phases = training_phases(config)
  for name in phases:
    _check_phase(name, config[name])
  _check_run_keys(config)
  _check_method(config)
  _check_model_compute(config)
  _check_model_weights(config)
  _check_data(config)
  _check_objective(config)
  _check_rows_per_batch(config)
  _check_train_limit(config, phases)
  _check_finite(config, "")


def training_phases(config: ml_collections.ConfigDict) -> list[str]:
  """The top-level keys that configure a training phase: sub-dicts with `epochs` and `batch_size`."""
  return [k for k, v in config.items() if isinstance(v, ml_collections.ConfigDict) and "epochs" in v
          and "batch_size" in v]


# --------------------------------------------------------------------------------------------------------------------
# Messages and type checks.


def _error(key: str, value: Any, allowed: str, fix: str, *, problem: str = "out of range") -> ConfigError:
  return ConfigError(f"{key}={value!r} is {problem}: {allowed}. Fix: {fix}.")


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_int(key: str, value: Any, *, lo: int, hi: int | None = None, meaning: str = "") -> None:
  """An int in [lo, hi] (hi None: no upper bound)."""
  valid = f"an int >= {lo}" if hi is None else f"an int in [{lo}, {hi}]"
  allowed = valid + (f" ({meaning})" if meaning else "")
  fix = f"set --config.{key} to {valid}"
  if not _is_int(value):
    raise _error(key, value, allowed, fix, problem="not valid")
  if value < lo or (hi is not None and value > hi):
    raise _error(key, value, allowed, fix)


def _check_real(key: str, value: Any, interval: str, *, meaning: str = "") -> None:
  """A finite number in `interval`, written as in maths: '(0, 1]', '[0, inf)', '(0, inf)'."""
  lo_text, hi_text = (s.strip() for s in interval[1:-1].split(","))
  lo, hi = float(lo_text), float(hi_text)
  valid = f"a finite number {'>' if interval[0] == '(' else '>='} {lo_text}" if hi == math.inf else (
      f"a number in {interval}")
  allowed = valid + (f" ({meaning})" if meaning else "")
  fix = f"set --config.{key} to {valid}"
  if not _is_real(value) or not math.isfinite(value):
    raise _error(key, value, allowed, fix, problem="not valid")
  below = value < lo or (interval[0] == "(" and value == lo)
  above = value > hi or (interval[-1] == ")" and value == hi)
  if below or above:
    raise _error(key, value, allowed, fix)


def _check_name(key: str, value: Any, valid, what: str) -> None:
  try:
    known = value in valid
  except TypeError:  # unhashable, e.g. a list
    known = False
  if not known:
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise _error(key, value, f"one of the {what} {sorted(valid)}{hint}", f"set --config.{key} to one of them",
                 problem="not valid")


# --------------------------------------------------------------------------------------------------------------------
# Training phases and the run's own keys.


def _check_phase(name: str, phase: ml_collections.ConfigDict) -> None:
  _check_int(f"{name}.epochs", phase.epochs, lo=1, meaning="whole epochs of training")
  _check_int(f"{name}.batch_size", phase.batch_size, lo=1, meaning="images per step, over all devices")
  if "lr" in phase:
    _check_real(f"{name}.lr", phase.lr, "(0, inf)", meaning="the peak learning rate")
  if "weight_decay" in phase:
    _check_real(f"{name}.weight_decay", phase.weight_decay, "[0, inf)", meaning="coupled L2 decay, 0 = none")
  # The optimizer by name, its kwargs, the schedule (milestones within the epochs, warm-up shorter than training)
  # and the trainable rules: built once here exactly as the phase will build it (durations are in epochs, so one
  # step per epoch checks the same), and its messages say `<phase>.` where they say `optim.`.
  try:
    optim.make_optimizer(phase, steps_per_epoch=1)
  except ConfigError as e:
    raise ConfigError(str(e).replace("optim.", f"{name}.")) from None
  except (TypeError, ValueError) as e:  # optax's own refusal of an argument's value
    raise ConfigError(f"{name}: optax.{phase.get('optimizer')} or its schedule cannot be built from this config: "
                      f"{e}. Fix: check --config.{name}.optimizer_kwargs and --config.{name}.schedule_kwargs.") from None


def _check_run_keys(config: ml_collections.ConfigDict) -> None:
  if "seed" in config:
    _check_int("seed", config.seed, lo=0, hi=MAX_SEED, meaning="the run's random seed")
  if "eval" in config and "batch_size" in config.eval:
    _check_int("eval.batch_size", config.eval.batch_size, lo=1, meaning="images per scoring batch")
  if "log_every_steps" in config:
    _check_int("log_every_steps", config.log_every_steps, lo=1, meaning="steps between metrics records")
  if "checkpoint_every_epochs" in config:
    _check_int("checkpoint_every_epochs", config.checkpoint_every_epochs, lo=1, meaning="epochs between checkpoints")
  threshold = config.get("threshold")
  if threshold is not None:
    if "quantile" in threshold:
      _check_real("threshold.quantile", threshold.quantile, "(0, 1)",
                  meaning="the share of held-out normal scores below the decision threshold, e.g. 0.95")
    if "limit" in threshold:
      _check_int("threshold.limit", threshold.limit, lo=0, meaning="held-out normal images the threshold uses, 0 = all")
  _check_sweep(config)
  from jaxad import evaluate  # pylint: disable=g-import-not-at-top  (plots: only where a run is checked)
  evaluate.evals_of(config)


def _check_sweep(config: ml_collections.ConfigDict) -> None:
  """`sweep.*` (jaxad.sweep): a bool, distinct valid seeds and a known strategy."""
  sweep = config.get("sweep")
  if sweep is None:
    return
  enabled = sweep.get("enabled", False)
  if not isinstance(enabled, (bool, np.bool_)):
    raise _error("sweep.enabled", enabled, "True or False", "set --config.sweep.enabled=True or False",
                 problem="not valid")
  seeds = tuple(sweep.get("seeds", ()) or ())
  for s in seeds:
    _check_int("sweep.seeds", s, lo=0, hi=MAX_SEED, meaning="the seeds every class is trained with")
  if len(set(seeds)) != len(seeds):
    raise _error("sweep.seeds", seeds, "distinct seeds (each task writes to seed_<s>/class_<k>)",
                 "list each seed once")
  strategy = sweep.get("strategy", "auto")
  if strategy not in ("auto", "vmap", "unroll"):
    raise _error("sweep.strategy", strategy, "'auto', 'vmap' or 'unroll'",
                 "set --config.sweep.strategy=auto (unrolled tasks on CPU, vmap on GPU/TPU)", problem="not valid")


def _check_method(config: ml_collections.ConfigDict) -> None:
  """The method by name, and an anomaly detector never on 'classification' (nor a classifier on anything else)."""
  from jaxad.methods import METHODS  # pylint: disable=g-import-not-at-top  (the models: only where a run is checked)
  if "method" not in config:
    return
  _check_name("method", config.method, METHODS, "methods")
  data = config.get("data")
  if data is None or "protocol" not in data:
    return
  if (data.protocol == "classification") != METHODS[config.method].trains_on_classes:
    raise ConfigError(
        f"data.protocol={data.protocol!r} does not fit method {config.method!r}: 'classification' gives class "
        "labels, which only a classifier trains on (method 'supervised'); anomaly detectors need an anomaly-detection "
        "protocol ('one_vs_rest', 'leave_one_out', 'small_modes', 'ood'). Fix: set --config.data.protocol or "
        "--config.method to match.")


def _check_model_weights(config: ml_collections.ConfigDict) -> None:
  """A `model.weights` folder (pretrained backbones) exists: a missing download stops the run at once, with how to
  get it (`model.weights_hint`), not after the data has loaded."""
  model = config.get("model")
  path = model.get("weights", "") if isinstance(model, ml_collections.ConfigDict) else ""
  if not path or not isinstance(path, str):
    return
  full = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(full):
    what = "is a file, not a converted weights folder" if os.path.exists(full) else "does not exist"
    hint = model.get("weights_hint", "") or "convert the weights as third_party_weights/README.md says"
    raise ConfigError(f"model.weights={path} {what} ({full}). Get it: {hint}.")


def _check_model_compute(config: ml_collections.ConfigDict) -> None:
  """`model.dtype` and `model.remat`: valid values, and non-default ones only on the models that take them."""
  model = config.get("model")
  if isinstance(model, ml_collections.ConfigDict) and ("dtype" in model or "remat" in model):
    from jaxad.models import compute_kwargs  # pylint: disable=g-import-not-at-top  (the models: only where checked)
    compute_kwargs(model)


# --------------------------------------------------------------------------------------------------------------------
# Data.


def num_classes(data: ml_collections.ConfigDict) -> int | None:
  """The class count of `data.name` (CIFAR-100 with label_mode='coarse': 20), or None when it is not known up front
  (users' folders, MPI3D's factors)."""
  from jaxad.data import sources  # pylint: disable=g-import-not-at-top
  info = sources.DATASETS.get(data.get("name"))
  if info is None:
    return None
  if data.get("name") == "cifar100" and data.get("label_mode", "fine") == "coarse":
    return 20
  return info.num_classes


def _check_data(config: ml_collections.ConfigDict) -> None:
  from jaxad import data as data_lib  # pylint: disable=g-import-not-at-top
  from jaxad.data import protocols, sources, transforms  # pylint: disable=g-import-not-at-top
  data = config.get("data")
  if data is None:
    return
  _check_name("data.name", data.name, data_lib.DATASETS, "datasets")
  _check_name("data.protocol", data.protocol, protocols.PROTOCOLS, "protocols")
  for key in ("train_limit", "test_limit"):
    if key in data:
      _check_int(f"data.{key}", data[key], lo=0, meaning="a fixed random subset of that size, 0 = every image")
  if "val_fraction" in data:
    _check_real("data.val_fraction", data.val_fraction, "[0, 1)",
                meaning="the share of normal training images held out as 'val', 0 = none")
  if "label_mode" in data:
    _check_name("data.label_mode", data.label_mode, sources.LABEL_MODES, "label modes")
    if data.label_mode == "coarse" and data.name != "cifar100":
      raise _error("data.label_mode", data.label_mode, "'coarse' exists only for cifar100 (its 20 super-classes)",
                   "set --config.data.label_mode='fine'", problem="not valid")
  if "image_size" in data:
    _check_int("data.image_size", data.image_size, lo=0, meaning="resize to this side, 0 = keep the dataset's")
  k = num_classes(data) if data.protocol in CLASS_PROTOCOLS else None
  hi = None if k is None else k - 1
  meaning = f"a class of {data.name}" if k is not None else "a class index"
  if "normal_class" in data:
    _check_int("data.normal_class", data.normal_class, lo=0, hi=hi, meaning=meaning)
  for i, c in enumerate(tuple(data.get("normal_classes", ()) or ())):
    _check_int(f"data.normal_classes[{i}]", c, lo=0, hi=hi, meaning=meaning)
  if data.protocol == "small_modes":
    secondary, r = data.get("secondary_class", -1), data.get("minor_mode_r", -1.0)
    _check_int("data.secondary_class", secondary, lo=0, hi=hi,
               meaning=f"the minor normal class, != data.normal_class={data.normal_class}")
    if secondary == data.normal_class:
      raise _error("data.secondary_class", secondary, f"a class other than data.normal_class={data.normal_class}",
                   "set --config.data.secondary_class to the minor normal mode's class")
    _check_real("data.minor_mode_r", r, "[0, 1]", meaning="the minor mode's amplitude")
  if "protocol_seed" in data:
    _check_int("data.protocol_seed", data.protocol_seed, lo=0, meaning="seeds the protocol's own random choices")
  for sub in ("ood", "anomaly"):
    if isinstance(data.get(sub), ml_collections.ConfigDict) and "limit" in data[sub]:
      _check_int(f"data.{sub}.limit", data[sub].limit, lo=0, meaning="a fixed random subset, 0 = all")
  if isinstance(data.get("anomaly"), ml_collections.ConfigDict) and "class_fraction" in data.anomaly:
    _check_real("data.anomaly.class_fraction", data.anomaly.class_fraction, "[0, 1]",
                meaning="the share of anomaly classes with labelled examples, 0 = every class")
  for other in ("oe", "reference"):
    if isinstance(config.get(other), ml_collections.ConfigDict) and "limit" in config[other]:
      _check_int(f"{other}.limit", config[other].limit, lo=0, meaning="a fixed random subset, 0 = all")
  # Preprocessing: the same constants `jaxad.data.make_preprocess` looks up once the images are loaded.
  if "preprocess" in data:
    _check_name("data.preprocess", data.preprocess, transforms.PREPROCESSING, "preprocessings")
    if data.preprocess == "standardize":
      try:
        data_lib.standardize_stats(data)
      except ConfigError as e:
        raise ConfigError(f"{e} Fix: set --config.data.standardize_stats to one of them or "
                          "--config.data.preprocess='unit'.") from None
    if data.preprocess == "gcn_l1_minmax" and "minmax" in data:
      _check_name("data.minmax", data.minmax, ("published", "computed"), "min-max sources")
      if data.minmax == "published" and (data.name not in transforms.PUBLISHED_MINMAX
                                         or data.protocol != "one_vs_rest"):
        raise _error("data.minmax", data.minmax, f"a published min-max table exists only for "
                     f"{sorted(transforms.PUBLISHED_MINMAX)} with protocol 'one_vs_rest', not {data.name!r} / "
                     f"{data.protocol!r}", "set --config.data.minmax='computed'", problem="not valid")


# --------------------------------------------------------------------------------------------------------------------
# Cross-field rules.


def _check_objective(config: ml_collections.ConfigDict) -> None:
  obj = config.get("objective")
  if not isinstance(obj, ml_collections.ConfigDict):
    return
  if "nu" in obj:
    _check_real("objective.nu", obj.nu, "(0, 1]",
                meaning="the share of training images allowed outside the soft boundary's sphere")
  if "unit_length" in obj and not isinstance(obj.unit_length, bool):
    raise _error("objective.unit_length", obj.unit_length, "a bool (scale each feature vector to unit length)",
                 "set --config.objective.unit_length=True (the paper's networks) or False (its GS baseline)",
                 problem="not valid")
  if "boundary" not in obj:
    return
  from jaxad.methods import hypersphere  # pylint: disable=g-import-not-at-top
  _check_name("objective.boundary", obj.boundary, hypersphere.BOUNDARIES, "boundaries")
  if "warmup_epochs" in obj:
    _check_real("objective.warmup_epochs", obj.warmup_epochs, "[0, inf)",
                meaning="epochs before the soft boundary's radius is first set")
  if "distance" in obj:
    _check_name("objective.distance", obj.distance, hypersphere.DISTANCES, "distances")
  _check_geometry(config)
  train = config.get("train")
  if obj.boundary == "soft" and "warmup_epochs" in obj and train is not None and obj.warmup_epochs >= train.epochs:
    raise _error("objective.warmup_epochs", obj.warmup_epochs,
                 f"< train.epochs={train.epochs} for the soft boundary: the radius is set only once the warm-up is "
                 "over, so a warm-up as long as training leaves it at 0 and silently trains the hard boundary",
                 f"set --config.objective.warmup_epochs below {train.epochs} (Deep SVDD: 10 of 150), or "
                 "--config.objective.boundary='hard'")


def _check_geometry(config: ml_collections.ConfigDict) -> None:
  """The hypersphere methods' patches and rotations (MOCCA on MVTec AD)."""
  from jaxad.methods import hypersphere  # pylint: disable=g-import-not-at-top
  patches, augment = config.get("patches"), config.get("augment")
  if isinstance(patches, ml_collections.ConfigDict):
    _check_int("patches.size", patches.get("size", 0), lo=0, meaning="the patch side; 0 = whole images")
    _check_int("patches.per_image", patches.get("per_image", 1), lo=1,
               meaning="random training crops per image and step")
  if isinstance(augment, ml_collections.ConfigDict) and "rotation" in augment:
    rotation = augment.rotation
    if (not isinstance(rotation, (tuple, list)) or len(rotation) != 2 or not all(map(_is_real, rotation))
        or rotation[0] > rotation[1]):
      raise _error("augment.rotation", rotation, "a (low, high) pair of angles in degrees with low <= high",
                   "set e.g. --config.augment.rotation='(0.0, 45.0)', or '(0.0, 0.0)' for none")
    _check_name("augment.border", augment.get("border", "reflect"), hypersphere.BORDERS, "borders")
  if config.get("method") in ("dsvdd", "mocca", "deep_sad", "mocca_video") and "keep" in config:
    _check_name("keep", config.keep, hypersphere.KEEP, "choices")


def _check_rows_per_batch(config: ml_collections.ConfigDict) -> None:
  """OE images and labelled anomalies take rows of `train.batch_size`: some must be left for the normal images."""
  train = config.get("train")
  if train is None:
    return
  oe = config.get("oe")
  if isinstance(oe, ml_collections.ConfigDict) and "per_batch" in oe:
    _check_int("oe.per_batch", oe.per_batch, lo=0, hi=train.batch_size - 1,
               meaning=f"OE rows of each batch of train.batch_size={train.batch_size}, 0 = no OE")
  obj = config.get("objective")
  if config.get("method") == "deep_sad" and isinstance(obj, ml_collections.ConfigDict):
    _check_int("objective.anomaly_per_batch", obj.get("anomaly_per_batch", 0), lo=1, hi=train.batch_size - 1,
               meaning=f"labelled-anomaly rows of each batch of train.batch_size={train.batch_size}")


def _check_train_limit(config: ml_collections.ConfigDict, phases: list[str]) -> None:
  """`data.train_limit` > 0 must leave at least one batch for each phase that drops its last partial batch."""
  from jaxad.data import FOLDER_DATASETS  # pylint: disable=g-import-not-at-top
  data = config.get("data")
  if data is None or not data.get("train_limit") or data.get("name") in FOLDER_DATASETS:  # folders: no limit
    return
  limit = data.train_limit
  val = int(round(data.get("val_fraction", 0.0) * limit))
  most = limit - val  # the most normal training images the phases can see (fewer when the class is smaller)
  for name in DROPS_REMAINDER.get(config.get("method"), ()):
    if name not in phases or config[name].batch_size <= most:
      continue
    after_val = f" ({most} after data.val_fraction={data.val_fraction})" if val else ""
    raise _error("data.train_limit", limit,
                 f"at least {name}.batch_size={config[name].batch_size} normal training images{after_val}: "
                 f"{name} drops each epoch's last partial batch, so it would train no step",
                 f"raise --config.data.train_limit to {config[name].batch_size} or more (0 = every image), or lower "
                 f"--config.{name}.batch_size")


def _check_finite(node: Any, key: str) -> None:
  """Every float leaf (also inside lists and tuples) is finite."""
  if isinstance(node, (ml_collections.ConfigDict, Mapping)):
    for k, v in node.items():
      _check_finite(v, f"{key}.{k}" if key else str(k))
  elif isinstance(node, (list, tuple)):
    for i, v in enumerate(node):
      _check_finite(v, f"{key}[{i}]")
  elif isinstance(node, (float, np.floating)) and not math.isfinite(node):
    raise _error(key, node, "a finite number (NaN and inf are never a valid hyperparameter)",
                 f"set --config.{key} to a finite number", problem="not valid")


def validate_data(config: ml_collections.ConfigDict, sources) -> None:
  """The checks that need the loaded data, made before the method is built, a workdir created or a step run.

  Raises a `DataError` naming the key and the fix when the normal training set is empty (a class the data does not
  hold) or when a source an anomaly evaluator scores cannot give an AUROC (empty, or only one label: all normal or
  all anomalous). Label ranges, empty splits, constant images and file kinds are checked where files are read
  (`jaxad.data.sources`, `jaxad.data.folder`); batch sizes against the data by `validate_batches`.

  Args:
    config: the run's config (already through `validate`).
    sources: the run's named `Source`s (`jaxad.data.make_sources`).
  """
  from jaxad import evaluate  # pylint: disable=g-import-not-at-top  (jax-free module otherwise)
  from jaxad.errors import DataError  # pylint: disable=g-import-not-at-top

  data = config.data
  where = f"data.name={data.name!r}" + (f", protocol {data.protocol!r}" if data.name not in ("folder", "mvtec") else "")
  if not len(sources["normal"]):
    cls = f" of class {data.normal_class}" if data.protocol in CLASS_PROTOCOLS else ""
    raise DataError(f"No normal training images{cls} ({where}). Fix: set --config.data.normal_class to a class the "
                    "training split holds, or check the file's y_train.")
  for name, e in evaluate.evals_of(config).items():
    if e["kind"] not in ("anomaly", "ocsvm"):
      continue
    src_name = e.get("source", "test")
    if src_name not in sources:
      continue  # run_evals names it
    labels = np.asarray(sources[src_name].field("label"))
    present = sorted(int(v) for v in np.unique(labels))
    if len(present) < 2:
      what = "no images" if not present else ("only normal images (label 0)" if present == [0] else
                                                "only anomalies (label 1)")
      raise DataError(f"evals.{name} scores the {src_name!r} source, which holds {what} ({len(labels)} images; "
                      f"{where}, normal class {data.get('normal_class')}): an AUROC needs both normal images and "
                      "anomalies. Fix: check the test split's labels (y_test) and data.test_limit, or pick another "
                      "normal class.")


def validate_batches(config: ml_collections.ConfigDict, method, sources) -> None:
  """Every training phase of `method` has at least one batch of data (a `ConfigError` naming its batch-size key)."""
  from jaxad.data import pipeline  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import TrainPhase  # pylint: disable=g-import-not-at-top

  phases = training_phases(config)
  for phase in (p for p in method.phases if isinstance(p, TrainPhase)):
    try:
      pipeline.TrainBatches(sources, phase.mix, seed=0, num_epochs=1, drop_remainder=phase.drop_remainder)
    except ConfigError as e:
      key = f"--config.{phase.name}.batch_size" if phase.name in phases else "the phase's batch size"
      raise ConfigError(f"{phase.name}: {str(e).rstrip('.')} ({key}).") from None
