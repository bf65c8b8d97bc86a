"""The small-modes protocol (Deecke et al. 2021 section 5.4) and the STL-10 / SVHN sources (tfds mock data, npz)."""

import numpy as np
import pytest

from jaxad.data import protocols, sources
from jaxad.errors import ConfigError, DataError

SHIP, TRUCK = 8, 9  # the paper's (y_a, y_b)


@pytest.fixture(scope="module")
def cifar10(data_dir):
  return sources.load("cifar10", source="npz", data_dir=data_dir)


def train_classes(task, arrays):
  """The class of each training image, looked up by its pixels among the train images of both classes."""
  lookup = {arrays.x_train[i].tobytes(): arrays.y_train[i] for i in np.flatnonzero(arrays.y_train >= SHIP)}
  return np.array([lookup[x.tobytes()] for x in task.x_train])


@pytest.mark.parametrize("r,n_truck", [(0.5, 2500), (0.3, 1500), (0.05, 250)])
def test_small_modes_mixing_ratio_and_labels_on_real_cifar10(cifar10, r, n_truck):
  task = protocols.small_modes(cifar10, primary=SHIP, secondary=TRUCK, r=r, seed=1)
  classes = train_classes(task, cifar10)
  assert (classes == SHIP).sum() == 5000 and (classes == TRUCK).sum() == n_truck
  np.testing.assert_array_equal(task.train_classes, classes)  # the 'normal' source's 'class' field
  assert (classes == TRUCK).mean() == pytest.approx(r / (r + 1), abs=1e-9)  # S_n ~ 1/(r+1) P_a + r/(r+1) P_b
  assert len(np.unique(task.x_train.reshape(len(task.x_train), -1), axis=0)) == len(task.x_train)  # no repeats
  # Test set: all 10,000; ships and trucks are normal; the other 8,000 anomalous; trucks marked as secondary.
  assert len(task.test_labels) == 10_000 and task.test_labels.sum() == 8_000
  np.testing.assert_array_equal(task.test_labels == 0, np.isin(cifar10.y_test, (SHIP, TRUCK)))
  np.testing.assert_array_equal(task.test_secondary, cifar10.y_test == TRUCK)
  primary_eval = ~task.test_secondary  # primary AUROC: ships vs anomalies
  assert set(task.test_classes[primary_eval & (task.test_labels == 0)]) == {SHIP}
  assert task.secondary_class == TRUCK


def test_small_modes_edges_seeds_and_registry(cifar10):
  r0 = protocols.small_modes(cifar10, primary=SHIP, secondary=TRUCK, r=0, seed=0)
  np.testing.assert_array_equal(r0.x_train, cifar10.x_train[cifar10.y_train == SHIP])  # the primary class alone
  np.testing.assert_array_equal(r0.train_classes, np.full(5000, SHIP))
  assert r0.test_labels.sum() == 8_000  # trucks stay normal at test time
  r1 = protocols.small_modes(cifar10, primary=SHIP, secondary=TRUCK, r=1.0, seed=0)
  np.testing.assert_array_equal(r1.x_train, cifar10.x_train[np.isin(cifar10.y_train, (SHIP, TRUCK))])  # 50 / 50
  a = protocols.small_modes(cifar10, primary=SHIP, secondary=TRUCK, r=0.5, seed=1)
  b = protocols.small_modes(cifar10, primary=SHIP, secondary=TRUCK, r=0.5, seed=1)
  c = protocols.small_modes(cifar10, primary=SHIP, secondary=TRUCK, r=0.5, seed=2)
  np.testing.assert_array_equal(a.x_train, b.x_train)
  assert a.x_train.shape == c.x_train.shape and not np.array_equal(a.x_train, c.x_train)
  assert protocols.get_protocol("small_modes") is protocols.small_modes
  with pytest.raises(ConfigError, match="needs a secondary class and a minor-mode amplitude"):
    protocols.get_protocol("small_modes")(cifar10, SHIP)  # how make_task calls a protocol today
  assert protocols.one_vs_rest(cifar10, SHIP).test_secondary is None  # existing protocols are unchanged


@pytest.mark.parametrize("kwargs,match", [
    (dict(r=-0.1), "r must be a number in \\[0, 1\\]"),
    (dict(r=1.5), "r must be a number in \\[0, 1\\]"),
    (dict(r=float("nan")), "r must be a number"),
    (dict(r="0.5"), "r must be a number"),
    (dict(r=True), "r must be a number"),
    (dict(r=0.5, secondary=SHIP), "must be different classes"),
    (dict(r=0.5, secondary=10), "secondary class 10 is out of range"),
    (dict(r=0.5, primary=-1), "primary class -1 is out of range"),
    (dict(r=0.5, secondary=7, primary=TRUCK), "no training images of class 7"),
])
def test_small_modes_rejects_bad_arguments(kwargs, match):
  y_train = np.where(np.arange(20) % 10 == 7, 0, np.arange(20) % 10)  # class 7 has no train images
  arrays = sources.Arrays(np.zeros((20, 2, 2, 1), np.uint8), y_train, np.zeros((10, 2, 2, 1), np.uint8),
                          np.arange(10))
  args = dict(primary=SHIP, secondary=TRUCK, seed=0) | kwargs
  with pytest.raises(ConfigError, match=match):
    protocols.small_modes(arrays, **args)


