"""Data for Jezequel et al.'s protocols: Fashion-MNIST's idx files, Caltech-Birds resized on load, the OOD protocol
(CIFAR-10 vs. another dataset) and Deep SAD's labelled anomalies of a share of the anomaly classes.

The idx files are written here byte by byte (an independent writer of the format), and the real Fashion-MNIST comes
from Debian's `dataset-fashion-mnist` package; CIFAR-10 / CIFAR-100 are the real archives of the `data_dir` fixture.
"""

import gzip
import logging
import os
import re
import struct

import ml_collections
import numpy as np
import pytest

from jaxad.data import anomaly_classes, default_config, make_sources, make_task, protocols, sources
from jaxad.errors import ConfigError, DataError

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray) -> bytes:
  """The idx encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian int32 sizes, the bytes in C order."""
  return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + \
      np.ascontiguousarray(array, np.uint8).tobytes()


def write_idx(path, array: np.ndarray, gz: bool):
  data = idx_bytes(array)
  with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
    f.write(data)


def write_dataset(folder, rng, n_train=7, n_test=5, gz=(True, False, False, True)):
  """Four idx files in `folder` (gzipped or plain per file); returns {split: (images [N, 28, 28], labels [N])}."""
  os.makedirs(folder, exist_ok=True)
  out, flags = {}, iter(gz)
  for split, n in (("train", n_train), ("test", n_test)):
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    for stem, array in zip(STEMS[split], (x, y)):
      compressed = next(flags)
      write_idx(os.path.join(folder, stem + (".gz" if compressed else "")), array, compressed)
    out[split] = (x, y)
  return out


@pytest.fixture
def no_system_dir(tmp_path, monkeypatch):
  """No /usr/share/datasets and no $JAXAD_DATA_DIR: only the folders a test makes hold idx files."""
  monkeypatch.setattr(sources, "IDX_SYSTEM_DIR", str(tmp_path / "usr-share-datasets"))
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)


# ---- Fashion-MNIST / MNIST idx files ----

def test_idx_files_gzipped_and_plain_read_back_exactly(tmp_path, no_system_dir):
  rng = np.random.default_rng(0)
  written = write_dataset(tmp_path / "fashion-mnist", rng)
  arrays = sources.load("fashion_mnist", source="idx", data_dir=str(tmp_path))
  for split in ("train", "test"):
    x, y = written[split]
    got_x, got_y = getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")
    assert got_x.dtype == np.uint8 and got_x.shape == (len(x), 28, 28, 1) and got_x.flags.writeable
    assert got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x[..., 0], x)
    np.testing.assert_array_equal(got_y, y)
    split_x, split_y = sources.load_split("fashion_mnist", split, source="idx", data_dir=str(tmp_path))
    np.testing.assert_array_equal(split_x, got_x)
    np.testing.assert_array_equal(split_y, got_y)
  # read_idx itself, on both encodings of one array.
  a = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
  write_idx(tmp_path / "a.gz", a, gz=True)
  write_idx(tmp_path / "a", a, gz=False)
  for name in ("a.gz", "a"):
    np.testing.assert_array_equal(sources.read_idx(str(tmp_path / name), 3), a)

  # 'auto' without an npz reads the idx files; with <data_dir>/fashion_mnist.npz it reads the npz.
  auto = sources.load("fashion_mnist", data_dir=str(tmp_path))
  np.testing.assert_array_equal(auto.x_train[..., 0], written["train"][0])
  assert sources.missing("fashion_mnist", data_dir=str(tmp_path)) is None
  npz = dict(x_train=rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8), y_train=np.arange(2),
             x_test=rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8), y_test=np.arange(3))
  np.savez(tmp_path / "fashion_mnist.npz", **npz)
  auto = sources.load("fashion_mnist", data_dir=str(tmp_path))
  np.testing.assert_array_equal(auto.x_test, npz["x_test"])
  np.testing.assert_array_equal(  # source='idx' still reads the idx files
      sources.load("fashion_mnist", source="idx", data_dir=str(tmp_path)).y_test, written["test"][1])

  # MNIST: files directly in the data folder; <data_dir>/mnist/ would come first.
  flat = tmp_path / "flat"
  mnist = write_dataset(flat, np.random.default_rng(1), gz=(False, True, True, False))
  assert sources.find_idx_folder("mnist", str(flat)) == str(flat)
  np.testing.assert_array_equal(sources.load("mnist", source="idx", data_dir=str(flat)).x_test[..., 0],
                                mnist["test"][0])
  nested = write_dataset(flat / "mnist", np.random.default_rng(2))
  assert sources.find_idx_folder("mnist", str(flat)) == str(flat / "mnist")
  np.testing.assert_array_equal(sources.load("mnist", source="idx", data_dir=str(flat)).y_train, nested["train"][1])
  # MNIST's 'auto' is unchanged when it has an npz or no idx files; with only idx files it reads them.
  assert sources._auto_source("mnist", str(tmp_path)) == "npz"  # pylint: disable=protected-access
  assert sources._auto_source("mnist", str(flat)) == "idx"  # pylint: disable=protected-access


