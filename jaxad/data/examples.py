"""Examples and named sources: what the trainer, the evaluators and `--mode=predict` read.

An *example* is a dict: `image` uint8 [H, W, C] (a video clip keeps the same key: `image` uint8 [T, H, W, C], so
batching and preprocessing are one path), `label` (1 = anomalous; a clip's is per frame, [T]), `class` (the dataset's
class id, -1 where there is none), and where present `mask` uint8 [H, W], `video`, `frame` ([T] for a clip),
`path`. Examples come from grain random-access data sources: `ArrayExamples` over in-memory (or memory-mapped)
arrays, and `jaxad.data.folder.FolderExamples` over image files decoded on access. Both also have `take(indices)`,
the same fields stacked, which the batching pipeline uses instead of one `__getitem__` per example.

A *source* (`Source`) is examples plus the `Preprocess` that turns their uint8 images into network inputs; a run
has named sources: 'normal' (training images), 'test', and where the method or protocol needs them 'oe' (outlier
exposure), 'reference' (a labelled source-domain set), 'anomaly' (labelled anomalies), 'val'.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import grain
import numpy as np

from jaxad.data.transforms import Preprocess

# Fields that travel to the device in a batch; everything else (e.g. 'path') stays on the host.
DEVICE_FIELDS = ("image", "label", "class", "mask", "video", "frame")


class ArrayExamples:
  """A grain random-access data source over arrays of equal length: example i = {field: array[i]}."""

  def __init__(self, **arrays: np.ndarray):
    lengths = {k: len(a) for k, a in arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"Arrays of different lengths: {lengths}")
    self.arrays = arrays
    self._len = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i) -> dict[str, Any]:
    return {k: a[i] for k, a in self.arrays.items()}

  def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(a[indices]) for k, a in self.arrays.items()}


class Identity:
  """The preprocessing of images that are already network inputs (float arrays made by a test or a notebook)."""

  def __call__(self, images):
    return np.asarray(images, np.float32)

  def output_shape(self, shape):
    return tuple(shape)


@dataclasses.dataclass(frozen=True)
class Source:
  """Named examples and how their images become network inputs.

  Attributes:
    examples: a random-access data source with `take(indices)` (`ArrayExamples`, `FolderExamples`).
    preprocess: uint8 batch -> float32 batch.
    num_classes: number of class ids in `class` (0 when the source has none).
  """
  examples: Any
  preprocess: Preprocess
  num_classes: int = 0

  def __len__(self) -> int:
    return len(self.examples)

  @property
  def shape(self) -> tuple[int, ...]:
    """The preprocessed shape of one image."""
    return self.preprocess.output_shape(tuple(self.examples[0]["image"].shape))

  def field(self, name: str) -> np.ndarray:
    """One field of every example, e.g. `test.field('label')`, without decoding images where that can be avoided."""
    arrays = getattr(self.examples, "arrays", None)
    if arrays is not None:
      return np.asarray(arrays[name])
    if hasattr(self.examples, "field"):  # e.g. video clips: labels and indices without decoding a frame
      return np.asarray(self.examples.field(name))
    return np.asarray([self.examples[i][name] for i in range(len(self))])

  def subset(self, indices: np.ndarray) -> "Source":
    """The examples at `indices` as an in-memory source with the same preprocessing."""
    return Source(ArrayExamples(**self.examples.take(np.asarray(indices))), self.preprocess, self.num_classes)

  def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The examples at `indices` stacked, with preprocessed float32 images."""
    out = self.examples.take(np.asarray(indices))
    out["image"] = self.preprocess(out["image"])
    return out

  @classmethod
  def of(cls, images: np.ndarray, *, preprocess: Any = None, num_classes: int = 0, **fields: np.ndarray) -> "Source":
    """A source over in-memory arrays; `label` defaults to 0 and `class` to -1; no preprocessing unless given."""
    n = len(images)
    fields.setdefault("label", np.zeros(n, np.int32))
    fields.setdefault("class", np.full(n, -1, np.int32))
    return cls(ArrayExamples(image=images, **fields), preprocess or Identity(), num_classes)

  def as_grain(self) -> grain.MapDataset:
    """The source as a grain MapDataset of preprocessed example dicts, for users' own pipelines."""
    return grain.MapDataset.source(self.examples).map(
        lambda ex: {**ex, "image": self.preprocess(np.asarray(ex["image"])[None])[0]})


Sources = Mapping[str, Source]


def device_fields(batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The numeric fields of a batch (what is sharded onto the devices)."""
  return {k: v for k, v in batch.items() if k in DEVICE_FIELDS}
