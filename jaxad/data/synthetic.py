"""Generated datasets with known anomalies, in the real datasets' layouts, for tests and benchmarks.

`write_texture_dataset(root, 'carpet')` writes, in MVTec AD's own layout (`jaxad.data.folder.mvtec_splits`):

    <root>/<category>/train/good/000.png ...                     normal textures
    <root>/<category>/test/good/000.png ...                      normal textures
    <root>/<category>/test/<defect>/000.png ...                  the same texture with one small painted defect
    <root>/<category>/ground_truth/<defect>/000_mask.png ...     the defect's mask (255 inside)

A texture is two crossed sinusoidal gratings with a per-image random phase, a small random orientation jitter and
pixel noise, like a woven fabric; a defect is a small disk ('spot', darker and tinted) or a thin line ('scratch',
brighter) at a random place. Defects cover well under a tenth of an image, which is what makes MVTec's texture
categories hard for whole-image scores and what MOCCA's patch maximum (Eq. 7) is for.

`write_video_dataset(root)` writes ShanghaiTech's frame-folder layout (`jaxad.data.video`): walkers on a static
background, and in the test videos a faster, larger object in a labelled stretch of frames.

Both are deterministic in `seed`. They stand in for MVTec AD and ShanghaiTech only where those cannot be
downloaded (this repository's tests and benchmarks); their numbers say nothing about the real datasets.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

DEFECTS = ("spot", "scratch")


def texture(rng: np.random.Generator, size: int, *, period: float = 9.0) -> np.ndarray:
  """One normal texture image, uint8 [size, size, 3]."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  angle = np.deg2rad(30.0 + rng.uniform(-4, 4))
  u = xx * np.cos(angle) + yy * np.sin(angle)
  v = -xx * np.sin(angle) + yy * np.cos(angle)
  phase = rng.uniform(0, 2 * np.pi, size=2)
  grey = (0.5 + 0.2 * np.sin(2 * np.pi * u / period + phase[0]) + 0.15 * np.sin(2 * np.pi * v / (period * 1.7)
                                                                                  + phase[1]))
  rgb = grey[..., None] * np.array([0.85, 0.7, 0.55]) + 0.1 + rng.normal(0, 0.03, (size, size, 3))
  return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def paint_defect(image: np.ndarray, rng: np.random.Generator, kind: str, *, extent: int) -> tuple[np.ndarray, np.ndarray]:
  """The image with one defect painted in, and its mask (uint8 [H, W] in {0, 255})."""
  h, w, _ = image.shape
  yy, xx = np.mgrid[0:h, 0:w]
  cy, cx = rng.uniform(extent, h - extent), rng.uniform(extent, w - extent)
  if kind == "spot":
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= (extent / 2) ** 2
    colour = np.array([0.25, 0.3, 0.45])
  elif kind == "scratch":
    angle = rng.uniform(0, np.pi)
    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    across = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    mask = (np.abs(along) <= extent) & (np.abs(across) <= 1.2)
    colour = np.array([0.95, 0.95, 0.9])
  else:
    raise ValueError(f"kind must be one of {DEFECTS}, got {kind!r}.")
  out = image.astype(np.float64) / 255
  out[mask] = colour + rng.normal(0, 0.03, (int(mask.sum()), 3))
  return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), mask.astype(np.uint8) * 255


def write_texture_dataset(root: str, category: str = "carpet", *, size: int = 128, num_train: int = 32,
                          num_test_good: int = 12, num_test_defect: int = 6, extent: int = 10,
                          seed: int = 0) -> str:
  """Writes one generated category in MVTec AD's layout under `root`; returns `root`.

  Args:
    root: the dataset folder (created).
    category: the category folder's name (a texture name, e.g. 'carpet', selects MOCCA's texture recipe).
    size: image side in pixels.
    num_train, num_test_good: normal images in train/good and test/good.
    num_test_defect: images per defect type (`DEFECTS`) in test/<defect>.
    extent: the defect's diameter ('spot') or length / 2 ('scratch') in pixels.
    seed: the generator's seed.
  """
  rng = np.random.default_rng(seed)
  base = os.path.join(root, category)

  def save(folder: str, name: str, array: np.ndarray) -> None:
    os.makedirs(os.path.join(base, folder), exist_ok=True)
    Image.fromarray(array).save(os.path.join(base, folder, name))

  for i in range(num_train):
    save("train/good", f"{i:03d}.png", texture(rng, size))
  for i in range(num_test_good):
    save("test/good", f"{i:03d}.png", texture(rng, size))
  for kind in DEFECTS:
    for i in range(num_test_defect):
      image, mask = paint_defect(texture(rng, size), rng, kind, extent=extent)
      save(f"test/{kind}", f"{i:03d}.png", image)
      save(f"ground_truth/{kind}", f"{i:03d}_mask.png", mask)
  return root


