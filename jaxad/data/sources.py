"""Where images come from: tfds, local `<name>.npz` archives, the original idx files, or scikit-learn's digits.

Every source returns the same thing, an `Arrays` of uint8 NHWC images and integer labels, so protocols and
pipelines never care where the data came from.

* `tfds`: `tfds.data_source(...)` (ArrayRecord, random access, no TensorFlow needed to read). The default for users
  with internet; tfds downloads and prepares the dataset on first use, which needs the `jaxad[tfds]` extra
  (TensorFlow and importlib_resources).
* `npz`: `<data_dir>/<name>.npz` with `x_train, y_train, x_test, y_test` (uint8 NHWC images, integer labels: what
  users save for their own arrays; jaxad's tests export theirs from the repository's sibling `shared/datasets`).
  `data_dir` is the config's `data.data_dir` or the environment variable `JAXAD_DATA_DIR`.
* `idx`: MNIST's and Fashion-MNIST's original files (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
  `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`; gzipped or plain), looked for in
  `<data_dir>/<folder>/`, then `<data_dir>/`, then `/usr/share/datasets/<folder>/` (`DatasetInfo.idx_folder`:
  'fashion-mnist' or 'mnist'). Debian/Ubuntu's `apt install dataset-fashion-mnist` puts Fashion-MNIST's there, so it
  needs no download and no conversion. For these datasets 'auto' reads `<data_dir>/<name>.npz` if it exists, else
  the idx files if some folder holds all four, else goes on as for any dataset. One folder holds one dataset's files
  (MNIST's and Fashion-MNIST's have the same names): `<data_dir>/` itself is read as whichever dataset is asked for.
* `digits`: scikit-learn's 8x8 handwritten digits, shipped inside scikit-learn: the embedded default that needs no
  download (1,797 images, split in half, stratified, with a fixed seed).

Datasets of images of varying size (Caltech-UCSD Birds, tfds `caltech_birds2010` and `caltech_birds2011`) are
resized on load to `DatasetInfo.resize` (64x64) with PIL's bilinear filter, so every source still gives one
[N, H, W, C] array; the config's `data.image_size` is a second, network-side resize applied per batch.

`load` gives the labelled train/test pair; `load_split(name, split)` reads one split, including the extra ones a
dataset has beyond train/test: STL-10's 100,000 `unlabelled` 96x96 images (Deecke et al. 2021's OE corpus for STL-10)
and SVHN's 531,131 `extra` images. In a `<name>.npz` an extra split is stored as `x_<split>` (and `y_<split>` when it
is labelled), e.g. `x_unlabelled` in `stl10.npz`; `load` never reads it.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import zipfile
import zlib

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
  `idx_folder` ('' = none) names the folder of the original idx files (source 'idx'); `resize` (height, width), for
  datasets whose images vary in size, is the size every tfds image is resized to on load (`shape` is then
  (*resize, C), and an npz must hold images of that size already).
  """
  tfds_name: str | None
  shape: tuple[int, int, int]
  num_classes: int
  how_to_get: str
  extra_splits: tuple[str, ...] = ()
  unlabelled_splits: tuple[str, ...] = ()
  tfds_test_split: str = "test"  # the tfds split read as 'test' (ImageNet has 'validation' instead)
  idx_folder: str = ""  # source 'idx': <data_dir>/<idx_folder>/, <data_dir>/ or /usr/share/datasets/<idx_folder>/
  resize: tuple[int, int] | None = None  # tfds images of varying size -> (height, width), PIL bilinear

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

_IDX_NAMES = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
              "t10k-labels-idx1-ubyte.gz (gzipped or not)")
_FASHION_MNIST_HINT = (
    "offline on Debian/Ubuntu: sudo apt install dataset-fashion-mnist (the original idx files, in "
    "/usr/share/datasets/fashion-mnist/), then data.source='idx' (or 'auto' without a {name}.npz); or put "
    f"{_IDX_NAMES} of https://github.com/zalandoresearch/fashion-mnist in DIR/fashion-mnist/, set "
    f"{DATA_DIR_ENV}=DIR or data.data_dir=DIR and data.source='idx'; or " + _EXPORT_HINT)