def test_corrupt_or_truncated_idx_files_name_the_file_and_how_to_get_it(tmp_path, no_system_dir):
  folder = tmp_path / "fashion-mnist"
  written = write_dataset(folder, np.random.default_rng(0), gz=(False,) * 4)
  labels = folder / "train-labels-idx1-ubyte"
  images = folder / "train-images-idx3-ubyte"
  get = "apt install dataset-fashion-mnist"
  e = lambda path: re.escape(str(path))  # pylint: disable=unnecessary-lambda-assignment

  def load():
    return sources.load("fashion_mnist", source="idx", data_dir=str(tmp_path))

  good_images, good_labels = images.read_bytes(), labels.read_bytes()
  labels.write_bytes(b"\x00\x00\x08\x03" + good_labels[4:])  # the images' magic on a labels file
  with pytest.raises(DataError, match=rf"{e(labels)}.*magic number 0x00000803, expected 0x00000801.*{get}"):
    load()
  labels.write_bytes(good_labels[:-1])  # one label short
  with pytest.raises(DataError, match=rf"{e(labels)} is truncated: .*\(7,\) = 7 bytes.*holds 6.*{get}"):
    load()
  labels.write_bytes(good_labels[:6])  # inside the header
  with pytest.raises(DataError, match=rf"{e(labels)} is truncated: 6 bytes, shorter than its 8-byte header"):
    load()
  labels.write_bytes(good_labels + b"\x00")
  with pytest.raises(DataError, match=rf"{e(labels)} is malformed: .*holds 8"):
    load()
  labels.write_bytes(good_labels)
  images.write_bytes(good_images[: 16 + 28 * 28 * 3])  # 3 of 7 images
  with pytest.raises(DataError, match=rf"{e(images)} is truncated: its header says \(7, 28, 28\) = 5488 bytes.*"
                                      rf"holds 2352.*{get}"):
    load()
  # A gzip stream cut short, and bytes that are neither gzip nor idx.
  images.unlink()
  gz = folder / "train-images-idx3-ubyte.gz"
  gz.write_bytes(gzip.compress(good_images)[:-20])
  with pytest.raises(DataError, match=rf"{e(gz)} is not a readable idx file \(EOFError.*{get}"):
    load()
  gz.write_bytes(b"\x1f\x8bnot really gzip")
  with pytest.raises(DataError, match=rf"{e(gz)} is not a readable idx file \(BadGzipFile"):
    load()
  gz.write_bytes(b"<html>moved</html>")  # what a failed download often leaves
  with pytest.raises(DataError, match=rf"{e(gz)} is not an idx file of 3-d unsigned bytes: magic number 0x3c68746d"):
    load()
  # Sizes that do not fit the dataset: 32x32 images, fewer labels than images, a label 10.
  write_idx(gz, np.zeros((7, 32, 32), np.uint8), gz=True)
  with pytest.raises(DataError, match=rf"{e(gz)} holds images of \(32, 32\), expected \(28, 28\)"):
    load()
  write_idx(gz, written["train"][0], gz=True)
  write_idx(labels, written["train"][1][:5], gz=False)
  with pytest.raises(DataError, match=rf"{e(gz)} holds 7 images but {e(labels)} 5 labels"):
    load()
  write_idx(labels, np.full(7, 10, np.uint8), gz=False)
  with pytest.raises(DataError, match=rf"{e(labels)} has label 10, expected 0..9"):
    load()
  write_idx(labels, written["train"][1], gz=False)
  assert load().x_train.shape == (7, 28, 28, 1)

  # No folder holds all four files: each searched folder is named with what it lacks, and how to get them.
  (folder / "t10k-labels-idx1-ubyte").unlink()
  with pytest.raises(DataError, match=rf"none of {e(folder)} \(lacks t10k-labels-idx1-ubyte\); {e(tmp_path)} \(lacks "
                                      rf"train-images-idx3-ubyte, .*\); .*usr-share-datasets/fashion-mnist \(no "
                                      rf"folder\).*{get}"):
    load()
  msg = sources.missing("fashion_mnist", source="idx", data_dir=str(tmp_path))
  assert "lacks t10k-labels-idx1-ubyte" in msg and get in msg
  # 'auto' with a data folder and neither an npz nor idx files: the npz error, whose hint names the idx route.
  with pytest.raises(DataError, match=rf"fashion_mnist.npz does not exist.*{get}.*source='idx'"):
    sources.load("fashion_mnist", data_dir=str(tmp_path))
  with pytest.raises(DataError, match=r"'idx' \(the original idx files\) is for \['fashion_mnist', 'mnist'\], not "
                                      r"'cifar10'"):
    sources.load("cifar10", source="idx", data_dir=str(tmp_path))
  with pytest.raises(DataError, match="hint-text"):
    sources.read_idx(str(tmp_path / "absent"), 1, hint="hint-text")


