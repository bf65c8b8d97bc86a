"""Where images come from: tfds, local `<name>.npz` archives, or scikit-learn's bundled digits.

Every source returns the same thing, an `Arrays` of uint8 NHWC images and integer labels, so protocols and
pipelines never care where the data came from.

* `tfds`: `tfds.data_source(...)` (ArrayRecord, random access, no TensorFlow needed to read). The default for users
  with internet; tfds downloads and prepares the dataset on first use, which needs the `jaxad[tfds]` extra
  (TensorFlow and importlib_resources).
* `npz`: `<data_dir>/<name>.npz` with `x_train, y_train, x_test, y_test` (uint8 NHWC images, integer labels: what
  users save for their own arrays; jaxad's tests export theirs from the repository's sibling `shared/datasets`).
  `data_dir` is the config's `data.data_dir` or the environment variable `JAXAD_DATA_DIR`.
* `digits`: scikit-learn's 8x8 handwritten digits, shipped inside scikit-learn: the embedded default that needs no
  download (1,797 images, split in half, stratified, with a fixed seed).

`load` gives the labelled train/test pair; `load_split(name, split)` reads one split, including the extra ones a
dataset has beyond train/test: STL-10's 100,000 `unlabelled` 96x96 images (Deecke et al. 2021's OE corpus for STL-10)
and SVHN's 531,131 `extra` images. In a `<name>.npz` an extra split is stored as `x_<split>` (and `y_<split>` when it
is labelled), e.g. `x_unlabelled` in `stl10.npz`; `load` never reads it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import zipfile

import numpy as np

from jaxad.errors import ConfigError, DataError

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
  """Where a dataset comes from and what it holds.

  `how_to_get` is shown in errors (formatted with `name`); `extra_splits` are the splits besides 'train'/'test' that
  `load_split` reads (the tfds split of the same name); `unlabelled_splits` are those without labels.
  """
  tfds_name: str | None
  shape: tuple[int, int, int]
  num_classes: int
  how_to_get: str
  extra_splits: tuple[str, ...] = ()
  unlabelled_splits: tuple[str, ...] = ()
  tfds_test_split: str = "test"  # the tfds split read as 'test' (ImageNet has 'validation' instead)

  @property
  def splits(self) -> tuple[str, ...]:
    return ("train", "test") + self.extra_splits


_EXPORT_HINT = ("with internet, let tfds download it: pip install 'jaxad[tfds]' and set data.source='tfds' (or leave "
                f"{DATA_DIR_ENV} unset); offline, save the arrays as uint8 NHWC images and integer labels with "
                "np.savez(DIR/{name}.npz, x_train=..., y_train=..., x_test=..., y_test=...), then set "
                f"{DATA_DIR_ENV}=DIR or data.data_dir=DIR")

_STL10_HINT = ("with internet, source='tfds' (tfds name 'stl10': 5,000 train + 8,000 test labelled and 100,000 "
               "'unlabelled' 96x96 images, a 2.6 GB download on first use); offline, convert the binary files of "
               "https://cs.stanford.edu/~acoates/stl10/ (images stored column-major: transpose each to HWC, labels "
               "1..10 -> 0..9) with np.savez(DIR/{name}.npz, x_train=..., y_train=..., x_test=..., y_test=..., "
               f"x_unlabelled=...) (uint8 [N, 96, 96, 3]), then set {DATA_DIR_ENV}=DIR or data.data_dir=DIR")
_SVHN_HINT = ("with internet, source='tfds' (tfds name 'svhn_cropped': 73,257 train, 26,032 test and 531,131 'extra' "
              "32x32 digits); offline, convert train_32x32.mat / test_32x32.mat (optionally extra_32x32.mat) of "
              "http://ufldl.stanford.edu/housenumbers/ (scipy.io.loadmat; X is [32, 32, 3, N]: move N first; label 10 "
              "means digit 0) with np.savez(DIR/{name}.npz, x_train=..., y_train=..., x_test=..., y_test=..., "
              f"x_extra=..., y_extra=...), then set {DATA_DIR_ENV}=DIR or data.data_dir=DIR")

_IMAGENET_RESIZED_HINT = (
    "with internet, source='tfds' (tfds name 'imagenet_resized/{{size}}x{{size}}', Chrabaszcz et al.'s downsampled "
    "ImageNet: 1,281,167 train and 50,000 'validation' images (read as 'test'), 1000 classes; tfds fetches the zips "
    "from image-net.org/data/downsample/ (if that needs an image-net.org login, download Imagenet{{size}}_train_npz "
    "and Imagenet{{size}}_val_npz by hand into tfds' manual/downloads folder). Offline, save the arrays with "
    "np.savez(DIR/{name}.npz, x_train=..., y_train=..., x_test=..., y_test=...) (uint8 HWC, labels 0..999), then set "
    f"{DATA_DIR_ENV}=DIR or data.data_dir=DIR")

DATASETS = {
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, _EXPORT_HINT),
    "cifar100": DatasetInfo("cifar100", (32, 32, 3), 100, _EXPORT_HINT),
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, _EXPORT_HINT),
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28, 1), 10, _EXPORT_HINT),
    "stl10": DatasetInfo("stl10", (96, 96, 3), 10, _STL10_HINT, extra_splits=("unlabelled",),
                         unlabelled_splits=("unlabelled",)),
    "svhn": DatasetInfo("svhn_cropped", (32, 32, 3), 10, _SVHN_HINT, extra_splits=("extra",)),
    # Source-model pretraining (Deecke et al. 2021's ResNet26 was trained on ImageNet 32x32 and 96x96; tfds has
    # 32x32 and 64x64, see configs/pretrain_resnet26_imagenet{32,96}.py).
    "imagenet32": DatasetInfo("imagenet_resized/32x32", (32, 32, 3), 1000, _IMAGENET_RESIZED_HINT.replace(
        "{{size}}", "32"), tfds_test_split="validation"),
    "imagenet64": DatasetInfo("imagenet_resized/64x64", (64, 64, 3), 1000, _IMAGENET_RESIZED_HINT.replace(
        "{{size}}", "64"), tfds_test_split="validation"),
    "digits": DatasetInfo(None, (8, 8, 1), 10, "it ships inside scikit-learn (pip install scikit-learn)"),
}


def get_info(name: str) -> DatasetInfo:
  if name not in DATASETS:
    raise DataError(f"Unknown dataset {name!r}; valid names: {sorted(DATASETS)}.")
  return DATASETS[name]


def resolve_data_dir(data_dir: str | None) -> str | None:
  """The config's data_dir if given, else $JAXAD_DATA_DIR, else None."""
  return data_dir or os.environ.get(DATA_DIR_ENV) or None


