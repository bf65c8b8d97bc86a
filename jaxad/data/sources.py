"""Where images come from: tfds, local `<name>.npz` archives, or scikit-learn's bundled digits.

Every source returns the same thing, an `Arrays` of uint8 NHWC images and integer labels, so protocols and
pipelines never care where the data came from.

* `tfds`: `tfds.data_source(...)` (ArrayRecord, random access, no TensorFlow needed to read). The default for users
  with internet; tfds downloads and prepares the dataset on first use.
* `npz`: `<data_dir>/<name>.npz` with `x_train, y_train, x_test, y_test` (the export format of
  `../shared/datasets/imgcodec.py export DIR`, also what users produce for their own arrays). `data_dir` is the
  config's `data.data_dir` or the environment variable `JAXAD_DATA_DIR`.
* `digits`: scikit-learn's 8x8 handwritten digits, shipped inside scikit-learn: the embedded default that needs no
  download (1,797 images, split in half, stratified, with a fixed seed).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from jaxad.errors import DataError

DATA_DIR_ENV = "JAXAD_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Arrays:
  """A labelled train/test split: x uint8 [N, H, W, C], y int64 [N]."""
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray

  @property
  def num_classes(self) -> int:
    return int(max(self.y_train.max(), self.y_test.max())) + 1


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  tfds_name: str | None
  shape: tuple[int, int, int]
  num_classes: int
  how_to_get: str


_EXPORT_HINT = ("python3 ../shared/datasets/imgcodec.py export DIR (from a jaxad checkout) or save your own arrays "
                "with np.savez(DIR/{name}.npz, x_train=..., y_train=..., x_test=..., y_test=...), then set "
                f"{DATA_DIR_ENV}=DIR or data.data_dir=DIR")

DATASETS = {
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, _EXPORT_HINT),
    "cifar100": DatasetInfo("cifar100", (32, 32, 3), 100, _EXPORT_HINT),
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, _EXPORT_HINT),
    "digits": DatasetInfo(None, (8, 8, 1), 10, "it ships inside scikit-learn (pip install scikit-learn)"),
}


def get_info(name: str) -> DatasetInfo:
  if name not in DATASETS:
    raise DataError(f"Unknown dataset {name!r}; valid names: {sorted(DATASETS)}.")
  return DATASETS[name]


def resolve_data_dir(data_dir: str | None) -> str | None:
  """The config's data_dir if given, else $JAXAD_DATA_DIR, else None."""
  return data_dir or os.environ.get(DATA_DIR_ENV) or None


def load(name: str, *, source: str = "auto", data_dir: str | None = None) -> Arrays:
  """Loads dataset `name` from `source` in {'auto', 'npz', 'tfds', 'digits'}.

  'auto' reads `<data_dir>/<name>.npz` when a data dir is set (config or $JAXAD_DATA_DIR) and otherwise uses tfds.
  """
  info = get_info(name)
  data_dir = resolve_data_dir(data_dir)
  if name == "digits":
    if source not in ("auto", "digits"):
      raise DataError(f"Dataset 'digits' only comes from scikit-learn (source='digits'), not {source!r}.")
    return load_digits()
  if source == "auto":
    source = "npz" if data_dir else "tfds"
  if source == "npz":
    if not data_dir:
      raise DataError(f"source='npz' needs a folder with {name}.npz: set data.data_dir or {DATA_DIR_ENV}. "
                      f"To make it: {info.how_to_get.format(name=name)}.")
    return load_npz(os.path.join(data_dir, f"{name}.npz"), expected_shape=info.shape)
  if source == "tfds":
    return load_tfds(info.tfds_name, data_dir=None)
  raise DataError(f"Unknown data source {source!r}; valid: 'auto', 'npz', 'tfds', 'digits'.")


def load_npz(path: str, *, expected_shape: tuple[int, int, int] | None = None) -> Arrays:
  """Reads an `x_train, y_train, x_test, y_test` archive and checks it thoroughly."""
  name = os.path.splitext(os.path.basename(path))[0]
  hint = _EXPORT_HINT.format(name=name)
  if not os.path.exists(path):
    raise DataError(f"Dataset file {path} does not exist. To make it: {hint}.")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
      if missing:
        raise DataError(f"{path} is malformed: missing arrays {missing} (has {sorted(f.files)}). "
                        f"Re-create it: {hint}.")
      arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise DataError(f"{path} is not a readable .npz archive ({e}). Re-create it: {hint}.") from e
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim == 3:  # grayscale stored without a channel axis
      x = arrays[f"x_{split}"] = x[..., None]
    problem = None
    if x.dtype != np.uint8:
      problem = f"x_{split} has dtype {x.dtype}, expected uint8 images in [0, 255]"
    elif x.ndim != 4:
      problem = f"x_{split} has shape {x.shape}, expected [N, H, W, C]"
    elif expected_shape is not None and x.shape[1:] != tuple(expected_shape):
      problem = f"x_{split} images are {x.shape[1:]}, expected {tuple(expected_shape)}"
    elif y.ndim != 1 or len(y) != len(x):
      problem = f"y_{split} has shape {y.shape}, expected [{len(x)}] labels"
    elif not np.issubdtype(y.dtype, np.integer):
      problem = f"y_{split} has dtype {y.dtype}, expected integer labels"
    if problem:
      raise DataError(f"{path} is malformed: {problem}. Re-create it: {hint}.")
  return Arrays(arrays["x_train"], arrays["y_train"].astype(np.int64),
                arrays["x_test"], arrays["y_test"].astype(np.int64))


def load_tfds(tfds_name: str, *, data_dir: str | None = None) -> Arrays:
  """Reads a whole tfds image classification dataset through `tfds.data_source` (no TensorFlow needed)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (heavy; only this source needs it)

  splits = {}
  for split in ("train", "test"):
    try:
      src = tfds.data_source(tfds_name, split=split, data_dir=data_dir)
    except Exception as e:  # tfds raises many kinds (network, missing builder, missing files)
      raise DataError(
          f"Could not get {tfds_name!r} split {split!r} through tensorflow_datasets ({type(e).__name__}: {e}). "
          f"Without internet use a local archive instead: {_EXPORT_HINT.format(name=tfds_name)}.") from e
    records = [src[i] for i in range(len(src))]
    splits[f"x_{split}"] = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    splits[f"y_{split}"] = np.asarray([r["label"] for r in records], np.int64)
  return Arrays(**splits)


def load_digits() -> Arrays:
  """scikit-learn's 8x8 digits as uint8 [N, 8, 8, 1], split 50/50 stratified with a fixed seed."""
  from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = digits.target.astype(np.int64)
  x_tr, x_te, y_tr, y_te = model_selection.train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
  return Arrays(x_tr, y_tr, x_te, y_te)