def test_real_fashion_mnist_from_the_debian_package_through_make_sources(data_dir):
  folder = sources.find_idx_folder("fashion_mnist", data_dir)
  if folder is None:
    pytest.fail(f"Neither {DEBIAN_FASHION_MNIST} nor {data_dir}/fashion-mnist holds Fashion-MNIST's original files: "
                "install them with `sudo apt install dataset-fashion-mnist` (Debian/Ubuntu), or unpack the package "
                f"without root: dpkg-deb -x dataset-fashion-mnist_*.deb D && mv D{DEBIAN_FASHION_MNIST} {data_dir}/ "
                "(.ci/run does that from apt's cache).")
  if os.path.isdir(DEBIAN_FASHION_MNIST):
    assert sources.find_idx_folder("fashion_mnist", "/nonexistent") == DEBIAN_FASHION_MNIST
  # Without a fashion_mnist.npz in the data folder (the usual case) 'auto' finds the idx files.
  source = "idx" if os.path.exists(os.path.join(data_dir, "fashion_mnist.npz")) else "auto"
  assert sources.missing("fashion_mnist", source=source, data_dir=data_dir) is None

  # An independent reading of the real files: fixed 16- / 8-byte headers, then the bytes.
  def raw(stem, header):
    with gzip.open(os.path.join(folder, stem + ".gz"), "rb") as f:
      return np.frombuffer(f.read(), np.uint8, offset=header)
  x_train = raw("train-images-idx3-ubyte", 16).reshape(60000, 28, 28, 1)
  y_train = raw("train-labels-idx1-ubyte", 8)
  y_test = raw("t10k-labels-idx1-ubyte", 8)
  assert len(y_test) == 10000 and y_train[:6].tolist() == [9, 0, 0, 3, 0, 2]  # Fashion-MNIST's first labels

  counts = []
  for k in range(10):
    c = ml_collections.ConfigDict({"data": default_config(name="fashion_mnist", source=source, data_dir=data_dir,
                                                          preprocess="unit", protocol="one_vs_rest", normal_class=k)})
    srcs = make_sources(c)
    normal, test = srcs["normal"], srcs["test"]
    counts.append(len(normal))
    assert len(test) == 10000 and normal.shape == test.shape == (28, 28, 1)
    np.testing.assert_array_equal(normal.examples.arrays["image"], x_train[y_train == k])
    np.testing.assert_array_equal(normal.field("class"), k)
    np.testing.assert_array_equal(test.field("class"), y_test)
    np.testing.assert_array_equal(test.field("label"), y_test != k)
  assert counts == [6000] * 10 and sum(counts) == 60000


# ---- Caltech-Birds 200: images of varying size, resized on load ----

@pytest.mark.parametrize("name", ["caltech_birds2011", "caltech_birds2010"])
def test_caltech_birds_through_tfds_mock_data_are_resized_on_load(name):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  info = sources.get_info(name)
  assert info.resize == (64, 64) and info.shape == (64, 64, 3) and info.num_classes == 200
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    sizes = {tfds.data_source(name, split="train")[i]["image"].shape for i in range(6)}
    arrays = sources.load(name, source="tfds")
    x_test, y_test = sources.load_split(name, "test", source="tfds")
  assert len(sizes) > 1  # the mock images do vary in size
  for x, y in ((arrays.x_train, arrays.y_train), (arrays.x_test, arrays.y_test), (x_test, y_test)):
    assert x.dtype == np.uint8 and x.shape == (6, 64, 64, 3)
    assert y.dtype == np.int64 and y.shape == (6,) and np.all((0 <= y) & (y < 200))


