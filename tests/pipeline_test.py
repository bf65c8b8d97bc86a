"""Training batches mixed from named sources (jaxad.data.pipeline.TrainBatches), the on-device crop + flip
(jaxad.data.augment) against a NumPy reference, leave-one-out, outlier exposure and the CIFAR standardisation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxad.config import import_sibling
from jaxad.data import (Source, augment, make_oe, make_oe_source, make_preprocess, make_sources, make_task, pipeline,
                        protocols, sources, transforms)
from jaxad.data.examples import ArrayExamples, Identity
from jaxad.errors import ConfigError
from jaxad.methods import get_method
from jaxad.methods.base import DataSpec

from helpers import config_file, run_python  # pylint: disable=g-bad-import-order

# TransferAD's CIFAR Normalize constants, written out here (not read from jaxad) as the independent reference.
CIFAR_MEAN = np.array([125.3, 123.0, 113.9]) / 255
CIFAR_STD = np.array([63.0, 62.1, 66.7]) / 255


def tagged(n, offset, shape=(6, 6, 1)):
  """Image i is constant offset + i: every pixel tells which image it came from."""
  return (offset + np.arange(n, dtype=np.float32))[:, None, None, None] * np.ones((n, *shape), np.float32)


def oe_source(images, **fields):
  """An OE source as `make_oe_source` makes it: label 1 on every row."""
  return Source.of(images, label=np.ones(len(images), np.int32), **fields)


def np_crop_flip(images, offsets, flips, *, pad=4, fill=0.0):
  """The NumPy reference: pad with `fill`, crop [H, W] at `offsets` (top, left), then mirror where `flips`."""
  b, h, w, c = images.shape
  padded = np.empty((b, h + 2 * pad, w + 2 * pad, c), images.dtype)
  padded[...] = np.asarray(fill, images.dtype)
  padded[:, pad:pad + h, pad:pad + w] = images
  out = np.stack([padded[i, o[0]:o[0] + h, o[1]:o[1] + w] for i, o in enumerate(np.asarray(offsets))])
  return np.where(np.asarray(flips, bool)[:, None, None, None], out[:, :, ::-1], out)


def test_batches_mix_normal_then_oe_rows_with_labels_and_epoch_length():
  normal, outliers = tagged(20, 0), tagged(50, 1000)
  srcs = {"normal": Source.of(normal), "oe": oe_source(outliers)}
  ds = pipeline.TrainBatches(srcs, {"normal": 8, "oe": 8}, seed=3, num_epochs=2, drop_remainder=False)
  # ceil(20 / 8): the last step of an epoch wraps into the next permutation
  assert ds.steps_per_epoch == 3 and len(ds) == 6
  seen_normal, seen_oe = [], []
  for step in range(len(ds)):
    batch = ds[step]
    assert batch["image"].shape == (16, 6, 6, 1) and batch["image"].dtype == np.float32
    np.testing.assert_array_equal(batch["label"], [0] * 8 + [1] * 8)
    np.testing.assert_array_equal(batch["source"], [0] * 8 + [1] * 8)  # index of the row's source in the mix
    ids = batch["image"][:, 0, 0, 0].astype(int)
    assert np.all(ids[:8] < 20) and np.all((ids[8:] >= 1000) & (ids[8:] < 1050))
    seen_normal += list(ids[:8])
    seen_oe += list(ids[8:] - 1000)
  # The normal stream is a sequence of permutations: positions 0-19 and 20-39 each hold every image once.
  assert sorted(seen_normal[:20]) == list(range(20)) and sorted(seen_normal[20:40]) == list(range(20))
  assert seen_normal[:20] != seen_normal[20:40]  # reshuffled
  assert len(set(seen_oe)) == 48  # 48 OE positions, all within the first permutation of 50
  # Normal-only batches (Deep SVDD on ResNet26): same epoch length, all labels 0.
  ds0 = pipeline.TrainBatches({"normal": Source.of(normal)}, {"normal": 8}, seed=3, num_epochs=1,
                              drop_remainder=False)
  assert ds0.steps_per_epoch == 3 and ds0[2]["image"].shape == (8, 6, 6, 1) and not ds0[2]["label"].any()
  # drop_remainder: an epoch is one permutation of the normal images, its last partial batch dropped.
  ds1 = pipeline.TrainBatches({"normal": Source.of(normal)}, {"normal": 8}, seed=3, num_epochs=2,
                              drop_remainder=True)
  assert ds1.steps_per_epoch == 2 and len(ds1) == 4
  for epoch in range(2):
    ids = np.concatenate([ds1[epoch * 2 + b]["image"][:, 0, 0, 0] for b in range(2)]).astype(int)
    assert len(set(ids)) == 16 and np.all(ids < 20)


def test_labelled_oe_rows_carry_their_class_and_normal_rows_minus_one():
  normal, reference = tagged(20, 0), tagged(40, 1000)
  classes = (np.arange(40) * 7) % 13  # any labelling: each OE row's class must follow its image
  # The normal source has no 'class' field: the pipeline fills the rows of a source that lacks a field with -1.
  srcs = {"normal": Source(ArrayExamples(image=normal, label=np.zeros(20, np.int32)), Identity()),
          "reference": oe_source(reference, **{"class": classes.astype(np.int32)})}
  ds = pipeline.TrainBatches(srcs, {"normal": 8, "reference": 8}, seed=5, num_epochs=2, drop_remainder=False)
  for step in range(len(ds)):
    batch = ds[step]
    ids = batch["image"][:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(batch["class"][:8], -1)
    np.testing.assert_array_equal(batch["class"][8:], classes[ids[8:] - 1000])
    np.testing.assert_array_equal(batch["label"], [0] * 8 + [1] * 8)
  # Sources without class labels: batches without a 'class' field.
  unlabelled = {"normal": srcs["normal"], "oe": Source(ArrayExamples(image=reference, label=np.ones(40, np.int32)),
                                                       Identity())}
  batch = pipeline.TrainBatches(unlabelled, {"normal": 8, "oe": 8}, seed=5, num_epochs=1, drop_remainder=False)[0]
  assert "class" not in batch
  with pytest.raises(ValueError, match="different lengths"):  # one label per OE image
    oe_source(reference, **{"class": classes[:5]})


def test_batches_are_a_pure_function_of_seed_and_step():
  normal, outliers = tagged(20, 0, (8, 8, 3)), tagged(30, 100, (8, 8, 3))
  srcs = {"normal": Source.of(normal), "oe": oe_source(outliers)}
  kw = dict(mix={"normal": 8, "oe": 8}, num_epochs=3, drop_remainder=False)
  a = pipeline.TrainBatches(srcs, seed=1, **kw)
  b = pipeline.TrainBatches(srcs, seed=1, **kw)
  c = pipeline.TrainBatches(srcs, seed=2, **kw)
  late_first = b[7]  # random access in any order (exact resume)
  for step in (0, 7, 8):
    np.testing.assert_array_equal(a[step]["image"], b[step]["image"])
  np.testing.assert_array_equal(a[7]["image"], late_first["image"])
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  assert not np.array_equal(a[0]["image"], a[3]["image"])


def test_crop_flip_matches_numpy_padding_cropping_and_mirroring():
  x = np.random.default_rng(0).normal(size=(3, 5, 7, 2)).astype(np.float32)
  fill = np.array([-1.5, 2.5], np.float32)
  offsets, flips = np.array([[2, 2], [0, 4], [3, 1]]), np.array([False, False, True])
  out = np.asarray(jax.jit(lambda *a: augment.crop_flip_with(*a, pad=2, fill=fill))(
      jnp.asarray(x), jnp.asarray(offsets, jnp.int32), jnp.asarray(flips)))
  assert out.shape == x.shape and out.dtype == np.float32
  np.testing.assert_array_equal(out, np_crop_flip(x, offsets, flips, pad=2, fill=fill))
  np.testing.assert_array_equal(out[0], x[0])  # offset (pad, pad), no flip: identity
  padded = np.concatenate([np.broadcast_to(fill, (2, 11, 2)), np.concatenate(
      [np.broadcast_to(fill, (5, 2, 2)), x[1], np.broadcast_to(fill, (5, 2, 2))], axis=1),
                           np.broadcast_to(fill, (2, 11, 2))], axis=0)
  np.testing.assert_array_equal(out[1], padded[0:5, 4:11])  # shifted down by 2, left by 2: fill on top rows
  np.testing.assert_array_equal(out[1][:2], np.broadcast_to(fill, (2, 7, 2)))
  np.testing.assert_array_equal(out[2][:4, ::-1][:, 1:], x[2][1:5, :6])  # crop (3, 1), then mirrored
  # Every corner of {0..2*pad}^2, both flips, a scalar fill: equal to the reference bit for bit.
  y = np.random.default_rng(1).normal(size=(50, 4, 4, 3)).astype(np.float32)
  grid = np.array([(i, j) for i in range(5) for j in range(5)] * 2)
  mirror = np.repeat([False, True], 25)
  np.testing.assert_array_equal(augment.crop_flip_with(jnp.asarray(y), jnp.asarray(grid, jnp.int32),
                                                       jnp.asarray(mirror), pad=2, fill=0.75),
                                np_crop_flip(y, grid, mirror, pad=2, fill=0.75))


def test_augmented_rows_are_crops_or_flips_of_their_source_images():
  """The transfer methods' train-time augmentation: every row of a normal + OE batch, black-pixel padding."""
  common = import_sibling(config_file("common.py"), "common")
  c = common.transfer_base()
  c.train.batch_size, c.oe.per_batch = 16, 8
  (phase,) = [p for p in get_method("adib")(c, DataSpec((8, 8, 3))).phases if p.name == "train"]
  assert dict(phase.mix) == {"normal": 8, "oe": 8} and phase.augment is not None and not phase.drop_remainder
  rng = np.random.default_rng(0)
  normal = rng.normal(size=(16, 8, 8, 3)).astype(np.float32)
  outliers = rng.normal(size=(16, 8, 8, 3)).astype(np.float32) + 10.0
  batch = pipeline.TrainBatches({"normal": Source.of(normal), "oe": oe_source(outliers)}, phase.mix, seed=0,
                                num_epochs=1, drop_remainder=False)[0]
  fill = (-CIFAR_MEAN / CIFAR_STD).astype(np.float32)  # RandomCrop pads with black before Normalize
  out = jax.jit(phase.augment)({k: jnp.asarray(v) for k, v in batch.items()}, jax.random.key(3))
  np.testing.assert_array_equal(out["label"], batch["label"])
  flips = 0
  for row, image, label in zip(np.asarray(out["image"]), batch["image"], batch["label"]):
    pool = normal if label == 0 else outliers
    assert any(np.array_equal(image, p) for p in pool)  # the un-augmented row is an image of its own set
    matches = [(off, f) for off in np.ndindex(9, 9) for f in (False, True)
               if np.allclose(np_crop_flip(image[None], np.array([off]), np.array([f]), fill=fill)[0], row,
                              rtol=0, atol=1e-6)]
    assert matches, "an augmented row is not a crop/flip of its own image"
    flips += matches[0][1]
  assert 0 < flips < 16  # both flipped and unflipped rows occur
  # The same function of (images, rng) with the default pad of 4, by its own parameters.
  offsets, mirror = augment.crop_flip_params(jax.random.key(4), 16, pad=4)
  assert np.asarray(offsets).min() >= 0 and np.asarray(offsets).max() <= 8
  np.testing.assert_allclose(augment.crop_flip(jnp.asarray(normal), jax.random.key(4), fill=fill),
                             np_crop_flip(normal, np.asarray(offsets), np.asarray(mirror), fill=fill), rtol=0, atol=0)


