"""Outlier-exposure batches (jaxad.data.oe), leave-one-out and the CIFAR standardisation."""

import itertools

import ml_collections
import numpy as np
import pytest

from jaxad.data import make_oe, make_task, oe, protocols, sources, transforms
from jaxad.errors import ConfigError


def tagged(n, offset, shape=(6, 6, 1)):
  """Image i is constant offset + i: every pixel tells which image it came from."""
  return (offset + np.arange(n, dtype=np.float32))[:, None, None, None] * np.ones((n, *shape), np.float32)


def test_batches_mix_normal_then_oe_rows_with_labels_and_epoch_length():
  normal, outliers = tagged(20, 0), tagged(50, 1000)
  ds, spe = oe.mixed_batches(normal, oe_images=outliers, oe_per_batch=8, global_batch_size=16, seed=3, num_epochs=2,
                             augment=False)
  assert spe == 3 and len(ds) == 6  # ceil(20 / 8): the last step of an epoch wraps into the next permutation
  seen_normal, seen_oe = [], []
  for step in range(len(ds)):
    batch = ds[step]
    assert batch["image"].shape == (16, 6, 6, 1) and batch["image"].dtype == np.float32
    np.testing.assert_array_equal(batch["label"], [0] * 8 + [1] * 8)
    ids = batch["image"][:, 0, 0, 0].astype(int)
    assert np.all(ids[:8] < 20) and np.all((ids[8:] >= 1000) & (ids[8:] < 1050))
    seen_normal += list(ids[:8])
    seen_oe += list(ids[8:] - 1000)
  # The normal stream is a sequence of permutations: positions 0-19 and 20-39 each hold every image once.
  assert sorted(seen_normal[:20]) == list(range(20)) and sorted(seen_normal[20:40]) == list(range(20))
  assert seen_normal[:20] != seen_normal[20:40]  # reshuffled
  assert len(set(seen_oe)) == 48  # 48 OE positions, all within the first permutation of 50
  # Normal-only batches (Deep SVDD): same epoch length, all labels 0.
  ds0, spe0 = oe.mixed_batches(normal, oe_images=None, oe_per_batch=0, global_batch_size=8, seed=3, num_epochs=1,
                               augment=False)
  assert spe0 == 3 and ds0[2]["image"].shape == (8, 6, 6, 1) and not ds0[2]["label"].any()


