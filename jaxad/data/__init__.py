"""Data: sources (tfds, local npz archives, sklearn digits), protocols, transforms and grain pipelines.

`make_task(config.data)` is the entry point: load -> protocol -> preprocessing, giving float32 NHWC arrays.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from jaxad.data import protocols, sources, transforms
from jaxad.errors import ConfigError

PREPROCESSING = ("gcn_l1_minmax", "unit")


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
  if data.image_size:
    x_train, x_test = transforms.resize(x_train, data.image_size), transforms.resize(x_test, data.image_size)
  return dataclasses.replace(task, x_train=x_train, x_test=x_test)


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
    task = dataclasses.replace(task, x_train=task.x_train[np.sort(rng.permutation(len(task.x_train))[:train_limit])])
  if test_limit and test_limit < len(task.x_test):
    keep = np.sort(rng.permutation(len(task.x_test))[:test_limit])
    task = dataclasses.replace(task, x_test=task.x_test[keep], test_labels=task.test_labels[keep],
                               test_classes=task.test_classes[keep])
  return task
