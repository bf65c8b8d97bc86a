"""Anomaly-detection protocols: which images are normal, and the test labels (1 = anomalous).

* `one_vs_rest`: one class is normal, the other classes are anomalies (Ruff et al. 2018; Deecke Table 5).
* `leave_one_out`: the semantic benchmark of Ahmed & Courville (2020) / Deecke Table 2 (TransferAD's `hold_one_out`):
  every class but one is normal, the held-out class is the anomaly. The class argument names the *held-out* class.
* `small_modes`: Deecke et al. 2021 section 5.4: the normal data mixes a primary class with a minor mode of a
  secondary class of relative amplitude r; both are normal at test time. Its keyword arguments (`primary`,
  `secondary`, `r`, `seed`) go beyond the `(arrays, class)` of the two above.
* `ood`: out-of-distribution detection (Jezequel et al. Table 6): every training image is normal, and the test
  set is the dataset's test images (normal) followed by another dataset's images (anomalous, class -1); its keyword
  argument `ood_images` goes beyond `(arrays, class)`, and the class argument is not used.
* `class_sets`: named sets of normal and anomalous classes, with fixed-size samples (Andrews et al. 2016 Table 1:
  MNIST 5 vs 2, odd vs even digits, ...); `data.class_sets` (normal, anomalous, train_size, test_normal,
  test_anomalous) and `data.protocol_seed` (the trial: the training sample's seed; the test sample is fixed).
* `anomaly_vs_rest_sample`: Minhas & Zelek's supervised protocol: the class argument names the *anomaly* class,
  whose training images (label 1) are trained on beside an equal-size seeded sample of the other classes (label 0);
  the test set is the anomaly class's test images + an equal-size sample of the rest (or the whole test split).
* `classification`: not an AD problem but supervised K-way classification on all classes (for pretraining a source
  model, `jaxad.methods.supervised`): `Task.train_labels` holds the train class labels, and `test_labels` and
  `test_classes` both hold the test class labels.
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
  secondary_class: int | None = None  # small_modes: the minor normal mode (see `test_secondary`)
  train_labels: np.ndarray | None = None  # classification: int64 [N_train] class labels; None for AD protocols
  train_classes: np.ndarray | None = None  # the original class of each training image (sub-classes of normal)

  @property
  def test_secondary(self) -> np.ndarray | None:
    """small_modes: bool [N_test], True for the secondary class's test images (normal, label 0); else None.

    Primary AUROC = AUROC over `~test_secondary` (primary vs. anomalies), secondary AUROC over
    `test_secondary | test_labels == 1` (secondary vs. anomalies). Derived from `test_classes`, so it stays aligned
    when the test set is subsampled.
    """
    return None if self.secondary_class is None else self.test_classes == self.secondary_class


def one_vs_rest(arrays: Arrays, normal_class: int) -> Task:
  """Train on the normal class's train images; test on the full test set, label 1 = any other class."""
  if not 0 <= normal_class < arrays.num_classes:
    raise ConfigError(f"normal_class={normal_class} is out of range for a dataset with {arrays.num_classes} classes.")
  keep = arrays.y_train == normal_class
  labels = (arrays.y_test != normal_class).astype(np.int32)
  return Task(arrays.x_train[keep], arrays.x_test, labels, arrays.y_test, train_classes=arrays.y_train[keep])


def leave_one_out(arrays: Arrays, held_out_class: int) -> Task:
  """Train on the train images of every class but `held_out_class`; test on the full test set, label 1 = held out.

  For CIFAR-10 that is 45,000 normal training images and 1,000 anomalies among the 10,000 test images.
  """
  if not 0 <= held_out_class < arrays.num_classes:
    raise ConfigError(f"held-out class {held_out_class} is out of range for a dataset with {arrays.num_classes} "
                      "classes.")
  keep = arrays.y_train != held_out_class
  labels = (arrays.y_test == held_out_class).astype(np.int32)
  return Task(arrays.x_train[keep], arrays.x_test, labels, arrays.y_test, train_classes=arrays.y_train[keep])