def _hint(name: str) -> str:
  """How to get dataset `name` (its `<name>.npz` or tfds), for error messages."""
  info = DATASETS.get(name)
  return (info.how_to_get if info else _EXPORT_HINT).format(name=name)


def _resolve_source(name: str, source: str, data_dir: str | None) -> str:
  """'npz' or 'tfds' for a non-digits dataset; 'auto' is npz when a data dir is set."""
  if source == "auto":
    source = "npz" if data_dir else "tfds"
  if source not in ("npz", "tfds"):
    raise DataError(f"Unknown data source {source!r}; valid: 'auto', 'npz', 'tfds', 'digits'.")
  if source == "npz" and not data_dir:
    raise DataError(f"source='npz' needs a folder with {name}.npz: set data.data_dir or {DATA_DIR_ENV}. "
                    f"To make it: {_hint(name)}.")
  return source


def missing(name: str, *, source: str = "auto", data_dir: str | None = None) -> str | None:
  """None if dataset `name` can be read without a download, else what is missing and how to get it.

  For configs that must fail at once on a machine without the data (e.g. configs/adra_stl10.py), before anything
  is loaded or downloaded. 'npz' (or 'auto' with a data folder) needs `<data_dir>/<name>.npz`; 'tfds' (or 'auto'
  without one) needs the tfds dataset prepared in tfds' data folder.
  """
  info = get_info(name)
  if name == "digits":
    return None
  data_dir = resolve_data_dir(data_dir)
  if source == "auto":
    source = "npz" if data_dir else "tfds"
  if source not in ("npz", "tfds"):
    raise DataError(f"Unknown data source {source!r}; valid: 'auto', 'npz', 'tfds'.")
  if source == "npz":
    path = os.path.join(data_dir, f"{name}.npz") if data_dir else f"${DATA_DIR_ENV}/{name}.npz"
    return None if data_dir and os.path.exists(path) else f"{path} does not exist; to make it: {_hint(name)}"
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    builder = tfds.builder(info.tfds_name)
    if builder.is_prepared():
      return None
    where = builder.data_dir
  except Exception as e:  # pylint: disable=broad-except  (an unknown or broken tfds install: say so)
    where = f"tfds ({type(e).__name__}: {e})"
  return (f"{name} is neither in a data folder (set {DATA_DIR_ENV}) nor prepared by tfds in {where}; to get it: "
          f"{_hint(name)}; with internet: pip install 'jaxad[tfds]' && python -c \"import tensorflow_datasets as tfds; "
          f"tfds.data_source('{info.tfds_name}', split='train')\"")


