"""Data: sources (tfds, local npz archives, sklearn digits), protocols, transforms and grain pipelines.

`make_task(config.data)` is the entry point: load -> protocol -> preprocessing, giving float32 NHWC arrays.
`make_oe(config.oe, config.data)` loads an outlier-exposure set (e.g. CIFAR-100 train for CIFAR-10) with the same
preprocessing as the normal data; `jaxad.data.oe` mixes it into the training batches.

Preprocessing (`data.preprocess`): 'gcn_l1_minmax' (Deep SVDD / MOCCA), 'standardize' (TransferAD: [0, 1], then
the per-channel mean/std of `transforms.STANDARDIZE_STATS[data.standardize_stats or data.name]`; MPI3D, which has no
constants of its own, uses ImageNet's, the statistics its ImageNet source nets were trained with) or 'unit' ([0, 1]
only). Protocol 'classification' (source-model pretraining) also returns the train class labels (`Task.train_labels`).

Deecke et al. 2021's extra protocols:

* `data.protocol='small_modes'` (section 5.4): `data.normal_class` is the primary class, `data.secondary_class` the
  minor normal mode, `data.minor_mode_r` its amplitude r in [0, 1]; `data.protocol_seed` picks the secondary subset.
  `Task.test_secondary` marks the secondary test images (for `evaluate.write_results(..., secondary=...)`).
* `data.name='mpi3d'` (section 5.1, `jaxad.data.mpi3d`): `data.mpi3d_protocol` 'interventions' (anomaly
  `data.mpi3d_anomaly`: 'color', 'shape' or 'size') or 'color_shift' (trial `data.mpi3d_trial`: the first k+1 colours
  of `mpi3d.COLOR_ORDER` are normal); `data.protocol_seed` picks the held-out test views. The images come from
  `data.mpi3d_path` (default `<data.data_dir or $JAXAD_DATA_DIR>/mpi3d_real.npz`, memory-mapped); `data.protocol`
  and `data.normal_class` are not used. Its OE is the protocol's own (`Selection.oe_images`): `oe.name='mpi3d'`.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from jaxad.data import mpi3d, protocols, sources, transforms
from jaxad.errors import ConfigError

PREPROCESSING = ("gcn_l1_minmax", "standardize", "unit")
MPI3D_PROTOCOLS = ("interventions", "color_shift")
# `data.preprocess='standardize'` constants of datasets that have none of their own (`data.standardize_stats` wins).
DEFAULT_STANDARDIZE_STATS = {"mpi3d": "imagenet64"}


def default_config(**overrides) -> ml_collections.ConfigDict:
  """Every `config.data` key `make_task` reads; methods' base configs override the defaults they need."""
  c = ml_collections.ConfigDict(dict(
      name="cifar10", source="auto", data_dir="", protocol="one_vs_rest", normal_class=0,
      normal_classes=(),  # several classes -> one run per class and a results table (see jaxad.train)
      preprocess="gcn_l1_minmax", minmax="published", image_size=0,
      standardize_stats="",  # a key of transforms.STANDARDIZE_STATS; '' = the dataset's own name
      train_limit=0, test_limit=0,  # > 0: a fixed random subset (seed 0) for quick runs
      protocol_seed=0,  # the protocol's own random choices: small_modes' secondary subset, MPI3D's test views
      # protocol='small_modes' (Deecke section 5.4): normal_class is the primary class; both must be set.
      secondary_class=-1,  # the minor normal mode y_b
      minor_mode_r=-1.0,  # its amplitude r in [0, 1]: round(r * n_primary) secondary training images
      # name='mpi3d' (Deecke section 5.1, jaxad.data.mpi3d):
      mpi3d_protocol="interventions",  # or 'color_shift'
      mpi3d_anomaly="color",  # interventions: 'color' (red -> blue), 'shape' (cone -> cube), 'size' (small -> large)
      mpi3d_trial=0,  # color_shift: trial k has the first k+1 colours of mpi3d.COLOR_ORDER as normal (0..5)
      mpi3d_test_fraction=0.2,  # share of the views held out for testing
      mpi3d_path="",  # '' = <data_dir or $JAXAD_DATA_DIR>/mpi3d_real.npz
      mpi3d_sizes=mpi3d.FACTOR_SIZES))  # factor sizes of the array (the real ones; tests use smaller grids)
  c.update(overrides)
  return c


