"""Outlier-exposure (OE) training batches: normal images mixed with OE images, plus standard augmentation.

TransferAD (Deecke et al. 2021) and Classification-AD (Ruff et al. 2020) train on batches that concatenate normal
images (label 0) with images of an unrelated corpus (label 1; CIFAR-100 train for CIFAR-10). jaxad's version
(spec section 9.5):

* every step's global batch is `normal_per_batch` normal images followed by `oe_per_batch` OE images (64 + 64 by
  default): always full, so the step compiles once;
* an epoch is `ceil(N_normal / normal_per_batch)` steps (79 for CIFAR-10 one-vs-rest, 704 for leave-one-out);
* both sets are read as endless streams of fresh permutations: position p of a stream over n images is image
  `perm_k[p % n]` with k = p // n, so the normal stream wraps around into its next permutation instead of ending
  with a partial batch, and the OE stream walks through all OE images over the epochs (the reference code's OE
  loader restarts each epoch and so sees only the first ~5k images per epoch);
* each image gets RandomCrop(H, padding 4, zero fill) and a random horizontal flip (TransferAD's train transform,
  applied to normal and OE images alike). Zero fill means black in pixel space: pass `fill` = the preprocessed
  value of a black pixel (e.g. -mean/std per channel after standardisation).

Everything is a pure function of (seed, step): `ds[step]` can be read in any order (exact resume), and the global
batch does not depend on the number of processes; each process gets its slice of the normal and of the OE rows.
"""

from __future__ import annotations

import functools
import math

import grain
import jax
import numpy as np

from jaxad.data.pipeline import local_batch_size
from jaxad.errors import ConfigError

NORMAL, OE = 0, 1


def crop_flip(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray, *, pad: int = 4,
              fill: float | np.ndarray = 0.0) -> np.ndarray:
  """Pads by `pad` with `fill`, crops back to [H, W] at `offsets`, and mirrors the rows where `flips` is set.

  Args:
    images: [B, H, W, C] images.
    offsets: [B, 2] integer (top, left) crop corners in the padded image, each in [0, 2 * pad].
    flips: [B] bools; True mirrors the image left-right (after the crop, as torchvision's pipeline does).
    pad: padding on every side.
    fill: scalar or [C] value of the padding.

  Returns:
    [B, H, W, C] augmented images, same dtype.
  """
  b, h, w, c = images.shape
  padded = np.empty((b, h + 2 * pad, w + 2 * pad, c), images.dtype)
  padded[...] = np.asarray(fill, images.dtype)
  padded[:, pad:pad + h, pad:pad + w] = images
  rows = offsets[:, 0, None] + np.arange(h)  # [B, H]
  cols = offsets[:, 1, None] + np.arange(w)  # [B, W]
  out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return np.where(np.asarray(flips, bool)[:, None, None, None], out[:, :, ::-1], out)


