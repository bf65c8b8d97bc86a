"""Data: datasets by name, protocols, and the named sources a run reads.

`make_sources(config, names)` is the entry point: it loads `config.data.name` through the `DATASETS` registry, applies
`config.data.protocol` and returns named `Source`s ('normal', 'test', and on request 'oe', 'reference', 'val'),
each uint8 examples plus the `Preprocess` that turns a batch of them into network inputs.

Preprocessing (`data.preprocess`): 'gcn_l1_minmax' (Deep SVDD / MOCCA), 'standardize' (TransferAD: [0, 1], then the
per-channel mean/std of `transforms.STANDARDIZE_STATS[data.standardize_stats or data.name]`; MPI3D, which has no
constants of its own, uses ImageNet's, the statistics its ImageNet source nets were trained with) or 'unit' ([0, 1]
only). Protocol 'classification' (source-model pretraining) gives every training image with its class.

Datasets with a config sub-dict of their own:

* `data.name='mpi3d'` (Deecke et al. 2021 section 5.1, `jaxad.data.mpi3d`): `data.mpi3d.protocol` 'interventions'
  (anomaly `data.mpi3d.anomaly`: 'color', 'shape' or 'size') or 'color_shift' (trial `data.mpi3d.trial`: the first
  k+1 colours of `mpi3d.COLOR_ORDER` are normal); `data.protocol_seed` picks the held-out test views. The images
  come from `data.mpi3d.path` (default `<data.data_dir or $JAXAD_DATA_DIR>/mpi3d_real.npz`, memory-mapped);
  `data.protocol` and `data.normal_class` are not used. Its OE is the protocol's own: `oe.name='mpi3d'`.
* `data.name='folder'`: a user's images (`data.folder.normal_dir` for training; `data.folder.test_dir` with one
  sub-folder per class, 'good' = normal), and `data.name='mvtec'`: MVTec AD's own layout (`data.folder.root`,
  `data.folder.category`); images of any size are resized to `data.folder.size` (`jaxad.data.folder`).

Deecke et al. 2021's small-modes protocol: `data.protocol='small_modes'` (section 5.4): `data.normal_class` is the
primary class, `data.secondary_class` the minor normal mode, `data.minor_mode_r` its amplitude r in [0, 1];
`data.protocol_seed` picks the secondary subset. The test source then marks the secondary images (`secondary`).

Jezequel et al.'s out-of-distribution protocol: `data.protocol='ood'` (their Table 6): every training image of
`data.name` is normal (CIFAR-10: all 50,000), the test set is `data.name`'s test images (label 0, their class)
followed by the split `data.ood.split` of the dataset `data.ood.name` (label 1, class -1: no class of `data.name`),
e.g. CIFAR-10 vs. SVHN or CIFAR-100 test. `data.normal_class` is not used; `data.test_limit` subsamples the combined
test set; `data.ood.limit` > 0 first keeps a fixed random subset (seed 0) of the OOD split.

Jezequel et al. train Deep SAD with labelled anomalies of a share of the anomaly sub-classes (10%, 25%, 75%):
`data.anomaly.class_fraction` > 0 keeps that share of the 'anomaly' source's candidate classes (`anomaly_classes`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterable

import ml_collections
import numpy as np

from jaxad.data import mpi3d, protocols, sources, transforms
from jaxad.data.examples import ArrayExamples, Source, Sources
from jaxad.data.transforms import PREPROCESSING, Preprocess
from jaxad.errors import ConfigError, DataError

MPI3D_PROTOCOLS = ("interventions", "color_shift")
# `data.preprocess='standardize'` constants of datasets that have none of their own (`data.standardize_stats` wins).
DEFAULT_STANDARDIZE_STATS = {"mpi3d": "imagenet64"}
# Datasets whose images and splits come from files on disk rather than labelled arrays.
VIDEO_DATASETS = ("shanghaitech", "video")  # clips of frame folders (jaxad.data.video)
# Datasets read from folders that already split into a normal training set and a labelled test set.
FOLDER_DATASETS = ("folder", "mvtec", *VIDEO_DATASETS)


def default_config(**overrides) -> ml_collections.ConfigDict:
  """Every `config.data` key `make_sources` reads; methods' base configs override the defaults they need."""
  c = ml_collections.ConfigDict(dict(
      name="cifar10", source="auto", data_dir="", protocol="one_vs_rest", normal_class=0,
      normal_classes=(),  # several classes -> one run per class and a results table (see jaxad.train)
      label_mode="fine",  # cifar100: 'fine' (100 classes) or 'coarse' (the 20 super-classes)
      preprocess="gcn_l1_minmax", minmax="published", image_size=0,
      standardize_stats="",  # a key of transforms.STANDARDIZE_STATS; '' = the dataset's own name
      train_limit=0, test_limit=0,  # > 0: a fixed random subset (seed 0) for quick runs
      val_fraction=0.0,  # > 0: hold out this share of the normal training images as the 'val' source
      protocol_seed=0,  # the protocol's own random choices: small_modes' secondary subset, MPI3D's test views
      # protocol='small_modes' (Deecke section 5.4): normal_class is the primary class; both must be set.
      secondary_class=-1,  # the minor normal mode y_b
      minor_mode_r=-1.0,  # its amplitude r in [0, 1]: round(r * n_primary) secondary training images
      mpi3d=dict(  # name='mpi3d' (Deecke section 5.1, jaxad.data.mpi3d)
          protocol="interventions",  # or 'color_shift'
          anomaly="color",  # interventions: 'color' (red -> blue), 'shape' (cone -> cube), 'size' (small -> large)
          trial=0,  # color_shift: trial k has the first k+1 colours of mpi3d.COLOR_ORDER as normal (0..5)
          test_fraction=0.2,  # share of the views held out for testing
          path="",  # '' = <data_dir or $JAXAD_DATA_DIR>/mpi3d_real.npz
          sizes=mpi3d.FACTOR_SIZES),  # factor sizes of the array (the real ones; tests use smaller grids)
      folder=dict(  # name='folder' (normal_dir + test_dir) or 'mvtec' (root + category), jaxad.data.folder
          normal_dir="", test_dir="", root="", category="", size=(0, 0), channels=3),
      # name='shanghaitech' (root) or 'video' (train_dir + test_dir + labels_dir): clips of `clip_len` frames resized
      # to `size`, sliding by `train_stride` / `test_stride`, background removed by `background` (jaxad.data.video).
      video=dict(root="", train_dir="", test_dir="", labels_dir="", size=(256, 512), clip_len=16, train_stride=1,
                 test_stride=1, channels=3, background="mog_image", cache_dir="", limit_videos=0),
      # protocol='ood' (Jezequel et al. Table 6): the anomalies of the test set are this dataset's split `split`
      # (label 1, class -1), from `source` / `data_dir` ('' = data.data_dir); limit > 0: a fixed subset (seed 0).
      ood=dict(name="svhn", split="test", source="auto", data_dir="", limit=0),
      # The 'anomaly' source (labelled anomalies for semi-supervised methods): training images of these classes
      # (default: every class the protocol labels anomalous), a fixed random `limit` of them (0 = all).
      # class_fraction > 0 (Jezequel et al.'s Deep SAD: 0.1, 0.25, 0.75): only round(fraction * n) (at least 1) of
      # those classes, drawn with data.protocol_seed (`anomaly_classes`).
      anomaly=dict(classes=(), limit=0, class_fraction=0.0),
      # protocol 'class_sets' (Andrews et al. Table 1): normal / anomalous class sets and the sample sizes (0 = all);
      # data.protocol_seed is the trial (the training sample's seed).
      class_sets=dict(normal=(), anomalous=(), train_size=0, test_normal=0, test_anomalous=0)))
  c.update(overrides)
  return c


