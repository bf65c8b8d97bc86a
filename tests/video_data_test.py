"""Video clips and background removal (jaxad.data.video) on frame folders generated in tmp_path.

The synthetic videos: a static textured background with a little sensor noise and a bright square moving 3 pixels a
frame along rows (it never returns to a pixel); test videos add a second, blue square in the frames their label file
marks anomalous. The background models themselves are checked against OpenCV and NumPy / SciPy references in
tests/background_test.py.
"""

import glob
import os
import pickle

import grain
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

import helpers
from jaxad import reductions
from jaxad.data import folder, video
from jaxad.data.background import median_foreground, mog_foreground, mog_image_foreground
from jaxad.errors import ConfigError, DataError

H, W = 24, 48
CLIP, TRAIN_STRIDE = 8, 3
TRAIN_LENGTHS = {"01_001": 20, "01_002": 33, "02_001": 40, "02_002": 5}  # the last is shorter than a clip
TEST_LENGTHS = {"01_0014": 25, "02_0007": 38}


def anomaly_labels(n, seed):
  """Per-frame labels with one or two anomalous runs."""
  labels = np.zeros(n, np.int64)
  labels[n // 3:n // 3 + 6] = 1
  if seed % 2:
    labels[n - 5:] = 1
  return labels


def write_video(directory, frames, names=None):
  os.makedirs(directory, exist_ok=True)
  names = names or [f"{i:03d}.jpg" for i in range(len(frames))]
  for name, frame in zip(names, frames):
    Image.fromarray(frame).save(os.path.join(directory, name), quality=95)


def make_shanghaitech(root):
  """A tiny ShanghaiTech-layout dataset; returns the test labels {video: labels}."""
  for seed, (name, n) in enumerate(TRAIN_LENGTHS.items()):
    write_video(os.path.join(root, "training", "frames", name), helpers.moving_square(n, seed=seed)[0])
  labels = {}
  for seed, (name, n) in enumerate(TEST_LENGTHS.items(), start=10):
    frames = helpers.moving_square(n, seed=seed)[0]
    y = anomaly_labels(n, seed)
    frames[y == 1, 14:20, 30:36] = (20, 40, 250)  # the anomaly: a blue square
    write_video(os.path.join(root, "testing", "frames", name), frames)
    os.makedirs(os.path.join(root, "testing", "test_frame_mask"), exist_ok=True)
    np.save(os.path.join(root, "testing", "test_frame_mask", name + ".npy"), y)
    labels[name] = y
  return labels


@pytest.fixture
def dataset(tmp_path):
  root = str(tmp_path / "shanghaitech")
  return root, make_shanghaitech(root)


def expected_clips(lengths, clip_len, stride):
  return sum((n - clip_len) // stride + 1 for n in lengths if n >= clip_len)


def test_clip_counts_fields_and_labels(dataset):
  root, labels = dataset
  splits = video.shanghaitech_splits(root, size=(H, W), clip_len=CLIP, train_stride=TRAIN_STRIDE, background="none")
  train, test = splits["train"], splits["test"]
  assert len(train) == expected_clips(TRAIN_LENGTHS.values(), CLIP, TRAIN_STRIDE) == 5 + 9 + 11
  assert len(test) == expected_clips(TEST_LENGTHS.values(), CLIP, 1) == 18 + 31
  assert train.video_names == list(TRAIN_LENGTHS) and test.video_names == list(TEST_LENGTHS)
  for split, lengths, stride in ((train, TRAIN_LENGTHS, TRAIN_STRIDE), (test, TEST_LENGTHS, 1)):
    seen = set()
    for i in range(len(split)):
      ex = split[i]
      assert ex["image"].shape == (CLIP, H, W, 3) and ex["image"].dtype == np.uint8
      assert ex["label"].shape == (CLIP,) and ex["label"].dtype == np.int32
      assert ex["frame"].shape == (CLIP,) and ex["frame"].dtype == np.int32
      assert ex["class"] == -1 and ex["class"].dtype == np.int32 and ex["video"].dtype == np.int32
      name = split.video_names[int(ex["video"])]
      start = int(ex["frame"][0])
      np.testing.assert_array_equal(ex["frame"], np.arange(start, start + CLIP))  # consecutive frames
      assert start % stride == 0 and start + CLIP <= lengths[name]
      assert ex["path"] == os.path.join(root, "training" if split is train else "testing", "frames", name,
                                        f"{start:03d}.jpg")
      expected = labels[name][start:start + CLIP] if split is test else np.zeros(CLIP)
      np.testing.assert_array_equal(ex["label"], expected)
      seen.add((name, start))
    # Every window start of every long-enough video, once.
    assert seen == {(name, s) for name, n in lengths.items() for s in range(0, n - CLIP + 1, stride)}
  assert "02_002" not in {train.video_names[v] for v in train.clips[:, 0]}  # 5 frames < clip_len: no clip
  # field() gives the metadata without decoding and agrees with the examples.
  batch = test.take(np.arange(len(test)))
  for key in ("label", "class", "video", "frame", "path"):
    np.testing.assert_array_equal(test.field(key), batch[key])


def test_take_equals_stacked_getitem_and_pickles(dataset):
  root, _ = dataset
  test = video.shanghaitech_splits(root, size=(H, W), clip_len=CLIP, background="mog")["test"]
  indices = np.array([40, 3, 3, 17, 0, len(test) - 1])
  batch = test.take(indices)
  singles = [test[int(i)] for i in indices]
  assert batch["image"].shape == (6, CLIP, H, W, 3) and batch["path"].shape == (6,)
  for key in ("image", "label", "class", "video", "frame"):
    np.testing.assert_array_equal(batch[key], np.stack([s[key] for s in singles]))
  assert batch["path"].tolist() == [s["path"] for s in singles]
  empty = test.take(np.zeros(0, np.int64))
  assert empty["image"].shape == (0, CLIP, H, W, 3) and empty["label"].shape == (0, CLIP)
  assert empty["frame"].shape == (0, CLIP) and empty["video"].shape == (0,)
  # grain's worker processes get pickled copies; grain's MapDataset reads it as a source.
  copy = pickle.loads(pickle.dumps(test))
  np.testing.assert_array_equal(copy[17]["image"], singles[3]["image"])
  np.testing.assert_array_equal(grain.MapDataset.source(test)[40]["image"], singles[0]["image"])
  with pytest.raises(IndexError):
    test[len(test)]


def decoded(split, v, size=(H, W), channels=3):
  return np.stack([folder.read_image(p, size=size, channels=channels) for p in split.videos[v]])


def test_none_leaves_frames_unchanged_and_mog_zeroes_background(dataset):
  root, _ = dataset
  kwargs = dict(size=(H, W), clip_len=CLIP, train_stride=TRAIN_STRIDE)
  plain = video.shanghaitech_splits(root, background="none", **kwargs)["train"]
  mog = video.shanghaitech_splits(root, background="mog", **kwargs)["train"]
  for i in (0, 7, len(plain) - 1):
    v, start = (int(x) for x in plain.clips[i])
    frames = decoded(plain, v)
    np.testing.assert_array_equal(plain[i]["image"], frames[start:start + CLIP])
    # mog: the same pixels where the video's MOG foreground is set, 0 elsewhere.
    masks = mog_foreground(frames)
    np.testing.assert_array_equal(mog.foreground(v), masks)
    np.testing.assert_array_equal(mog[i]["image"], frames[start:start + CLIP] * masks[start:start + CLIP, ..., None])
  # After the warm-up the kept pixels are the moving square: all of it, plus at most a 2-pixel rim where JPEG's
  # half-resolution colour planes smear the square's colour into its surroundings.
  truth = helpers.moving_square(TRAIN_LENGTHS["02_001"], seed=2)[1][10:]
  found = mog.foreground(plain.video_names.index("02_001"))[10:]
  assert ((found & truth).sum(axis=(1, 2)) / truth.sum(axis=(1, 2)) > 0.95).all()
  rim = np.stack([scipy.ndimage.binary_dilation(t, iterations=2) for t in truth])
  assert (found & ~rim).mean() < 1e-3
  # Resized, grey: shapes follow size and channels, and masks are computed at the working size.
  small = video.shanghaitech_splits(root, size=(12, 20), channels=1, clip_len=CLIP, limit_videos=1)
  assert small["train"].video_names == ["01_001"] and small["test"].video_names == ["01_0014"]
  assert small["train"][0]["image"].shape == (CLIP, 12, 20, 1)
  np.testing.assert_array_equal(small["test"].foreground(0), mog_foreground(decoded(small["test"], 0, (12, 20), 1)))


def test_backgrounds_through_clip_examples(dataset):
  root, _ = dataset
  for background, function in (("median", median_foreground), ("mog_image", mog_image_foreground)):
    test = video.shanghaitech_splits(root, size=(H, W), clip_len=CLIP, background=background,
                                     background_params={"dilate": 1})["test"]
    frames = decoded(test, 1)
    masks = function(frames, dilate=1)
    np.testing.assert_array_equal(test.foreground(1), masks)
    i = int(np.flatnonzero(test.clips[:, 0] == 1)[5])
    start = int(test.clips[i, 1])
    np.testing.assert_array_equal(test[i]["image"], frames[start:start + CLIP] * masks[start:start + CLIP, ..., None])


def test_mask_cache(dataset, tmp_path):
  root, _ = dataset
  cache = str(tmp_path / "cache")
  kwargs = dict(size=(H, W), clip_len=CLIP, cache_dir=cache)
  first = video.shanghaitech_splits(root, **kwargs)["test"]
  first.precompute()
  files = sorted(glob.glob(os.path.join(cache, "test", "*.npy")))
  assert len(files) == len(TEST_LENGTHS) and not glob.glob(os.path.join(cache, "train", "*"))
  again = video.shanghaitech_splits(root, **kwargs)["test"]
  np.testing.assert_array_equal(again.foreground(0), first.foreground(0))
  # A later instance reads the file rather than recomputing: replace the cached masks and it returns them.
  path = [f for f in files if os.path.basename(f).startswith("01_0014-mog-")][0]
  np.save(path, np.packbits(np.ones((TEST_LENGTHS["01_0014"], H, W), bool), axis=-1))
  reread = video.shanghaitech_splits(root, **kwargs)["test"]
  assert reread.foreground(0).all() and reread[0]["image"].any()
  # The memory-mapped masks are re-opened (not copied) by a pickled copy.
  assert pickle.loads(pickle.dumps(reread)).foreground(0).all()
  # Other parameters are another cache entry; a file of the wrong shape is recomputed and overwritten.
  other = video.shanghaitech_splits(root, background_params={"var_threshold": 25.0}, **kwargs)["test"]
  other.foreground(0)
  assert len(glob.glob(os.path.join(cache, "test", "*.npy"))) == len(TEST_LENGTHS) + 1
  np.save(path, np.zeros((3, 3), np.uint8))
  np.testing.assert_array_equal(video.shanghaitech_splits(root, **kwargs)["test"].foreground(0),
                                first.foreground(0))


def test_labels_feed_mean_per_frame(dataset):
  root, labels = dataset
  test = video.shanghaitech_splits(root, size=(H, W), clip_len=CLIP, background="none")["test"]
  scores = np.random.default_rng(0).random((len(test), CLIP))
  meta = {"video": test.field("video"), "frame": test.field("frame")}
  frame_scores, frame_labels, frame_meta = reductions.reduce("mean_per_frame", scores, test.field("label"), meta)
  # Stride 1: every frame of every test video is scored once, with its label from test_frame_mask.
  np.testing.assert_array_equal(frame_labels, np.concatenate([labels[name] for name in TEST_LENGTHS]))
  assert len(frame_scores) == sum(TEST_LENGTHS.values())
  np.testing.assert_array_equal(frame_meta["frame"], np.concatenate([np.arange(n) for n in TEST_LENGTHS.values()]))


def test_video_splits_and_natural_frame_order(tmp_path):
  frames = helpers.moving_square(12, seed=5)[0]
  names = [f"{i + 1}.png" for i in range(12)]  # unpadded: 10.png must come after 9.png
  write_video(str(tmp_path / "train" / "cam"), frames, names)
  write_video(str(tmp_path / "test" / "cam"), frames, names)
  os.makedirs(tmp_path / "labels")
  np.save(tmp_path / "labels" / "cam.npy", np.r_[np.zeros(6), np.ones(6)].astype(bool))
  splits = video.video_splits(str(tmp_path / "train"), str(tmp_path / "test"), str(tmp_path / "labels"),
                              size=(H, W), clip_len=4, train_stride=4, background="none")
  assert [os.path.basename(p) for p in splits["train"].videos[0]] == names
  assert len(splits["train"]) == 3 and len(splits["test"]) == 9
  np.testing.assert_array_equal(splits["test"][4]["label"], [0, 0, 1, 1])
  np.testing.assert_array_equal(splits["train"][2]["image"], frames[8:12])  # PNG: lossless


def test_error_messages(dataset, tmp_path):
  root, _ = dataset
  kwargs = dict(size=(H, W), clip_len=CLIP)
  missing = str(tmp_path / "nowhere")
  with pytest.raises(DataError, match=f"ShanghaiTech folder {missing} does not exist.*{video.SHANGHAITECH_URL}"):
    video.shanghaitech_splits(missing)
  bare = tmp_path / "bare"
  os.makedirs(bare / "training" / "videos")
  with pytest.raises(DataError, match=r"training/videos does.*\.avi.*ffmpeg -i"):
    video.shanghaitech_splits(str(bare))
  os.rmdir(bare / "training" / "videos")
  with pytest.raises(DataError, match=r"training frame folder .*training/frames does not exist.*Download"):
    video.shanghaitech_splits(str(bare))
  os.makedirs(bare / "training" / "frames")
  with pytest.raises(DataError, match=r"test frame folder .*testing/frames does not exist"):
    video.shanghaitech_splits(str(bare))
  os.makedirs(bare / "testing" / "frames")
  with pytest.raises(DataError, match=r"test label folder .*testing/test_frame_mask does not exist"):
    video.shanghaitech_splits(str(bare))
  os.makedirs(bare / "testing" / "test_frame_mask")
  with pytest.raises(DataError, match=r"training/frames has no sub-folders"):
    video.shanghaitech_splits(str(bare))
  os.makedirs(bare / "training" / "frames" / "01_001")
  with pytest.raises(DataError, match=r"01_001 has no image files"):
    video.shanghaitech_splits(str(bare))

  mask = os.path.join(root, "testing", "test_frame_mask", "02_0007.npy")
  good = np.load(mask)
  os.remove(mask)
  with pytest.raises(DataError, match=r"Test video .*testing/frames/02_0007 has no label file .*02_0007\.npy"):
    video.shanghaitech_splits(root, **kwargs)
  np.save(mask, good[:-1])
  with pytest.raises(DataError, match=r"02_0007\.npy has shape \(37,\) but video .* has 38 frames"):
    video.shanghaitech_splits(root, **kwargs)
  np.save(mask, np.where(good == 1, 2, 0))
  with pytest.raises(DataError, match=r"02_0007\.npy must hold 0 \(normal\) and 1 \(anomalous\) only, got values "
                                      r"\[0, 2\]"):
    video.shanghaitech_splits(root, **kwargs)
  with open(mask, "wb") as f:
    f.write(b"not a numpy file")
  with pytest.raises(DataError, match=r"Cannot read label file .*02_0007\.npy"):
    video.shanghaitech_splits(root, **kwargs)
  np.save(mask, good)

  with pytest.raises(DataError, match=r"No clip of 60 frames: every one of the 4 video\(s\) is shorter \(the longest "
                                      r"has 40 frames\)"):
    video.shanghaitech_splits(root, size=(H, W), clip_len=60)
  with pytest.raises(DataError, match="Label folder .* does not exist"):
    video.video_splits(str(tmp_path), str(tmp_path), missing, size=(H, W))
  bad_configs = [
      (dict(background="mog3"), r"background must be one of \('mog', 'mog_image', 'median', 'none'\)"),
      (dict(background_params={"histroy": 10}), r"no parameter\(s\) \['histroy'\]; valid: .*'history'"),
      (dict(background="median", background_params={"history": 10}), r"no parameter\(s\) \['history'\]"),
      (dict(background_params={"history": 0}), "history and num_components must be >= 1"),
      (dict(background_params={"dilate": -1}), "dilate must be >= 0"),
      (dict(background="none", background_params={"dilate": 1}), "takes no background_params"),
      (dict(clip_len=0), "clip_len must be >= 1"),
      (dict(train_stride=0), "train_stride must be >= 1"),
      (dict(test_stride=1.5), "test_stride must be an int"),
      (dict(limit_videos=-1), "limit_videos must be >= 0"),
      (dict(channels=2), "channels must be 1"),
      (dict(size=(0, 4)), "size must be positive"),
  ]
  for overrides, message in bad_configs:
    with pytest.raises(ConfigError, match=message):
      video.shanghaitech_splits(root, **{**kwargs, **overrides})
  paths = [sorted(glob.glob(os.path.join(root, "testing", "frames", "01_0014", "*.jpg")))]
  with pytest.raises(ConfigError, match="labels of shape \\(3,\\) for 25 frames"):
    video.ClipExamples(paths, size=(H, W), labels=[np.zeros(3)])
  with pytest.raises(ConfigError, match="labels must be 0 \\(normal\\) or 1"):
    video.ClipExamples(paths, size=(H, W), labels=[np.full(25, 3)])
  with pytest.raises(ConfigError, match="1 videos but 2 video_names"):
    video.ClipExamples(paths, size=(H, W), video_names=["a", "b"])