def make_task(data: ml_collections.ConfigDict) -> protocols.Task:
  """Loads `data.name`, applies `data.protocol` and the preprocessing; images come back float32 [N, H, W, C]."""
  if data.preprocess not in PREPROCESSING:
    raise ConfigError(f"data.preprocess must be one of {PREPROCESSING}, got {data.preprocess!r}.")
  if data.name == "mpi3d":
    task = _mpi3d_task(data)
  else:
    arrays = sources.load(data.name, source=data.source, data_dir=data.data_dir or None)
    task = protocols.get_protocol(data.protocol)(arrays, data.normal_class, **_protocol_kwargs(data))
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
  `oe.name='mpi3d'` (with `data.name='mpi3d'`) is the MPI3D protocol's own OE set (`mpi3d.Selection.oe`: the other
  objects, see `jaxad.data.mpi3d`), read from the same file as the normal data.

  Returns:
    float32 [N_oe, H, W, C] images with the normal data's shape.
  """
  if data.preprocess not in ("standardize", "unit"):
    raise ConfigError(f"Outlier exposure supports data.preprocess 'standardize' or 'unit', got {data.preprocess!r} "
                      "(its per-class min-max has no meaning for OE images).")
  if oe.name == "mpi3d":
    if data.name != "mpi3d":
      raise ConfigError(f"oe.name='mpi3d' is the OE set of the MPI3D protocols; it needs data.name='mpi3d', got "
                        f"{data.name!r}.")
    x = _mpi3d_selection(data).oe_images(_mpi3d_images(data), limit=oe.limit, seed=0)
  elif oe.name == data.name and oe.split in ("train", "test"):  # STL-10's 'unlabelled' split is another corpus
    raise ConfigError(f"oe.name={oe.name!r} split {oe.split!r} is the normal dataset itself: its images include the "
                      "test anomalies.")
  else:  # any split of the OE dataset: CIFAR-100 'train', STL-10 'unlabelled', SVHN 'extra', ...
    x, _ = sources.load_split(oe.name, oe.split, source=oe.source, data_dir=oe.data_dir or data.data_dir or None)
    keep = fixed_subset(len(x), oe.limit)
    if keep is not None:
      x = x[keep]
  x = transforms.to_unit(x)
  if data.preprocess == "standardize":
    x = transforms.standardize(x, *standardize_stats(data))
  if data.image_size:
    x = transforms.resize(x, data.image_size)
  return x


def standardize_stats(data: ml_collections.ConfigDict):
  """(mean, std) for `data.preprocess='standardize'`: `STANDARDIZE_STATS[data.standardize_stats or data.name]`.

  A dataset without constants of its own falls back to `DEFAULT_STANDARDIZE_STATS` (MPI3D: ImageNet's).
  """
  name = data.get("standardize_stats") or DEFAULT_STANDARDIZE_STATS.get(data.name, data.name)
  if name not in transforms.STANDARDIZE_STATS:
    raise ConfigError(f"data.preprocess='standardize' has mean/std constants only for "
                      f"{sorted(transforms.STANDARDIZE_STATS)}, not {name!r}; use 'unit'.")
  return transforms.STANDARDIZE_STATS[name]


def _protocol_kwargs(data: ml_collections.ConfigDict) -> dict:
  """The keyword arguments of `data.protocol` beyond `(arrays, class)`: small_modes' secondary class, r and seed."""
  if data.protocol != "small_modes":
    return {}
  secondary, r = data.get("secondary_class", -1), data.get("minor_mode_r", -1.0)
  if secondary is None or secondary < 0 or r is None or r < 0:
    raise ConfigError(f"data.protocol='small_modes' needs data.secondary_class (the minor normal class, != "
                      f"data.normal_class={data.normal_class}) and data.minor_mode_r (its amplitude r in [0, 1]), "
                      f"got {secondary} and {r}.")
  return dict(secondary=int(secondary), r=float(r), seed=int(data.get("protocol_seed", 0)))


def _mpi3d_sizes(data) -> tuple[int, ...]:
  return tuple(int(s) for s in data.get("mpi3d_sizes") or mpi3d.FACTOR_SIZES)


def _mpi3d_selection(data: ml_collections.ConfigDict) -> mpi3d.Selection:
  """The index selection of `data.mpi3d_protocol` (cheap: no image is read)."""
  kwargs = dict(sizes=_mpi3d_sizes(data), test_fraction=data.mpi3d_test_fraction, seed=data.protocol_seed)
  if data.mpi3d_protocol == "interventions":
    return mpi3d.interventions(anomaly=data.mpi3d_anomaly, **kwargs)
  if data.mpi3d_protocol == "color_shift":
    trials = mpi3d.color_shift_sequence(**kwargs)
    if not 0 <= data.mpi3d_trial < len(trials):
      raise ConfigError(f"data.mpi3d_trial must be in [0, {len(trials)}) (trial k: the first k+1 colours of "
                        f"{mpi3d.COLOR_ORDER} are normal), got {data.mpi3d_trial}.")
    return trials[data.mpi3d_trial]
  raise ConfigError(f"data.mpi3d_protocol must be one of {MPI3D_PROTOCOLS}, got {data.mpi3d_protocol!r}.")


def _mpi3d_images(data: ml_collections.ConfigDict) -> np.ndarray:
  """The memory-mapped MPI3D-real images; a missing file is a DataError saying how to get it (`mpi3d.load`)."""
  path = data.get("mpi3d_path") or mpi3d.default_path(data.data_dir or None)
  return mpi3d.load(path, sizes=_mpi3d_sizes(data))


def _mpi3d_task(data: ml_collections.ConfigDict) -> protocols.Task:
  """The MPI3D protocol's Task (uint8 images); `train_limit`/`test_limit` subsample before any image is read."""
  if data.protocol != "one_vs_rest":  # the default: MPI3D's protocol is data.mpi3d_protocol
    raise ConfigError(f"data.name='mpi3d' picks its protocol with data.mpi3d_protocol {MPI3D_PROTOCOLS}; leave "
                      f"data.protocol at its default, got {data.protocol!r}.")
  sel = _mpi3d_selection(data)
  images = _mpi3d_images(data)
  # Subsample the indices (the same seed-0 subsets as for other datasets), then gather only those rows.
  idx = _subsample(protocols.Task(sel.train, sel.test, sel.test_labels, sel.test_classes), data.train_limit,
                   data.test_limit)
  return dataclasses.replace(idx, x_train=np.asarray(images[idx.x_train]), x_test=np.asarray(images[idx.x_test]))


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
    task = dataclasses.replace(task, x_train=task.x_train[keep],
                               train_labels=None if task.train_labels is None else task.train_labels[keep])
  keep = fixed_subset(len(task.x_test), test_limit, rng)
  if keep is not None:
    task = dataclasses.replace(task, x_test=task.x_test[keep], test_labels=task.test_labels[keep],
                               test_classes=task.test_classes[keep])
  return task


def black_pixel(data: ml_collections.ConfigDict, channels: int) -> np.ndarray | float:
  """A black pixel after `data.preprocess`: what RandomCrop's zero padding becomes once images are normalised."""
  if data.preprocess != "standardize":
    return 0.0
  black = np.zeros((1, 1, 1, channels), np.float32)
  return transforms.standardize(black, *standardize_stats(data))[0, 0, 0]