def _array_dataset(name: str):
  def build(data: ml_collections.ConfigDict) -> dict[str, ArrayExamples]:
    arrays = sources.load(name, source=data.source, data_dir=data.data_dir or None,
                          label_mode=data.get("label_mode", "fine"))
    return {"train": ArrayExamples(**{"image": arrays.x_train, "class": arrays.y_train}),
            "test": ArrayExamples(**{"image": arrays.x_test, "class": arrays.y_test})}
  return build


def _folder_dataset(data: ml_collections.ConfigDict):
  from jaxad.data import folder  # pylint: disable=g-import-not-at-top  (PIL only where it is used)

  f = data.folder
  size = tuple(int(v) for v in f.size)
  if len(size) != 2 or min(size) <= 0:
    raise ConfigError(f"data.folder.size must be (height, width) > 0 for data.name={data.name!r}, got {f.size}.")
  if data.name == "mvtec":
    if not f.root or not f.category:
      raise ConfigError("data.name='mvtec' needs data.folder.root (the folder holding the category folders) and "
                        "data.folder.category (e.g. 'carpet').")
    return folder.mvtec_splits(f.root, f.category, size=size, channels=f.channels)
  if not f.normal_dir or not f.test_dir:
    raise ConfigError("data.name='folder' needs data.folder.normal_dir (normal training images) and "
                      "data.folder.test_dir (one sub-folder per class; 'good' = normal).")
  return folder.folder_splits(f.normal_dir, f.test_dir, size=size, channels=f.channels)