_MNIST_HINT = (_EXPORT_HINT + f"; or put MNIST's original {_IDX_NAMES} in DIR/mnist/, set {DATA_DIR_ENV}=DIR or "
               "data.data_dir=DIR and data.source='idx'")


def _caltech_birds_hint(what: str) -> str:
  return (f"with internet, source='tfds' (tfds name '{{name}}': {what}; 200 bird species, images of varying size "
          "resized to 64x64 on load); offline, save the images already resized to 64x64 as uint8 [N, 64, 64, 3] with "
          "labels 0..199 with np.savez(DIR/{name}.npz, x_train=..., y_train=..., x_test=..., y_test=...), then set "
          f"{DATA_DIR_ENV}=DIR or data.data_dir=DIR")


DATASETS = {
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, _EXPORT_HINT),
    "cifar100": DatasetInfo("cifar100", (32, 32, 3), 100, _EXPORT_HINT),
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, _MNIST_HINT, idx_folder="mnist"),
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28, 1), 10, _FASHION_MNIST_HINT, idx_folder="fashion-mnist"),
    "stl10": DatasetInfo("stl10", (96, 96, 3), 10, _STL10_HINT, extra_splits=("unlabelled",),
                         unlabelled_splits=("unlabelled",)),
    "svhn": DatasetInfo("svhn_cropped", (32, 32, 3), 10, _SVHN_HINT, extra_splits=("extra",)),
    # Source-model pretraining (Deecke et al. 2021's ResNet26 was trained on ImageNet 32x32 and 96x96; tfds has
    # 32x32 and 64x64, see configs/pretrain_resnet26_imagenet{32,96}.py).
    "imagenet32": DatasetInfo("imagenet_resized/32x32", (32, 32, 3), 1000, _IMAGENET_RESIZED_HINT.replace(
        "{{size}}", "32"), tfds_test_split="validation"),
    "imagenet64": DatasetInfo("imagenet_resized/64x64", (64, 64, 3), 1000, _IMAGENET_RESIZED_HINT.replace(
        "{{size}}", "64"), tfds_test_split="validation"),
    # Jezequel et al.'s fine-grained benchmark "Caltech-Birds 200": the paper cites Welinder et al. 2010 (CUB-200,
    # 'caltech_birds2010'); CUB-200-2011 ('caltech_birds2011') has the same 200 species and twice the images. The
    # paper gives no image size: 64x64 is jaxad's choice for its small networks.
    "caltech_birds2010": DatasetInfo("caltech_birds2010", (64, 64, 3), 200, _caltech_birds_hint(
        "Caltech-UCSD Birds 200 (2010), 3,000 train and 3,033 test images"), resize=(64, 64)),
    "caltech_birds2011": DatasetInfo("caltech_birds2011", (64, 64, 3), 200, _caltech_birds_hint(
        "Caltech-UCSD Birds-200-2011, 5,994 train and 5,794 test images, a download of over 1 GB on first use"),
        resize=(64, 64)),
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


def _auto_source(name: str, data_dir: str | None) -> str:
  """What 'auto' reads: `<data_dir>/<name>.npz` if it exists, else the idx files if found, else npz with a data dir
  (whose error then says how to get the data) and tfds without one."""
  info = DATASETS[name]
  has_npz = bool(data_dir) and os.path.exists(os.path.join(data_dir, f"{name}.npz"))
  if info.idx_folder and not has_npz and find_idx_folder(name, data_dir) is not None:
    return "idx"
  return "npz" if data_dir else "tfds"


def _valid_sources(name: str) -> tuple[str, ...]:
  return ("auto", "npz", "tfds") + (("idx",) if DATASETS[name].idx_folder else ())


def _resolve_source(name: str, source: str, data_dir: str | None) -> str:
  """'npz', 'tfds' or (MNIST, Fashion-MNIST) 'idx' for a non-digits dataset; 'auto' as in `_auto_source`."""
  if source == "auto":
    source = _auto_source(name, data_dir)
  if source == "idx" and not DATASETS[name].idx_folder:
    raise DataError(f"data source 'idx' (the original idx files) is for "
                    f"{sorted(n for n, i in DATASETS.items() if i.idx_folder)}, not {name!r}; valid for {name!r}: "
                    f"{_valid_sources(name)}.")
  if source not in ("npz", "tfds", "idx"):
    raise DataError(f"Unknown data source {source!r}; valid: 'auto', 'npz', 'tfds', 'idx' (mnist, fashion_mnist), "
                    "'digits'.")
  if source == "npz" and not data_dir:
    raise DataError(f"source='npz' needs a folder with {name}.npz: set data.data_dir or {DATA_DIR_ENV}. "
                    f"To make it: {_hint(name)}.")
  return source