LABEL_MODES = ("fine", "coarse")


def load(name: str, *, source: str = "auto", data_dir: str | None = None, label_mode: str = "fine") -> Arrays:
  """Loads dataset `name` from `source` in {'auto', 'npz', 'tfds', 'digits'}.

  'auto' reads `<data_dir>/<name>.npz` when a data dir is set (config or $JAXAD_DATA_DIR) and otherwise uses tfds.
  `label_mode='coarse'` gives CIFAR-100's 20 super-classes (`y_<split>_coarse` in the npz, tfds 'coarse_label').
  """
  info = get_info(name)
  if label_mode not in LABEL_MODES or (label_mode == "coarse" and name != "cifar100"):
    raise ConfigError(f"data.label_mode must be one of {LABEL_MODES} ('coarse' only for cifar100), got "
                      f"{label_mode!r} for {name!r}.")
  data_dir = resolve_data_dir(data_dir)
  if name == "digits":
    if source not in ("auto", "digits"):
      raise DataError(f"Dataset 'digits' only comes from scikit-learn (source='digits'), not {source!r}.")
    return load_digits()
  source = _resolve_source(name, source, data_dir)
  coarse = label_mode == "coarse"
  if source == "npz":
    return load_npz(os.path.join(data_dir, f"{name}.npz"), expected_shape=info.shape, coarse=coarse)
  return load_tfds(info.tfds_name, hint=_hint(name), test_split=info.tfds_test_split,
                   label_key="coarse_label" if coarse else "label")