def random_crop_flip_params(rng: np.random.Generator, n: int, *, pad: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """(offsets [n, 2] uniform in {0..2*pad}, flips [n] with probability 1/2), as RandomCrop + RandomHorizontalFlip."""
  return rng.integers(0, 2 * pad + 1, size=(n, 2)), rng.random(n) < 0.5


class _Stream:
  """An endless stream of indices into n items: one fresh seeded permutation per pass."""

  def __init__(self, n: int, seed: int, tag: int):
    self.n, self.seed, self.tag = n, seed, tag

  @functools.lru_cache(maxsize=4)
  def _perm(self, k: int) -> np.ndarray:
    return np.random.default_rng([self.seed, self.tag, k]).permutation(self.n)

  def take(self, start: int, count: int) -> np.ndarray:
    pos = np.arange(start, start + count)
    passes = pos // self.n
    out = np.empty(count, np.int64)
    for k in np.unique(passes):
      sel = passes == k
      out[sel] = self._perm(int(k))[pos[sel] % self.n]
    return out


def mixed_batches(images: np.ndarray, *, oe_images: np.ndarray | None, oe_per_batch: int, global_batch_size: int,
                  seed: int, num_epochs: int, augment: bool = True, pad: int = 4,
                  fill: float | np.ndarray = 0.0, labels: np.ndarray | None = None,
                  oe_labels: np.ndarray | None = None) -> tuple[grain.MapDataset, int]:
  """Normal + OE training batches: `(ds, steps_per_epoch)`, `ds[step]` = this process's part of that step.

  Args:
    images: [N, H, W, C] normal training images (float32, preprocessed).
    oe_images: [M, H, W, C] OE images preprocessed the same way; None when `oe_per_batch` is 0.
    oe_per_batch: OE images per global batch; the other `global_batch_size - oe_per_batch` are normal.
      0 gives normal-only batches (e.g. Deep SVDD) with the same epoch length and augmentation.
    global_batch_size: normal + OE images per step, over all processes; a multiple of the device count.
    seed: everything (permutations, crops, flips) is a function of (seed, step).
    num_epochs: length of `ds` in epochs.
    augment: apply RandomCrop(pad) + horizontal flip to every image.
    pad: crop padding.
    fill: scalar or [C] padding value (the preprocessed value of a black pixel).
    labels: optional [N] class labels of `images` (supervised training, `oe_per_batch` must be 0): the batches
      carry them as 'label' instead of 0.
    oe_labels: optional [M] class labels of `oe_images` (a labelled reference set, e.g. DOC's descriptiveness
      loss): the batches then also carry 'oe_class', the OE rows' labels and -1 on the normal rows.

  Returns:
    `ds` with `len(ds) == num_epochs * steps_per_epoch`; `ds[step]` is `{'image': [n_l + o_l, H, W, C] float32,
    'label': [n_l + o_l] int32}` with this process's `n_l` normal rows (label 0) first, then its `o_l` OE rows
    (label 1), plus 'oe_class' [n_l + o_l] int32 with `oe_labels`; and `steps_per_epoch = ceil(N / normal_per_batch)`.
  """
  normal_per_batch = global_batch_size - oe_per_batch
  n_proc, proc = jax.process_count(), jax.process_index()
  local_batch_size(global_batch_size)  # checks divisibility by the device count
  if oe_per_batch < 0 or normal_per_batch <= 0:
    raise ConfigError(f"oe.per_batch={oe_per_batch} must be in [0, batch_size={global_batch_size}).")
  if normal_per_batch % n_proc or oe_per_batch % n_proc:
    raise ConfigError(f"The normal ({normal_per_batch}) and OE ({oe_per_batch}) images per batch must both be "
                      f"multiples of the {n_proc} processes.")
  if not len(images):
    raise ConfigError("No normal training images.")
  if oe_per_batch:
    if oe_images is None or not len(oe_images):
      raise ConfigError(f"oe.per_batch={oe_per_batch} but there are no OE images.")
    if oe_images.shape[1:] != images.shape[1:]:
      raise ConfigError(f"OE images are {oe_images.shape[1:]}, the normal images {images.shape[1:]}: they must "
                        "match (set data.image_size).")
  if labels is not None and (oe_per_batch or len(labels) != len(images)):
    raise ConfigError(f"Class labels need oe.per_batch=0 and one label per image ({len(labels)} labels, "
                      f"{len(images)} images, oe_per_batch={oe_per_batch}).")
  if oe_labels is not None and (not oe_per_batch or len(oe_labels) != len(oe_images)):
    raise ConfigError(f"OE class labels need oe.per_batch > 0 and one label per OE image ({len(oe_labels)} labels, "
                      f"{0 if oe_images is None else len(oe_images)} OE images, oe_per_batch={oe_per_batch}).")
  steps_per_epoch = math.ceil(len(images) / normal_per_batch)
  normal_stream = _Stream(len(images), seed, 0)
  oe_stream = _Stream(len(oe_images), seed, 1) if oe_per_batch else None
  nl, ol = normal_per_batch // n_proc, oe_per_batch // n_proc

  def make(step):
    step = int(step)
    rng = np.random.default_rng([seed, 2, step])
    idx_n = normal_stream.take(step * normal_per_batch, normal_per_batch)[proc * nl:(proc + 1) * nl]
    x_n = images[idx_n]
    parts = [x_n]
    if augment:
      off, flip = random_crop_flip_params(rng, normal_per_batch, pad=pad)
      parts[0] = crop_flip(x_n, off[proc * nl:(proc + 1) * nl], flip[proc * nl:(proc + 1) * nl], pad=pad, fill=fill)
    out = {}
    if oe_per_batch:
      idx_o = oe_stream.take(step * oe_per_batch, oe_per_batch)[proc * ol:(proc + 1) * ol]
      x_o = oe_images[idx_o]
      if oe_labels is not None:
        out["oe_class"] = np.concatenate([np.full(nl, -1, np.int32), oe_labels[idx_o].astype(np.int32)])
      if augment:
        off, flip = random_crop_flip_params(rng, oe_per_batch, pad=pad)
        x_o = crop_flip(x_o, off[proc * ol:(proc + 1) * ol], flip[proc * ol:(proc + 1) * ol], pad=pad, fill=fill)
      parts.append(x_o)
    if labels is None:
      label = np.concatenate([np.full(nl, NORMAL, np.int32), np.full(ol, OE, np.int32)])
    else:
      label = labels[idx_n].astype(np.int32)
    return {"image": np.concatenate(parts).astype(np.float32, copy=False), "label": label, **out}

  return grain.MapDataset.range(num_epochs * steps_per_epoch).map(make), steps_per_epoch