def _walkers(rng: np.random.Generator, num_frames: int, size: tuple[int, int], count: int, *, side: int,
             speed: float) -> list[np.ndarray]:
  """Per walker, its top-left corner per frame [N, 2], bouncing off the frame's edges at a constant speed."""
  h, w = size
  out = []
  for _ in range(count):
    pos = rng.uniform([0, 0], [h - side, w - side])
    angle = rng.uniform(0, 2 * np.pi)
    vel = speed * np.array([np.sin(angle), np.cos(angle)])
    track = []
    for _ in range(num_frames):
      track.append(pos.copy())
      pos += vel
      for axis, limit in ((0, h - side), (1, w - side)):
        if not 0 <= pos[axis] <= limit:
          vel[axis] = -vel[axis]
          pos[axis] = np.clip(pos[axis], 0, limit)
    out.append(np.array(track))
  return out


def write_video_dataset(root: str, *, size: tuple[int, int] = (32, 64), train_videos: int = 3,
                        test_videos: int = 2, num_frames: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
  """Writes a generated dataset in ShanghaiTech's frame-folder layout (`jaxad.data.video`); returns test labels.

  Every video is a static textured background with two small walkers (3x3-pixel squares at 1 pixel per frame).
  In each test video, a contiguous third of the frames also shows the anomaly: a larger, brighter block crossing
  at 4 pixels per frame (a vehicle among pedestrians, ShanghaiTech's typical anomaly); those frames are labelled 1.

      <root>/training/frames/<video>/000.jpg ...
      <root>/testing/frames/<video>/000.jpg ...
      <root>/testing/test_frame_mask/<video>.npy       int labels, one per frame
  """
  rng = np.random.default_rng(seed)
  h, w = size
  background = texture(rng, max(h, w), period=7.0)[:h, :w].astype(np.float64) * 0.6
  labels = {}

  def write(split: str, name: str, anomaly: np.ndarray | None) -> None:
    frames = np.repeat(background[None], num_frames, axis=0) + rng.normal(0, 2.0, (num_frames, h, w, 3))
    for track in _walkers(rng, num_frames, size, 2, side=3, speed=1.0):
      for t, (r, c) in enumerate(track.astype(int)):
        frames[t, r:r + 3, c:c + 3] = (200, 60, 60)
    if anomaly is not None:
      (track,) = _walkers(rng, num_frames, size, 1, side=8, speed=4.0)
      for t in np.flatnonzero(anomaly):
        r, c = track[t].astype(int)
        frames[t, r:r + 8, c:c + 8] = (240, 240, 120)
    folder = os.path.join(root, split, "frames", name)
    os.makedirs(folder, exist_ok=True)
    for t, frame in enumerate(np.clip(frames, 0, 255).astype(np.uint8)):
      Image.fromarray(frame).save(os.path.join(folder, f"{t:03d}.jpg"), quality=95)

  for v in range(train_videos):
    write("training", f"01_{v + 1:03d}", None)
  masks = os.path.join(root, "testing", "test_frame_mask")
  os.makedirs(masks, exist_ok=True)
  for v in range(test_videos):
    name = f"01_{v + 1:04d}"
    start = int(rng.integers(num_frames // 6, num_frames // 2))
    y = np.zeros(num_frames, np.int64)
    y[start:start + num_frames // 3] = 1
    write("testing", name, y)
    np.save(os.path.join(masks, name + ".npy"), y)
    labels[name] = y
  return labels