def test_batch_errors_are_config_errors():
  x = tagged(20, 0)
  common = import_sibling(config_file("common.py"), "common")
  c = common.transfer_base()
  c.train.batch_size, c.oe.per_batch = 16, 16
  with pytest.raises(ConfigError, match="oe.per_batch=16 must be in"):
    get_method("adib")(c, DataSpec((32, 32, 3)))
  with pytest.raises(ConfigError, match="positive multiple"):
    pipeline.TrainBatches({"normal": Source.of(x), "oe": oe_source(x)}, {"normal": 16, "oe": 0}, seed=0,
                          num_epochs=1, drop_remainder=False)
  out = run_python("""
      import numpy as np
      from jaxad.data import Source, pipeline
      from jaxad.errors import ConfigError
      x = np.zeros((20, 6, 6, 1), np.float32)
      try:
        pipeline.TrainBatches({"normal": Source.of(x), "oe": Source.of(x)}, {"normal": 8, "oe": 4}, seed=0,
                              num_epochs=1, drop_remainder=False)
      except ConfigError as e:
        print("ConfigError:", e)
      """, devices=8, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "ConfigError:" in out.stdout and "not divisible by the 8 devices" in out.stdout, out.stdout
  # Sources of one batch with images of different shapes (e.g. 32x32 OE for 96x96 normal images, no
  # data.image_size): a ConfigError, not a numpy error from deep inside the batching.
  with pytest.raises(ConfigError, match="must match"):
    ds = pipeline.TrainBatches({"normal": Source.of(x), "oe": oe_source(tagged(20, 0, (5, 5, 1)))},
                               {"normal": 8, "oe": 8}, seed=0, num_epochs=1, drop_remainder=False)
    ds[0]  # pylint: disable=pointless-statement


def test_standardize_uses_transferad_constants():
  np.testing.assert_allclose(transforms.CIFAR_MEAN, (0.491373, 0.482353, 0.446667), atol=1e-6)
  np.testing.assert_allclose(transforms.CIFAR_STD, (0.247059, 0.243529, 0.261569), atol=1e-6)
  x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype(np.float32)
  expected = (x - CIFAR_MEAN) / CIFAR_STD
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
  # Through make_task (uint8, the fixed seed-0 subset) and the 'normal' source with the TransferAD standardisation.
  data = data_config(data_dir, train_limit=500, test_limit=200)
  task = make_task(data)
  assert task.x_train.shape == (500, 32, 32, 3) and task.x_train.dtype == np.uint8
  np.testing.assert_array_equal(task.x_train, full.x_train[np.sort(np.random.default_rng(0).permutation(45000)[:500])])
  normal = make_sources(ml_collections.ConfigDict(dict(data=data)))["normal"]
  x = normal.batch(np.arange(500))["image"]
  assert x.shape == (500, 32, 32, 3) and x.dtype == np.float32
  np.testing.assert_allclose(x, (task.x_train / 255.0 - CIFAR_MEAN) / CIFAR_STD, rtol=1e-5, atol=1e-5)
  assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2


def test_make_oe_reads_cifar100_preprocessed_like_the_normal_data(data_dir):
  oe_cfg = ml_collections.ConfigDict(dict(name="cifar100", source="npz", data_dir="", split="train", limit=64,
                                          per_batch=8))
  x, classes = make_oe(oe_cfg, data_config(data_dir))
  raw = sources.load("cifar100", source="npz", data_dir=data_dir)
  idx = np.sort(np.random.default_rng(0).permutation(len(raw.x_train))[:64])
  assert x.dtype == np.uint8
  np.testing.assert_array_equal(x, raw.x_train[idx])
  np.testing.assert_array_equal(classes, raw.y_train[idx])
  # The 'oe' source: label 1, standardised with the normal data's (CIFAR-10) constants.
  oe = make_oe_source(oe_cfg, data_config(data_dir), make_preprocess(data_config(data_dir)))
  batch = oe.batch(np.arange(64))
  np.testing.assert_allclose(batch["image"], transforms.standardize(transforms.to_unit(raw.x_train[idx])), rtol=1e-6)
  np.testing.assert_allclose(batch["image"], (raw.x_train[idx] / 255.0 - CIFAR_MEAN) / CIFAR_STD, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(batch["label"], 1)
  np.testing.assert_array_equal(batch["class"], raw.y_train[idx])
  with pytest.raises(ConfigError, match="is the normal dataset itself"):
    make_oe(ml_collections.ConfigDict(dict(name="cifar10", source="npz", data_dir="", split="train", limit=0)),
            data_config(data_dir))