def test_caltech_birds_resize_is_pils_bilinear_against_torch(monkeypatch):
  """PIL's bilinear (with its widened support when shrinking) = torch's antialiased bilinear, up to PIL's rounding."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  shapes = [(300, 500, 3), (41, 12, 3), (64, 64, 3), (90, 30, 3)]
  records = [{"image": rng.integers(0, 256, s, dtype=np.uint8), "label": k} for s, k in zip(shapes, (0, 199, 5, 5))]
  calls = []

  def fake_data_source(tfds_name, split, **kwargs):
    calls.append((tfds_name, split))
    return records
  monkeypatch.setattr(tfds, "data_source", fake_data_source)
  arrays = sources.load("caltech_birds2011", source="tfds")
  assert calls == [("caltech_birds2011", "train"), ("caltech_birds2011", "test")]
  assert arrays.x_train.shape == (4, 64, 64, 3) and arrays.y_train.tolist() == [0, 199, 5, 5]
  for got, r in zip(arrays.x_train, records):
    t = torch.from_numpy(r["image"]).permute(2, 0, 1)[None].double()
    want = F.interpolate(t, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0)
    assert np.abs(got.astype(np.float64) - want.numpy()).max() < 1.0
  np.testing.assert_array_equal(arrays.x_train[2], records[2]["image"])  # already 64x64: untouched
  # Through the registry and a protocol: class 5 normal, 2 images of 64x64.
  c = ml_collections.ConfigDict({"data": default_config(name="caltech_birds2011", source="tfds", preprocess="unit",
                                                        normal_class=5)})
  srcs = make_sources(c)
  assert len(srcs["normal"]) == 2 and srcs["normal"].shape == (64, 64, 3)
  np.testing.assert_array_equal(srcs["test"].field("label"), [1, 1, 0, 0])


# ---- The OOD protocol ----

def ood_config(data_dir, **data):
  c = ml_collections.ConfigDict({"data": default_config(data_dir=data_dir, source="npz", preprocess="unit",
                                                        protocol="ood", **data)})
  c.data.ood.update(name="cifar100", source="npz")
  return c


def test_ood_protocol_cifar10_vs_cifar100_test(data_dir):
  cifar10 = sources.load("cifar10", source="npz", data_dir=data_dir)
  x100, _ = sources.load_split("cifar100", "test", source="npz", data_dir=data_dir)
  assert default_config().ood.to_dict() == dict(name="svhn", split="test", source="auto", data_dir="", limit=0)
  srcs = make_sources(ood_config(data_dir, normal_class=7))  # normal_class is not used
  normal, test = srcs["normal"], srcs["test"]
  assert len(normal) == 50000 and len(test) == 20000
  np.testing.assert_array_equal(normal.examples.arrays["image"], cifar10.x_train)
  np.testing.assert_array_equal(normal.field("class"), cifar10.y_train)
  np.testing.assert_array_equal(normal.field("label"), 0)
  labels, classes = test.field("label"), test.field("class")
  assert labels.sum() == 10000
  np.testing.assert_array_equal(labels, np.repeat([0, 1], 10000))
  np.testing.assert_array_equal(classes, np.concatenate([cifar10.y_test, np.full(10000, -1)]))
  np.testing.assert_array_equal(test.examples.arrays["image"], np.concatenate([cifar10.x_test, x100]))
  assert normal.num_classes == test.num_classes == 10

  # data.test_limit subsamples the combined test set (seed 0); data.ood.limit the OOD split first (seed 0).
  limited = make_task(ood_config(data_dir, test_limit=1000).data)
  keep = np.sort(np.random.default_rng(0).permutation(20000)[:1000])
  np.testing.assert_array_equal(limited.test_labels, np.repeat([0, 1], 10000)[keep])
  np.testing.assert_array_equal(limited.x_test, np.concatenate([cifar10.x_test, x100])[keep])
  c = ood_config(data_dir)
  c.data.ood.limit = 100
  few = make_task(c.data)
  assert len(few.x_test) == 10100 and few.test_labels.sum() == 100
  np.testing.assert_array_equal(few.x_test[10000:], x100[np.sort(np.random.default_rng(0).permutation(10000)[:100])])
  with pytest.raises(ConfigError, match="protocol 'ood' labels no class of 'cifar10' anomalous"):
    anomaly_classes(c.data, few)  # every class of CIFAR-10 is normal: no labelled anomalies to take


def test_ood_protocol_rejects_the_normal_dataset_and_other_image_shapes(data_dir):
  same = ood_config(data_dir)
  same.data.ood.name = "cifar10"
  with pytest.raises(ConfigError, match="data.ood.name='cifar10' is data.name itself"):
    make_sources(same)
  mnist = ood_config(data_dir)
  mnist.data.ood.name = "mnist"
  with pytest.raises(ConfigError, match=r"data.ood.name='mnist' has images of shape \(28, 28, 1\) but "
                                        r"data.name='cifar10' of \(32, 32, 3\)"):
    make_sources(mnist)
  arrays = sources.Arrays(np.zeros((4, 2, 2, 1), np.uint8), np.arange(4), np.zeros((3, 2, 2, 1), np.uint8),
                          np.arange(3))
  with pytest.raises(ConfigError, match="Protocol 'ood' needs the out-of-distribution images"):
    protocols.get_protocol("ood")(arrays, 0)
  with pytest.raises(ConfigError, match=r"OOD images are \(2, 2, 3\) but the dataset's test images \(2, 2, 1\)"):
    protocols.ood(arrays, ood_images=np.zeros((5, 2, 2, 3), np.uint8))
  task = protocols.ood(arrays, ood_images=np.full((2, 2, 2, 1), 9, np.uint8))
  assert task.test_labels.tolist() == [0, 0, 0, 1, 1] and task.test_classes.tolist() == [0, 1, 2, -1, -1]
  np.testing.assert_array_equal(task.train_classes, np.arange(4))


# ---- Deep SAD: labelled anomalies of a share of the anomaly classes ----

def sad_config(data_dir, fraction, seed=0, **anomaly):
  c = ml_collections.ConfigDict({"data": default_config(data_dir=data_dir, source="npz", preprocess="unit",
                                                        normal_class=0, protocol_seed=seed, test_limit=100)})
  c.data.anomaly.update(class_fraction=fraction, **anomaly)
  return c


def test_anomaly_class_fraction_keeps_a_seeded_share_of_the_anomaly_classes(data_dir, caplog):
  cifar10 = sources.load("cifar10", source="npz", data_dir=data_dir)
  assert default_config().anomaly.class_fraction == 0.0
  with caplog.at_level(logging.INFO):
    anomaly = make_sources(sad_config(data_dir, 0.25, seed=3), {"anomaly"})["anomaly"]
  # round(0.25 * 9) = 2 of the classes 1..9, drawn with the documented generator.
  chosen = sorted(np.random.default_rng(3).choice(np.arange(1, 10), size=2, replace=False).tolist())
  classes = anomaly.field("class")
  assert sorted(set(classes.tolist())) == chosen and 0 not in classes
  assert len(anomaly) == 10000 and np.all(np.bincount(classes, minlength=10)[chosen] == 5000)
  idx = np.flatnonzero(np.isin(cifar10.y_train, chosen))
  np.testing.assert_array_equal(anomaly.examples.arrays["image"], cifar10.x_train[idx])  # all, in dataset order
  np.testing.assert_array_equal(anomaly.field("label"), 1)
  assert f"labelled anomalies of classes {chosen}" in caplog.text

  task = make_task(sad_config(data_dir, 0.25).data)

  def pick(fraction, seed=0, **anomaly):
    return anomaly_classes(sad_config(data_dir, fraction, seed, **anomaly).data, task)
  assert pick(0.25, 3) == tuple(chosen) and pick(0.25, 3) == pick(0.25, 3)  # fixed for a protocol_seed
  assert len({pick(0.25, s) for s in range(8)}) > 1  # and it is the seed that picks
  assert [len(pick(f)) for f in (0.1, 0.25, 0.75, 1.0)] == [1, 2, 7, 9]
  assert pick(0.01) and len(pick(0.01)) == 1  # at least one class
  assert pick(0.0) == pick(1.0) == tuple(range(1, 10))  # 0 = off: every candidate
  assert set(pick(0.5, 1, classes=(7, 2, 5, 9))) <= {2, 5, 7, 9} and len(pick(0.5, 1, classes=(7, 2, 5, 9))) == 2
  # anomaly.limit still applies after the classes are chosen (a fixed seed-0 subset of their images).
  limited = make_sources(sad_config(data_dir, 0.25, seed=3, limit=50), {"anomaly"})["anomaly"]
  assert len(limited) == 50 and set(limited.field("class").tolist()) <= set(chosen)
  keep = np.sort(np.random.default_rng(0).permutation(len(idx))[:50])
  np.testing.assert_array_equal(limited.examples.arrays["image"], cifar10.x_train[idx[keep]])
  for bad in (1.5, -0.1, float("nan")):
    with pytest.raises(ConfigError, match=r"data.anomaly.class_fraction must be a number in \[0, 1\]"):
      pick(bad)
