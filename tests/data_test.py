"""Sources, the one-vs-rest protocol, Deep SVDD preprocessing and the grain pipeline."""


import jax
import numpy as np
import pytest

from jaxad.data import make_task, pipeline, protocols, sources, transforms
from jaxad.errors import ConfigError, DataError
from jaxad.methods.hypersphere import base_config


@pytest.fixture(scope="module")
def cifar10(data_dir):
  return sources.load("cifar10", source="npz", data_dir=data_dir)


def test_published_minmax_table_is_recomputed_from_the_real_data(cifar10):
  # The table is the (min, max) over the normal class's GCN-L1 train images (Deep SVDD). Recomputed in float64 from
  # our CIFAR-10 copy (86 of its train images are JPEG re-encodes) every entry agrees to 1e-9 relative (measured:
  # ~1e-14), and jaxad's float32 pipeline to 1e-6; a wrong GCN (L2 scale, per-channel mean) fails both.
  for k, (lo, hi) in enumerate(transforms.CIFAR10_GCN_L1_MINMAX):
    images = cifar10.x_train[cifar10.y_train == k]
    flat = images.reshape(len(images), -1) / 255.0
    flat = flat - flat.mean(1, keepdims=True)
    flat = flat / np.abs(flat).mean(1, keepdims=True)
    np.testing.assert_allclose([flat.min(), flat.max()], [lo, hi], rtol=1e-9)
    ours = transforms.minmax_of(transforms.gcn_l1(transforms.to_unit(images)))
    np.testing.assert_allclose(ours, (lo, hi), rtol=1e-6)


def test_gcn_l1_against_numpy_and_constant_image():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(3, 4, 4, 3)).astype(np.float32)
  got = transforms.gcn_l1(x)
  for i in range(3):
    v = x[i].astype(np.float64) - x[i].mean()
    np.testing.assert_allclose(got[i], v / np.abs(v).mean(), rtol=1e-5)
  assert np.all(transforms.gcn_l1(np.full((1, 2, 2, 1), 0.5, np.float32)) == 0)


def test_one_vs_rest_labels_on_real_cifar10(cifar10):
  task = protocols.one_vs_rest(cifar10, 3)
  assert task.x_train.shape == (5000, 32, 32, 3)
  assert task.test_labels.sum() == 9000 and len(task.test_labels) == 10000
  np.testing.assert_array_equal(task.test_labels == 0, cifar10.y_test == 3)
  with pytest.raises(ConfigError, match="normal_class=10"):
    protocols.one_vs_rest(cifar10, 10)


def test_make_task_preprocesses_train_and_test_with_the_normal_class_table(data_dir):
  cfg = base_config().data
  cfg.update(data_dir=data_dir, normal_class=1, test_limit=500)
  task = make_task(cfg)
  assert task.x_train.dtype == np.float32 and task.x_train.shape == (5000, 32, 32, 3)
  assert task.x_train.min() >= 0 and task.x_train.max() <= 1 + 1e-6  # the table is this class's exact min/max
  assert task.x_test.shape == (500, 32, 32, 3) and 0 < task.test_labels.mean() < 1


def test_digits_source_is_embedded_and_split():
  arrays = sources.load("digits")
  assert arrays.x_train.shape[1:] == (8, 8, 1) and arrays.x_train.dtype == np.uint8
  assert len(arrays.x_train) + len(arrays.x_test) == 1797
  assert set(np.unique(arrays.y_train)) == set(range(10))


def test_missing_and_malformed_archives_say_how_to_fix(tmp_path, monkeypatch):
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  with pytest.raises(DataError, match="needs a folder with cifar10.npz.*imgcodec.py export"):
    sources.load("cifar10", source="npz")
  with pytest.raises(DataError, match="does not exist.*imgcodec.py export"):
    sources.load("cifar10", source="npz", data_dir=str(tmp_path))
  np.savez(tmp_path / "cifar10.npz", x_train=np.zeros((2, 32, 32, 3), np.uint8), y_train=np.zeros(2))
  with pytest.raises(DataError, match=r"missing arrays \['x_test', 'y_test'\]"):
    sources.load("cifar10", source="npz", data_dir=str(tmp_path))
  np.savez(tmp_path / "cifar10.npz", x_train=np.zeros((2, 28, 28, 3), np.uint8), y_train=np.zeros(2, int),
           x_test=np.zeros((2, 28, 28, 3), np.uint8), y_test=np.zeros(2, int))
  with pytest.raises(DataError, match=r"images are \(28, 28, 3\), expected \(32, 32, 3\)"):
    sources.load("cifar10", source="npz", data_dir=str(tmp_path))
  (tmp_path / "cifar10.npz").write_bytes(b"not a zip")
  with pytest.raises(DataError, match="not a readable .npz"):
    sources.load("cifar10", source="npz", data_dir=str(tmp_path))
  with pytest.raises(DataError, match="Unknown dataset 'cifar11'"):
    sources.load("cifar11")


def test_tfds_source_reads_mock_data_without_tensorflow():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    arrays = sources.load_tfds("cifar10")
  assert arrays.x_train.shape == (12, 32, 32, 3) and arrays.x_train.dtype == np.uint8
  assert arrays.y_test.shape == (12,)


def test_train_batches_are_deterministic_reshuffled_per_epoch_and_drop_the_remainder():
  x = np.arange(10, dtype=np.float32)[:, None]
  ds, steps_per_epoch = pipeline.train_batches(x, global_batch_size=8, seed=3, num_epochs=3)
  assert steps_per_epoch == 1 and len(ds) == 3  # one full batch of 8 per epoch, remainder dropped
  again, _ = pipeline.train_batches(x, global_batch_size=8, seed=3, num_epochs=3)
  for step in range(3):
    np.testing.assert_array_equal(ds[step]["image"], again[step]["image"])  # random access = exact resume
  assert not np.array_equal(ds[0]["image"], ds[1]["image"])  # a new permutation each epoch
  other, _ = pipeline.train_batches(x, global_batch_size=8, seed=4, num_epochs=1)
  assert not np.array_equal(ds[0]["image"], other[0]["image"])


def test_batch_size_must_divide_over_devices():
  assert jax.device_count() == 8
  with pytest.raises(ConfigError, match="not divisible by the 8 devices"):
    pipeline.local_batch_size(12)


def test_eval_batches_pad_and_report_valid_counts():
  x = np.arange(20, dtype=np.float32)[:, None]
  batches = list(pipeline.eval_batches(8, image=x))
  assert [v for _, v in batches] == [8, 8, 4]
  got = np.concatenate([b["image"][:v] for b, v in batches])[:, 0]
  np.testing.assert_array_equal(got, np.arange(20))
