"""Tests for jaxad.reductions against plain Python loops and hand-made numbers."""

import numpy as np
import pytest

from jaxad import reductions


def _clips(num_frames_per_video, clip_len=4, stride=2):
  """Overlapping clips of `clip_len` frames every `stride` frames: (video [N], frame [N, T])."""
  videos, frames = [], []
  for video_id, num_frames in num_frames_per_video.items():
    for start in range(0, num_frames - clip_len + 1, stride):
      videos.append(video_id)
      frames.append(list(range(start, start + clip_len)))
  return np.array(videos), np.array(frames)


def _mean_per_frame_loop(scores, labels, video, frame):
  """The obvious reference: accumulate every clip frame into a dict keyed by (video, frame)."""
  total, count, label_of = {}, {}, {}
  for i in range(scores.shape[0]):
    for t in range(scores.shape[1]):
      key = (int(video[i]), int(frame[i, t]))
      total[key] = total.get(key, 0.0) + float(scores[i, t])
      count[key] = count.get(key, 0) + 1
      label_of[key] = int(labels[i, t])
  keys = sorted(total)
  return (np.array([total[key] / count[key] for key in keys]), np.array([label_of[key] for key in keys]),
          np.array([key[0] for key in keys]), np.array([key[1] for key in keys]))


def test_none_passes_through():
  scores, labels = np.array([0.3, 0.1, 0.9]), np.array([0, 0, 1])
  meta = {"path": np.array(["a", "b", "c"])}
  out_scores, out_labels, out_meta = reductions.reduce("none", scores, labels, meta)
  np.testing.assert_array_equal(out_scores, scores)
  np.testing.assert_array_equal(out_labels, labels)
  np.testing.assert_array_equal(out_meta["path"], meta["path"])


def test_max_patches_matches_loop():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(7, 64))
  labels = rng.integers(0, 2, size=7)
  expected = np.array([np.max(scores[i]) for i in range(7)])
  out_scores, out_labels, _ = reductions.reduce("max_patches", scores, labels)
  np.testing.assert_array_equal(out_scores, expected)
  np.testing.assert_array_equal(out_labels, labels)


def test_mean_per_frame_hand_made():
  # Video 5 has frames 0..5 seen by clips [0..3] and [2..5]; frames 2 and 3 are in both clips.
  scores = np.array([[1.0, 2.0, 3.0, 4.0],
                     [5.0, 6.0, 7.0, 8.0]])
  labels = np.array([[0, 0, 1, 1],
                     [1, 1, 1, 0]])
  video = np.array([5, 5])
  frame = np.array([[0, 1, 2, 3], [2, 3, 4, 5]])
  out_scores, out_labels, meta = reductions.reduce("mean_per_frame", scores, labels, {"video": video, "frame": frame})
  np.testing.assert_allclose(out_scores, [1.0, 2.0, 4.0, 5.0, 7.0, 8.0])  # (3+5)/2 and (4+6)/2 in the middle
  np.testing.assert_array_equal(out_labels, [0, 0, 1, 1, 1, 0])
  np.testing.assert_array_equal(meta["video"], [5] * 6)
  np.testing.assert_array_equal(meta["frame"], [0, 1, 2, 3, 4, 5])


def test_mean_per_frame_two_videos_matches_loop():
  # Two videos (ids 7 and 3, given out of order) of 10 and 8 frames; clips of T=4 every 2 frames.
  video, frame = _clips({7: 10, 3: 8})
  rng = np.random.default_rng(1)
  order = rng.permutation(len(video))  # clip order must not matter
  video, frame = video[order], frame[order]
  scores = rng.normal(size=frame.shape)
  # A frame's label depends only on (video, frame), so overlapping clips agree.
  anomalous = {(7, 4), (7, 5), (7, 6), (3, 0)}
  labels = np.array([[int((v, f) in anomalous) for f in row] for v, row in zip(video, frame)])

  out_scores, out_labels, meta = reductions.reduce("mean_per_frame", scores, labels, {"video": video, "frame": frame})
  ref_scores, ref_labels, ref_video, ref_frame = _mean_per_frame_loop(scores, labels, video, frame)
  assert len(out_scores) == 10 + 8
  np.testing.assert_allclose(out_scores, ref_scores, rtol=1e-12)
  np.testing.assert_array_equal(out_labels, ref_labels)
  np.testing.assert_array_equal(meta["video"], ref_video)
  np.testing.assert_array_equal(meta["frame"], ref_frame)
  assert meta["video"][0] == 3 and meta["video"][-1] == 7  # sorted by (video, frame)