def load_split(name: str, split: str, *, source: str = "auto",
               data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """Reads one split of dataset `name`, e.g. `load_split('stl10', 'unlabelled')` for STL-10's OE corpus.

  Args:
    name: a key of `DATASETS`.
    split: 'train', 'test' or one of the dataset's `extra_splits` ('unlabelled' for stl10, 'extra' for svhn).
    source: 'auto', 'npz' or 'tfds' as in `load` ('digits' for digits). An npz stores split s as `x_<s>` and,
      when labelled, `y_<s>`.
    data_dir: folder of `<name>.npz`; default $JAXAD_DATA_DIR.

  Returns:
    `(x, y)`: uint8 [N, H, W, C] images and int64 [N] labels, or `y = None` for the dataset's
    `unlabelled_splits` (STL-10's 'unlabelled', whose tfds labels are all -1) and for an npz extra split stored
    without `y_<split>`.
  """
  info = get_info(name)
  if split not in info.splits:
    raise ConfigError(f"Dataset {name!r} has no split {split!r}; valid: {list(info.splits)}.")
  data_dir = resolve_data_dir(data_dir)
  if name == "digits":
    arrays = load(name, source=source)
    return (arrays.x_train, arrays.y_train) if split == "train" else (arrays.x_test, arrays.y_test)
  source = _resolve_source(name, source, data_dir)
  hint = _hint(name)
  if source == "npz":
    path = os.path.join(data_dir, f"{name}.npz")
    # train/test must have labels; an unlabelled split's are ignored; another extra split's are read if present.
    labelled = False if split in info.unlabelled_splits else (None if split in info.extra_splits else True)
    return _read_npz_split(path, split, labelled=labelled, expected_shape=info.shape, hint=hint)
  tfds_split = info.tfds_test_split if split == "test" else split
  return _read_tfds_split(info.tfds_name, tfds_split, data_dir=None, labelled=split not in info.unlabelled_splits,
                          hint=hint)


def _open_npz(path: str, hint: str):
  if not os.path.exists(path):
    raise DataError(f"Dataset file {path} does not exist. To make it: {hint}.")
  try:
    return np.load(path, allow_pickle=False)
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise DataError(f"{path} is not a readable .npz archive ({e}). Re-create it: {hint}.") from e


def _check_split(path: str, split: str, x: np.ndarray, y: np.ndarray | None,
                 expected_shape: tuple[int, int, int] | None, hint: str) -> tuple[np.ndarray, np.ndarray | None]:
  """Validates one split's arrays (uint8 NHWC images, integer labels of the same length)."""
  if x.ndim == 3:  # grayscale stored without a channel axis
    x = x[..., None]
  problem = None
  if x.dtype != np.uint8:
    problem = f"x_{split} has dtype {x.dtype}, expected uint8 images in [0, 255]"
  elif x.ndim != 4:
    problem = f"x_{split} has shape {x.shape}, expected [N, H, W, C]"
  elif expected_shape is not None and x.shape[1:] != tuple(expected_shape):
    problem = f"x_{split} images are {x.shape[1:]}, expected {tuple(expected_shape)}"
  elif y is not None and (y.ndim != 1 or len(y) != len(x)):
    problem = f"y_{split} has shape {y.shape}, expected [{len(x)}] labels"
  elif y is not None and not np.issubdtype(y.dtype, np.integer):
    problem = f"y_{split} has dtype {y.dtype}, expected integer labels"
  if problem:
    raise DataError(f"{path} is malformed: {problem}. Re-create it: {hint}.")
  return x, (None if y is None else y.astype(np.int64))


def _read_npz_split(path: str, split: str, *, labelled: bool | None, expected_shape, hint: str):
  """`x_<split>` (and `y_<split>`; required when `labelled` is True, read if present when None)."""
  try:
    with _open_npz(path, hint) as f:
      need = [f"x_{split}"] + ([f"y_{split}"] if labelled else [])
      missing = [k for k in need if k not in f.files]
      if missing:
        raise DataError(f"{path} is malformed: missing arrays {missing} (has {sorted(f.files)}). "
                        f"Re-create it: {hint}.")
      x = f[f"x_{split}"]
      y = f[f"y_{split}"] if labelled is not False and f"y_{split}" in f.files else None
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(f"{path} is not a readable .npz archive ({e}). Re-create it: {hint}.") from e
  return _check_split(path, split, x, y, expected_shape, hint)


def load_npz(path: str, *, expected_shape: tuple[int, int, int] | None = None, coarse: bool = False) -> Arrays:
  """Reads an `x_train, y_train, x_test, y_test` archive and checks it thoroughly (extra arrays are not read).

  `coarse` reads the labels from `y_train_coarse` / `y_test_coarse` (CIFAR-100's super-classes) instead.
  """
  hint = _hint(os.path.splitext(os.path.basename(path))[0])
  suffix = "_coarse" if coarse else ""
  try:
    with _open_npz(path, hint) as f:
      missing = [k for k in ("x_train", f"y_train{suffix}", "x_test", f"y_test{suffix}") if k not in f.files]
      if missing:
        raise DataError(f"{path} is malformed: missing arrays {missing} (has {sorted(f.files)}). "
                        f"Re-create it: {hint}.")
      arrays = {k: f[k + (suffix if k.startswith("y") else "")] for k in ("x_train", "y_train", "x_test", "y_test")}
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(f"{path} is not a readable .npz archive ({e}). Re-create it: {hint}.") from e
  for split in ("train", "test"):
    arrays[f"x_{split}"], arrays[f"y_{split}"] = _check_split(path, split, arrays[f"x_{split}"],
                                                              arrays[f"y_{split}"], expected_shape, hint)
  return Arrays(**arrays)


# What tfds needs to *prepare* a dataset, beyond reading a prepared one: tfds 4.9.x imports importlib_resources
# (declared only for Python < 3.9) and extracts archives and encodes images with TensorFlow (the 'tfds' extra).
_PREPARE_MODULES = ("importlib_resources", "tensorflow")


def _read_tfds_split(tfds_name: str, split: str, *, data_dir: str | None, labelled: bool,
                     hint: str, label_key: str = "label") -> tuple[np.ndarray, np.ndarray | None]:
  """One tfds split through `tfds.data_source` (no TensorFlow needed), into preallocated uint8 arrays."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (heavy; only this source needs it)

  # Without the 'tfds' extra only read: tfds would download the whole archive before failing (ExtractError).
  absent = [m for m in _PREPARE_MODULES if importlib.util.find_spec(m) is None]
  try:
    # ArrayRecord explicitly: tfds 4.9.10's data_source picks it only when neither data_dir nor builder_kwargs is
    # given; with a data_dir it would prepare TFRecord, which it then cannot read (NotImplementedError).
    src = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=not absent,
                           builder_kwargs={"file_format": "array_record"})
  except Exception as e:  # tfds raises many kinds (network, missing builder, missing files)
    if absent:
      raise DataError(
          f"tfds cannot read {tfds_name!r} split {split!r} ({type(e).__name__}: {e}) and cannot prepare it here: "
          f"{' and '.join(absent)} not installed. With internet: pip install 'jaxad[tfds]' (in a checkout: "
          f"pip install -e '.[tfds]'; TensorFlow for CPU, ~275 MB), then run again. Otherwise: {hint}.") from e
    raise DataError(
        f"Could not get {tfds_name!r} split {split!r} through tensorflow_datasets ({type(e).__name__}: {e}). "
        f"To get it: {hint}.") from e
  n = len(src)
  if not n:
    raise DataError(f"tfds {tfds_name!r} split {split!r} is empty. To get the data: {hint}.")
  first = np.asarray(src[0]["image"], np.uint8)
  x = np.empty((n, *first.shape), np.uint8)
  y = np.empty(n, np.int64) if labelled else None
  for i in range(n):
    record = src[i]
    x[i] = np.asarray(record["image"], np.uint8)
    if labelled:
      y[i] = record[label_key]
  return (x[..., None] if x.ndim == 3 else x), y


def load_tfds(tfds_name: str, *, data_dir: str | None = None, hint: str | None = None,
              test_split: str = "test", label_key: str = "label") -> Arrays:
  """Reads the train and `test_split` splits of a tfds image classification dataset through `tfds.data_source`."""
  hint = hint or ("without internet use a local archive instead: " + _EXPORT_HINT.format(name=tfds_name))
  kw = dict(data_dir=data_dir, labelled=True, hint=hint, label_key=label_key)
  x_train, y_train = _read_tfds_split(tfds_name, "train", **kw)
  x_test, y_test = _read_tfds_split(tfds_name, test_split, **kw)
  return Arrays(x_train, y_train, x_test, y_test)


def load_digits() -> Arrays:
  """scikit-learn's 8x8 digits as uint8 [N, 8, 8, 1], split 50/50 stratified with a fixed seed."""
  from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = digits.target.astype(np.int64)
  x_tr, x_te, y_tr, y_te = model_selection.train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
  return Arrays(x_tr, y_tr, x_te, y_te)
