"""MPI3D-real (Gondal et al. 2019) and the intervention protocols of Deecke et al. (2021), section 5.1.

The data: `mpi3d_real.npz`, one array `images` of uint8 [1,036,800, 64, 64, 3] (12 GB, stored uncompressed, so
`load` memory-maps it), photos of a robot arm holding an object. Image i shows the factors `factors_of(i)`, the
row-major (C order) decoding over

    object_color      6  white, green, red, blue, brown, olive
    object_shape      6  cone, cube, cylinder, hexagonal, pyramid, sphere
    object_size       2  small, large
    camera_height     3  top, center, bottom
    background_color  3  purple, sea green, salmon
    horizontal_axis  40  arm position
    vertical_axis    40  arm position

Every function takes `sizes=` (default `FACTOR_SIZES`) so tests can use a small grid with the same layout.

Protocols return a `Selection` of indices into that array (cheap; images are gathered only by `Selection.task` and
`Selection.oe_images`, which read just the needed rows of the memory map).

`interventions(anomaly=...)` (paper section 5.1). jaxad's reading of the paper:

* Normal = the object "red cone", and since the size intervention is "increasing size" (small -> large), the *small*
  red cone. "Train models on all available views": the four remaining factors (camera height, background colour,
  horizontal and vertical arm position) are views and take all their values; the paper names only the object as
  fixed and says interventions on camera height / background are not considered.
* Anomaly = one intervention on the object, everything else unchanged: 'color' red -> blue, 'shape' cone -> cube,
  'size' small -> large (the paper's three targets; `target=` picks another value). Test anomalies thus differ from
  test normals in exactly the intervened factor.
* The paper has no train/test split of the normal images. jaxad holds out a seeded random `test_fraction` of the
  *views*: train = the normal object at the other views; test = the normal object and the intervened object at the
  held-out views, so each test anomaly has a normal twin with the same view (balanced: AUROC and AP are both sound).
* OE = "all remaining images that do not belong to neither the normal nor the anomaly class", where "the anomaly
  class" is read as every image whose intervened factor has the target value (e.g. every blue object): the paper
  stresses that "SAD has never seen a blue example", and that OE holds white, green, brown and olive. So OE = every
  image that is neither the normal object nor has the target value, at all views (for 'color' on the real data:
  59 of the 72 objects, 849,600 images; `Selection.oe_images(limit=...)` subsamples).

`color_shift_sequence()` (section 5.1, "Non-Semantic Shift", Fig. 2): shape is semantic (cone normal, cube
anomalous), colour is not. Trial k has the normal colours C_k = the first k+1 of `colors` (the paper's order starts
red, blue, green, white, "etc."; jaxad continues with brown, olive). Reading:

* train = cones with a colour in C_k, at the training views; the views here are every factor other than colour and
  shape (object size included: the experiment does not fix it; `size=0` fixes small as in the intervention protocol);
* test = the same for every trial: cones (label 0) and cubes (label 1) of *all six* colours ("cone vs. cube (of any
  color)") at the held-out views, so test cones of an unseen colour measure robustness to the non-semantic shift.
  `test_classes` holds each test image's colour code, for per-colour breakdowns;
* OE = shapes other than cone and cube with a colour in C_k, all views ("includes shapes other than cone and cube,
  but never additional colors").

References: Deecke, Ruff, Vandermeulen, Bilen. Transfer-Based Semantic Anomaly Detection. ICML 2021.
Gondal et al. On the Transfer of Inductive Bias from Simulation to the Real World: a New Disentanglement Dataset.
NeurIPS 2019.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import zipfile
from collections.abc import Sequence

import numpy as np

from jaxad.data import downloads, protocols, sources
from jaxad.errors import ConfigError, DataError

FILENAME = "mpi3d_real.npz"
URL = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_real.npz"
MD5 = "0f33f609918fb5c97996692f91129802"
IMAGE_SHAPE = (64, 64, 3)

FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                "horizontal_axis", "vertical_axis")
FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)
NUM_IMAGES = math.prod(FACTOR_SIZES)  # 1,036,800
COLOR, SHAPE, SIZE, CAMERA_HEIGHT, BACKGROUND, HORIZONTAL, VERTICAL = range(7)
VALUES = {
    "object_color": ("white", "green", "red", "blue", "brown", "olive"),
    "object_shape": ("cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere"),
    "object_size": ("small", "large"),
    "camera_height": ("top", "center", "bottom"),
    "background_color": ("purple", "sea green", "salmon"),
}

# The normal object of section 5.1 (small red cone) and the paper's three interventions: (factor, target value).
NORMAL_OBJECT = (2, 0, 0)  # (color=red, shape=cone, size=small)
INTERVENTIONS = {"color": (COLOR, 3), "shape": (SHAPE, 1), "size": (SIZE, 1)}  # blue, cube, large
COLOR_ORDER = ("red", "blue", "green", "white", "brown", "olive")

_HOW_TO_GET = (f"download it (12 GB, md5 {MD5}) with jaxad.data.mpi3d.download(path) on a machine with internet, "
               f"or from {URL} with any tool, and give its local path to mpi3d.load(path) (or put {FILENAME} in "
               f"${sources.DATA_DIR_ENV})")


def code(factor: str, value: str) -> int:
  """The integer value of a named factor value, e.g. `code('object_color', 'red') == 2`."""
  if factor not in VALUES:
    raise ConfigError(f"Factor {factor!r} has no named values; named factors: {sorted(VALUES)}.")
  if value not in VALUES[factor]:
    raise ConfigError(f"{factor} has no value {value!r}; valid: {list(VALUES[factor])}.")
  return VALUES[factor].index(value)


def factor_index(factors: np.ndarray | Sequence[int], *, sizes: Sequence[int] = FACTOR_SIZES) -> np.ndarray:
  """Row-major image index of factor values.

  Args:
    factors: int [..., 7] factor values in `FACTOR_NAMES` order.
    sizes: the number of values of each factor.

  Returns:
    int64 [...] indices into the image array.
  """
  factors = np.asarray(factors)
  if factors.ndim < 1 or factors.shape[-1] != len(sizes) or not np.issubdtype(factors.dtype, np.integer):
    raise ConfigError(f"factors must be integers of shape [..., {len(sizes)}], got {factors.dtype} {factors.shape}.")
  if np.any(factors < 0) or np.any(factors >= np.asarray(sizes)):
    raise ConfigError(f"factor values out of range for factor sizes {tuple(sizes)}.")
  return np.ravel_multi_index(tuple(np.moveaxis(factors, -1, 0)), tuple(sizes)).astype(np.int64)


def factors_of(indices: np.ndarray | int, *, sizes: Sequence[int] = FACTOR_SIZES) -> np.ndarray:
  """Factor values of image indices (row-major decoding): int64 [..., 7] for int [...] indices."""
  indices = np.asarray(indices)
  n = math.prod(sizes)
  if not np.issubdtype(indices.dtype, np.integer) or np.any(indices < 0) or np.any(indices >= n):
    raise ConfigError(f"image indices must be integers in [0, {n}).")
  return np.stack(np.unravel_index(indices, tuple(sizes)), axis=-1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Selection:
  """One AD problem on MPI3D as sorted int64 indices into the image array."""
  train: np.ndarray         # [N_train] normal training images
  test: np.ndarray          # [N_test] test images
  test_labels: np.ndarray   # int32 [N_test], 1 = anomalous
  test_classes: np.ndarray  # int64 [N_test], a factor value per test image (see the protocol)
  oe: np.ndarray            # [N_oe] outlier-exposure images
  description: str = ""

  def task(self, images: np.ndarray) -> protocols.Task:
    """Gathers the train and test images (e.g. from `load()`'s memory map) into a `protocols.Task`."""
    return protocols.Task(np.asarray(images[self.train]), np.asarray(images[self.test]), self.test_labels,
                          self.test_classes)

  def oe_images(self, images: np.ndarray, *, limit: int = 0, seed: int = 0) -> np.ndarray:
    """The OE images; `limit` > 0 keeps a seeded random subset of that many (in index order)."""
    idx = self.oe
    if limit and limit < len(idx):
      idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    return np.asarray(images[idx])


def _views(n_views: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train views, test views): a seeded split of range(n_views), both sorted."""
  if not 0.0 < test_fraction < 1.0:
    raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
  n_test = int(round(test_fraction * n_views))
  if not 0 < n_test < n_views:
    raise ConfigError(f"test_fraction={test_fraction} leaves no train or no test views out of {n_views}.")
  perm = np.random.default_rng(seed).permutation(n_views)
  return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _block(objects: np.ndarray, views: np.ndarray, n_views: int) -> np.ndarray:
  """Indices of the given objects (row-major ids over the leading factors) at the given views, sorted."""
  return np.sort((np.asarray(objects, np.int64)[:, None] * n_views + np.asarray(views)[None, :]).ravel())


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
  sizes = tuple(int(s) for s in sizes)
  if len(sizes) != len(FACTOR_NAMES) or sizes[:3] != FACTOR_SIZES[:3] or min(sizes) < 1:
    raise ConfigError(f"sizes must give all {len(FACTOR_NAMES)} factors with the real colour/shape/size counts "
                      f"{FACTOR_SIZES[:3]} first, got {sizes}.")
  return sizes


def interventions(*, anomaly: str, sizes: Sequence[int] = FACTOR_SIZES, target: int | None = None,
                  test_fraction: float = 0.2, seed: int = 0) -> Selection:
  """Deecke et al. 2021 section 5.1: normal = small red cone at every view; anomaly = one intervention.

  See the module docstring for how jaxad reads the paper (views, test split, OE).

  Args:
    anomaly: 'color' (red -> blue), 'shape' (cone -> cube) or 'size' (small -> large).
    sizes: factor sizes (the real data's by default).
    target: the intervened factor's anomalous value (default: the paper's blue / cube / large).
    test_fraction: share of the views held out for testing.
    seed: picks the held-out views.

  Returns:
    A `Selection`: train = normal object at the training views; test = normal object (label 0) and the intervened
    object (label 1) at the held-out views, `test_classes` = the intervened factor's value; OE = every image that
    is neither the normal object nor has the target value.
  """
  sizes = _check_sizes(sizes)
  if anomaly not in INTERVENTIONS:
    raise ConfigError(f"anomaly must be one of {sorted(INTERVENTIONS)}, got {anomaly!r}.")
  factor, default_target = INTERVENTIONS[anomaly]
  target = default_target if target is None else int(target)
  if not 0 <= target < sizes[factor] or target == NORMAL_OBJECT[factor]:
    raise ConfigError(f"target={target} for {FACTOR_NAMES[factor]} must differ from the normal value "
                      f"{NORMAL_OBJECT[factor]} and lie in [0, {sizes[factor]}).")
  n_views = math.prod(sizes[3:])
  train_views, test_views = _views(n_views, test_fraction, seed)
  object_sizes = sizes[:3]
  normal = int(np.ravel_multi_index(NORMAL_OBJECT, object_sizes))
  intervened = list(NORMAL_OBJECT)
  intervened[factor] = target
  anomalous = int(np.ravel_multi_index(tuple(intervened), object_sizes))
  objects = factors_of(np.arange(math.prod(object_sizes)), sizes=object_sizes)
  oe_objects = np.flatnonzero((objects[:, factor] != target) & (np.arange(len(objects)) != normal))
  test = np.concatenate([_block([normal], test_views, n_views), _block([anomalous], test_views, n_views)])
  labels = np.repeat(np.array([0, 1], np.int32), len(test_views))
  classes = np.repeat(np.array([NORMAL_OBJECT[factor], target], np.int64), len(test_views))
  order = np.argsort(test, kind="stable")
  name = VALUES[FACTOR_NAMES[factor]][target]
  return Selection(train=_block([normal], train_views, n_views), test=test[order], test_labels=labels[order],
                   test_classes=classes[order], oe=_block(oe_objects, np.arange(n_views), n_views),
                   description=f"MPI3D intervention {anomaly}: small red cone -> {name}")


def color_shift_sequence(*, colors: Sequence[str] = COLOR_ORDER, sizes: Sequence[int] = FACTOR_SIZES,
                         size: int | None = None, test_fraction: float = 0.2, seed: int = 0) -> list[Selection]:
  """Deecke et al. 2021 Fig. 2: cone (normal) vs. cube (anomalous) as the normal colours grow one by one.

  See the module docstring for how jaxad reads the paper.

  Args:
    colors: the order in which colours join the normal data (names from `VALUES['object_color']`, no repeats).
    sizes: factor sizes (the real data's by default).
    size: None (default) lets object size vary like a view; 0 or 1 fixes small or large everywhere.
    test_fraction: share of the views held out for testing.
    seed: picks the held-out views (the same for every trial).

  Returns:
    One `Selection` per trial (trial k: the first k+1 colours are normal), all with the same test set:
    cones (label 0) and cubes (label 1) of every colour at the held-out views; `test_classes` = colour code.
  """
  sizes = _check_sizes(sizes)
  codes = [code("object_color", c) for c in colors]
  if not codes or len(set(codes)) != len(codes):
    raise ConfigError(f"colors must be a non-empty sequence without repeats, got {tuple(colors)}.")
  if size is not None and size not in range(sizes[SIZE]):
    raise ConfigError(f"size must be None, 0 (small) or 1 (large), got {size!r}.")
  n_lead = 2 if size is None else 3  # factors that name an object; the rest are views
  lead_sizes = sizes[:n_lead]
  n_views = math.prod(sizes[n_lead:])
  train_views, test_views = _views(n_views, test_fraction, seed)
  objects = factors_of(np.arange(math.prod(lead_sizes)), sizes=lead_sizes)
  in_size = np.ones(len(objects), bool) if size is None else objects[:, SIZE] == size
  cone, cube = code("object_shape", "cone"), code("object_shape", "cube")
  test_objects = np.flatnonzero(np.isin(objects[:, SHAPE], (cone, cube)) & in_size)
  test = _block(test_objects, test_views, n_views)
  test_factors = objects[test // n_views]
  test_labels = (test_factors[:, SHAPE] == cube).astype(np.int32)
  test_classes = test_factors[:, COLOR].astype(np.int64)
  trials = []
  for k in range(len(codes)):
    normal_colors = np.isin(objects[:, COLOR], codes[:k + 1]) & in_size
    train_objects = np.flatnonzero(normal_colors & (objects[:, SHAPE] == cone))
    oe_objects = np.flatnonzero(normal_colors & ~np.isin(objects[:, SHAPE], (cone, cube)))
    trials.append(Selection(train=_block(train_objects, train_views, n_views), test=test, test_labels=test_labels,
                            test_classes=test_classes, oe=_block(oe_objects, np.arange(n_views), n_views),
                            description="MPI3D colour shift, normal colours: " + ", ".join(colors[:k + 1])))
  return trials


def default_path(data_dir: str | None = None) -> str:
  """`<data_dir or $JAXAD_DATA_DIR>/mpi3d_real.npz`."""
  data_dir = sources.resolve_data_dir(data_dir)
  if not data_dir:
    raise DataError(f"No path for {FILENAME}: pass one, or set data.data_dir or ${sources.DATA_DIR_ENV}. "
                    f"To get the file: {_HOW_TO_GET}.")
  return os.path.join(data_dir, FILENAME)


def file_md5(path: str, *, chunk_size: int = 1 << 24) -> str:
  """The md5 hex digest of a file, read in chunks."""
  return downloads.file_digest(path, "md5", chunk_size=chunk_size)


def download(path: str | None = None, *, url: str = URL, md5: str = MD5, timeout: float = 60.0,
             chunk_size: int = 1 << 24) -> str:
  """Downloads MPI3D-real to `path` (default `default_path()`), verifying its md5; returns the path.

  Streams to a temporary file beside `path`, checks the md5 and only then renames it into place (atomic), so `path`
  is either absent or complete. An existing `path` with the right md5 is kept as is.
  """
  return downloads.fetch(url, path or default_path(), checksum=md5, algorithm="md5", name="MPI3D-real",
                         timeout=timeout, chunk_size=chunk_size,
                         offline_hint=f"fetch it elsewhere (12 GB, md5 {md5}) and give its local path to "
                                      f"mpi3d.load(path) (or put {FILENAME} in ${sources.DATA_DIR_ENV})")


def _memmap_npz_member(path: str, member: str) -> np.ndarray | None:
  """A read-only memory map of an uncompressed `.npy` member of a zip (npz) archive; None if it is compressed."""
  with zipfile.ZipFile(path) as zf:
    info = zf.getinfo(member)
  if info.compress_type != zipfile.ZIP_STORED:
    return None
  with open(path, "rb") as f:
    f.seek(info.header_offset)
    local = f.read(30)
    if local[:4] != b"PK\x03\x04":
      raise DataError(f"{path} is not a valid zip archive (bad local header of {member}).")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    f.seek(info.header_offset + 30 + name_len + extra_len)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    offset = f.tell()
  return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def load(path: str | None = None, *, mmap: bool = True, check_md5: bool = False, md5: str = MD5,
         sizes: Sequence[int] = FACTOR_SIZES) -> np.ndarray:
  """The MPI3D-real images, uint8 [prod(sizes), 64, 64, 3], row-major over the factors.

  Args:
    path: `mpi3d_real.npz` (key `images`) or an `.npy` of the same array; default `default_path()`.
    mmap: memory-map the array (read-only) instead of reading 12 GB into RAM. Works for `.npy` files and for
      uncompressed `.npz` archives such as the published one; a compressed archive is read whole.
    check_md5: verify the whole file against `md5` first (reads all 12 GB; off by default).
    md5: the expected digest (the published file's by default).
    sizes: the factor sizes the array must match.

  Returns:
    The images (a `np.memmap` when memory-mapped).
  """
  sizes = tuple(sizes)
  path = path or default_path()
  if not os.path.exists(path):
    raise DataError(f"MPI3D-real file {path} does not exist. To get it: {_HOW_TO_GET}.")
  if check_md5:
    got = file_md5(path)
    if got != md5:
      raise DataError(f"{path} has md5 {got}, expected {md5}: the file is truncated or corrupted. Download it "
                      f"again from {URL} (jaxad.data.mpi3d.download(path)).")
  try:
    if path.endswith(".npy"):
      images = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    else:
      with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
      if "images.npy" not in names:
        raise DataError(f"{path} has no array 'images' (has {sorted(n[:-4] for n in names)}). To get the right "
                        f"file: {_HOW_TO_GET}.")
      images = _memmap_npz_member(path, "images.npy") if mmap else None
      if images is None:
        with np.load(path, allow_pickle=False) as f:
          images = f["images"]
  except DataError:
    raise
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise DataError(f"{path} is not a readable MPI3D archive ({type(e).__name__}: {e}). To get it: "
                    f"{_HOW_TO_GET}.") from e
  expected = (math.prod(sizes), *IMAGE_SHAPE)
  if images.dtype != np.uint8 or images.shape != expected:
    raise DataError(f"{path} holds {images.dtype} {images.shape}, expected uint8 {expected}. To get the right "
                    f"file: {_HOW_TO_GET}.")
  return images