def _video_dataset(data: ml_collections.ConfigDict):
  from jaxad.data import video  # pylint: disable=g-import-not-at-top  (PIL only where it is used)

  v = data.video
  kwargs = dict(size=tuple(int(s) for s in v.size), clip_len=v.clip_len, train_stride=v.train_stride,
                test_stride=v.test_stride, channels=v.channels, background=v.background,
                cache_dir=v.cache_dir or None, limit_videos=v.limit_videos)
  if data.name == "shanghaitech":
    if not v.root:
      raise ConfigError("data.name='shanghaitech' needs data.video.root (the folder holding training/ and "
                        "testing/).")
    return video.shanghaitech_splits(v.root, **kwargs)
  if not (v.train_dir and v.test_dir and v.labels_dir):
    raise ConfigError("data.name='video' needs data.video.train_dir (normal videos as frame folders), "
                      "data.video.test_dir and data.video.labels_dir (one <video>.npy of per-frame labels each).")
  return video.video_splits(v.train_dir, v.test_dir, v.labels_dir, **kwargs)


def _mpi3d_dataset(data: ml_collections.ConfigDict) -> dict[str, ArrayExamples]:
  """MPI3D's protocol splits (`data.mpi3d`): 'train' (normal, class -1), 'test' (label, class = the factor value)."""
  task = _mpi3d_task(data)
  return {"train": ArrayExamples(image=task.x_train, **{"class": np.full(len(task.x_train), -1)}),
          "test": ArrayExamples(image=task.x_test, label=task.test_labels, **{"class": task.test_classes})}


# Dataset builders by name: `DATASETS[name](config.data) -> {split: examples}`, each split a grain random-access
# source of example dicts (`image` uint8 [H, W, C], `class`; folder datasets also `label`, `path` and `mask`).
# Array datasets give their train/test splits for a protocol to select from; mpi3d, folder and mvtec give splits
# that already are a normal set and a labelled test set.
DATASETS = {name: _array_dataset(name) for name in sources.DATASETS}
DATASETS.update({name: _folder_dataset for name in ("folder", "mvtec")})
DATASETS.update({name: _video_dataset for name in VIDEO_DATASETS})
DATASETS["mpi3d"] = _mpi3d_dataset


def get_dataset(name: str):
  if name not in DATASETS:
    raise ConfigError(f"Unknown dataset {name!r}; valid names: {sorted(DATASETS)}.")
  return DATASETS[name]


def make_task(data: ml_collections.ConfigDict, splits: dict | None = None) -> protocols.Task:
  """Loads `data.name` (unless its `splits` are given) and applies `data.protocol` and the limits.

  Images stay uint8 [N, H, W, C].
  """
  if data.name == "mpi3d":  # its protocol picks the images before any is read
    return _mpi3d_task(data)
  splits = splits or get_dataset(data.name)(data)
  train, test = (splits[k].arrays for k in ("train", "test"))
  arrays = sources.Arrays(train["image"], train["class"], test["image"], test["class"])
  task = protocols.get_protocol(data.protocol)(arrays, data.normal_class, **_protocol_kwargs(data, arrays))
  return _subsample(task, data.train_limit, data.test_limit)


def make_preprocess(data: ml_collections.ConfigDict, normal_images=None) -> Preprocess:
  """The `Preprocess` of `data.preprocess`; 'gcn_l1_minmax' with data.minmax='computed' needs the normal images."""
  if data.preprocess not in PREPROCESSING:
    raise ConfigError(f"data.preprocess must be one of {PREPROCESSING}, got {data.preprocess!r}.")
  size = int(data.image_size or 0)
  if data.preprocess == "standardize":
    mean, std = standardize_stats(data)
    return Preprocess("standardize", mean=tuple(map(float, mean)), std=tuple(map(float, std)), size=size)
  if data.preprocess in ("unit", "signed"):
    return Preprocess(data.preprocess, size=size)
  lo, hi = _minmax(data, normal_images)
  return Preprocess("gcn_l1_minmax", lo=float(lo), hi=float(hi), size=size)