def test_small_modes_shrinks_the_primary_mode_when_the_secondary_is_too_small():
  y = np.array([0] * 10 + [1] * 3)
  x = np.arange(13, dtype=np.uint8)[:, None, None, None]
  arrays = sources.Arrays(x, y, x[:2], np.array([0, 1]))
  task = protocols.small_modes(arrays, primary=0, secondary=1, r=0.5, seed=0)
  ids = task.x_train[:, 0, 0, 0]
  assert (ids >= 10).sum() == 3 and (ids < 10).sum() == 6  # 3 / (6 + 3) = 0.5 / 1.5
  assert np.all(np.diff(ids) > 0)  # dataset order


# ---- STL-10 and SVHN sources ----

def test_stl10_and_svhn_read_tfds_mock_data_including_extra_splits():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    stl = sources.load("stl10", source="tfds")
    x_unl, y_unl = sources.load_split("stl10", "unlabelled", source="tfds")
    x_tr, y_tr = sources.load_split("stl10", "train", source="tfds")
    svhn = sources.load("svhn", source="tfds")
    x_extra, y_extra = sources.load_split("svhn", "extra", source="tfds")
  assert stl.x_train.shape == (5, 96, 96, 3) and stl.x_test.dtype == np.uint8 and stl.y_test.shape == (5,)
  assert x_unl.shape == (5, 96, 96, 3) and x_unl.dtype == np.uint8 and y_unl is None  # OE: no labels
  assert y_tr.dtype == np.int64 and y_tr.shape == (5,) and np.all((0 <= y_tr) & (y_tr < 10))
  assert svhn.x_train.shape == (5, 32, 32, 3) and svhn.y_train.dtype == np.int64
  assert x_extra.shape == (5, 32, 32, 3) and y_extra.shape == (5,)
  assert sources.get_info("stl10").splits == ("train", "test", "unlabelled")
  with pytest.raises(ConfigError, match=r"no split 'unlabeled'; valid: \['train', 'test', 'unlabelled'\]"):
    sources.load_split("stl10", "unlabeled", source="tfds")


def test_tfds_failures_say_how_to_get_each_dataset(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def offline(name, **kwargs):
    raise ConnectionError(f"no internet for {name}")
  monkeypatch.setattr(tfds, "data_source", offline)
  with pytest.raises(DataError, match=r"Could not get 'stl10' split 'unlabelled'.*no internet.*"
                                      r"acoates/stl10.*x_unlabelled=.*JAXAD_DATA_DIR"):
    sources.load_split("stl10", "unlabelled", source="tfds")
  with pytest.raises(DataError, match=r"'svhn_cropped' split 'train'.*housenumbers.*svhn\.npz"):
    sources.load("svhn", source="tfds")


def test_stl10_npz_fallback_with_an_unlabelled_array(tmp_path, monkeypatch):
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  with pytest.raises(DataError, match=r"needs a folder with stl10.npz.*source='tfds'.*x_unlabelled"):
    sources.load_split("stl10", "unlabelled", source="npz")
  with pytest.raises(DataError, match=r"svhn.npz does not exist.*svhn_cropped"):
    sources.load("svhn", data_dir=str(tmp_path))
  rng = np.random.default_rng(0)
  img = lambda n: rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)  # pylint: disable=unnecessary-lambda-assignment
  x_unl = img(7)
  np.savez(tmp_path / "stl10.npz", x_train=img(4), y_train=np.arange(4), x_test=img(3), y_test=np.arange(3))
  arrays = sources.load("stl10", data_dir=str(tmp_path))  # 'auto' with a folder -> npz
  assert arrays.x_train.shape == (4, 96, 96, 3) and arrays.num_classes == 4
  with pytest.raises(DataError, match=r"missing arrays \['x_unlabelled'\].*acoates/stl10"):
    sources.load_split("stl10", "unlabelled", data_dir=str(tmp_path))
  np.savez(tmp_path / "stl10.npz", x_train=img(4), y_train=np.arange(4), x_test=img(3), y_test=np.arange(3),
           x_unlabelled=x_unl)
  x, y = sources.load_split("stl10", "unlabelled", data_dir=str(tmp_path))
  np.testing.assert_array_equal(x, x_unl)
  assert y is None
  x, y = sources.load_split("stl10", "test", data_dir=str(tmp_path))
  assert x.shape == (3, 96, 96, 3) and y.tolist() == [0, 1, 2]
  np.savez(tmp_path / "stl10.npz", x_train=img(4), y_train=np.arange(4), x_test=img(3), y_test=np.arange(3),
           x_unlabelled=x_unl[:, :32, :32])
  with pytest.raises(DataError, match=r"x_unlabelled images are \(32, 32, 3\), expected \(96, 96, 3\)"):
    sources.load_split("stl10", "unlabelled", data_dir=str(tmp_path))
  x, y = sources.load_split("digits", "test")
  assert x.shape[1:] == (8, 8, 1) and len(x) == len(y)
