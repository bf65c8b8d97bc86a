"""Anomaly-detection protocols: which images are normal, and the test labels (1 = anomalous).

* `one_vs_rest`: one class is normal, the other classes are anomalies (Ruff et al. 2018; Deecke Table 5).
* `leave_one_out`: the semantic benchmark of Ahmed & Courville (2020) / Deecke Table 2 (TransferAD's `hold_one_out`):
  every class but one is normal, the held-out class is the anomaly. The class argument names the *held-out* class.
"""

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


def leave_one_out(arrays: Arrays, held_out_class: int) -> Task:
  """Train on the train images of every class but `held_out_class`; test on the full test set, label 1 = held out.

  For CIFAR-10 that is 45,000 normal training images and 1,000 anomalies among the 10,000 test images.
  """
  if not 0 <= held_out_class < arrays.num_classes:
    raise ConfigError(f"held-out class {held_out_class} is out of range for a dataset with {arrays.num_classes} "
                      "classes.")
  x_train = arrays.x_train[arrays.y_train != held_out_class]
  labels = (arrays.y_test == held_out_class).astype(np.int32)
  return Task(x_train, arrays.x_test, labels, arrays.y_test)


PROTOCOLS = {"one_vs_rest": one_vs_rest, "leave_one_out": leave_one_out}


def get_protocol(name: str):
  if name not in PROTOCOLS:
    raise ConfigError(f"Unknown protocol {name!r}; valid names: {sorted(PROTOCOLS)}.")
  return PROTOCOLS[name]