def small_modes(arrays: Arrays, primary: int, *, secondary: int | None = None, r: float | None = None,
                seed: int = 0) -> Task:
  """Two normal modes: all of `primary`'s train images plus a minor mode of `secondary` with amplitude `r`.

  Deecke et al. (2021), section 5.4: S_n ~ 1/(r+1) P_primary + r/(r+1) P_secondary, r in [0, 1] (CIFAR-10 ship +
  truck in the paper). jaxad keeps every primary train image (n_a) and a seeded random subset of
  n_b = round(r * n_a) secondary train images, so the secondary share n_b / (n_a + n_b) is r/(r+1) up to rounding
  (r=1: 5,000 + 5,000 on CIFAR-10; r=0: the primary class alone). If the secondary class has fewer than r * n_a
  images, all of them are kept and the primary class is subsampled to round(n_b / r) instead, so the ratio holds.
  The test set is the full test set, label 1 = any class other than primary and secondary; `Task.test_secondary`
  marks the secondary test images for the primary (primary vs. anomalies) and secondary (secondary vs. anomalies)
  AUROCs. Training images keep the dataset's order.

  Args:
    arrays: a labelled dataset.
    primary: the major normal class y_a.
    secondary: the minor normal class y_b (!= primary).
    r: minor-mode amplitude in [0, 1].
    seed: picks the secondary (or primary) subset.

  Returns:
    A `Task` with `secondary_class=secondary`.
  """
  if secondary is None or r is None:  # e.g. called as PROTOCOLS['small_modes'](arrays, normal_class)
    raise ConfigError("Protocol 'small_modes' needs a secondary class and a minor-mode amplitude r in [0, 1]: "
                      "protocols.small_modes(arrays, primary=..., secondary=..., r=..., seed=...).")
  for what, k in (("primary", primary), ("secondary", secondary)):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < arrays.num_classes:
      raise ConfigError(f"small_modes: {what} class {k!r} is out of range for a dataset with {arrays.num_classes} "
                        "classes.")
  if primary == secondary:
    raise ConfigError(f"small_modes: primary and secondary must be different classes, both are {primary}.")
  if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)) or not 0.0 <= r <= 1.0:
    raise ConfigError(f"small_modes: the minor-mode amplitude r must be a number in [0, 1], got {r!r}.")
  idx_a = np.flatnonzero(arrays.y_train == primary)
  idx_b = np.flatnonzero(arrays.y_train == secondary)
  if not len(idx_a) or (r > 0 and not len(idx_b)):
    raise ConfigError(f"small_modes: no training images of class {primary if not len(idx_a) else secondary}.")
  rng = np.random.default_rng(seed)
  n_b = int(round(r * len(idx_a)))
  if n_b > len(idx_b):  # too few secondary images: keep them all and shrink the primary mode instead
    n_b = len(idx_b)
    idx_a = np.sort(rng.choice(idx_a, size=int(round(n_b / r)), replace=False))
  idx_b = np.sort(rng.choice(idx_b, size=n_b, replace=False))
  keep = np.sort(np.concatenate([idx_a, idx_b]))
  labels = ~np.isin(arrays.y_test, (primary, secondary))
  return Task(arrays.x_train[keep], arrays.x_test, labels.astype(np.int32), arrays.y_test,
              secondary_class=int(secondary), train_classes=arrays.y_train[keep])


def ood(arrays: Arrays, normal_class: int | None = None, *, ood_images: np.ndarray | None = None) -> Task:
  """Every training image is normal; test = the test images (label 0) followed by `ood_images` (label 1).

  The normal test images keep their classes; the OOD images get class -1 (no class of this dataset), so
  `num_classes` and per-class breakdowns of the normal data are unchanged. For CIFAR-10 vs. CIFAR-100 test that is
  50,000 normal training images and 20,000 test images, 10,000 anomalous.

  Args:
    arrays: the in-distribution dataset.
    normal_class: not used (every class is normal); accepted so `PROTOCOLS[name](arrays, class)` works.
    ood_images: uint8 [M, H, W, C] images of another dataset, the same [H, W, C] as `arrays`.

  Returns:
    A `Task` with `train_classes` = every training class.

  References:
    Jezequel, Vu, Beaudet & Histace, "Fine-grained anomaly detection via multi-task self-supervision", Table 6.
  """
  del normal_class
  if ood_images is None:
    raise ConfigError("Protocol 'ood' needs the out-of-distribution images: protocols.ood(arrays, "
                      "ood_images=...) (through the config: data.protocol='ood' with data.ood.name / data.ood.split).")
  if ood_images.shape[1:] != arrays.x_test.shape[1:]:
    raise ConfigError(f"ood: the OOD images are {ood_images.shape[1:]} but the dataset's test images "
                      f"{arrays.x_test.shape[1:]}; both must have the same [H, W, C].")
  m = len(ood_images)
  labels = np.concatenate([np.zeros(len(arrays.x_test), np.int32), np.ones(m, np.int32)])
  classes = np.concatenate([np.asarray(arrays.y_test, np.int64), np.full(m, -1, np.int64)])
  return Task(arrays.x_train, np.concatenate([arrays.x_test, ood_images]), labels, classes,
              train_classes=arrays.y_train)