def missing(name: str, *, source: str = "auto", data_dir: str | None = None) -> str | None:
  """None if dataset `name` can be read without a download, else what is missing and how to get it.

  For configs that must fail at once on a machine without the data (e.g. configs/adra_stl10.py), before anything
  is loaded or downloaded. 'npz' (or 'auto' with a data folder) needs `<data_dir>/<name>.npz`; 'idx' (MNIST,
  Fashion-MNIST; also what 'auto' picks when their files are found and no npz is) the four idx files in one of
  `idx_folders(name, data_dir)`; 'tfds' (or 'auto' without a data folder) the tfds dataset prepared in tfds' data
  folder.
  """
  info = get_info(name)
  if name == "digits":
    return None
  data_dir = resolve_data_dir(data_dir)
  if source == "auto":
    source = _auto_source(name, data_dir)
  if source not in _valid_sources(name):
    raise DataError(f"Unknown data source {source!r} for {name!r}; valid: {_valid_sources(name)}.")
  if source == "idx":
    return None if find_idx_folder(name, data_dir) is not None else _idx_not_found(name, data_dir)
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
COARSE_CLASSES = 20  # CIFAR-100's super-classes


def load(name: str, *, source: str = "auto", data_dir: str | None = None, label_mode: str = "fine") -> Arrays:
  """Loads dataset `name` from `source` in {'auto', 'npz', 'tfds', 'idx', 'digits'}.

  'auto' reads `<data_dir>/<name>.npz` when a data dir is set (config or $JAXAD_DATA_DIR) and otherwise uses tfds;
  for MNIST and Fashion-MNIST it reads their idx files when there is no npz but the files are found (module doc).
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
    return load_npz(os.path.join(data_dir, f"{name}.npz"), expected_shape=info.shape, coarse=coarse,
                    num_classes=COARSE_CLASSES if coarse else info.num_classes)
  if source == "idx":
    return load_idx(name, data_dir=data_dir)
  return load_tfds(info.tfds_name, hint=_hint(name), test_split=info.tfds_test_split,
                   label_key="coarse_label" if coarse else "label", resize=info.resize)


def load_split(name: str, split: str, *, source: str = "auto",
               data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """Reads one split of dataset `name`, e.g. `load_split('stl10', 'unlabelled')` for STL-10's OE corpus.

  Args:
    name: a key of `DATASETS`.
    split: 'train', 'test' or one of the dataset's `extra_splits` ('unlabelled' for stl10, 'extra' for svhn).
    source: 'auto', 'npz', 'tfds' or 'idx' as in `load` ('digits' for digits). An npz stores split s as `x_<s>`
      and, when labelled, `y_<s>`.
    data_dir: folder of `<name>.npz` (or of the idx files); default $JAXAD_DATA_DIR.

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
    return _read_npz_split(path, split, labelled=labelled, expected_shape=info.shape, hint=hint,
                           num_classes=info.num_classes)
  if source == "idx":
    return _read_idx_split(name, split, _require_idx_folder(name, data_dir))
  tfds_split = info.tfds_test_split if split == "test" else split
  return _read_tfds_split(info.tfds_name, tfds_split, data_dir=None, labelled=split not in info.unlabelled_splits,
                          hint=hint, resize=info.resize)


def _open_npz(path: str, hint: str):
  if not os.path.exists(path):
    raise DataError(f"Dataset file {path} does not exist. To make it: {hint}.")
  if os.path.isdir(path):
    raise DataError(f"Dataset file {path} is a folder, not an .npz archive. To make it: {hint}.")
  try:
    f = np.load(path, allow_pickle=False)
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise DataError(f"{path} is not a readable .npz archive ({e}). Re-create it: {hint}.") from e
  if not isinstance(f, np.lib.npyio.NpzFile):  # np.load also reads .npy files, whatever their name
    raise DataError(f"{path} is a single .npy array of shape {np.shape(f)}, not an .npz archive of x_train, y_train, "
                    f"x_test, y_test. Re-create it: {hint}.")
  return f