def test_labelled_oe_rows_carry_their_class_and_normal_rows_minus_one():
  normal, reference = tagged(20, 0), tagged(40, 1000)
  classes = (np.arange(40) * 7) % 13  # any labelling: each OE row's class must follow its image
  ds, _ = oe.mixed_batches(normal, oe_images=reference, oe_per_batch=8, global_batch_size=16, seed=5, num_epochs=2,
                           augment=False, oe_labels=classes)
  for step in range(len(ds)):
    batch = ds[step]
    ids = batch["image"][:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(batch["oe_class"][:8], -1)
    np.testing.assert_array_equal(batch["oe_class"][8:], classes[ids[8:] - 1000])
    np.testing.assert_array_equal(batch["label"], [0] * 8 + [1] * 8)
  assert "oe_class" not in oe.mixed_batches(normal, oe_images=reference, oe_per_batch=8, global_batch_size=16,
                                            seed=5, num_epochs=1)[0][0]
  with pytest.raises(ConfigError, match="one label per OE image"):
    oe.mixed_batches(normal, oe_images=reference, oe_per_batch=8, global_batch_size=16, seed=5, num_epochs=1,
                     oe_labels=classes[:5])


def test_batches_are_a_pure_function_of_seed_and_step():
  normal, outliers = tagged(20, 0, (8, 8, 3)), tagged(30, 100, (8, 8, 3))
  kw = dict(oe_images=outliers, oe_per_batch=8, global_batch_size=16, num_epochs=3)
  a, _ = oe.mixed_batches(normal, seed=1, **kw)
  b, _ = oe.mixed_batches(normal, seed=1, **kw)
  c, _ = oe.mixed_batches(normal, seed=2, **kw)
  late_first = b[7]  # random access in any order (exact resume)
  for step in (0, 7, 8):
    np.testing.assert_array_equal(a[step]["image"], b[step]["image"])
  np.testing.assert_array_equal(a[7]["image"], late_first["image"])
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  assert not np.array_equal(a[0]["image"], a[3]["image"])


def test_crop_flip_matches_numpy_padding_cropping_and_mirroring():
  x = np.random.default_rng(0).normal(size=(3, 5, 7, 2)).astype(np.float32)
  fill = np.array([-1.5, 2.5], np.float32)
  out = oe.crop_flip(x, np.array([[2, 2], [0, 4], [3, 1]]), np.array([False, False, True]), pad=2, fill=fill)
  assert out.shape == x.shape
  np.testing.assert_array_equal(out[0], x[0])  # offset (pad, pad), no flip: identity
  padded = np.concatenate([np.broadcast_to(fill, (2, 11, 2)), np.concatenate(
      [np.broadcast_to(fill, (5, 2, 2)), x[1], np.broadcast_to(fill, (5, 2, 2))], axis=1),
                           np.broadcast_to(fill, (2, 11, 2))], axis=0)
  np.testing.assert_array_equal(out[1], padded[0:5, 4:11])  # shifted down by 2, left by 2: fill on top rows
  np.testing.assert_array_equal(out[1][:2], np.broadcast_to(fill, (2, 7, 2)))
  np.testing.assert_array_equal(out[2][:4, ::-1][:, 1:], x[2][1:5, :6])  # crop (3, 1), then mirrored


def test_augmented_rows_are_crops_or_flips_of_their_source_images():
  rng = np.random.default_rng(0)
  normal = rng.normal(size=(16, 8, 8, 3)).astype(np.float32)
  outliers = rng.normal(size=(16, 8, 8, 3)).astype(np.float32) + 10.0
  fill = np.array([-1.0, -2.0, -3.0], np.float32)
  ds, _ = oe.mixed_batches(normal, oe_images=outliers, oe_per_batch=8, global_batch_size=16, seed=0, num_epochs=1,
                           pad=4, fill=fill)
  flips = 0
  for row, label in zip(ds[0]["image"], ds[0]["label"]):
    pool = normal if label == 0 else outliers
    matches = [(i, off, f) for i, off, f in itertools.product(range(16), itertools.product(range(9), repeat=2),
                                                                (False, True))
               if np.array_equal(oe.crop_flip(pool[i:i + 1], np.array([off]), np.array([f]), fill=fill)[0], row)]
    assert matches, "an augmented row is not a crop/flip of any image of its own set"
    flips += matches[0][2]
  assert 0 < flips < 16  # both flipped and unflipped rows occur


def test_batch_errors_are_config_errors():
  x = tagged(20, 0)
  with pytest.raises(ConfigError, match="oe.per_batch=16 must be in"):
    oe.mixed_batches(x, oe_images=x, oe_per_batch=16, global_batch_size=16, seed=0, num_epochs=1)
  with pytest.raises(ConfigError, match="must match"):
    oe.mixed_batches(x, oe_images=tagged(20, 0, (5, 5, 1)), oe_per_batch=8, global_batch_size=16, seed=0,
                     num_epochs=1)
  with pytest.raises(ConfigError, match="not divisible by the 8 devices"):
    oe.mixed_batches(x, oe_images=x, oe_per_batch=4, global_batch_size=12, seed=0, num_epochs=1)


def test_standardize_uses_transferad_constants():
  np.testing.assert_allclose(transforms.CIFAR_MEAN, (0.491373, 0.482353, 0.446667), atol=1e-6)
  np.testing.assert_allclose(transforms.CIFAR_STD, (0.247059, 0.243529, 0.261569), atol=1e-6)
  x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype(np.float32)
  expected = (x - np.array([125.3, 123.0, 113.9]) / 255) / (np.array([63.0, 62.1, 66.7]) / 255)
  np.testing.assert_allclose(transforms.standardize(x), expected, rtol=1e-5, atol=1e-5)


def data_config(data_dir, **kw):
  d = dict(name="cifar10", source="npz", data_dir=data_dir, protocol="leave_one_out", normal_class=3,
           normal_classes=(), preprocess="standardize", minmax="computed", image_size=0, train_limit=0, test_limit=0)
  d.update(kw)
  return ml_collections.ConfigDict(d)


def test_leave_one_out_on_real_cifar10(data_dir):
  arrays = sources.load("cifar10", source="npz", data_dir=data_dir)
  rng = np.random.default_rng(0)  # a random subset: the archive's test split may be sorted by class
  tr, te = np.sort(rng.permutation(50000)[:2000]), np.sort(rng.permutation(10000)[:1000])
  small = sources.Arrays(arrays.x_train[tr], arrays.y_train[tr], arrays.x_test[te], arrays.y_test[te])
  task = protocols.leave_one_out(small, 3)
  keep = small.y_train != 3
  np.testing.assert_array_equal(task.x_train, small.x_train[keep])
  assert len(task.x_train) == 2000 - int((small.y_train == 3).sum()) and len(task.x_train) > 1700
  np.testing.assert_array_equal(task.test_labels, (small.y_test == 3).astype(np.int32))
  np.testing.assert_array_equal(task.test_classes, small.y_test)
  assert task.test_labels.sum() == (small.y_test == 3).sum() > 50
  full = protocols.leave_one_out(arrays, 3)  # the benchmark's sizes
  assert len(full.x_train) == 45000 and full.test_labels.sum() == 1000 and len(full.x_test) == 10000
  with pytest.raises(ConfigError, match="held-out class 10 is out of range"):
    protocols.leave_one_out(small, 10)
  # Through make_task with the TransferAD standardisation.
  task = make_task(data_config(data_dir, train_limit=500, test_limit=200))
  assert task.x_train.shape == (500, 32, 32, 3) and task.x_train.dtype == np.float32
  assert abs(float(task.x_train.mean())) < 0.2 and 0.8 < float(task.x_train.std()) < 1.2


def test_make_oe_reads_cifar100_preprocessed_like_the_normal_data(data_dir):
  x = make_oe(ml_collections.ConfigDict(dict(name="cifar100", source="npz", data_dir="", split="train", limit=64,
                                             per_batch=8)), data_config(data_dir))
  raw = sources.load("cifar100", source="npz", data_dir=data_dir).x_train
  idx = np.sort(np.random.default_rng(0).permutation(len(raw))[:64])
  np.testing.assert_allclose(x, transforms.standardize(transforms.to_unit(raw[idx])), rtol=1e-6)
  with pytest.raises(ConfigError, match="is the normal dataset itself"):
    make_oe(ml_collections.ConfigDict(dict(name="cifar10", source="npz", data_dir="", split="train", limit=0)),
            data_config(data_dir))