def class_sets(arrays: Arrays, normal_class: int | None = None, *, normal: tuple[int, ...],
               anomalous: tuple[int, ...], train_size: int = 0, test_normal: int = 0, test_anomalous: int = 0,
               trial: int = 0) -> Task:
  """Sets of classes: `normal` classes are normal, `anomalous` ones the anomalies (other classes are left out).

  Andrews et al.'s MNIST tasks (Table 1): e.g. normal (5,) vs anomalous (2,), or the odd digits vs the even ones,
  with 2,048 training images and 512 + 512 test images, repeated for 3 trials "with the test set fixed": the
  training sample is drawn with `trial` as its seed, the test sample always with seed 0.

  Args:
    arrays: the dataset.
    normal_class: not used (the sets name the classes).
    normal, anomalous: disjoint class sets, each non-empty.
    train_size: normal training images drawn from the train split (0 = all of the normal classes').
    test_normal, test_anomalous: test images drawn from the test split's normal / anomalous classes (0 = all).
    trial: seed of the training sample.
  """
  del normal_class
  normal, anomalous = tuple(int(k) for k in normal), tuple(int(k) for k in anomalous)
  if not normal or not anomalous or set(normal) & set(anomalous):
    raise ConfigError(f"class_sets: data.class_sets.normal and .anomalous must be non-empty and disjoint, got {normal} "
                      f"and {anomalous}.")
  bad = [k for k in normal + anomalous if not 0 <= k < arrays.num_classes]
  if bad:
    raise ConfigError(f"class_sets: classes {bad} are out of range for a dataset with {arrays.num_classes} classes.")

  def draw(candidates: np.ndarray, n: int, seed: int, what: str) -> np.ndarray:
    if n > len(candidates):
      raise ConfigError(f"class_sets: {what} asks for {n} images, but the split holds {len(candidates)}.")
    if not n:
      return candidates
    return np.sort(np.random.default_rng(seed).choice(candidates, n, replace=False))

  train = draw(np.flatnonzero(np.isin(arrays.y_train, normal)), train_size, trial, "train_size")
  rng_seed = 0  # the test set is the same in every trial
  test = np.concatenate([draw(np.flatnonzero(np.isin(arrays.y_test, normal)), test_normal, rng_seed, "test_normal"),
                         draw(np.flatnonzero(np.isin(arrays.y_test, anomalous)), test_anomalous, rng_seed + 1,
                              "test_anomalous")])
  labels = np.isin(arrays.y_test[test], anomalous).astype(np.int32)
  return Task(arrays.x_train[train], arrays.x_test[test], labels, arrays.y_test[test],
              train_classes=arrays.y_train[train])


def classification(arrays: Arrays, normal_class: int = 0) -> Task:
  """Every train and test image with its class label, for supervised pretraining; `normal_class` is ignored."""
  del normal_class
  return Task(arrays.x_train, arrays.x_test, arrays.y_test, arrays.y_test, train_labels=arrays.y_train,
              train_classes=arrays.y_train)


# Builders by name, each called as f(arrays, class, **kwargs); small_modes also needs secondary= and r=, ood
# ood_images=.
PROTOCOLS = {"one_vs_rest": one_vs_rest, "leave_one_out": leave_one_out, "small_modes": small_modes,
             "ood": ood, "class_sets": class_sets, "classification": classification}


