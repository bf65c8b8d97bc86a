"""Videos as clips: ShanghaiTech Campus and users' own frame folders, with background removal.

Video anomaly detection scores clips of `clip_len` consecutive frames taken with a sliding window (MOCCA, section
IV-C: clips of 16 frames resized to 256x512, background removed with a mixture-of-Gaussians model first);
`jaxad.reductions.reduce('mean_per_frame', ...)` turns the clip scores back into one score per frame.

Layout (ShanghaiTech Campus as jaxad reads it; `video_splits` takes the three folders of any dataset in this form):

    <root>/training/frames/<video>/<frame>.jpg      normal training videos as frame folders
    <root>/testing/frames/<video>/<frame>.jpg       test videos (shipped as frame folders)
    <root>/testing/test_frame_mask/<video>.npy      per-frame labels, 1 = anomalous, one per test video

The dataset (Liu, Luo, Lian & Gao, CVPR 2018; 13 scenes, 330 training and 107 test videos, 130 abnormal events) is
downloaded from `SHANGHAITECH_URL` (Google Drive and OneDrive links there). The page states no licence; it asks you to
cite the paper (`SHANGHAITECH_LICENCE`). Its training videos ship as `.avi` files in `training/videos/`: extract each to
a frame folder once, e.g. in `<root>/training`:

    for f in videos/*.avi; do v=$(basename "$f" .avi); mkdir -p frames/$v;
      ffmpeg -i "$f" -qscale:v 2 -start_number 0 frames/$v/%04d.jpg; done

(`-qscale:v 2` keeps JPEG quality high; `-start_number 0` numbers frames from 0 like the shipped test frames).
Frames are any `folder.IMAGE_EXTENSIONS` file, ordered by name with numbers compared as numbers (`2.jpg` before
`10.jpg`), so unpadded names work too. A frame's index is its position in that order, which is also its row in the
label file.

Clips (`ClipExamples`): video v with n_v frames gives the clips starting at 0, stride, 2 * stride, ... up to
n_v - clip_len, i.e. floor((n_v - clip_len) / stride) + 1 clips; a video shorter than `clip_len` gives none. Each
example is `{'image': uint8 [T, H, W, C], 'label': int32 [T], 'class': int32 (-1), 'video': int32, 'frame': int32
[T], 'path': the first frame's file}`; jaxad keeps the key `image` for clips so batching and preprocessing are one
path for images and clips.

Background removal (`background=`): a clip's frames have their background pixels set to 0 (every channel) by one
of the per-pixel models of `jaxad.data.background`: 'mog' (the default, an online mixture of Gaussians), 'mog_image'
(MOCCA's preprocessing: an offline MOG background image per video), 'median', or 'none' (frames as decoded). Which
pixels are background depends on the video's history, so the foreground masks are computed once per video, at the
working size, on first use (or by `ClipExamples.precompute()`), and kept bit-packed in memory or, with `cache_dir`,
in `.npy` files there (memory-mapped when read, shared by later runs and by grain's worker processes).
`background_params` passes keyword arguments to the matching `mog_foreground`, `mog_image_foreground` or
`median_foreground` (`jaxad.data.background`).

Cost: the masks need every frame of a video decoded once more (~5 ms for a ShanghaiTech JPEG resized to 256x512),
plus the model (per-frame time and memory in `jaxad.data.background`), so with 'mog' ShanghaiTech's ~315,000 frames
take about two hours once; give a `cache_dir` (about 5 GB of bit-packed masks at 256x512) so that this is paid only
once.

Normalisation is left to `jaxad.data.transforms.Preprocess` like every jaxad source; MOCCA's code divides by 255
(`Preprocess('unit')`).

References:
  Massoli, Falchi, Kantarci, Akti, Ekenel & Amato. MOCCA: Multilayer One-Class Classification for Anomaly Detection.
  IEEE TNNLS 2021, section IV-C.
  Liu, Luo, Lian & Gao. Future Frame Prediction for Anomaly Detection -- A New Baseline. CVPR 2018.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import operator
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxad.data.background import BACKGROUNDS, FOREGROUNDS, MixtureOfGaussians, _mog_stream
from jaxad.data.folder import IMAGE_EXTENSIONS, _check_channels, _check_size, list_images, read_image
from jaxad.errors import ConfigError, DataError

SHANGHAITECH_URL = "https://svip-lab.github.io/dataset/campus_dataset.html"
SHANGHAITECH_LICENCE = "none stated on the download page, which asks users to cite Liu et al., CVPR 2018"
LABEL_SUFFIX = ".npy"
_MASK_VERSION = 1  # part of every cache key: bump when a mask computation (jaxad.data.background) changes


# ----------------------------------------------------------------------------------------------------------------
# Background settings (the models are in jaxad.data.background).


def _check_background(background: str, params: dict | None) -> dict:
  """Validates `background` and its keyword arguments up front (not at the first clip, hours into a run)."""
  if background not in BACKGROUNDS:
    raise ConfigError(f"background must be one of {BACKGROUNDS}, got {background!r}.")
  params = dict(params or {})
  if background == "none":
    if params:
      raise ConfigError(f"background='none' takes no background_params, got {sorted(params)}.")
    return params
  function = FOREGROUNDS[background]
  valid = set(inspect.signature(function).parameters) - {"frames", "params"}
  if background != "median":
    valid |= set(inspect.signature(MixtureOfGaussians.__init__).parameters) - {"self", "shape"}
  unknown = sorted(set(params) - valid)
  if unknown:
    raise ConfigError(f"background={background!r} has no parameter(s) {unknown}; valid: {sorted(valid)}.")
  try:
    mog = {k: v for k, v in params.items() if k not in ("dilate", "threshold")}
    if background != "median":
      MixtureOfGaussians((1, 1, 1), **mog)
    if int(params.get("dilate", 0)) < 0:
      raise ValueError(f"dilate must be >= 0, got {params['dilate']}.")
    float(params.get("threshold", 0.0))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"background_params {params} for background={background!r}: {e}") from None
  return params


# ----------------------------------------------------------------------------------------------------------------
# Frame folders and clips.


def _natural_key(path: str) -> list:
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", os.path.basename(path))]


def list_frames(directory: str) -> list[str]:
  """The frame files directly in `directory`, in time order: sorted by name with digit runs compared as numbers.

  Raises:
    DataError: `directory` does not exist or holds no image files.
  """
  return sorted(list_images(directory), key=_natural_key)


def list_videos(directory: str) -> list[str]:
  """The sub-folder names of `directory` (one per video), in natural order; DataError if there is none."""
  if not os.path.isdir(directory):
    raise DataError(f"Video folder {directory} does not exist.")
  names = sorted((n for n in os.listdir(directory)
                  if not n.startswith(".") and os.path.isdir(os.path.join(directory, n))), key=_natural_key)
  if not names:
    raise DataError(f"Video folder {directory} has no sub-folders; put each video's frames in "
                    f"{directory}/<video>/ as {', '.join(IMAGE_EXTENSIONS)} files.")
  return names


def clip_starts(num_frames: int, clip_len: int, stride: int) -> np.ndarray:
  """Start frames of the sliding-window clips of a video: 0, stride, ... <= num_frames - clip_len (int64 [M])."""
  return np.arange(0, max(num_frames - clip_len + 1, 0), stride, dtype=np.int64)


def _positive_int(name: str, value) -> int:
  try:
    value = operator.index(value)
  except TypeError:
    raise ConfigError(f"{name} must be an int, got {value!r}.") from None
  if value < 1:
    raise ConfigError(f"{name} must be >= 1, got {value}.")
  return value


class ClipExamples:
  """A grain random-access data source of sliding-window clips over videos stored as frame files.

  Example i is `{'image': uint8 [T, H, W, C], 'label': int32 [T], 'class': int32 (-1), 'video': int32 (index into
  `video_names`), 'frame': int32 [T] (frame indices within the video, consecutive), 'path': str (first frame)}`.
  Frames are decoded on access (PIL, bilinear resize to `size`); with a background model their background pixels
  are 0. Pickles for grain's worker processes (masks read from `cache_dir` are re-opened there, not copied).

  Attributes:
    videos: per video, its frame paths in time order.
    video_names: per video, a name (its folder's name by default).
    labels: per video, int32 [n_v] per-frame labels.
    clips: int64 [M, 2], (video index, start frame) of each clip, in video then time order.
    clip_len, stride, size, channels, background, background_params, cache_dir: as given.
  """

  def __init__(self, videos: Sequence[Sequence[str]], *, size: tuple[int, int], clip_len: int = 16,
               stride: int = 1, channels: int = 3, labels: Sequence[Any] | None = None,
               video_names: Sequence[str] | None = None, background: str = "mog",
               background_params: dict | None = None, cache_dir: str | None = None):
    """Builds the clip index without reading any frame.

    Args:
      videos: per video, its frame files in time order (see `list_frames`).
      size: (height, width) every frame is resized to; the masks are computed at this size.
      clip_len: T, frames per clip.
      stride: frames between the starts of consecutive clips of a video.
      channels: 1 (grey) or 3 (RGB).
      labels: per video, an array of n_v labels in {0, 1} (1 = anomalous frame); None = all 0 (training videos).
      video_names: per video, a name (used in messages and cache files); default each video's folder name.
      background: 'mog', 'mog_image', 'median' or 'none' (see `jaxad.data.background`).
      background_params: keyword arguments of the matching `*_foreground` function.
      cache_dir: folder for the per-video foreground masks (created if missing); None keeps them in memory.

    Raises:
      ConfigError: bad sizes, counts, background or parameters; labels of the wrong length or not in {0, 1}.
      DataError: no video has `clip_len` frames, so there is no clip at all.
    """
    self.videos = [[os.fspath(p) for p in frames] for frames in videos]
    self.size = _check_size(size)
    self.channels = _check_channels(channels)
    self.clip_len = _positive_int("clip_len", clip_len)
    self.stride = _positive_int("stride", stride)
    self.background = background
    self.background_params = _check_background(background, background_params)
    self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
    n_videos = len(self.videos)
    if video_names is None:
      video_names = [os.path.basename(os.path.dirname(f[0])) if f else str(v) for v, f in enumerate(self.videos)]
    self.video_names = [str(n) for n in video_names]
    if len(self.video_names) != n_videos:
      raise ConfigError(f"ClipExamples got {n_videos} videos but {len(self.video_names)} video_names.")
    if labels is None:
      self.labels = [np.zeros(len(f), np.int32) for f in self.videos]
    else:
      if len(labels) != n_videos:
        raise ConfigError(f"ClipExamples got {n_videos} videos but {len(labels)} label arrays.")
      self.labels = []
      for name, frames, y in zip(self.video_names, self.videos, labels):
        y = np.asarray(y)
        if y.shape != (len(frames),):
          raise ConfigError(f"Video {name}: labels of shape {y.shape} for {len(frames)} frames; give one label "
                            "per frame.")
        if not np.isin(y, (0, 1)).all():
          raise ConfigError(f"Video {name}: labels must be 0 (normal) or 1 (anomalous), got values "
                            f"{np.unique(y)[:10].tolist()}.")
        self.labels.append(y.astype(np.int32))
    starts = [clip_starts(len(f), self.clip_len, self.stride) for f in self.videos]
    self.clips = np.concatenate([np.stack([np.full(len(s), v, np.int64), s], axis=1) for v, s in enumerate(starts)]
                                + [np.zeros((0, 2), np.int64)])
    if not len(self.clips):
      longest = max((len(f) for f in self.videos), default=0)
      raise DataError(f"No clip of {self.clip_len} frames: every one of the {n_videos} video(s) is shorter "
                      f"(the longest has {longest} frames). Use a smaller clip_len or longer videos.")
    self._masks: dict[int, np.ndarray] = {}  # video -> packed bool [n_v, H, ceil(W/8)]
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self.clips)

  def __repr__(self) -> str:
    return (f"ClipExamples({len(self)} clips of {self.clip_len} frames from {len(self.videos)} videos, stride "
            f"{self.stride}, size={self.size}, channels={self.channels}, background={self.background!r})")

  def __getstate__(self):
    state = self.__dict__.copy()
    state["_lock"] = None
    # Memory-mapped cache files are re-opened by the unpickled copy; in-memory masks travel with it.
    state["_masks"] = {v: m for v, m in self._masks.items() if not isinstance(m, np.memmap)}
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  # -- background masks --------------------------------------------------------------------------------------

  def _cache_path(self, video: int) -> str:
    frames = self.videos[video]
    key = json.dumps({"version": _MASK_VERSION, "background": self.background, "params": self.background_params,
                      "size": self.size, "channels": self.channels,
                      "frames": [[os.path.basename(p), os.path.getsize(p)] for p in frames]},
                     sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.video_names[video])
    return os.path.join(self.cache_dir, f"{safe}-{self.background}-{digest}.npy")

  def _compute(self, video: int) -> np.ndarray:
    """bool [n_v, H, W] masks of one video, decoding all its frames."""
    decoded = (read_image(p, size=self.size, channels=self.channels) for p in self.videos[video])
    params = self.background_params
    if self.background == "mog":
      return _mog_stream(decoded, **params)
    return FOREGROUNDS[self.background](np.stack(list(decoded)), **params)

  def _packed(self, video: int) -> np.ndarray:
    packed = self._masks.get(video)
    if packed is not None:
      return packed
    with self._lock:  # one computation per video, also under grain's threads
      packed = self._masks.get(video)
      if packed is not None:
        return packed
      shape = (len(self.videos[video]), self.size[0], -(-self.size[1] // 8))
      path = self._cache_path(video) if self.cache_dir is not None else None
      if path is not None and os.path.isfile(path):
        try:
          cached = np.load(path, mmap_mode="r")
          if cached.shape == shape and cached.dtype == np.uint8:
            packed = cached
        except (OSError, ValueError):
          packed = None  # unreadable (e.g. cut short by a crash): recompute and overwrite
      if packed is None:
        packed = np.packbits(self._compute(video), axis=-1)
        if path is not None:
          os.makedirs(self.cache_dir, exist_ok=True)
          # Written beside the target and moved into place, so a reader never sees half a file.
          fd, partial = tempfile.mkstemp(suffix=".npy", dir=self.cache_dir)
          with os.fdopen(fd, "wb") as f:
            np.save(f, packed)
          os.replace(partial, path)
      self._masks[video] = packed
      return packed

  def foreground(self, video: int, frames: slice | np.ndarray = slice(None)) -> np.ndarray:
    """The foreground masks, bool [n, H, W], of `frames` of video index `video` (computed or read on first use).

    With background='none' every pixel is foreground.
    """
    if self.background == "none":
      n = len(np.arange(len(self.videos[video]))[frames])
      return np.ones((n, *self.size), bool)
    return np.unpackbits(self._packed(video)[frames], axis=-1, count=self.size[1]).astype(bool)

  def precompute(self) -> None:
    """Computes (or reads from `cache_dir`) the masks of every video that has a clip, e.g. before training starts
    or before grain's worker processes start (so they do not each recompute them). Without `cache_dir` the masks
    then travel to each worker in the pickled source (~H * W / 8 bytes a frame); with it the workers re-open the
    files."""
    if self.background != "none":
      for video in np.unique(self.clips[:, 0]):
        self._packed(int(video))

  # -- examples ----------------------------------------------------------------------------------------------

  def __getitem__(self, i) -> dict:
    i = operator.index(i)
    if not -len(self) <= i < len(self):
      raise IndexError(f"clip {i} out of range for {len(self)} clips")
    video, start = (int(x) for x in self.clips[i])
    frames = np.arange(start, start + self.clip_len)
    paths = [self.videos[video][f] for f in frames]
    clip = np.stack([read_image(p, size=self.size, channels=self.channels) for p in paths])
    if self.background != "none":
      clip *= self.foreground(video, slice(start, start + self.clip_len))[..., None]
    return {"image": clip, "label": self.labels[video][frames], "class": np.int32(-1), "video": np.int32(video),
            "frame": frames.astype(np.int32), "path": paths[0]}

  def take(self, indices: np.ndarray) -> dict:
    """The clips at `indices`, stacked: image uint8 [B, T, H, W, C], label int32 [B, T], class int32 [B], video int32
    [B], frame int32 [B, T], path str [B]."""
    examples = [self[i] for i in np.asarray(indices, np.int64).reshape(-1)]
    if not examples:
      t, (h, w) = self.clip_len, self.size
      return {"image": np.zeros((0, t, h, w, self.channels), np.uint8), "label": np.zeros((0, t), np.int32),
              "class": np.zeros(0, np.int32), "video": np.zeros(0, np.int32), "frame": np.zeros((0, t), np.int32),
              "path": np.zeros(0, str)}
    return {k: np.array([e[k] for e in examples]) if k == "path" else np.stack([e[k] for e in examples])
            for k in examples[0]}

  def field(self, name: str) -> np.ndarray:
    """One field of every clip without decoding frames: 'label' [M, T], 'class' [M], 'video' [M], 'frame' [M, T]
    or 'path' [M]."""
    video, start = self.clips[:, 0], self.clips[:, 1]
    frame = start[:, None] + np.arange(self.clip_len)[None, :]
    if name == "label":
      return np.stack([self.labels[v][f] for v, f in zip(video, frame)]).astype(np.int32)
    if name == "class":
      return np.full(len(self), -1, np.int32)
    if name == "video":
      return video.astype(np.int32)
    if name == "frame":
      return frame.astype(np.int32)
    if name == "path":
      return np.array([self.videos[v][s] for v, s in zip(video, start)])
    raise KeyError(f"ClipExamples has no field {name!r} without decoding; fields: label, class, video, frame, path "
                   "(and image).")


# ----------------------------------------------------------------------------------------------------------------
# Splits.


def _read_labels(path: str, video_dir: str, num_frames: int, hint: str) -> np.ndarray:
  if not os.path.isfile(path):
    raise DataError(f"Test video {video_dir} has no label file {path} (one label per frame, 1 = anomalous, as a "
                    f"NumPy .npy array). {hint}")
  try:
    labels = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except  (np.load raises ValueError, OSError, EOFError, ...)
    raise DataError(f"Cannot read label file {path} ({type(e).__name__}: {e}). {hint}") from e
  labels = np.asarray(labels)
  if labels.ndim != 1 or len(labels) != num_frames:
    raise DataError(f"Label file {path} has shape {labels.shape} but video {video_dir} has {num_frames} frames; "
                    f"it needs one label per frame. {hint}")
  values = np.unique(labels)
  if not np.isin(values, (0, 1)).all():
    raise DataError(f"Label file {path} must hold 0 (normal) and 1 (anomalous) only, got values "
                    f"{values[:10].tolist()}. {hint}")
  return labels.astype(np.int32)


def _video_split(frames_dir: str, labels_dir: str | None, *, limit_videos: int, hint: str, stride: int,
                 **kwargs) -> ClipExamples:
  names = list_videos(frames_dir)
  if limit_videos:
    names = names[:limit_videos]
  videos = [list_frames(os.path.join(frames_dir, name)) for name in names]
  labels = None
  if labels_dir is not None:
    labels = [_read_labels(os.path.join(labels_dir, name + LABEL_SUFFIX), os.path.join(frames_dir, name),
                           len(frames), hint) for name, frames in zip(names, videos)]
  return ClipExamples(videos, labels=labels, video_names=names, stride=stride, **kwargs)


def _require_dir(path: str, what: str, hint: str) -> None:
  if not os.path.isdir(path):
    raise DataError(f"{what} {path} does not exist. {hint}")


def video_splits(train_dir: str, test_dir: str, labels_dir: str, *, size: tuple[int, int], clip_len: int = 16,
                 train_stride: int = 1, test_stride: int = 1, channels: int = 3, background: str = "mog",
                 background_params: dict | None = None, cache_dir: str | None = None,
                 limit_videos: int = 0) -> dict[str, ClipExamples]:
  """Users' own videos as frame folders, in ShanghaiTech's layout.

      train_dir/<video>/<frame>.jpg     normal training videos (label 0)
      test_dir/<video>/<frame>.jpg      test videos
      labels_dir/<video>.npy            one label per test frame, 1 = anomalous

  Args:
    train_dir, test_dir, labels_dir: the three folders above.
    size: (height, width) of every frame.
    clip_len: frames per clip.
    train_stride, test_stride: frames between consecutive clip starts (test stride 1 scores every frame in up to
      clip_len clips, which `mean_per_frame` averages).
    channels: 1 or 3.
    background, background_params: background removal (module docstring; the models: `jaxad.data.background`).
    cache_dir: folder for the foreground masks (sub-folders 'train' and 'test' are used); None = in memory.
    limit_videos: > 0 keeps the first that many videos of each split (in name order), for quick runs.

  Returns:
    {'train': ClipExamples (labels 0), 'test': ClipExamples (labels from labels_dir)}.

  Raises:
    DataError: a missing folder, a video folder without frames, a test video without its label file, a label file of
      the wrong length or with values other than 0 and 1, or no clip at all in a split.
    ConfigError: bad sizes, counts or background settings.
  """
  hint = "Each test video needs labels_dir/<video>.npy with one 0/1 label per frame."
  for path, what in ((train_dir, "Training video folder"), (test_dir, "Test video folder"),
                     (labels_dir, "Label folder")):
    _require_dir(path, what, hint)
  return _splits(train_dir, test_dir, labels_dir, hint=hint, size=size, clip_len=clip_len, train_stride=train_stride,
                 test_stride=test_stride, channels=channels, background=background,
                 background_params=background_params, cache_dir=cache_dir, limit_videos=limit_videos)


def _splits(train_dir, test_dir, labels_dir, *, hint, train_stride, test_stride, cache_dir, limit_videos,
            **kwargs) -> dict[str, ClipExamples]:
  try:
    limit_videos = operator.index(limit_videos)
  except TypeError:
    raise ConfigError(f"limit_videos must be an int, got {limit_videos!r}.") from None
  if limit_videos < 0:
    raise ConfigError(f"limit_videos must be >= 0 (0 = every video), got {limit_videos}.")
  train_stride = _positive_int("train_stride", train_stride)
  test_stride = _positive_int("test_stride", test_stride)
  _check_background(kwargs["background"], kwargs["background_params"])  # before any folder is listed
  cache = (lambda split: None) if cache_dir is None else (lambda split: os.path.join(cache_dir, split))
  train = _video_split(train_dir, None, limit_videos=limit_videos, hint=hint, stride=train_stride,
                       cache_dir=cache("train"), **kwargs)
  test = _video_split(test_dir, labels_dir, limit_videos=limit_videos, hint=hint, stride=test_stride,
                      cache_dir=cache("test"), **kwargs)
  return {"train": train, "test": test}


def _shanghaitech_hint(root: str) -> str:
  return (f"Download ShanghaiTech Campus from {SHANGHAITECH_URL} (licence: {SHANGHAITECH_LICENCE}), extract it so "
          f"that {root}/training/ and {root}/testing/ exist, and extract the training videos to frame folders "
          f"(in {root}/training: for f in videos/*.avi; do v=$(basename \"$f\" .avi); mkdir -p frames/$v; "
          f"ffmpeg -i \"$f\" -qscale:v 2 -start_number 0 frames/$v/%04d.jpg; done).")


def shanghaitech_splits(root: str, *, size: tuple[int, int] = (256, 512), clip_len: int = 16, train_stride: int = 1,
                        test_stride: int = 1, channels: int = 3, background: str = "mog",
                        background_params: dict | None = None, cache_dir: str | None = None,
                        limit_videos: int = 0) -> dict[str, ClipExamples]:
  """ShanghaiTech Campus as MOCCA uses it: clips of 16 frames at 256x512, background removed.

  Defaults follow the authors' code (MOCCA's `datasets/shanghaitech*.py`): stride 1 for both splits (their training
  loader then draws 10,000 random clips per epoch), frames divided by 255 later (`Preprocess('unit')`).

  Args:
    root: the extracted dataset, holding training/frames/, testing/frames/ and testing/test_frame_mask/.
    Other arguments as in `video_splits`.

  Returns:
    {'train': ClipExamples over the 330 training videos (labels 0), 'test': ClipExamples over the 107 test videos
    with their per-frame labels}.

  Raises:
    DataError: a missing root or sub-folder (the message says how to get and extract the dataset; training .avi
      files without frame folders get the ffmpeg command), or the label problems of `video_splits`.
  """
  hint = _shanghaitech_hint(root)
  if not os.path.isdir(root):
    raise DataError(f"ShanghaiTech folder {root} does not exist. {hint}")
  train_dir = os.path.join(root, "training", "frames")
  test_dir = os.path.join(root, "testing", "frames")
  labels_dir = os.path.join(root, "testing", "test_frame_mask")
  avi_dir = os.path.join(root, "training", "videos")
  if not os.path.isdir(train_dir) and os.path.isdir(avi_dir):
    raise DataError(f"ShanghaiTech training frames {train_dir} do not exist, but {avi_dir} does: its .avi videos "
                    f"must be extracted to frame folders first. In {os.path.join(root, 'training')} run: for f in "
                    "videos/*.avi; do v=$(basename \"$f\" .avi); mkdir -p frames/$v; ffmpeg -i \"$f\" -qscale:v 2 "
                    "-start_number 0 frames/$v/%04d.jpg; done")
  _require_dir(train_dir, "ShanghaiTech training frame folder", hint)
  _require_dir(test_dir, "ShanghaiTech test frame folder", hint)
  _require_dir(labels_dir, "ShanghaiTech test label folder", hint)
  return _splits(train_dir, test_dir, labels_dir, hint=hint, size=size, clip_len=clip_len, train_stride=train_stride,
                 test_stride=test_stride, channels=channels, background=background,
                 background_params=background_params, cache_dir=cache_dir, limit_videos=limit_videos)
