"""Named reductions that turn raw scorer outputs into one score per evaluated unit, before the metrics run.

A scorer returns one score per example ([N]), per patch ([N, P]) or per clip frame ([N, T]); the metrics want one
score and one label per image or per video frame. A method names the reduction of each scorer (`Method.reductions`)
and the evaluator calls `reduce(name, scores, labels, meta)`. Higher score = more anomalous, label 1 = anomalous.

Host-side NumPy only, so importing this module is cheap.

References:
  Massoli et al., "MOCCA: Multi-Layer One-Class Classification for Anomaly Detection", IEEE TNNLS 2021
  (arXiv:2012.12111): the MVTec image score is the maximum patch score (Eq. 7); video frame scores are min-max
  normalised within each video (Eq. 8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike

Meta = dict[str, np.ndarray]
Reduction = Callable[[np.ndarray, np.ndarray, Meta], tuple[np.ndarray, np.ndarray, Meta]]


def _none(scores: np.ndarray, labels: np.ndarray, meta: Meta) -> tuple[np.ndarray, np.ndarray, Meta]:
  """One score per example already: scores [N] and labels [N] pass through."""
  if scores.ndim != 1:
    raise ValueError(f"Reduction 'none' expects scores of shape [N], got shape {scores.shape}.")
  _check_labels("none", labels, scores.shape)
  return scores, labels, meta


def _max_patches(scores: np.ndarray, labels: np.ndarray, meta: Meta) -> tuple[np.ndarray, np.ndarray, Meta]:
  """Image score = the maximum over its patch scores: scores [N, P] -> [N] (MOCCA Eq. 7); labels [N] unchanged."""
  if scores.ndim != 2 or scores.shape[1] == 0:
    raise ValueError(f"Reduction 'max_patches' expects scores of shape [N, P] with P >= 1 (one score per patch), "
                     f"got shape {scores.shape}.")
  _check_labels("max_patches", labels, scores.shape[:1])
  return scores.max(axis=1), labels, meta


def _mean_patches(scores: np.ndarray, labels: np.ndarray, meta: Meta) -> tuple[np.ndarray, np.ndarray, Meta]:
  """Image score = the mean of its patch scores: scores [N, P] -> [N]; the whole-image baseline beside Eq. 7."""
  if scores.ndim != 2 or scores.shape[1] == 0:
    raise ValueError(f"Reduction 'mean_patches' expects scores of shape [N, P] with P >= 1 (one score per patch), "
                     f"got shape {scores.shape}.")
  _check_labels("mean_patches", labels, scores.shape[:1])
  return scores.mean(axis=1), labels, meta


def _mean_per_frame_normalized(scores: np.ndarray, labels: np.ndarray,
                               meta: Meta) -> tuple[np.ndarray, np.ndarray, Meta]:
  """`mean_per_frame`, then each video's frame scores min-max normalised (MOCCA Eq. 8, `normalize_per_video`)."""
  frame_scores, frame_labels, frame_meta = _mean_per_frame(scores, labels, meta)
  return normalize_per_video(frame_scores, frame_meta["video"]), frame_labels, frame_meta