def make_sources(config: ml_collections.ConfigDict, names: Iterable[str] = ()) -> dict[str, Source]:
  """The run's named sources: always 'normal' and 'test'; also each of `names` ('oe', 'reference', 'anomaly', 'val').

  'normal' holds the normal training images (label 0; with protocol 'classification' every training image with its
  class; with a supervised protocol of `protocols.LABELLED_TRAINING` both classes with their 0/1 labels), 'test' the
  test images with their labels (1 = anomalous) and classes. 'val' is a fixed share `data.val_fraction` of the normal
  training images, held out of 'normal'. 'anomaly' holds labelled anomalies from
  the training split (`make_anomaly_source`). 'oe' is `config.oe` and 'reference' `config.reference` (both label 1,
  the OE position in a batch).
  """
  data = config.data
  names = set(names)
  if data.name in FOLDER_DATASETS:
    splits = get_dataset(data.name)(data)
    normal_ex, test_ex = splits["train"], splits["test"]
    preprocess = make_preprocess(data, _all_images(normal_ex) if _needs_minmax(data) else None)
    num_classes = max(len(getattr(test_ex, "class_names", ())), len(getattr(normal_ex, "class_names", ())), 2)
    normal = Source(normal_ex, preprocess, num_classes)
    test = Source(test_ex, preprocess, num_classes)
  else:
    splits = None if data.name == "mpi3d" else get_dataset(data.name)(data)
    task = make_task(data, splits)
    preprocess = make_preprocess(data, task.x_train if _needs_minmax(data) else None)
    classes = task.train_classes if task.train_classes is not None else np.full(len(task.x_train), -1)
    num_classes = int(max(np.max(task.test_classes, initial=0), np.max(classes, initial=0))) + 1
    # Supervised AD protocols (Minhas & Zelek) train on labelled anomalies too: their labels ride in 'normal'.
    labelled = data.protocol in protocols.LABELLED_TRAINING and task.train_labels is not None
    train_labels = task.train_labels if labelled else np.zeros(len(task.x_train), np.int32)
    normal = Source(ArrayExamples(image=task.x_train, label=np.asarray(train_labels, np.int32),
                                  **{"class": classes.astype(np.int32)}), preprocess, num_classes)
    extra = {} if task.test_secondary is None else {"secondary": task.test_secondary}
    test = Source(ArrayExamples(image=task.x_test, label=np.asarray(task.test_labels, np.int32),
                                **{"class": np.asarray(task.test_classes, np.int32)}, **extra), preprocess, num_classes)
  out = {"normal": normal, "test": test}
  if "val" in names or data.get("val_fraction", 0.0) > 0:
    out["normal"], out["val"] = _hold_out(normal, data.get("val_fraction", 0.0))
  if "anomaly" in names:
    if data.name in FOLDER_DATASETS or data.name == "mpi3d":
      raise ConfigError(f"The 'anomaly' source (labelled anomalies) needs a labelled array dataset; "
                        f"data.name={data.name!r} has none.")
    out["anomaly"] = make_anomaly_source(data, splits, task, preprocess)
  if "oe" in names:
    out["oe"] = make_oe_source(config.oe, data, preprocess)
  if "reference" in names:
    out["reference"] = make_reference(config.reference, data, normal.shape)
  return out


def _needs_minmax(data) -> bool:
  return data.preprocess == "gcn_l1_minmax" and data.minmax == "computed"


def _all_images(examples) -> np.ndarray:
  return examples.take(np.arange(len(examples)))["image"]


def _hold_out(normal: Source, fraction: float) -> tuple[Source, Source]:
  """Splits a fixed random share (seed 0) of the normal source off as 'val' (normal images, label 0)."""
  if not 0.0 < fraction < 1.0:
    raise ConfigError(f"data.val_fraction must be in (0, 1) to hold out a 'val' source, got {fraction}.")
  n = len(normal)
  n_val = int(round(fraction * n))
  if not 0 < n_val < n:
    raise ConfigError(f"data.val_fraction={fraction} of {n} normal images leaves no 'val' or no training images.")
  perm = np.random.default_rng(0).permutation(n)
  val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
  return normal.subset(train_idx), normal.subset(val_idx)


