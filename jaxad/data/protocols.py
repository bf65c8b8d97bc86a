"""Anomaly-detection protocols: which images are normal, and the test labels (1 = anomalous)."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxad.data.sources import Arrays
from jaxad.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Task:
  """One AD problem: normal training images, test images and their labels (1 = anomalous)."""
  x_train: np.ndarray
  x_test: np.ndarray
  test_labels: np.ndarray
  test_classes: np.ndarray  # the original class of each test image, for per-class breakdowns


def one_vs_rest(arrays: Arrays, normal_class: int) -> Task:
  """Train on the normal class's train images; test on the full test set, label 1 = any other class."""
  if not 0 <= normal_class < arrays.num_classes:
    raise ConfigError(f"normal_class={normal_class} is out of range for a dataset with {arrays.num_classes} classes.")
  x_train = arrays.x_train[arrays.y_train == normal_class]
  labels = (arrays.y_test != normal_class).astype(np.int32)
  return Task(x_train, arrays.x_test, labels, arrays.y_test)


PROTOCOLS = {"one_vs_rest": one_vs_rest}


def get_protocol(name: str):
  if name not in PROTOCOLS:
    raise ConfigError(f"Unknown protocol {name!r}; valid names: {sorted(PROTOCOLS)}.")
  return PROTOCOLS[name]
