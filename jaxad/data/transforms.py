"""Deterministic preprocessing of uint8 images into network inputs, applied per batch by the host pipeline.

TransferAD / Classification-AD preprocessing ('standardize'): images to [0, 1], then per-channel
(x - mean) / std with fixed CIFAR constants (125.3, 123.0, 113.9) / 255 and (63.0, 62.1, 66.7) / 255, used for the
CIFAR-10 normal data and the CIFAR-100 outlier exposure alike.

Deep SVDD's CIFAR/MNIST preprocessing: images to [0, 1], per-image global contrast normalisation with the L1 scale
(subtract the image's mean over all pixels and channels, divide by its mean absolute deviation), then min-max
scaling to [0, 1] with one (min, max) pair per *normal class*, applied to train and test alike.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Deep SVDD's published (min, max) of GCN-L1 CIFAR-10 train images, per normal class 0..9 (Ruff et al. 2018,
# lukasruff/Deep-SVDD-PyTorch; MOCCA reuses it). tests/data_test.py recomputes it from the real data.
CIFAR10_GCN_L1_MINMAX = (
    (-28.94083453598571, 13.802961825439636),
    (-6.681770233365245, 9.158067708230273),
    (-34.924463588638204, 14.419298165027628),
    (-10.599172931391799, 11.093187820377565),
    (-11.945022995801637, 10.628045447867583),
    (-9.691969487694928, 8.948326776180823),
    (-9.174940012342555, 13.847014686472365),
    (-6.876682005899029, 12.282371383343161),
    (-15.603507135507172, 15.2464923804279),
    (-6.132882973622672, 8.046098172351265),
)
PUBLISHED_MINMAX = {"cifar10": CIFAR10_GCN_L1_MINMAX}

# TransferAD's `util/cifar.py` (= Classification-AD's) Normalize constants: (125.3, 123.0, 113.9) / 255 and
# (63.0, 62.1, 66.7) / 255, shared by CIFAR-10 and its CIFAR-100 outlier exposure.
CIFAR_MEAN = (125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0)
CIFAR_STD = (63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0)
# CIFAR-100's own per-channel mean/std over its 50,000 train images (tests/supervised_test.py recomputes them):
# for pretraining a source model on CIFAR-100 itself (configs/pretrain_resnet26_cifar100.py).
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)
# torchvision's ImageNet constants, for the ImageNet source-model pretraining configs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keyed by dataset name (the default) or by `data.standardize_stats` when a config names other constants.
STANDARDIZE_STATS = {"cifar10": (CIFAR_MEAN, CIFAR_STD), "cifar100": (CIFAR_MEAN, CIFAR_STD),
                     "cifar100_own": (CIFAR100_MEAN, CIFAR100_STD),
                     "imagenet32": (IMAGENET_MEAN, IMAGENET_STD), "imagenet64": (IMAGENET_MEAN, IMAGENET_STD),
                     # STL-10 is drawn from ImageNet and its models start from an ImageNet-96 source net.
                     "stl10": (IMAGENET_MEAN, IMAGENET_STD)}


def to_unit(x: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, C] -> float32 in [0, 1] (torchvision's ToTensor)."""
  return x.astype(np.float32) / 255.0


def standardize(x: np.ndarray, mean=CIFAR_MEAN, std=CIFAR_STD) -> np.ndarray:
  """Per-channel (x - mean) / std of [N, H, W, C] images in [0, 1] (torchvision's Normalize).

  >>> float(standardize(np.full((1, 1, 1, 3), 125.3 / 255, np.float32))[0, 0, 0, 0])
  0.0
  """
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  if x.shape[-1] != mean.shape[-1]:
    raise ValueError(f"standardize: images have {x.shape[-1]} channels, mean/std have {mean.shape[-1]}.")
  return ((x - mean) / std).astype(np.float32)


def gcn_l1(x: np.ndarray) -> np.ndarray:
  """Global contrast normalisation, L1 scale, per image: (x - mean(x)) / mean(|x - mean(x)|).

  Args:
    x: [N, H, W, C] float images.
  Returns:
    [N, H, W, C] float32. Computed in float64 so the published min/max table is reproduced to 1e-12.
  """
  flat = x.reshape(len(x), -1).astype(np.float64)
  flat = flat - flat.mean(axis=1, keepdims=True)
  scale = np.abs(flat).mean(axis=1, keepdims=True)
  scale = np.where(scale == 0, 1.0, scale)  # a constant image stays all zeros instead of becoming NaN
  return (flat / scale).reshape(x.shape).astype(np.float32)


def minmax_of(x: np.ndarray) -> tuple[float, float]:
  """The (min, max) over all values: how the published table was made from the normal class's GCN images."""
  return float(x.min()), float(x.max())


def minmax_scale(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  return ((x - lo) / (hi - lo)).astype(np.float32)


def resize(x: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of [N, H, W, C] float images to [N, size, size, C] (antialiased when shrinking)."""
  if x.shape[1:3] == (size, size):
    return x
  import jax  # pylint: disable=g-import-not-at-top  (keeps this module importable without initialising jax)
  out = jax.image.resize(x, (len(x), size, size, x.shape[-1]), method="bilinear")
  return np.asarray(out, np.float32)


PREPROCESSING = ("gcn_l1_minmax", "standardize", "unit", "signed")


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """uint8 images -> the network's float32 input, applied per batch (images stay uint8 until then).

  Statistics that need the normal data (the GCN min/max) are computed once when the sources are built and stored
  here, so `to_dict()` in the workdir is all `--mode=predict` needs to prepare new images the same way.

  Attributes:
    kind: 'gcn_l1_minmax' (Deep SVDD / MOCCA: [0, 1], per-image GCN-L1, then (x - lo) / (hi - lo)), 'standardize'
      ([0, 1], then per-channel (x - mean) / std), 'unit' ([0, 1] only) or 'signed' ([-1, 1]: 2x - 1, as GeoTrans
      and ss-ood scale their inputs).
    lo, hi: the min-max constants of 'gcn_l1_minmax'.
    mean, std: per-channel constants of 'standardize'.
    size: > 0 resizes to [size, size] (bilinear) after the normalisation, as jaxad always did.
  """
  kind: str = "unit"
  lo: float = 0.0
  hi: float = 1.0
  mean: tuple[float, ...] = ()
  std: tuple[float, ...] = ()
  size: int = 0

  def __post_init__(self):
    if self.kind not in PREPROCESSING:
      raise ValueError(f"Preprocess kind must be one of {PREPROCESSING}, got {self.kind!r}.")

  def __call__(self, images: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, C] -> float32 [B, H', W', C]."""
    x = to_unit(np.asarray(images))
    if self.kind == "gcn_l1_minmax":
      x = minmax_scale(gcn_l1(x), self.lo, self.hi)
    elif self.kind == "standardize":
      x = standardize(x, self.mean, self.std)
    elif self.kind == "signed":
      x = 2.0 * x - 1.0
    return resize(x, self.size) if self.size else x

  def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The preprocessed shape of one [H, W, C] image."""
    return (self.size, self.size, shape[-1]) if self.size else tuple(shape)

  def black(self, channels: int) -> np.ndarray:
    """A black pixel [C] after this preprocessing: what RandomCrop's zero padding becomes once images are normalised."""
    if self.kind == "signed":
      return np.full(channels, -1.0, np.float32)
    if self.kind != "standardize":
      return np.zeros(channels, np.float32)
    return standardize(np.zeros((1, 1, 1, channels), np.float32), self.mean, self.std)[0, 0, 0]

  def to_dict(self) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, d: dict) -> "Preprocess":
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
