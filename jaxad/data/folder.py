"""Users' own images: a folder of normal images plus a test folder with one sub-folder per class, or MVTec AD.

Two layouts, both read into `FolderExamples`, a grain random-access source that decodes each image on access
(uint8 until batching, like every jaxad source), resized to one `size` whatever the files' own sizes:

* `folder_splits(normal_dir, test_dir, size=...)`, anomalib's folder dataset:

      normal_dir/*.png                 train: label 0
      test_dir/good/*.png              test: label 0, class 0
      test_dir/<defect>/*.jpg          test: label 1, classes 1.. in sorted sub-folder order

* `mvtec_splits(root, category, size=...)`, MVTec AD as downloaded (Bergmann et al. 2019):

      <root>/<category>/train/good/*.png
      <root>/<category>/test/{good,<defect>}/*.png
      <root>/<category>/ground_truth/<defect>/<stem>_mask.png      one per defective test image

  Test examples carry a `mask` (uint8 [H, W] in {0, 1}, all zero for good images) for pixel-level metrics.

Images may be PNG, JPEG, BMP or TIFF (`IMAGE_EXTENSIONS`, any case) in grey, RGB or RGBA: `channels` says what the
model gets (grey is replicated to RGB, RGB converted to grey with PIL's luma weights, alpha dropped). A file that cannot
be decoded raises a `DataError` naming it, at the first access, so a broken file never silently becomes a black
image.

References: Bergmann, Fauser, Sattlegger, Steger. MVTec AD -- A Comprehensive Real-World Dataset for Unsupervised
Anomaly Detection. CVPR 2019. (Data: CC BY-NC-SA 4.0, non-commercial use only.)
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from jaxad.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # matched case-insensitively
NORMAL_CLASS = "good"  # the test sub-folder of normal images (MVTec AD's name); class id 0

MVTEC_CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                    "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")  # the other ten categories are objects
MVTEC_URL = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
MVTEC_LICENCE = "CC BY-NC-SA 4.0"
MVTEC_MASK_SUFFIX = "_mask.png"


def _check_size(size) -> tuple[int, int]:
  """`size` as a (height, width) pair of positive ints."""
  try:
    height, width = (operator.index(s) for s in size)
  except (TypeError, ValueError):
    raise ConfigError(f"size must be a (height, width) pair of ints, got {size!r}.") from None
  if height < 1 or width < 1:
    raise ConfigError(f"size must be positive, got {size!r}.")
  return height, width


def _check_channels(channels: int) -> int:
  if channels not in (1, 3):
    raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
  return channels


def _open_decoded(path: str) -> Image.Image:
  """The fully decoded image at `path`, upright, or a DataError naming the file."""
  if not os.path.isfile(path):
    raise DataError(f"Image {path} does not exist. Remove it from the dataset or replace it with a readable image.")
  try:
    with Image.open(path) as image:
      image.load()  # PIL decodes lazily: force it here so a truncated file fails now, with its name
      # Phone and camera JPEGs store their rotation in EXIF; apply it so pixels match what viewers show.
      return ImageOps.exif_transpose(image)
  except Exception as e:  # pylint: disable=broad-except  (PIL raises many kinds on corrupt data: OSError,
    # SyntaxError, ValueError, struct.error, zlib.error, DecompressionBombError)
    raise DataError(f"Cannot read image {path} ({type(e).__name__}: {e}). Remove the file or replace it with a "
                    f"readable {', '.join(IMAGE_EXTENSIONS)} image.") from e


def _to_8bit(image: Image.Image) -> Image.Image:
  """16-bit grey (PNG/TIFF modes 'I;16*' and 'I') scaled to 8 bits; PIL's own convert would clip at 255 instead."""
  if image.mode == "I" or image.mode.startswith("I;16"):
    values = np.asarray(image).astype(np.uint32)
    return Image.fromarray(np.clip(values // 257, 0, 255).astype(np.uint8), mode="L")
  return image


def read_image(path: str, *, size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
  """Decodes one image file to uint8 pixels.

  Args:
    path: a PNG, JPEG, BMP or TIFF file.
    size: (height, width) to resize to with bilinear resampling (antialiased when shrinking: PIL widens the filter
      by the scale factor); None keeps the file's size.
    channels: 1 (grey; colour is converted with PIL's ITU-R 601-2 luma weights) or 3 (RGB; grey is replicated).
      Alpha is dropped, not composited.

  Returns:
    uint8 [H, W, channels].

  Raises:
    DataError: the file is missing, not an image, or corrupt (e.g. truncated); the message names it.
  """
  channels = _check_channels(channels)
  size = None if size is None else _check_size(size)
  image = _open_decoded(path)
  try:
    image = _to_8bit(image).convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != (size[1], size[0]):
      image = image.resize((size[1], size[0]), resample=Image.Resampling.BILINEAR)  # PIL takes (width, height)
    pixels = np.array(image, dtype=np.uint8)
  except Exception as e:  # pylint: disable=broad-except  (exotic modes, e.g. float TIFFs, fail in convert)
    raise DataError(f"Cannot convert image {path} (mode {image.mode}) to {channels} channel(s) ({e}). Remove the "
                    "file or replace it with an 8-bit grey, RGB or RGBA image.") from e
  return pixels[..., None] if pixels.ndim == 2 else pixels


def read_mask(path: str, *, size: tuple[int, int]) -> np.ndarray:
  """A ground-truth mask as uint8 [H, W] in {0, 1}, resized to `size` = (height, width) with nearest resampling.

  Nearest keeps the mask binary and aligned with the bilinear-resized image (PIL maps pixel centres the same way for
  both). Masks stored as 0/255 (MVTec AD) are cut at 128, which also removes JPEG noise; masks stored as 0/1 are
  kept as they are.
  """
  height, width = _check_size(size)
  grey = np.asarray(_to_8bit(_open_decoded(path)).convert("L").resize(
      (width, height), resample=Image.Resampling.NEAREST))
  return (grey >= 128 if grey.max() > 1 else grey > 0).astype(np.uint8)


def _is_image_file(directory: str, name: str) -> bool:
  # Hidden files are skipped: macOS leaves `._name.png` resource forks beside images, which are not images.
  return (not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
          and os.path.isfile(os.path.join(directory, name)))


def _sub_folders(directory: str) -> list[str]:
  return sorted(name for name in os.listdir(directory)
                if not name.startswith(".") and os.path.isdir(os.path.join(directory, name)))


def list_images(directory: str) -> list[str]:
  """The image files directly in `directory` (not in its sub-folders), sorted by name.

  Raises:
    DataError: `directory` does not exist or holds no image files (the message names it).
  """
  if not os.path.isdir(directory):
    raise DataError(f"Image folder {directory} does not exist. Check the path (it is read as given, relative to "
                    f"the current directory {os.getcwd()} unless absolute).")
  paths = sorted(os.path.join(directory, name) for name in os.listdir(directory) if _is_image_file(directory, name))
  if not paths:
    subs = _sub_folders(directory)
    where = f"; it has sub-folders {subs}, whose images are not read from here" if subs else ""
    raise DataError(f"Image folder {directory} has no image files ({', '.join(IMAGE_EXTENSIONS)}, any case){where}. "
                    "Put images in it or remove it.")
  return paths


class FolderExamples:
  """A grain random-access data source over image files (decoded on access, uint8).

  Example `i` is `{'image': uint8 [H, W, C], 'label': int32 (1 = anomalous), 'class': int32, 'path': str}`, plus
  `'mask': uint8 [H, W]` in {0, 1} when masks were given. Works with `grain.MapDataset.source(...)` and pickles
  (for grain's worker processes) as plain lists of paths.

  Attributes:
    paths, labels, classes, masks: one entry per example, as given (`masks` is None without masks).
    size: (height, width) of every image.
    channels: 1 or 3.
    class_names: the name of each class id.
  """

  def __init__(self, paths: Sequence[str], labels: Sequence[int], classes: Sequence[int], *, size: tuple[int, int],
               channels: int, masks: Sequence[str | None] | None = None,
               class_names: Sequence[str] | None = None):
    """Wraps files without reading them.

    Args:
      paths: image files.
      labels: 0 (normal) or 1 (anomalous) per image.
      classes: a class id >= 0 per image (e.g. the defect type).
      size: (height, width) every image is resized to.
      channels: 1 or 3.
      masks: optional ground-truth mask file per image; a None entry is an all-zero (defect-free) mask.
      class_names: the name of each class id; default their numbers as strings.
    """
    self.paths = [os.fspath(p) for p in paths]
    self.labels = np.asarray(labels, np.int32).reshape(-1)
    self.classes = np.asarray(classes, np.int32).reshape(-1)
    self.masks = None if masks is None else [None if m is None else os.fspath(m) for m in masks]
    self.size = _check_size(size)
    self.channels = _check_channels(channels)
    n = len(self.paths)
    lengths = {"labels": len(self.labels), "classes": len(self.classes)}
    if self.masks is not None:
      lengths["masks"] = len(self.masks)
    wrong = {k: v for k, v in lengths.items() if v != n}
    if wrong:
      raise ConfigError(f"FolderExamples got {n} paths but {wrong}; give one entry per image.")
    if not np.isin(self.labels, (0, 1)).all():
      raise ConfigError(f"labels must be 0 (normal) or 1 (anomalous), got {sorted(set(self.labels.tolist()))}.")
    if (self.classes < 0).any():
      raise ConfigError("classes must be ids >= 0.")
    num_classes = int(self.classes.max()) + 1 if n else 0
    self.class_names = (tuple(str(c) for c in range(num_classes)) if class_names is None
                        else tuple(str(c) for c in class_names))
    if len(self.class_names) < num_classes:
      raise ConfigError(f"class_names has {len(self.class_names)} names for class ids up to {num_classes - 1}.")

  def __len__(self) -> int:
    return len(self.paths)

  def __repr__(self) -> str:
    return (f"FolderExamples({len(self)} images, {int(self.labels.sum())} anomalous, size={self.size}, "
            f"channels={self.channels}, classes={self.class_names}, masks={self.masks is not None})")

  def __getitem__(self, i) -> dict:
    i = operator.index(i)
    if not -len(self) <= i < len(self):
      raise IndexError(f"example {i} out of range for {len(self)} images")
    example = {
        "image": read_image(self.paths[i], size=self.size, channels=self.channels),
        "label": np.int32(self.labels[i]),
        "class": np.int32(self.classes[i]),
        "path": self.paths[i],
    }
    if self.masks is not None:
      mask = self.masks[i]
      example["mask"] = np.zeros(self.size, np.uint8) if mask is None else read_mask(mask, size=self.size)
    return example

  def take(self, indices: np.ndarray) -> dict:
    """The examples at `indices`, stacked: image [B, H, W, C], label [B], class [B], path str [B], mask [B, H, W]."""
    examples = [self[i] for i in np.asarray(indices, np.int64).reshape(-1)]
    height, width = self.size
    empty = {"image": np.zeros((0, height, width, self.channels), np.uint8), "label": np.zeros(0, np.int32),
             "class": np.zeros(0, np.int32), "path": np.zeros(0, str), "mask": np.zeros((0, height, width), np.uint8)}
    keys = ["image", "label", "class", "path"] + (["mask"] if self.masks is not None else [])
    if not examples:
      return {k: empty[k] for k in keys}
    return {k: np.array([e[k] for e in examples]) if k == "path" else np.stack([e[k] for e in examples])
            for k in keys}


def _test_examples(test_dir: str, *, size, channels: int,
                   mask_of: Callable[[str, str], str] | None = None) -> FolderExamples:
  """One example per image in `test_dir`'s sub-folders; 'good' is normal (class 0), the others anomalous (1..).

  `mask_of(defect, image_path)` gives the mask file of each anomalous image (MVTec AD); None = no masks.
  """
  if not os.path.isdir(test_dir):
    raise DataError(f"Test folder {test_dir} does not exist. Make it with one sub-folder per class: "
                    f"{NORMAL_CLASS}/ for normal images and one per defect type for anomalous ones.")
  defects = [name for name in _sub_folders(test_dir) if name != NORMAL_CLASS]
  has_normal = os.path.isdir(os.path.join(test_dir, NORMAL_CLASS))
  loose = sorted(name for name in os.listdir(test_dir) if _is_image_file(test_dir, name))
  if loose:  # they would be silently left out of the evaluation
    raise DataError(f"Test folder {test_dir} has images directly in it ({', '.join(loose[:3])}"
                    f"{', ...' if len(loose) > 3 else ''}); move normal ones to {test_dir}/{NORMAL_CLASS}/ and "
                    "anomalous ones to a sub-folder named after their defect type.")
  if not defects and not has_normal:
    raise DataError(f"Test folder {test_dir} has no sub-folders. Put normal test images in "
                    f"{test_dir}/{NORMAL_CLASS}/ and anomalous ones in {test_dir}/<defect type>/.")
  class_names = (NORMAL_CLASS, *defects)
  paths, labels, classes, masks = [], [], [], []
  for class_id, name in enumerate(class_names):
    if name == NORMAL_CLASS and not has_normal:
      continue  # allowed: an all-anomalous test folder (the metrics say whether they can be computed)
    for path in list_images(os.path.join(test_dir, name)):
      paths.append(path)
      labels.append(0 if name == NORMAL_CLASS else 1)
      classes.append(class_id)
      masks.append(None if name == NORMAL_CLASS or mask_of is None else mask_of(name, path))
  return FolderExamples(paths, labels, classes, size=size, channels=channels,
                        masks=masks if mask_of is not None else None, class_names=class_names)


def folder_splits(normal_dir: str, test_dir: str, *, size: tuple[int, int],
                  channels: int = 3) -> dict[str, FolderExamples]:
  """Users' own images: normal training images in one folder, test images in sub-folders of another.

  Args:
    normal_dir: folder of normal training images (read directly in it, not recursively), or of sub-folders holding
      them: then each sub-folder is a sub-category of the normal class (train class k = the k-th sub-folder in
      sorted order, e.g. face identities for an auxiliary classifier), and every training image is still normal.
    test_dir: folder with one sub-folder per class: `good/` holds normal images (label 0, class 0), every other
      sub-folder anomalous ones (label 1; class ids 1.. in sorted folder-name order). Without `good/` every test
      image is anomalous; a test split with only one label is accepted here (metrics that need both say so).
    size: (height, width) every image is resized to (images may have any size).
    channels: 1 (grey) or 3 (RGB).

  Returns:
    {'train': ..., 'test': ...} `FolderExamples`, both with `class_names = ('good', <defects, sorted>)`.

  Raises:
    DataError: a missing folder, a folder or sub-folder without images, a test folder without sub-folders, or
      images directly in the test folder (the message names the folder).
  """
  test = _test_examples(test_dir, size=size, channels=channels)
  subs = _sub_folders(normal_dir) if os.path.isdir(normal_dir) else []
  if subs and not any(_is_image_file(normal_dir, n) for n in os.listdir(normal_dir)):
    # Sub-categories of the normal class (e.g. face identities): class k = the k-th sub-folder in name order, for a
    # classifier trained on them (Andrews et al.'s auxiliary task); every image is still normal (label 0).
    paths, classes = [], []
    for k, sub in enumerate(subs):
      found = list_images(os.path.join(normal_dir, sub))
      paths += found
      classes += [k] * len(found)
    train = FolderExamples(paths, [0] * len(paths), classes, size=size, channels=channels, class_names=subs)
    return {"train": train, "test": test}
  train_paths = list_images(normal_dir)
  zeros = [0] * len(train_paths)
  train = FolderExamples(train_paths, zeros, zeros, size=size, channels=channels, class_names=test.class_names)
  return {"train": train, "test": test}


def _mvtec_hint(root: str) -> str:
  return (f"Get MVTec AD ({MVTEC_URL}, licence {MVTEC_LICENCE}: non-commercial use) with `python -m "
          f"jaxad.data.downloads mvtec {root}`, or extract its archive yourself so that {root}/<category>/train/good/ "
          f"exists; categories: {', '.join(MVTEC_CATEGORIES)}")


def mvtec_splits(root: str, category: str, *, size: tuple[int, int],
                 channels: int = 3) -> dict[str, FolderExamples]:
  """One MVTec AD category in the dataset's own layout, with ground-truth masks on the test split.

  Args:
    root: the extracted dataset (the folder holding `bottle/`, `cable/`, ...).
    category: e.g. 'bottle' (`MVTEC_CATEGORIES`; any folder in the same layout works).
    size: (height, width) images and masks are resized to (MVTec AD images are 700 to 1024 pixels square).
    channels: 1 or 3 (grid, screw and zipper are grey images: replicated to RGB with 3).

  Returns:
    {'train': the normal images of `train/good` (label 0, no masks), 'test': `test/<class>/` with `good` normal and
    every defect type anomalous (class ids as in `folder_splits`), each with a 'mask': the defect's
    `ground_truth/<defect>/<stem>_mask.png` (nearest-resized, binarised to {0, 1}), all zero for good images}.

  Raises:
    DataError: a missing root or category (listing the categories found and the download page), a category without
      train or test images, or a defective test image without its mask (naming both).
  """
  category_dir = os.path.join(root, category)
  if not os.path.isdir(category_dir):
    if not os.path.isdir(root):
      raise DataError(f"MVTec AD folder {root} does not exist. {_mvtec_hint(root)}.")
    found = [name for name in _sub_folders(root) if os.path.isdir(os.path.join(root, name, "train"))]
    raise DataError(f"MVTec AD category {category!r} is not in {root} (categories found there: {found or 'none'}). "
                    f"{_mvtec_hint(root)}.")
  ground_truth = os.path.join(category_dir, "ground_truth")

  def mask_of(defect: str, image_path: str) -> str:
    stem = os.path.splitext(os.path.basename(image_path))[0]
    mask = os.path.join(ground_truth, defect, stem + MVTEC_MASK_SUFFIX)
    if not os.path.isfile(mask):
      raise DataError(f"Defective test image {image_path} has no ground-truth mask {mask}. Restore the mask from "
                      f"the original download ({MVTEC_URL}) or remove the image.")
    return mask

  test = _test_examples(os.path.join(category_dir, "test"), size=size, channels=channels, mask_of=mask_of)
  train_paths = list_images(os.path.join(category_dir, "train", NORMAL_CLASS))
  zeros = [0] * len(train_paths)
  train = FolderExamples(train_paths, zeros, zeros, size=size, channels=channels, class_names=test.class_names)
  return {"train": train, "test": test}