def test_mean_per_frame_disagreeing_labels_raise():
  video, frame = _clips({0: 6})
  labels = np.zeros(frame.shape, int)
  labels[1, 0] = 1  # frame 2 is anomalous in the second clip but normal in the first
  with pytest.raises(ValueError, match=r"disagree.*\(0, 2\)"):
    reductions.reduce("mean_per_frame", np.zeros(frame.shape), labels, {"video": video, "frame": frame})


def test_mean_per_frame_needs_meta():
  video, frame = _clips({0: 6})
  with pytest.raises(ValueError, match="mean_per_frame.*frame"):
    reductions.reduce("mean_per_frame", np.zeros(frame.shape), np.zeros(frame.shape, int), {"video": video})
  with pytest.raises(ValueError, match="mean_per_frame"):
    reductions.reduce("mean_per_frame", np.zeros(frame.shape), np.zeros(frame.shape, int),
                      {"video": video, "frame": frame[:, :2]})


@pytest.mark.parametrize("name, scores, labels", [
    ("none", np.zeros((4, 3)), np.zeros(4)),
    ("none", np.zeros(4), np.zeros(5)),
    ("max_patches", np.zeros(4), np.zeros(4)),
    ("max_patches", np.zeros((4, 3, 2)), np.zeros(4)),
    ("max_patches", np.zeros((4, 3)), np.zeros((4, 3))),
    ("mean_per_frame", np.zeros(4), np.zeros(4)),
    ("mean_per_frame", np.zeros((2, 4)), np.zeros(2)),
])
def test_wrong_shapes_raise_with_reduction_name(name, scores, labels):
  meta = {"video": np.zeros(2, int), "frame": np.zeros((2, 4), int)}
  with pytest.raises(ValueError, match=f"'{name}'.*shape"):
    reductions.reduce(name, scores, labels, meta)


def test_unknown_name_lists_reductions():
  with pytest.raises(ValueError, match=r"'mean'.*max_patches.*mean_per_frame.*none"):
    reductions.reduce("mean", np.zeros(3), np.zeros(3))


def test_normalize_per_video_matches_loop():
  rng = np.random.default_rng(2)
  video = rng.choice([4, 9, 11], size=40)
  scores = rng.normal(size=40) * 3 + 1
  scores[video == 11] = 2.5  # a constant video
  expected = np.empty_like(scores)
  for v in np.unique(video):
    in_video = video == v
    lo, hi = scores[in_video].min(), scores[in_video].max()
    expected[in_video] = 0.0 if hi == lo else (scores[in_video] - lo) / (hi - lo)
  normalized = reductions.normalize_per_video(scores, video)
  np.testing.assert_allclose(normalized, expected, rtol=1e-12, atol=1e-15)
  np.testing.assert_array_equal(normalized[video == 11], 0.0)
  for v in (4, 9):
    assert normalized[video == v].min() == 0.0 and normalized[video == v].max() == 1.0


def test_normalize_per_video_hand_made():
  np.testing.assert_allclose(reductions.normalize_per_video([10.0, 20.0, 15.0, -1.0, 1.0], [1, 1, 1, 2, 2]),
                             [0.0, 1.0, 0.5, 0.0, 1.0])
  with pytest.raises(ValueError, match="normalize_per_video"):
    reductions.normalize_per_video(np.zeros(3), np.zeros(4, int))