def _check_split(path: str, split: str, x: np.ndarray, y: np.ndarray | None,
                 expected_shape: tuple[int, int, int] | None, hint: str,
                 num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """Validates one split's arrays: uint8 NHWC images, at least one, and integer labels in [0, num_classes)."""
  if x.ndim == 3:  # grayscale stored without a channel axis
    x = x[..., None]
  problem = None
  if not len(x):
    problem = f"x_{split} is empty (0 images)"
  elif x.dtype != np.uint8:
    problem = f"x_{split} has dtype {x.dtype}, expected uint8 images in [0, 255]"
  elif x.ndim != 4:
    problem = f"x_{split} has shape {x.shape}, expected [N, H, W, C]"
  elif expected_shape is not None and x.shape[1:] != tuple(expected_shape):
    problem = f"x_{split} images are {x.shape[1:]}, expected {tuple(expected_shape)}"
  elif x.min() == x.max():  # all-zero (or constant) files: a failed export, which would train on nothing
    problem = f"x_{split} holds the single value {x.flat[0]} in all {len(x)} images: there is no image content"
  elif y is not None and (y.ndim != 1 or len(y) != len(x)):
    problem = f"y_{split} has shape {y.shape}, expected [{len(x)}] labels"
  elif y is not None and not np.issubdtype(y.dtype, np.integer):
    problem = f"y_{split} has dtype {y.dtype}, expected integer labels"
  elif y is not None and num_classes is not None and ((y < 0) | (y >= num_classes)).any():
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    problem = (f"y_{split} holds {len(bad)} labels outside 0..{num_classes - 1} (e.g. {int(y[bad[0]])} at index "
               f"{int(bad[0])})")
  if problem:
    raise DataError(f"{path} is malformed: {problem}. Re-create it: {hint}.")
  return x, (None if y is None else y.astype(np.int64))


def _read_npz_split(path: str, split: str, *, labelled: bool | None, expected_shape, hint: str,
                    num_classes: int | None = None):
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
  return _check_split(path, split, x, y, expected_shape, hint, num_classes)


def load_npz(path: str, *, expected_shape: tuple[int, int, int] | None = None, coarse: bool = False,
             num_classes: int | None = None) -> Arrays:
  """Reads an `x_train, y_train, x_test, y_test` archive and checks it thoroughly (extra arrays are not read).

  `coarse` reads the labels from `y_train_coarse` / `y_test_coarse` (CIFAR-100's super-classes) instead;
  `num_classes` (when given) is the label range [0, num_classes) every label must lie in.
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
                                                              arrays[f"y_{split}"], expected_shape, hint,
                                                              num_classes)
  return Arrays(**arrays)


# What tfds needs to *prepare* a dataset, beyond reading a prepared one: tfds 4.9.x imports importlib_resources
# (declared only for Python < 3.9) and extracts archives and encodes images with TensorFlow (the 'tfds' extra).
_PREPARE_MODULES = ("importlib_resources", "tensorflow")


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """One uint8 [H, W, C] image resized to `size` = (height, width) with PIL's bilinear filter.

  PIL's bilinear widens its support by the scale factor when shrinking, so a large photo is averaged over (not
  aliased) on its way down to a small network's input.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only datasets of varying size need it)

  image = np.asarray(image, np.uint8)
  if image.shape[:2] == tuple(size):
    return image
  if image.ndim == 3 and image.shape[-1] == 1:
    return resize_image(image[..., 0], size)[..., None]
  return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR), np.uint8)


