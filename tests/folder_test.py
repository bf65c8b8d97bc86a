"""Users' own images and the MVTec AD layout (jaxad.data.folder), on image files generated in tmp_path."""

import os

import grain
import numpy as np
import pytest
from PIL import Image

from jaxad.data import folder
from jaxad.errors import DataError

SIZE = (24, 32)  # (height, width): not square, so a swapped resize shows


def save(path, pixels, mode=None):
  """Writes uint8 pixels ([H, W] grey, [H, W, 3] RGB or [H, W, 4] RGBA) to `path`; the format follows the suffix."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(pixels, np.uint8), mode=mode).save(path)
  return str(path)


def noise(rng, shape):
  return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def user_folders(tmp_path):
  """normal/ (4 images) and test/{good, crack, scratch}/ of mixed sizes, modes, formats and extension cases."""
  rng = np.random.default_rng(0)
  normal, test = tmp_path / "normal", tmp_path / "test"
  save(normal / "a.png", noise(rng, (40, 50, 3)))
  save(normal / "b.PNG", noise(rng, (64, 64)))  # grey
  save(normal / "c.jpg", noise(rng, (30, 20, 3)))
  save(normal / "d.JPEG", noise(rng, (100, 80, 3)))
  (normal / "notes.txt").write_text("not an image")  # ignored: not an image extension
  (normal / "nested").mkdir()
  save(normal / "nested" / "x.png", noise(rng, (8, 8, 3)))  # ignored: not recursive
  save(test / "good" / "g1.png", noise(rng, (24, 32, 4)))  # RGBA
  save(test / "good" / "g2.bmp", noise(rng, (12, 12, 3)))
  save(test / "scratch" / "s1.Jpg", noise(rng, (50, 70, 3)))
  save(test / "crack" / "c1.tif", noise(rng, (33, 33)))
  save(test / "crack" / "c2.png", noise(rng, (48, 64, 3)))
  return str(normal), str(test)


def test_folder_splits_labels_classes_and_shapes(user_folders):
  normal, test = user_folders
  splits = folder.folder_splits(normal, test, size=SIZE)
  train, test_split = splits["train"], splits["test"]
  assert [os.path.basename(p) for p in train.paths] == ["a.png", "b.PNG", "c.jpg", "d.JPEG"]
  assert len(train) == 4 and train.labels.tolist() == [0] * 4 and train.classes.tolist() == [0] * 4
  # 'good' is class 0 and normal; the other sub-folders are classes 1.. in sorted order and anomalous.
  assert test_split.class_names == train.class_names == ("good", "crack", "scratch")
  names = [os.path.relpath(p, test) for p in test_split.paths]
  assert names == ["good/g1.png", "good/g2.bmp", "crack/c1.tif", "crack/c2.png", "scratch/s1.Jpg"]
  assert test_split.labels.tolist() == [0, 0, 1, 1, 1] and test_split.classes.tolist() == [0, 0, 1, 1, 2]
  assert test_split.masks is None
  for source in (train, test_split):
    for i in range(len(source)):
      example = source[i]
      assert example["image"].shape == (*SIZE, 3) and example["image"].dtype == np.uint8
      assert example["label"].dtype == np.int32 and example["class"].dtype == np.int32 and "mask" not in example
      assert example["path"] == source.paths[i]
  grey = folder.folder_splits(normal, test, size=(8, 9), channels=1)
  assert grey["train"][0]["image"].shape == (8, 9, 1) and grey["test"][4]["image"].shape == (8, 9, 1)


def test_read_image_modes_resize_and_channel_conversion(tmp_path):
  rng = np.random.default_rng(1)
  grey = noise(rng, (20, 30))
  # Grey -> RGB replicates the channel; the size is kept without `size`.
  rgb = folder.read_image(save(tmp_path / "g.png", grey), channels=3)
  assert rgb.shape == (20, 30, 3)
  for c in range(3):
    np.testing.assert_array_equal(rgb[..., c], grey)
  np.testing.assert_array_equal(folder.read_image(str(tmp_path / "g.png"), channels=1)[..., 0], grey)
  # RGBA drops alpha (no compositing): the colour channels come back unchanged.
  rgba = noise(rng, (10, 12, 4))
  np.testing.assert_array_equal(folder.read_image(save(tmp_path / "a.png", rgba)), rgba[..., :3])
  # RGB -> grey uses PIL's luma weights (ITU-R 601-2: L = R * 299/1000 + G * 587/1000 + B * 114/1000).
  colour = noise(rng, (6, 7, 3))
  luma = folder.read_image(save(tmp_path / "c.png", colour), channels=1)[..., 0].astype(float)
  expected = colour.astype(float) @ np.array([0.299, 0.587, 0.114])
  assert np.abs(luma - expected).max() <= 1.0
  # 16-bit grey is scaled to 8 bits, not clipped.
  deep = np.array([[0, 257 * 100, 65535]], np.uint16)
  Image.fromarray(deep).save(tmp_path / "deep.png")
  assert folder.read_image(str(tmp_path / "deep.png"), channels=1)[0, :, 0].tolist() == [0, 100, 255]
  # Resize to (height, width), bilinear: a constant image stays constant, a half-black/half-white one keeps its halves.
  halves = np.zeros((40, 40), np.uint8)
  halves[:, 20:] = 255
  small = folder.read_image(save(tmp_path / "h.jpg", halves), size=(10, 20), channels=1)[..., 0]
  assert small.shape == (10, 20)
  assert small[:, :8].max() < 30 and small[:, 12:].min() > 225
  # Antialiased when shrinking: a 1-pixel checkerboard averages to mid-grey instead of aliasing to black or white.
  checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
  shrunk = folder.read_image(save(tmp_path / "k.png", checker), size=(8, 8), channels=1)
  assert np.abs(shrunk.astype(int) - 128).max() <= 2


def test_broken_files_and_folders_raise_data_error_naming_them(tmp_path, user_folders):
  normal, test = user_folders
  png = save(tmp_path / "full.png", noise(np.random.default_rng(2), (64, 64, 3)))
  data = open(png, "rb").read()
  truncated = tmp_path / "truncated.png"
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(DataError, match="truncated.png.*[Rr]emove the file or replace it"):
    folder.read_image(str(truncated))
  fake = tmp_path / "notes.jpg"
  fake.write_text("this is text, not a JPEG")
  with pytest.raises(DataError, match="notes.jpg.*[Rr]emove the file or replace it"):
    folder.read_image(str(fake))
  with pytest.raises(DataError, match="gone.png does not exist"):
    folder.read_image(str(tmp_path / "gone.png"))
  # A broken file inside a split fails on access with its name (not as a black image).
  os.replace(truncated, os.path.join(test, "crack", "c3.png"))
  splits = folder.folder_splits(normal, test, size=SIZE)
  assert os.path.basename(splits["test"].paths[4]) == "c3.png"
  with pytest.raises(DataError, match="c3.png"):
    splits["test"][4]  # pylint: disable=pointless-statement
  # An empty class sub-folder, a missing directory, a test folder without sub-folders, loose test images.
  os.makedirs(os.path.join(test, "dent"))
  with pytest.raises(DataError, match=r"test/dent has no image files"):
    folder.folder_splits(normal, test, size=SIZE)
  os.rmdir(os.path.join(test, "dent"))
  with pytest.raises(DataError, match="missing_dir does not exist"):
    folder.folder_splits(str(tmp_path / "missing_dir"), test, size=SIZE)
  with pytest.raises(DataError, match="missing_dir does not exist"):
    folder.list_images(str(tmp_path / "missing_dir"))
  flat = tmp_path / "flat"
  flat.mkdir()
  with pytest.raises(DataError, match="flat has no sub-folders"):
    folder.folder_splits(normal, str(flat), size=SIZE)
  # Sub-folders are not read by list_images, and its error says so.
  with pytest.raises(DataError, match=r"test has no image files.*sub-folders \['crack', 'good', 'scratch'\]"):
    folder.list_images(test)
  save(os.path.join(test, "loose.png"), np.zeros((4, 4), np.uint8))
  with pytest.raises(DataError, match="loose.png.*move normal ones"):
    folder.folder_splits(normal, test, size=SIZE)


def test_test_folder_without_good_is_all_anomalous(tmp_path):
  rng = np.random.default_rng(3)
  save(tmp_path / "normal" / "n.png", noise(rng, (8, 8, 3)))
  save(tmp_path / "test" / "b" / "1.png", noise(rng, (8, 8, 3)))
  save(tmp_path / "test" / "a" / "2.png", noise(rng, (8, 8, 3)))
  test = folder.folder_splits(str(tmp_path / "normal"), str(tmp_path / "test"), size=(8, 8))["test"]
  assert test.class_names == ("good", "a", "b")  # class 0 stays 'good', with no examples
  assert test.labels.tolist() == [1, 1] and test.classes.tolist() == [1, 2]


def test_take_equals_stacked_getitem_and_grain_source(user_folders):
  normal, test = user_folders
  source = folder.folder_splits(normal, test, size=SIZE)["test"]
  indices = np.array([4, 0, 2, 2])
  batch = source.take(indices)
  assert set(batch) == {"image", "label", "class", "path"}
  assert batch["image"].shape == (4, *SIZE, 3) and batch["label"].shape == (4,) and batch["path"].shape == (4,)
  for row, i in enumerate(indices):
    example = source[int(i)]
    for key in batch:
      np.testing.assert_array_equal(batch[key][row], example[key])
  assert batch["path"].dtype.kind == "U" and batch["label"].dtype == np.int32
  empty = source.take(np.zeros(0, np.int64))
  assert empty["image"].shape == (0, *SIZE, 3) and empty["path"].shape == (0,)
  # grain: random access through MapDataset, also after a shuffle (indices are plain ints).
  dataset = grain.MapDataset.source(source)
  assert len(dataset) == len(source)
  np.testing.assert_array_equal(dataset[3]["image"], source[3]["image"])
  assert dataset[3]["path"] == source.paths[3] and dataset[-1]["path"] == source.paths[-1]
  shuffled = [e["path"] for e in dataset.shuffle(seed=0)]
  assert sorted(shuffled) == sorted(source.paths)
  batched = next(iter(dataset.batch(2)))
  assert batched["image"].shape == (2, *SIZE, 3)


def make_mvtec(root, rng, *, category="bottle"):
  """A 64x48 MVTec-style category: a dark square defect painted in each defect image and white in its mask.

  Returns {test image path: (top, left, side)} of the painted squares (in original pixels).
  """
  base = os.path.join(root, category)
  for i in range(3):
    save(os.path.join(base, "train", "good", f"{i:03d}.png"), noise(rng, (48, 64, 3)) // 4 + 150)
  save(os.path.join(base, "test", "good", "000.png"), noise(rng, (48, 64)) // 4 + 150)  # grey, as in grid/screw
  squares = {}
  for defect, top, left, side in [("broken_large", 8, 16, 16), ("contamination", 24, 32, 12),
                                  ("contamination", 4, 4, 8)]:
    index = sum(os.path.dirname(p).endswith(defect) for p in squares)
    image = noise(rng, (48, 64, 3)) // 4 + 150
    image[top:top + side, left:left + side] = 0
    path = save(os.path.join(base, "test", defect, f"{index:03d}.png"), image)
    mask = np.zeros((48, 64), np.uint8)
    mask[top:top + side, left:left + side] = 255
    save(os.path.join(base, "ground_truth", defect, f"{index:03d}_mask.png"), mask)
    squares[path] = (top, left, side)
  return squares


def test_mvtec_layout_masks_align_with_defects(tmp_path):
  root = str(tmp_path / "mvtec")
  squares = make_mvtec(root, np.random.default_rng(4))
  splits = folder.mvtec_splits(root, "bottle", size=(24, 32))  # half size
  train, test = splits["train"], splits["test"]
  assert len(train) == 3 and train.masks is None and "mask" not in train[0]
  assert test.class_names == ("good", "broken_large", "contamination")
  assert test.labels.tolist() == [0, 1, 1, 1] and test.classes.tolist() == [0, 1, 2, 2]
  good = test[0]
  assert good["image"].shape == (24, 32, 3) and np.all(good["image"][..., 0] == good["image"][..., 2])  # grey -> RGB
  assert good["mask"].shape == (24, 32) and good["mask"].dtype == np.uint8 and not good["mask"].any()
  for i in range(1, len(test)):
    example = test[i]
    top, left, side = (v // 2 for v in squares[example["path"]])
    mask, image = example["mask"], example["image"]
    assert set(np.unique(mask).tolist()) == {0, 1}
    # The resized mask is exactly the halved square, and it sits where the image's dark defect is.
    expected = np.zeros((24, 32), np.uint8)
    expected[top:top + side, left:left + side] = 1
    np.testing.assert_array_equal(mask, expected)
    assert image[mask == 1].max() < 60 and image[mask == 0].mean() > 140
  batch = test.take(np.arange(len(test)))
  assert batch["mask"].shape == (4, 24, 32)
  np.testing.assert_array_equal(batch["mask"][2], test[2]["mask"])


def test_mvtec_missing_mask_and_category_errors(tmp_path):
  root = str(tmp_path / "mvtec")
  make_mvtec(root, np.random.default_rng(5))
  make_mvtec(root, np.random.default_rng(6), category="screw")
  with pytest.raises(DataError, match=r"category 'cable'.*\['bottle', 'screw'\].*mvtec.com.*CC BY-NC-SA 4.0"):
    folder.mvtec_splits(root, "cable", size=SIZE)
  with pytest.raises(DataError, match="nowhere does not exist.*mvtec-ad"):
    folder.mvtec_splits(str(tmp_path / "nowhere"), "bottle", size=SIZE)
  os.remove(os.path.join(root, "bottle", "ground_truth", "contamination", "001_mask.png"))
  with pytest.raises(DataError, match=r"test/contamination/001.png has no ground-truth mask .*"
                                      r"ground_truth/contamination/001_mask.png"):
    folder.mvtec_splits(root, "bottle", size=SIZE)
  assert len(folder.mvtec_splits(root, "screw", size=SIZE)["test"]) == 4
  assert len(folder.MVTEC_CATEGORIES) == 15 and set(folder.MVTEC_TEXTURES) <= set(folder.MVTEC_CATEGORIES)