def make_anomaly_source(data: ml_collections.ConfigDict, splits, task: protocols.Task,
                        preprocess: Preprocess) -> Source:
  """The 'anomaly' source: labelled anomalies (label 1) from the *training* split, never from the test images.

  Classes: `anomaly_classes(data, task)`: `data.anomaly.classes`, by default every class the protocol labels
  anomalous in the test set (one-vs-rest: all but the normal class; leave-one-out: the held-out class), of which
  `data.anomaly.class_fraction` > 0 keeps a seeded share; every training image of those classes, of which
  `data.anomaly.limit` > 0 keeps a fixed random subset (seed 0), e.g. the few labelled anomalies of Deep SAD.
  """
  train = splits["train"].arrays
  classes = anomaly_classes(data, task)
  idx = np.flatnonzero(np.isin(train["class"], classes))
  keep = fixed_subset(len(idx), data.anomaly.limit)
  idx = idx if keep is None else idx[keep]
  if not len(idx):
    raise ConfigError(f"The 'anomaly' source is empty: no training images of classes {sorted(classes)}.")
  return Source(ArrayExamples(image=train["image"][idx], label=np.ones(len(idx), np.int32),
                              **{"class": np.asarray(train["class"][idx], np.int32)}), preprocess)


def make_ood_images(data: ml_collections.ConfigDict, shape: tuple[int, ...]) -> np.ndarray:
  """The anomalies of `data.protocol='ood'`: split `data.ood.split` of `data.ood.name`, uint8 [N, H, W, C].

  Args:
    data: the data config; reads `data.ood` (name, split, source, data_dir, limit) and `data.name`.
    shape: the normal images' [H, W, C]; the OOD images must have it (no resize here: a silent resize would make the
      anomalies detectable by their interpolation alone).

  References:
    Jezequel, Vu, Beaudet & Histace, "Fine-grained anomaly detection via multi-task self-supervision", Table 6
    (CIFAR-10 vs. SVHN / CIFAR-100).
  """
  ood = data.ood
  if ood.name == data.name:
    raise ConfigError(f"data.ood.name={ood.name!r} is data.name itself: with protocol 'ood' the anomalies must come "
                      "from another dataset (e.g. data.ood.name='svhn' or 'cifar100').")
  x, _ = sources.load_split(ood.name, ood.split, source=ood.source, data_dir=ood.data_dir or data.data_dir or None)
  if x.shape[1:] != tuple(shape):
    raise ConfigError(f"data.ood.name={ood.name!r} has images of shape {x.shape[1:]} but data.name={data.name!r} of "
                      f"{tuple(shape)}; protocol 'ood' needs both the same (pick an OOD dataset of the same size).")
  keep = fixed_subset(len(x), ood.limit)
  return x if keep is None else x[keep]


def anomaly_classes(data: ml_collections.ConfigDict, task: protocols.Task) -> tuple[int, ...]:
  """The classes of the 'anomaly' source, sorted.

  The candidates are `data.anomaly.classes`, by default every class of `data.name` the protocol labels anomalous in
  the test set. With `data.anomaly.class_fraction` f in (0, 1], k = max(1, round(f * n_candidates)) of them are kept
  (Python's round: half to even), drawn as `np.random.default_rng(data.protocol_seed).choice(sorted candidates, k,
  replace=False)`; the choice is logged. On CIFAR-10 one-vs-rest (9 candidates) f = 0.1, 0.25, 0.75 keep 1, 2, 7.

  References:
    Jezequel, Vu, Beaudet & Histace, "Fine-grained anomaly detection via multi-task self-supervision", Table 2:
    Deep SAD trained with labelled anomalies of 10%, 25% and 75% of the anomaly sub-classes.
  """
  # Class -1 marks images of no class of data.name (protocol 'ood''s anomalies): never a training class.
  tested = np.unique(task.test_classes[(task.test_labels == 1) & (task.test_classes >= 0)])
  candidates = sorted({int(k) for k in (tuple(data.anomaly.classes) or tested)})
  if not candidates:
    raise ConfigError(f"The 'anomaly' source has no classes: protocol {data.protocol!r} labels no class of "
                      f"{data.name!r} anomalous; set data.anomaly.classes or use a protocol with anomalous classes.")
  normal = set(np.unique(task.train_classes).tolist()) if task.train_classes is not None else set()
  if set(candidates) & normal:
    raise ConfigError(f"data.anomaly.classes {candidates} overlap the normal classes {sorted(normal)}.")
  fraction = data.anomaly.get("class_fraction", 0.0)
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
    raise ConfigError(f"data.anomaly.class_fraction must be a number in [0, 1] (0 = every candidate class; e.g. "
                      f"0.25 for a quarter of the anomaly classes), got {fraction!r}.")
  if not fraction:
    return tuple(candidates)
  k = max(1, int(round(fraction * len(candidates))))
  rng = np.random.default_rng(int(data.get("protocol_seed", 0)))
  chosen = tuple(sorted(int(c) for c in rng.choice(candidates, size=k, replace=False)))
  logging.info("data.anomaly.class_fraction=%s with data.protocol_seed=%s: labelled anomalies of classes %s (%d of "
               "%s)", fraction, data.get("protocol_seed", 0), list(chosen), k, candidates)
  return chosen