def _mean_per_frame(scores: np.ndarray, labels: np.ndarray, meta: Meta) -> tuple[np.ndarray, np.ndarray, Meta]:
  """Frame score = the mean over every clip that contains the frame; see `reduce` for the shapes."""
  if scores.ndim != 2:
    raise ValueError(f"Reduction 'mean_per_frame' expects scores of shape [N, T] (one score per clip frame), got "
                     f"shape {scores.shape}.")
  _check_labels("mean_per_frame", labels, scores.shape)
  missing = [key for key in ("video", "frame") if key not in meta]
  if missing:
    raise ValueError(f"Reduction 'mean_per_frame' needs meta['video'] [N] and meta['frame'] [N, T]; missing "
                     f"{missing} (got keys {sorted(meta)}).")
  video, frame = meta["video"], meta["frame"]
  if video.shape != scores.shape[:1] or frame.shape != scores.shape:
    raise ValueError(f"Reduction 'mean_per_frame' expects meta['video'] of shape {scores.shape[:1]} and "
                     f"meta['frame'] of shape {scores.shape} like scores, got {video.shape} and {frame.shape}.")
  for key, ids in (("video", video), ("frame", frame)):
    if not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"Reduction 'mean_per_frame' expects integer meta['{key}'], got dtype {ids.dtype}.")
  if frame.size and frame.min() < 0:
    raise ValueError(f"Reduction 'mean_per_frame' expects frame indices >= 0, got {frame.min()}.")

  # One int64 key per clip frame, ordered like (video, frame): videos are replaced by their rank among the distinct
  # ids (so arbitrary ids cannot overflow the key) and frames fill the low digits.
  video_ids, video_rank = np.unique(video, return_inverse=True)
  frame_base = int(frame.max()) + 1 if frame.size else 1
  key = (np.repeat(video_rank.reshape(-1, 1), scores.shape[1], axis=1).astype(np.int64) * frame_base
         + frame.astype(np.int64)).ravel()
  unique_keys, first_index, group = np.unique(key, return_index=True, return_inverse=True)
  group = group.ravel()  # numpy 2.0 and 2.1 shape the inverse like the input

  clip_count = np.bincount(group, minlength=len(unique_keys))
  frame_scores = np.bincount(group, weights=scores.ravel().astype(np.float64), minlength=len(unique_keys)) / clip_count

  # Every clip that shows a frame must give it the same label; the first clip's label stands for the frame.
  flat_labels = labels.ravel()
  frame_labels = flat_labels[first_index]
  disagree = flat_labels != frame_labels[group]
  if np.any(disagree):
    bad = unique_keys[np.unique(group[disagree])]
    examples = [(video_ids[k // frame_base].item(), int(k % frame_base)) for k in bad[:5]]
    raise ValueError(f"Reduction 'mean_per_frame': overlapping clips disagree on the label of {len(bad)} frame(s), "
                     f"e.g. (video, frame) {examples}.")
  reduced_meta = {"video": video_ids[unique_keys // frame_base],
                  "frame": (unique_keys % frame_base).astype(frame.dtype)}
  return frame_scores, frame_labels, reduced_meta


def _check_labels(name: str, labels: np.ndarray, shape: tuple[int, ...]) -> None:
  if labels.shape != tuple(shape):
    raise ValueError(f"Reduction '{name}' expects labels of shape {list(shape)}, got shape {labels.shape}.")


REDUCTIONS: dict[str, Reduction] = {
    "none": _none,
    "max_patches": _max_patches,
    "mean_patches": _mean_patches,
    "mean_per_frame": _mean_per_frame,
    "mean_per_frame_normalized": _mean_per_frame_normalized,
}


def reduce(name: str, scores: ArrayLike, labels: ArrayLike,
           meta: Mapping[str, ArrayLike] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """Applies the named reduction to raw scores, giving one score and one label per evaluated unit.

  - `none`: scores [N], labels [N] pass through; meta passes through.
  - `max_patches`: scores [N, P] (one per patch) -> [N], the maximum over the patches (MOCCA MVTec, Eq. 7);
    labels [N] and meta pass through.
  - `mean_patches`: scores [N, P] -> [N], the mean over the patches (the whole-image baseline that Eq. 7's maximum
    is compared with).
  - `mean_per_frame` (video): N overlapping clips of T frames. scores [N, T] and labels [N, T] per clip frame,
    meta['video'] int [N] (video id of each clip), meta['frame'] int [N, T] (index of each clip frame within its
    video, >= 0). Output: M = number of distinct (video, frame) pairs; score = mean over all clips containing the
    frame, label = the frame's label (clips must agree), meta {'video': [M], 'frame': [M]} sorted by (video, frame).
    Other meta entries are per clip and are dropped.
  - `mean_per_frame_normalized`: `mean_per_frame`, then each video's frame scores min-max normalised to [0, 1]
    (`normalize_per_video`, MOCCA Eq. 8), so frames are ranked against the other frames of their own video.

  Args:
    name: a key of `REDUCTIONS`.
    scores: raw scorer outputs, higher = more anomalous; shape as above.
    labels: 1 = anomalous; shape as above.
    meta: per-example metadata arrays, needed by `mean_per_frame`.

  Returns:
    `(scores [M], labels [M], meta)` with scores as float64 for `mean_per_frame`, otherwise scores' dtype.

  Raises:
    ValueError: unknown name (the message lists `REDUCTIONS`), shapes that do not fit the reduction (the message
      names it and the shape), or clips that disagree on a frame's label.

  Example:
    >>> s, l, _ = reduce("max_patches", np.array([[0.1, 0.7], [0.3, 0.2]]), np.array([1, 0]))
    >>> s.tolist(), l.tolist()
    ([0.7, 0.3], [1, 0])
  """
  if name not in REDUCTIONS:
    raise ValueError(f"Unknown reduction {name!r}; valid names: {sorted(REDUCTIONS)}.")
  meta_arrays = {key: np.asarray(value) for key, value in (meta or {}).items()}
  return REDUCTIONS[name](np.asarray(scores), np.asarray(labels), meta_arrays)


def normalize_per_video(scores: ArrayLike, video: ArrayLike) -> np.ndarray:
  """Min-max normalises frame scores within each video (MOCCA Eq. 8).

  s'_i = (s_i - min_v) / (max_v - min_v), where v is frame i's video and min_v, max_v range over that video's frame
  scores. Each video then spans [0, 1], so AUROC over the pooled frames compares frames by their rank within their
  own video rather than by level differences between videos. A video whose scores are all equal maps to zeros.

  Args:
    scores: [M] frame scores (e.g. from `reduce('mean_per_frame', ...)`).
    video: [M] video id of each frame.

  Returns:
    [M] float64 normalised scores, in [0, 1].

  Example:
    >>> normalize_per_video([2.0, 4.0, 3.0, 5.0, 5.0], [0, 0, 0, 1, 1]).tolist()
    [0.0, 1.0, 0.5, 0.0, 0.0]
  """
  scores, video = np.asarray(scores, dtype=np.float64), np.asarray(video)
  if scores.ndim != 1 or video.shape != scores.shape:
    raise ValueError(f"normalize_per_video expects scores [M] and video [M], got shapes {scores.shape} and "
                     f"{video.shape}.")
  _, group = np.unique(video, return_inverse=True)
  group = group.ravel()
  num_videos = int(group.max()) + 1 if group.size else 0
  video_min = np.full(num_videos, np.inf)
  video_max = np.full(num_videos, -np.inf)
  np.minimum.at(video_min, group, scores)
  np.maximum.at(video_max, group, scores)
  span = (video_max - video_min)[group]
  # A constant video carries no ranking information: zeros, not a 0/0.
  return np.divide(scores - video_min[group], span, out=np.zeros_like(scores), where=span > 0)