def get_protocol(name: str):
  if name not in PROTOCOLS:
    raise ConfigError(f"Unknown protocol {name!r}; valid names: {sorted(PROTOCOLS)}.")
  return PROTOCOLS[name]


def anomaly_vs_rest_sample(arrays: Arrays, anomaly_class: int, *, seed: int = 0, test: str = "sample") -> Task:
  """Minhas & Zelek's protocol: one class is the anomaly, an equal-size random sample of the others is normal.

  Supervised, unlike the protocols above: the training set holds both classes, with `Task.train_labels` 1 for the
  anomaly class's train images and 0 for the sampled normal ones (the 'normal' source then carries them as its
  `label`, see `LABELLED_TRAINING`), so a 2-way classifier learns from them. The paper: "the anomaly class consisted
  of one class ... and the normal class was constructed using random sampling from the remaining nine classes with
  size equal to the [anomaly] class", with "5k training samples per class and 1k test samples per class" on
  CIFAR-10 (6k / 1k on MNIST). The sample is drawn from the other classes as a whole, so their counts are uneven.

  Draws (`rng = np.random.default_rng(seed)`, one stream): the training sample, `rng.choice(rest, n_anomaly,
  replace=False)` over the indices of the other classes' train images, then with `test='sample'` the test sample
  the same way over the test split. Both sets keep the dataset's order (sorted indices).

  Args:
    arrays: the dataset.
    anomaly_class: the anomaly class (label 1); every other class is a candidate normal image.
    seed: seeds both samples (`data.protocol_seed`).
    test: 'sample' (the paper's "1k test samples per class": the anomaly class's test images + an equal-size
      sample of the rest) or 'all' (the whole test split, label 1 = the anomaly class, as `leave_one_out`; to
      compare with the unsupervised protocols).

  Returns:
    A `Task` with `train_labels` (int32 0/1) and `train_classes` (the original classes).

  References:
    Minhas, Zelek. Anomaly Detection in Images. arXiv:1905.13147 (2019), section IV-A.
  """
  if isinstance(anomaly_class, bool) or not 0 <= anomaly_class < arrays.num_classes:
    raise ConfigError(f"anomaly_vs_rest_sample: anomaly class {anomaly_class!r} (data.normal_class) is out of range "
                      f"for a dataset with {arrays.num_classes} classes.")
  if test not in ("sample", "all"):
    raise ConfigError(f"anomaly_vs_rest_sample: test={test!r} is not valid: 'sample' (the paper's balanced test set) "
                      "or 'all' (the whole test split).")
  rng = np.random.default_rng(seed)

  def balanced(y: np.ndarray, split: str) -> np.ndarray:
    anomalies, rest = np.flatnonzero(y == anomaly_class), np.flatnonzero(y != anomaly_class)
    if not len(anomalies) or len(rest) < len(anomalies):
      raise ConfigError(f"anomaly_vs_rest_sample: the {split} split holds {len(anomalies)} images of class "
                        f"{anomaly_class} and {len(rest)} of the other classes; it needs at least one anomaly and as "
                        "many other images.")
    return np.sort(np.concatenate([anomalies, rng.choice(rest, len(anomalies), replace=False)]))

  train = balanced(arrays.y_train, "train")
  test_idx = balanced(arrays.y_test, "test") if test == "sample" else np.arange(len(arrays.y_test))
  y_train, y_test = np.asarray(arrays.y_train)[train], np.asarray(arrays.y_test)[test_idx]
  return Task(arrays.x_train[train], arrays.x_test[test_idx], (y_test == anomaly_class).astype(np.int32), y_test,
              train_labels=(y_train == anomaly_class).astype(np.int32), train_classes=y_train)


PROTOCOLS["anomaly_vs_rest_sample"] = anomaly_vs_rest_sample
# Protocols whose training set holds labelled anomalies: `Task.train_labels` are anomaly labels (1 = anomalous), which
# `jaxad.data.make_sources` gives the 'normal' source (and the 'val' share held out of it) as its `label`; other
# protocols' training images are all label 0 ('classification' keeps its class labels in `class`).
LABELLED_TRAINING = ("anomaly_vs_rest_sample",)
