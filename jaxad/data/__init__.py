"""Data: sources (tfds, local npz archives, sklearn digits), protocols, transforms and grain pipelines.

`make_task(config.data)` is the entry point: load -> protocol -> preprocessing, giving float32 NHWC arrays.
`make_oe(config.oe, config.data)` loads an outlier-exposure set (e.g. CIFAR-100 train for CIFAR-10) with the same
preprocessing as the normal data; `jaxad.data.oe` mixes it into the training batches.

Preprocessing (`data.preprocess`): 'gcn_l1_minmax' (Deep SVDD / MOCCA), 'standardize' (TransferAD: [0, 1], then
the per-channel mean/std of `transforms.STANDARDIZE_STATS[data.standardize_stats or data.name]`) or 'unit' ([0, 1]
only). Protocol 'classification' (source-model pretraining) also returns the train class labels (`Task.train_labels`).
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from jaxad.data import protocols, sources, transforms
from jaxad.errors import ConfigError

PREPROCESSING = ("gcn_l1_minmax", "standardize", "unit")


def default_config(**overrides) -> ml_collections.ConfigDict:
  """Every `config.data` key `make_task` reads; methods' base configs override the defaults they need."""
  c = ml_collections.ConfigDict(dict(
      name="cifar10", source="auto", data_dir="", protocol="one_vs_rest", normal_class=0,
      normal_classes=(),  # several classes -> one run per class and a results table (see jaxad.train)
      preprocess="gcn_l1_minmax", minmax="published", image_size=0,
      standardize_stats="",  # a key of transforms.STANDARDIZE_STATS; '' = the dataset's own name
      train_limit=0, test_limit=0))  # > 0: a fixed random subset (seed 0) for quick runs
  c.update(overrides)
  return c


def make_task(data: ml_collections.ConfigDict) -> protocols.Task:
  """Loads `data.name`, applies `data.protocol` and the preprocessing; images come back float32 [N, H, W, C]."""
  if data.preprocess not in PREPROCESSING:
    raise ConfigError(f"data.preprocess must be one of {PREPROCESSING}, got {data.preprocess!r}.")
  arrays = sources.load(data.name, source=data.source, data_dir=data.data_dir or None)
  task = protocols.get_protocol(data.protocol)(arrays, data.normal_class)
  task = _subsample(task, data.train_limit, data.test_limit)
  x_train, x_test = transforms.to_unit(task.x_train), transforms.to_unit(task.x_test)
  if data.preprocess == "gcn_l1_minmax":
    x_train, x_test = transforms.gcn_l1(x_train), transforms.gcn_l1(x_test)
    lo, hi = _minmax(data, x_train)
    x_train, x_test = transforms.minmax_scale(x_train, lo, hi), transforms.minmax_scale(x_test, lo, hi)
  elif data.preprocess == "standardize":
    mean, std = standardize_stats(data)
    x_train, x_test = transforms.standardize(x_train, mean, std), transforms.standardize(x_test, mean, std)
  if data.image_size:
    x_train, x_test = transforms.resize(x_train, data.image_size), transforms.resize(x_test, data.image_size)
  return dataclasses.replace(task, x_train=x_train, x_test=x_test)


def make_oe(oe: ml_collections.ConfigDict, data: ml_collections.ConfigDict) -> np.ndarray:
  """The outlier-exposure images `oe.name` (any split `oe.split`, all classes), preprocessed like the normal data.

  `oe.limit` > 0 keeps a fixed random subset (seed 0) for quick runs. Standardisation uses the *normal* dataset's
  constants (TransferAD normalises its CIFAR-100 OE with the CIFAR-10 mean/std), so both live on one scale.

  Returns:
    float32 [N_oe, H, W, C] images with the normal data's shape.
  """
  if data.preprocess not in ("standardize", "unit"):
    raise ConfigError(f"Outlier exposure supports data.preprocess 'standardize' or 'unit', got {data.preprocess!r} "
                      "(its per-class min-max has no meaning for OE images).")
  if oe.name == data.name:
    raise ConfigError(f"oe.name={oe.name!r} is the normal dataset itself: its images include the test anomalies.")
  # Any split of the OE dataset: CIFAR-100 'train', STL-10 'unlabelled', SVHN 'extra', ...
  x, _ = sources.load_split(oe.name, oe.split, source=oe.source, data_dir=oe.data_dir or data.data_dir or None)
  if oe.limit and oe.limit < len(x):
    x = x[np.sort(np.random.default_rng(0).permutation(len(x))[:oe.limit])]
  x = transforms.to_unit(x)
  if data.preprocess == "standardize":
    x = transforms.standardize(x, *standardize_stats(data))
  if data.image_size:
    x = transforms.resize(x, data.image_size)
  return x


def standardize_stats(data: ml_collections.ConfigDict):
  """(mean, std) for `data.preprocess='standardize'`: `STANDARDIZE_STATS[data.standardize_stats or data.name]`."""
  name = data.get("standardize_stats") or data.name
  if name not in transforms.STANDARDIZE_STATS:
    raise ConfigError(f"data.preprocess='standardize' has mean/std constants only for "
                      f"{sorted(transforms.STANDARDIZE_STATS)}, not {name!r}; use 'unit'.")
  return transforms.STANDARDIZE_STATS[name]


def _minmax(data, x_train_gcn):
  """The published per-class table when asked for (and available), else the min/max of the normal train images."""
  if data.minmax == "published":
    table = transforms.PUBLISHED_MINMAX.get(data.name)
    if table is None or data.protocol != "one_vs_rest":
      raise ConfigError(f"No published min-max table for {data.name!r} / {data.protocol!r}; set "
                        "data.minmax='computed'.")
    return transforms.PUBLISHED_MINMAX[data.name][data.normal_class]
  if data.minmax == "computed":
    return transforms.minmax_of(x_train_gcn)
  raise ConfigError(f"data.minmax must be 'published' or 'computed', got {data.minmax!r}.")


def _subsample(task: protocols.Task, train_limit: int, test_limit: int) -> protocols.Task:
  """A fixed random subset (seed 0, independent of the run's seed) for quick runs; 0 keeps everything."""
  rng = np.random.default_rng(0)
  if train_limit and train_limit < len(task.x_train):
    keep = np.sort(rng.permutation(len(task.x_train))[:train_limit])
    task = dataclasses.replace(task, x_train=task.x_train[keep],
                               train_labels=None if task.train_labels is None else task.train_labels[keep])
  if test_limit and test_limit < len(task.x_test):
    keep = np.sort(rng.permutation(len(task.x_test))[:test_limit])
    task = dataclasses.replace(task, x_test=task.x_test[keep], test_labels=task.test_labels[keep],
                               test_classes=task.test_classes[keep])
  return task


def black_pixel(data: ml_collections.ConfigDict, channels: int) -> np.ndarray | float:
  """A black pixel after `data.preprocess`: what RandomCrop's zero padding becomes once images are normalised."""
  if data.preprocess != "standardize":
    return 0.0
  black = np.zeros((1, 1, 1, channels), np.float32)
  return transforms.standardize(black, *standardize_stats(data))[0, 0, 0]