def _read_tfds_split(tfds_name: str, split: str, *, data_dir: str | None, labelled: bool,
                     hint: str, label_key: str = "label",
                     resize: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """One tfds split through `tfds.data_source` (no TensorFlow needed), into preallocated uint8 arrays.

  `resize` (height, width) resizes every image on the way in (`resize_image`), for datasets of varying size.
  """
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
  def image(record):
    return resize_image(record["image"], resize) if resize else np.asarray(record["image"], np.uint8)

  first = image(src[0])
  x = np.empty((n, *first.shape), np.uint8)
  y = np.empty(n, np.int64) if labelled else None
  for i in range(n):
    record = src[i]
    x[i] = image(record)
    if labelled:
      y[i] = record[label_key]
  return (x[..., None] if x.ndim == 3 else x), y


def load_tfds(tfds_name: str, *, data_dir: str | None = None, hint: str | None = None,
              test_split: str = "test", label_key: str = "label", resize: tuple[int, int] | None = None) -> Arrays:
  """Reads the train and `test_split` splits of a tfds image classification dataset through `tfds.data_source`.

  `resize` (height, width): every image resized on load with PIL's bilinear filter (images of varying size).
  """
  hint = hint or ("without internet use a local archive instead: " + _EXPORT_HINT.format(name=tfds_name))
  kw = dict(data_dir=data_dir, labelled=True, hint=hint, label_key=label_key, resize=resize)
  x_train, y_train = _read_tfds_split(tfds_name, "train", **kw)
  x_test, y_test = _read_tfds_split(tfds_name, test_split, **kw)
  return Arrays(x_train, y_train, x_test, y_test)


# ---- The original MNIST / Fashion-MNIST files (LeCun et al.'s idx format) ----

# <split>: (images file, labels file), without '.gz'; each may be gzipped (name + '.gz') or plain.
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_SYSTEM_DIR = "/usr/share/datasets"  # where Debian's dataset-* packages (dataset-fashion-mnist) put their files
_IDX_UBYTE = 0x08  # the idx type code of unsigned bytes: the only one MNIST and Fashion-MNIST use


def read_idx(path: str, ndim: int, *, hint: str = "") -> np.ndarray:
  """Reads one idx file (gzipped or plain, told apart by its first bytes) of unsigned bytes as uint8 [d1, ..., dn].

  The idx format: a big-endian 32-bit magic number 0x0000TTNN (TT = 0x08 for unsigned bytes, NN = the number of
  dimensions: 0x00000803 for [N, rows, cols] images, 0x00000801 for [N] labels), then NN big-endian 32-bit sizes,
  then exactly prod(sizes) bytes in C order.

  Args:
    path: the file.
    ndim: the number of dimensions the file must have (3 for images, 1 for labels).
    hint: how to get the file again, for error messages.

  Returns:
    uint8 array of the stored sizes.

  Raises:
    DataError: naming `path`, when it cannot be read, is not valid gzip, has another magic number, or holds fewer or
      more bytes than its header says.

  References:
    LeCun, Cortes & Burges, "The MNIST database of handwritten digits" (the idx file format).
  """
  again = f" Get it again: {hint}." if hint else ""
  try:
    with open(path, "rb") as f:
      data = f.read()
    if data[:2] == b"\x1f\x8b":  # the gzip magic
      data = gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
    raise DataError(f"{path} is not a readable idx file ({type(e).__name__}: {e}).{again}") from e
  expected = (_IDX_UBYTE << 8) | ndim
  header = 4 + 4 * ndim
  if len(data) < 4:
    raise DataError(f"{path} is truncated: {len(data)} bytes, shorter than an idx magic number.{again}")
  magic = int.from_bytes(data[:4], "big")
  if magic != expected:
    raise DataError(f"{path} is not an idx file of {ndim}-d unsigned bytes: magic number 0x{magic:08x}, expected "
                    f"0x{expected:08x}.{again}")
  if len(data) < header:
    raise DataError(f"{path} is truncated: {len(data)} bytes, shorter than its {header}-byte header.{again}")
  dims = tuple(int(v) for v in np.frombuffer(data, ">u4", ndim, offset=4))
  size = int(np.prod(dims, dtype=np.int64))
  if len(data) - header != size:
    what = "truncated" if len(data) - header < size else "malformed"
    raise DataError(f"{path} is {what}: its header says {dims} = {size} bytes of data, the file holds "
                    f"{len(data) - header}.{again}")
  return np.frombuffer(data, np.uint8, size, offset=header).reshape(dims).copy()


def idx_folders(name: str, data_dir: str | None = None) -> list[str]:
  """Where source 'idx' looks for dataset `name`'s files, in order: `<data_dir>/<idx_folder>`, `<data_dir>`,
  `/usr/share/datasets/<idx_folder>` (data_dir: the argument, else $JAXAD_DATA_DIR)."""
  info = get_info(name)
  if not info.idx_folder:
    raise DataError(f"Dataset {name!r} has no idx files; source 'idx' is for "
                    f"{sorted(n for n, i in DATASETS.items() if i.idx_folder)}.")
  data_dir = resolve_data_dir(data_dir)
  local = [os.path.join(data_dir, info.idx_folder), data_dir] if data_dir else []
  return local + [os.path.join(IDX_SYSTEM_DIR, info.idx_folder)]


def _idx_file(folder: str, stem: str) -> str | None:
  """`<folder>/<stem>.gz` if it exists, else `<folder>/<stem>`, else None."""
  for path in (os.path.join(folder, stem + ".gz"), os.path.join(folder, stem)):
    if os.path.isfile(path):
      return path
  return None


def find_idx_folder(name: str, data_dir: str | None = None) -> str | None:
  """The first of `idx_folders(name, data_dir)` that holds all four idx files (each gzipped or plain), or None."""
  for folder in idx_folders(name, data_dir):
    if all(_idx_file(folder, stem) for pair in IDX_FILES.values() for stem in pair):
      return folder
  return None


def _idx_not_found(name: str, data_dir: str | None) -> str:
  """What is missing where (each searched folder), and how to get the files."""
  stems = [stem for pair in IDX_FILES.values() for stem in pair]
  where = []
  for folder in idx_folders(name, data_dir):
    lacking = [s for s in stems if not _idx_file(folder, s)]
    where.append(f"{folder} (no folder)" if not os.path.isdir(folder) else f"{folder} (lacks {', '.join(lacking)})")
  return f"the idx files of {name} are in none of {'; '.join(where)}; to get them: {_hint(name)}"


def _require_idx_folder(name: str, data_dir: str | None) -> str:
  folder = find_idx_folder(name, data_dir)
  if folder is None:
    raise DataError(f"source='idx': {_idx_not_found(name, data_dir)}.")
  return folder


def _read_idx_split(name: str, split: str, folder: str) -> tuple[np.ndarray, np.ndarray]:
  """One split's images (uint8 [N, H, W, 1]) and labels (int64 [N]) from `folder`, checked against `name`'s info."""
  info, hint = get_info(name), _hint(name)
  if split not in IDX_FILES:
    raise ConfigError(f"The idx files of {name!r} hold the splits {list(IDX_FILES)}, not {split!r}.")
  images_path, labels_path = (_idx_file(folder, stem) for stem in IDX_FILES[split])
  x = read_idx(images_path, 3, hint=hint)[..., None]
  y = read_idx(labels_path, 1, hint=hint).astype(np.int64)
  if x.shape[1:] != tuple(info.shape):
    raise DataError(f"{images_path} holds images of {x.shape[1:3]}, expected {info.shape[:2]} for {name}. Get the "
                    f"right files: {hint}.")
  if len(x) != len(y):
    raise DataError(f"{images_path} holds {len(x)} images but {labels_path} {len(y)} labels. Get matching files: "
                    f"{hint}.")
  if len(y) and y.max() >= info.num_classes:
    raise DataError(f"{labels_path} has label {y.max()}, expected 0..{info.num_classes - 1} for {name}. Get the right "
                    f"files: {hint}.")
  return x, y


def load_idx(name: str, *, data_dir: str | None = None) -> Arrays:
  """MNIST's or Fashion-MNIST's train and test splits from their idx files (`find_idx_folder`).

  Images uint8 [N, 28, 28, 1], labels int64 [N]: 60,000 + 10,000 for both datasets.
  """
  folder = _require_idx_folder(name, data_dir)
  x_train, y_train = _read_idx_split(name, "train", folder)
  x_test, y_test = _read_idx_split(name, "test", folder)
  return Arrays(x_train, y_train, x_test, y_test)


def load_digits() -> Arrays:
  """scikit-learn's 8x8 digits as uint8 [N, 8, 8, 1], split 50/50 stratified with a fixed seed."""
  from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = digits.target.astype(np.int64)
  x_tr, x_te, y_tr, y_te = model_selection.train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
  return Arrays(x_tr, y_tr, x_te, y_te)