def make_oe(oe: ml_collections.ConfigDict, data: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """The outlier-exposure images `oe.name` (any split `oe.split`, all classes) as uint8, with their classes.

  `oe.limit` > 0 keeps a fixed random subset (seed 0) for quick runs. `oe.name='mpi3d'` (with `data.name='mpi3d'`)
  is the MPI3D protocol's own OE set (`mpi3d.Selection.oe`: the other objects, see `jaxad.data.mpi3d`), read from
  the same file as the normal data.

  Returns:
    uint8 [N_oe, H, W, C] images and int [N_oe] classes (-1 where the split has no labels).
  """
  if data.preprocess not in ("standardize", "unit"):
    raise ConfigError(f"Outlier exposure supports data.preprocess 'standardize' or 'unit', got {data.preprocess!r} "
                      "(its per-class min-max has no meaning for OE images).")
  if oe.name == "mpi3d":
    if data.name != "mpi3d":
      raise ConfigError(f"oe.name='mpi3d' is the OE set of the MPI3D protocols; it needs data.name='mpi3d', got "
                        f"{data.name!r}.")
    x = _mpi3d_selection(data).oe_images(_mpi3d_images(data), limit=oe.limit, seed=0)
    return x, np.full(len(x), -1, np.int64)
  if oe.name == data.name and oe.split in ("train", "test"):  # STL-10's 'unlabelled' split is another corpus
    raise ConfigError(f"oe.name={oe.name!r} split {oe.split!r} is the normal dataset itself: its images include the "
                      "test anomalies.")
  x, y = sources.load_split(oe.name, oe.split, source=oe.source, data_dir=oe.data_dir or data.data_dir or None)
  keep = fixed_subset(len(x), oe.limit)
  if keep is not None:
    x, y = x[keep], (None if y is None else y[keep])
  return x, (np.full(len(x), -1, np.int64) if y is None else y)


def make_oe_source(oe: ml_collections.ConfigDict, data: ml_collections.ConfigDict, preprocess: Preprocess) -> Source:
  """The 'oe' source: OE images preprocessed like the normal data, label 1.

  Standardisation uses the *normal* dataset's constants (TransferAD normalises its CIFAR-100 OE with the CIFAR-10
  mean/std), so both live on one scale.
  """
  x, y = make_oe(oe, data)
  return Source(ArrayExamples(image=x, label=np.ones(len(x), np.int32), **{"class": y.astype(np.int32)}), preprocess)


def make_reference(reference: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
                   shape: tuple[int, ...]) -> Source:
  """Labelled source-domain images (EWC's Fisher, DOC's descriptiveness loss) as the 'reference' source.

  Images are preprocessed as the source model was trained: [0, 1], then the per-channel mean/std
  `STANDARDIZE_STATS[reference.standardize_stats or reference.name]`, resized to the normal images' size.
  `reference.limit` > 0 keeps a fixed random subset (seed 0). Label 1 (they take the OE rows of a batch); `class`
  is the source task's class.
  """
  x, y = sources.load_split(reference.name, reference.split, source=reference.source,
                            data_dir=reference.data_dir or data.data_dir or None)
  if y is None:
    raise ConfigError(f"reference {reference.name!r} split {reference.split!r} has no labels; EWC and DOC need the "
                      "source task's labels.")
  keep = fixed_subset(len(x), reference.limit)
  if keep is not None:
    x, y = x[keep], y[keep]
  stats = reference.standardize_stats or reference.name
  if stats not in transforms.STANDARDIZE_STATS:
    raise ConfigError(f"reference.standardize_stats: no mean/std for {stats!r}; valid: "
                      f"{sorted(transforms.STANDARDIZE_STATS)}.")
  mean, std = transforms.STANDARDIZE_STATS[stats]
  size = shape[0] if x.shape[1:3] != tuple(shape[:2]) else 0
  preprocess = Preprocess("standardize", mean=tuple(map(float, mean)), std=tuple(map(float, std)), size=size)
  num_classes = int(y.max()) + 1 if len(y) else 0
  return Source(ArrayExamples(image=x, label=np.ones(len(x), np.int32), **{"class": y.astype(np.int32)}),
                preprocess, num_classes)


def standardize_stats(data: ml_collections.ConfigDict):
  """(mean, std) for `data.preprocess='standardize'`: `STANDARDIZE_STATS[data.standardize_stats or data.name]`.

  A dataset without constants of its own falls back to `DEFAULT_STANDARDIZE_STATS` (MPI3D: ImageNet's).
  """
  name = data.get("standardize_stats") or DEFAULT_STANDARDIZE_STATS.get(data.name, data.name)
  if name not in transforms.STANDARDIZE_STATS:
    raise ConfigError(f"data.preprocess='standardize' has mean/std constants only for "
                      f"{sorted(transforms.STANDARDIZE_STATS)}, not {name!r}; use 'unit'.")
  return transforms.STANDARDIZE_STATS[name]


def _protocol_kwargs(data: ml_collections.ConfigDict, arrays: sources.Arrays) -> dict:
  """The keyword arguments of `data.protocol` beyond `(arrays, class)`: small_modes' secondary class, r and seed;
  ood's images (`data.ood`)."""
  if data.protocol == "ood":
    return dict(ood_images=make_ood_images(data, arrays.x_test.shape[1:]))
  if data.protocol == "class_sets":
    sets = data.get("class_sets") or {}
    return dict(normal=tuple(sets.get("normal", ())), anomalous=tuple(sets.get("anomalous", ())),
                train_size=int(sets.get("train_size", 0)), test_normal=int(sets.get("test_normal", 0)),
                test_anomalous=int(sets.get("test_anomalous", 0)), trial=int(data.get("protocol_seed", 0)))
  if data.protocol == "anomaly_vs_rest_sample":  # Minhas & Zelek: data.normal_class is the anomaly class
    sample = data.get("anomaly_vs_rest") or {}
    return dict(seed=int(data.get("protocol_seed", 0)), test=sample.get("test", "sample"))
  if data.protocol != "small_modes":
    return {}
  secondary, r = data.get("secondary_class", -1), data.get("minor_mode_r", -1.0)
  if secondary is None or secondary < 0 or r is None or r < 0:
    raise ConfigError(f"data.protocol='small_modes' needs data.secondary_class (the minor normal class, != "
                      f"data.normal_class={data.normal_class}) and data.minor_mode_r (its amplitude r in [0, 1]), "
                      f"got {secondary} and {r}.")
  return dict(secondary=int(secondary), r=float(r), seed=int(data.get("protocol_seed", 0)))


def _mpi3d_sizes(data) -> tuple[int, ...]:
  return tuple(int(s) for s in data.mpi3d.get("sizes") or mpi3d.FACTOR_SIZES)


def _mpi3d_selection(data: ml_collections.ConfigDict) -> mpi3d.Selection:
  """The index selection of `data.mpi3d.protocol` (cheap: no image is read)."""
  m = data.mpi3d
  kwargs = dict(sizes=_mpi3d_sizes(data), test_fraction=m.test_fraction, seed=data.protocol_seed)
  if m.protocol == "interventions":
    return mpi3d.interventions(anomaly=m.anomaly, **kwargs)
  if m.protocol == "color_shift":
    trials = mpi3d.color_shift_sequence(**kwargs)
    if not 0 <= m.trial < len(trials):
      raise ConfigError(f"data.mpi3d.trial must be in [0, {len(trials)}) (trial k: the first k+1 colours of "
                        f"{mpi3d.COLOR_ORDER} are normal), got {m.trial}.")
    return trials[m.trial]
  raise ConfigError(f"data.mpi3d.protocol must be one of {MPI3D_PROTOCOLS}, got {m.protocol!r}.")


def _mpi3d_images(data: ml_collections.ConfigDict) -> np.ndarray:
  """The memory-mapped MPI3D-real images; a missing file is a DataError saying how to get it (`mpi3d.load`)."""
  path = data.mpi3d.get("path") or mpi3d.default_path(data.data_dir or None)
  return mpi3d.load(path, sizes=_mpi3d_sizes(data))


def _mpi3d_task(data: ml_collections.ConfigDict) -> protocols.Task:
  """The MPI3D protocol's Task (uint8 images); `train_limit`/`test_limit` subsample before any image is read."""
  if data.protocol != "one_vs_rest":  # the default: MPI3D's protocol is data.mpi3d.protocol
    raise ConfigError(f"data.name='mpi3d' picks its protocol with data.mpi3d.protocol {MPI3D_PROTOCOLS}; leave "
                      f"data.protocol at its default, got {data.protocol!r}.")
  sel = _mpi3d_selection(data)
  images = _mpi3d_images(data)
  # Subsample the indices (the same seed-0 subsets as for other datasets), then gather only those rows.
  idx = _subsample(protocols.Task(sel.train, sel.test, sel.test_labels, sel.test_classes), data.train_limit,
                   data.test_limit)
  return dataclasses.replace(idx, x_train=np.asarray(images[idx.x_train]), x_test=np.asarray(images[idx.x_test]))


def _minmax(data, normal_images):
  """The published per-class table when asked for (and available), else the min/max of the GCN normal images."""
  if data.minmax == "published":
    table = transforms.PUBLISHED_MINMAX.get(data.name)
    if table is None or data.protocol != "one_vs_rest":
      raise ConfigError(f"No published min-max table for {data.name!r} / {data.protocol!r}; set "
                        "data.minmax='computed'.")
    return table[data.normal_class]
  if data.minmax == "computed":
    if normal_images is None or not len(normal_images):
      raise DataError("data.minmax='computed' needs at least one normal training image.")
    return transforms.minmax_of(transforms.gcn_l1(transforms.to_unit(normal_images)))
  raise ConfigError(f"data.minmax must be 'published' or 'computed', got {data.minmax!r}.")


def fixed_subset(n: int, limit: int, rng: np.random.Generator | None = None) -> np.ndarray | None:
  """Sorted indices of a random `limit` of `n` items (seed 0 unless `rng` is given), or None if `limit` keeps all.

  The `*.limit` keys of quick runs use it, so a subset never depends on the run's seed.
  """
  if not limit or limit >= n:
    return None
  rng = np.random.default_rng(0) if rng is None else rng
  return np.sort(rng.permutation(n)[:limit])


def _subsample(task: protocols.Task, train_limit: int, test_limit: int) -> protocols.Task:
  """A fixed random subset (seed 0, independent of the run's seed) for quick runs; 0 keeps everything."""
  rng = np.random.default_rng(0)  # one stream: the test subset is drawn after the train subset
  keep = fixed_subset(len(task.x_train), train_limit, rng)
  if keep is not None:
    task = dataclasses.replace(
        task, x_train=task.x_train[keep],
        train_labels=None if task.train_labels is None else task.train_labels[keep],
        train_classes=None if task.train_classes is None else task.train_classes[keep])
  keep = fixed_subset(len(task.x_test), test_limit, rng)
  if keep is not None:
    task = dataclasses.replace(task, x_test=task.x_test[keep], test_labels=task.test_labels[keep],
                               test_classes=task.test_classes[keep])
  return task


def black_pixel(data: ml_collections.ConfigDict, channels: int) -> np.ndarray:
  """A black pixel [C] after `data.preprocess`: what RandomCrop's zero padding becomes once images are normalised."""
  if data.preprocess == "signed":
    return Preprocess("signed").black(channels)
  if data.preprocess != "standardize":
    return np.zeros(channels, np.float32)
  return Preprocess("standardize", mean=tuple(standardize_stats(data)[0]), std=tuple(standardize_stats(data)[1])
                    ).black(channels)
