"""MPI3D-real: factor decoding, the section 5.1 protocols of Deecke et al. 2021, loading and downloading.

Everything runs on small synthetic grids with the real factor layout (the real file is 12 GB).
"""

import hashlib
import json
import math
import os

import ml_collections
import numpy as np
import pytest

from sklearn import metrics as sk_metrics

from jaxad import train
from jaxad.config import load_config
from jaxad.data import default_config, make_oe, make_oe_source, make_sources, make_task, mpi3d, sources
from jaxad.errors import ConfigError, DataError

from helpers import REPO, jaxad_main  # pylint: disable=g-bad-import-order

SMALL = (6, 6, 2, 3, 3, 2, 2)  # 2,592 images, 36 views (camera x background x 2 x 2) per object
RED, BLUE, CONE, CUBE, SMALL_SIZE, LARGE_SIZE = 2, 3, 0, 1, 0, 1


def test_decoding_is_row_major_like_numpy_unravel_index():
  idx = np.arange(math.prod(SMALL))
  factors = mpi3d.factors_of(idx, sizes=SMALL)
  np.testing.assert_array_equal(factors, np.stack(np.unravel_index(idx, SMALL), -1))
  np.testing.assert_array_equal(mpi3d.factor_index(factors, sizes=SMALL), idx)
  # The real layout: 1,036,800 images; spot checks against NumPy and by hand.
  assert mpi3d.NUM_IMAGES == 1_036_800
  some = np.random.default_rng(0).integers(0, mpi3d.NUM_IMAGES, size=1000)
  np.testing.assert_array_equal(mpi3d.factors_of(some), np.stack(np.unravel_index(some, mpi3d.FACTOR_SIZES), -1))
  assert mpi3d.factor_index([RED, CONE, SMALL_SIZE, 0, 0, 0, 0]) == 2 * 6 * 2 * 3 * 3 * 40 * 40
  assert mpi3d.factor_index([0, 0, 0, 0, 0, 1, 0]) == 40 and mpi3d.factor_index([5, 5, 1, 2, 2, 39, 39]) == 1_036_799
  np.testing.assert_array_equal(mpi3d.factors_of(1_036_799), [5, 5, 1, 2, 2, 39, 39])
  assert (mpi3d.code("object_color", "red"), mpi3d.code("object_shape", "cube")) == (RED, CUBE)
  with pytest.raises(ConfigError, match="out of range"):
    mpi3d.factor_index([6, 0, 0, 0, 0, 0, 0])
  with pytest.raises(ConfigError, match=r"\[0, 1036800\)"):
    mpi3d.factors_of(mpi3d.NUM_IMAGES)
  with pytest.raises(ConfigError, match="valid:.*'olive'"):
    mpi3d.code("object_color", "purple")


@pytest.mark.parametrize("anomaly,factor,target,n_oe_objects", [
    ("color", 0, BLUE, 72 - 1 - 12),   # 12 blue objects (6 shapes x 2 sizes) never appear in OE
    ("shape", 1, CUBE, 72 - 1 - 12),   # 12 cubes (6 colours x 2 sizes)
    ("size", 2, LARGE_SIZE, 72 - 1 - 36),  # 36 large objects
])
def test_interventions_labels_counts_and_single_factor_differences(anomaly, factor, target, n_oe_objects):
  sel = mpi3d.interventions(anomaly=anomaly, sizes=SMALL, test_fraction=0.25, seed=3)
  # 36 views per object: 9 held out for testing, 27 for training.
  assert len(sel.train) == 27 and len(sel.test) == 18 and sel.test_labels.sum() == 9
  assert len(sel.oe) == n_oe_objects * 36
  for idx in (sel.train, sel.test, sel.oe):
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
  assert not set(sel.train) & set(sel.test) and not set(sel.oe) & (set(sel.train) | set(sel.test))
  f_train, f_test, f_oe = (mpi3d.factors_of(i, sizes=SMALL) for i in (sel.train, sel.test, sel.oe))
  np.testing.assert_array_equal(np.unique(f_train[:, :3], axis=0), [[RED, CONE, SMALL_SIZE]])
  normal, anomalous = f_test[sel.test_labels == 0], f_test[sel.test_labels == 1]
  np.testing.assert_array_equal(np.unique(normal[:, :3], axis=0), [[RED, CONE, SMALL_SIZE]])
  differs = normal != anomalous  # test images pair up view by view (both sorted by view)
  assert np.all(differs[:, factor]) and not np.any(np.delete(differs, factor, axis=1))
  assert np.all(anomalous[:, factor] == target)
  np.testing.assert_array_equal(sel.test_classes, f_test[:, factor])
  train_views = {tuple(v) for v in f_train[:, 3:]}
  test_views = {tuple(v) for v in normal[:, 3:]}
  assert len(train_views) == 27 and len(test_views) == 9 and not train_views & test_views
  # OE: nothing with the target value, nothing of the normal object; all other objects at every view.
  assert not np.any(f_oe[:, factor] == target)
  assert not np.any(np.all(f_oe[:, :3] == (RED, CONE, SMALL_SIZE), axis=1))
  assert len(np.unique(f_oe[:, :3], axis=0)) == n_oe_objects


def test_interventions_on_the_real_layout_and_bad_arguments():
  sel = mpi3d.interventions(anomaly="color")
  assert (len(sel.train), len(sel.test), len(sel.oe)) == (11_520, 5_760, 59 * 14_400)
  assert "red cone -> blue" in sel.description
  again = mpi3d.interventions(anomaly="color")
  np.testing.assert_array_equal(sel.train, again.train)  # the view split is seeded
  assert not np.array_equal(sel.train, mpi3d.interventions(anomaly="color", seed=1).train)
  with pytest.raises(ConfigError, match="anomaly must be one of"):
    mpi3d.interventions(anomaly="background")
  with pytest.raises(ConfigError, match="must differ from the normal value 2"):
    mpi3d.interventions(anomaly="color", target=RED)
  with pytest.raises(ConfigError, match="test_fraction"):
    mpi3d.interventions(anomaly="size", test_fraction=1.0)
  with pytest.raises(ConfigError, match="sizes must give all 7 factors"):
    mpi3d.interventions(anomaly="size", sizes=(6, 6, 2))


def test_color_shift_sequence_grows_normal_colors_with_a_fixed_test_set():
  trials = mpi3d.color_shift_sequence(sizes=SMALL, test_fraction=0.25, seed=0)
  # Views = size x camera x background x 2 x 2 = 72 per (colour, shape); 18 held out.
  assert len(trials) == 6 and "red, blue" in trials[1].description
  order = [mpi3d.code("object_color", c) for c in mpi3d.COLOR_ORDER]
  for k, sel in enumerate(trials):
    np.testing.assert_array_equal(sel.test, trials[0].test)
    assert len(sel.test) == 6 * 2 * 18 and sel.test_labels.sum() == 6 * 18
    f_test = mpi3d.factors_of(sel.test, sizes=SMALL)
    np.testing.assert_array_equal(sel.test_labels, f_test[:, 1] == CUBE)
    np.testing.assert_array_equal(sel.test_classes, f_test[:, 0])
    assert set(f_test[:, 1]) == {CONE, CUBE} and set(f_test[:, 0]) == set(range(6))
    f_train, f_oe = mpi3d.factors_of(sel.train, sizes=SMALL), mpi3d.factors_of(sel.oe, sizes=SMALL)
    assert len(sel.train) == (k + 1) * 54 and len(sel.oe) == (k + 1) * 4 * 72
    assert set(f_train[:, 1]) == {CONE} and set(f_train[:, 0]) == set(order[:k + 1])
    assert set(f_oe[:, 1]) == {2, 3, 4, 5} and set(f_oe[:, 0]) == set(order[:k + 1])
    assert not set(sel.train) & set(sel.test)
  fixed = mpi3d.color_shift_sequence(colors=("red", "green"), sizes=SMALL, size=SMALL_SIZE, test_fraction=0.25)
  assert len(fixed) == 2 and len(fixed[0].train) == 27 and len(fixed[0].test) == 6 * 2 * 9
  assert set(mpi3d.factors_of(fixed[1].oe, sizes=SMALL)[:, 2]) == {SMALL_SIZE}
  with pytest.raises(ConfigError, match="without repeats"):
    mpi3d.color_shift_sequence(colors=("red", "red"))
  with pytest.raises(ConfigError, match="valid:"):
    mpi3d.color_shift_sequence(colors=("red", "pink"))


TINY = (6, 6, 2, 1, 1, 2, 1)  # 144 images, 2 views per object


@pytest.fixture
def tiny_file(tmp_path):
  """A 144-image `mpi3d_real.npz` whose image i is filled with the value i."""
  images = np.broadcast_to(np.arange(144, dtype=np.uint8)[:, None, None, None], (144, 64, 64, 3)).copy()
  path = tmp_path / "mpi3d_real.npz"
  np.savez(path, images=images)
  return str(path), images


def test_load_memory_maps_the_npz_and_gathers_protocol_images(tiny_file, tmp_path):
  path, images = tiny_file
  got = mpi3d.load(path, sizes=TINY)
  assert isinstance(got, np.memmap) and got.dtype == np.uint8 and got.shape == (144, 64, 64, 3)
  np.testing.assert_array_equal(got, images)
  whole = mpi3d.load(path, sizes=TINY, mmap=False)
  assert not isinstance(whole, np.memmap)
  np.testing.assert_array_equal(whole, images)
  compressed = tmp_path / "c.npz"
  np.savez_compressed(compressed, images=images)  # cannot be memory-mapped: read whole
  np.testing.assert_array_equal(mpi3d.load(str(compressed), sizes=TINY), images)
  np.save(tmp_path / "mpi3d_real.npy", images)
  assert isinstance(mpi3d.load(str(tmp_path / "mpi3d_real.npy"), sizes=TINY), np.memmap)
  sel = mpi3d.interventions(anomaly="shape", sizes=TINY, test_fraction=0.5)
  task = sel.task(got)
  np.testing.assert_array_equal(task.x_train[:, 0, 0, 0], sel.train)
  np.testing.assert_array_equal(task.x_test[:, 5, 7, 2], sel.test)
  np.testing.assert_array_equal(task.test_labels, sel.test_labels)
  oe = sel.oe_images(got, limit=10, seed=1)
  assert oe.shape == (10, 64, 64, 3) and set(oe[:, 0, 0, 0]) <= set(sel.oe)


def test_load_checks_md5_only_when_asked_and_the_shape(tiny_file, tmp_path, monkeypatch):
  path, _ = tiny_file
  real_md5 = hashlib.md5(open(path, "rb").read()).hexdigest()
  assert mpi3d.file_md5(path, chunk_size=1000) == real_md5
  mpi3d.load(path, sizes=TINY)  # the published md5 does not match, but is not checked by default
  mpi3d.load(path, sizes=TINY, check_md5=True, md5=real_md5)
  with pytest.raises(DataError, match=f"has md5 {real_md5}, expected {mpi3d.MD5}.*corrupted.*{mpi3d.URL}"):
    mpi3d.load(path, sizes=TINY, check_md5=True)
  with pytest.raises(DataError, match=r"expected uint8 \(1036800, 64, 64, 3\)"):
    mpi3d.load(path)
  np.savez(tmp_path / "other.npz", pictures=np.zeros((1, 64, 64, 3), np.uint8))
  with pytest.raises(DataError, match=r"no array 'images' \(has \['pictures'\]\)"):
    mpi3d.load(str(tmp_path / "other.npz"), sizes=TINY)
  (tmp_path / "broken.npz").write_bytes(b"not a zip")
  with pytest.raises(DataError, match="not a readable MPI3D archive"):
    mpi3d.load(str(tmp_path / "broken.npz"))
  missing = str(tmp_path / "nowhere" / "mpi3d_real.npz")
  with pytest.raises(DataError, match=f"does not exist.*md5 {mpi3d.MD5}.*download.*{mpi3d.URL}.*local path"):
    mpi3d.load(missing)
  monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path))
  assert mpi3d.default_path() == path
  np.testing.assert_array_equal(mpi3d.load(sizes=TINY)[3], np.full((64, 64, 3), 3))
  monkeypatch.delenv(sources.DATA_DIR_ENV)
  with pytest.raises(DataError, match="No path for mpi3d_real.npz"):
    mpi3d.load()


def test_download_streams_verifies_md5_and_renames_atomically(tiny_file, tmp_path):
  src, _ = tiny_file
  data = open(src, "rb").read()
  md5 = hashlib.md5(data).hexdigest()
  url = "file://" + os.path.abspath(src)  # urllib reads file:// URLs: the real streaming code, no network
  dest = tmp_path / "out" / "mpi3d_real.npz"
  assert mpi3d.download(str(dest), url=url, md5=md5, chunk_size=4096) == str(dest)
  assert dest.read_bytes() == data and os.listdir(dest.parent) == ["mpi3d_real.npz"]
  mpi3d.download(str(dest), url="http://127.0.0.1:9/never-fetched", md5=md5)  # already complete: kept
  bad = tmp_path / "bad" / "mpi3d_real.npz"
  with pytest.raises(DataError, match=f"has md5 {md5}, expected {'0' * 32}.*nothing was written"):
    mpi3d.download(str(bad), url=url, md5="0" * 32)
  assert os.listdir(bad.parent) == []  # no partial file left behind
  offline = "http://127.0.0.1:9/mpi3d_real.npz"  # connection refused, like a machine without internet
  with pytest.raises(DataError, match=f"Could not download MPI3D-real from {offline}.*md5 {mpi3d.MD5}.*local path"):
    mpi3d.download(str(bad), url=offline, timeout=5)
  assert os.listdir(bad.parent) == []


# ---- MPI3D through the config-driven runner: jaxad.data.make_task / make_oe and configs/adib_mpi3d.py ----

GRID = (6, 6, 2, 1, 1, 8, 4)  # 2,304 images, 32 views per object


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
  """A `mpi3d_real.npz` on GRID: random pixels, except that pixel (0, 0) of image i encodes i (i % 256, i // 256)."""
  n = math.prod(GRID)
  images = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
  images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
  path = tmp_path_factory.mktemp("mpi3d") / "mpi3d_real.npz"
  np.savez(path, images=images)
  return str(path), images


def image_ids(x):
  """The encoded index of each image: uint8 pixels as stored, or 'unit' floats (pixel / 255) after preprocessing."""
  px = x[:, 0, 0, :2].astype(np.int64) if x.dtype == np.uint8 else np.rint(x[:, 0, 0, :2] * 255).astype(np.int64)
  return px[:, 0] + 256 * px[:, 1]


# torchvision's ImageNet constants, MPI3D's default standardisation (written out: an independent reference).
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def mpi3d_data(path, mpi3d_keys=None, **overrides):
  """`config.data` for the GRID file; `mpi3d_keys` go to the `data.mpi3d` sub-dict."""
  data = default_config(**{**dict(name="mpi3d", preprocess="unit", minmax="computed", protocol_seed=5), **overrides})
  data.mpi3d.update(dict(path=path, sizes=GRID, test_fraction=0.25, **(mpi3d_keys or {})))
  return data


def run_config(data, oe):
  return ml_collections.ConfigDict({"data": data, "oe": oe})


def test_make_task_and_make_oe_gather_the_protocol_images(grid_file):
  path, images = grid_file
  oe_config = ml_collections.ConfigDict(dict(name="mpi3d", source="auto", data_dir="", split="train", limit=0))
  for mpi3d_keys, sel in [
      (dict(anomaly="shape"), mpi3d.interventions(anomaly="shape", sizes=GRID, test_fraction=0.25, seed=5)),
      (dict(protocol="color_shift", trial=2), mpi3d.color_shift_sequence(sizes=GRID, test_fraction=0.25, seed=5)[2])]:
    data = mpi3d_data(path, mpi3d_keys)
    task = make_task(data)  # uint8: preprocessing happens per batch (the sources' `Preprocess`)
    assert task.x_train.shape == (len(sel.train), 64, 64, 3) and task.x_train.dtype == np.uint8
    np.testing.assert_array_equal(task.x_train, images[sel.train])
    np.testing.assert_array_equal(image_ids(task.x_train), sel.train)
    np.testing.assert_array_equal(image_ids(task.x_test), sel.test)
    np.testing.assert_array_equal(task.test_labels, sel.test_labels)
    np.testing.assert_array_equal(task.test_classes, sel.test_classes)
    assert task.test_secondary is None
    srcs = make_sources(run_config(data, oe_config), ["oe"])
    x_train = srcs["normal"].batch(np.arange(len(sel.train)))["image"]  # 'unit': pixel / 255
    assert x_train.dtype == np.float32
    np.testing.assert_array_equal(image_ids(x_train), sel.train)
    np.testing.assert_allclose(x_train, images[sel.train] / 255.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(image_ids(srcs["test"].batch(np.arange(len(sel.test)))["image"]), sel.test)
    np.testing.assert_array_equal(srcs["test"].field("label"), sel.test_labels)
    oe, oe_classes = make_oe(oe_config, data)  # the protocol's own OE images, uint8 like the normal data
    assert oe.dtype == np.uint8 and np.all(oe_classes == -1)
    np.testing.assert_array_equal(image_ids(oe), sel.oe)
    oe_source = srcs["oe"]  # ... preprocessed like the normal data, label 1
    assert len(oe_source) == len(sel.oe) and np.all(oe_source.field("label") == 1)
    oe_batch = oe_source.batch(np.array([3, 0]))["image"]
    np.testing.assert_array_equal(image_ids(oe_batch), sel.oe[[3, 0]])
    np.testing.assert_allclose(oe_batch[0], images[sel.oe[3]] / np.float32(255))
  assert len(sel.train) == 3 * 2 * 24 and len(sel.oe) == 3 * 4 * 2 * 32  # colour shift, trial 2: 3 colours
  # Limits subsample the indices first (seed 0, as for every dataset); OE keeps a fixed random subset.
  data = mpi3d_data(path, train_limit=10, test_limit=6, preprocess="standardize")
  task = make_task(data)
  sel = mpi3d.interventions(anomaly="color", sizes=GRID, test_fraction=0.25, seed=5)
  keep = np.sort(np.random.default_rng(0).permutation(len(sel.train))[:10])
  np.testing.assert_array_equal(task.x_train, images[sel.train[keep]])
  assert task.x_test.shape == (6, 64, 64, 3)
  normal = make_sources(run_config(data, oe_config))["normal"]
  np.testing.assert_allclose(normal.batch(np.arange(10))["image"],
                             (images[sel.train[keep]] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)
  oe_config.limit = 20
  oe, _ = make_oe(oe_config, data)
  assert oe.shape == (20, 64, 64, 3)
  np.testing.assert_array_equal(oe, sel.oe_images(images, limit=20))
  oe_source = make_oe_source(oe_config, data, normal.preprocess)
  np.testing.assert_allclose(oe_source.batch(np.arange(20))["image"],
                             (sel.oe_images(images, limit=20) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)


def test_mpi3d_config_errors_name_the_key_or_the_file(grid_file, tmp_path):
  path, _ = grid_file
  missing = str(tmp_path / "mpi3d_real.npz")
  with pytest.raises(DataError, match=f"{missing} does not exist.*download.*{mpi3d.URL}"):
    make_task(mpi3d_data("", data_dir=str(tmp_path)))  # default: <data_dir>/mpi3d_real.npz
  for mpi3d_keys, overrides, match in [
      (dict(protocol="colour"), {}, r"data\.mpi3d\.protocol must be one of"),
      (dict(anomaly="background"), {}, "anomaly must be one of"),
      (dict(protocol="color_shift", trial=6), {}, r"data\.mpi3d\.trial must be in \[0, 6\)"),
      ({}, dict(protocol="small_modes"), r"picks its protocol with data\.mpi3d\.protocol")]:
    with pytest.raises(ConfigError, match=match):
      make_task(mpi3d_data(path, mpi3d_keys, **overrides))
  oe = ml_collections.ConfigDict(dict(name="mpi3d", source="auto", data_dir="", split="train", limit=0))
  with pytest.raises(ConfigError, match="oe.name='mpi3d' is the OE set of the MPI3D protocols"):
    make_oe(oe, default_config(name="cifar10", preprocess="standardize"))


def test_adib_mpi3d_config_arguments():
  path = os.path.join(REPO, "configs", "adib_mpi3d.py")
  c = load_config(f"{path}:anomaly=size,seed=3")
  assert (c.data.name, c.data.mpi3d.protocol, c.data.mpi3d.anomaly, c.oe.name) == ("mpi3d", "interventions", "size",
                                                                                     "mpi3d")
  assert tuple(c.data.mpi3d.sizes) == mpi3d.FACTOR_SIZES and c.data.protocol_seed == c.seed == 3
  assert c.data.standardize_stats == "imagenet64" and c.oe.limit == 50_000 and c.train.epochs == 100
  for method, (loss, per_batch) in {"adib": ("bce", 64), "adra": ("bce", 64), "sad": ("sad", 64),
                                    "hsc": ("hsc", 64), "dsvdd_resnet26": ("one_class", 0)}.items():
    c = load_config(f"{path}:method={method},protocol=color_shift,trial=4")
    assert (c.method, c.objective.loss, c.oe.per_batch, c.data.mpi3d.trial) == (method, loss, per_batch, 4)
    assert c.model.adapters == (method == "adra") and (c.objective.regularizer == "l2_sp") == (method == "adib")
  with pytest.raises(ConfigError, match="Unknown method 'doc' for MPI3D"):
    load_config(f"{path}:method=doc")


def test_adib_mpi3d_runlocal_end_to_end_on_a_synthetic_file(grid_file, tmp_path):
  path, _ = grid_file
  c = load_config(os.path.join(REPO, "configs", "adib_mpi3d.py") + f":runlocal,anomaly=shape,path={path}")
  assert c.data.mpi3d.path == path
  c.data.mpi3d.sizes = GRID
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert 0.0 <= summary["test/oe_sigmoid/auroc"] <= 1.0
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in records)
  assert {r["stage"] for r in records} == {"train"}
  scores = np.load(tmp_path / "scores.npz")
  sel = mpi3d.interventions(anomaly="shape", sizes=GRID, seed=c.seed)  # 32 views: 6 held out -> 12 test images
  np.testing.assert_array_equal(scores["labels"], sel.test_labels)
  np.testing.assert_array_equal(scores["classes"], sel.test_classes)
  s = scores["score/oe_sigmoid"]
  assert s.shape == (12,) and np.all((s >= 0) & (s <= 1))  # sigmoid probabilities
  # Random pixels carry no signal, so the AUROC itself says little; it must be the AUROC of the saved scores.
  assert summary["test/oe_sigmoid/auroc"] == pytest.approx(sk_metrics.roc_auc_score(sel.test_labels, s), abs=1e-9)


def test_missing_mpi3d_file_on_the_command_line_is_one_clear_line(tmp_path):
  out = jaxad_main("--config=configs/adib_mpi3d.py:runlocal", f"--workdir={tmp_path / 'w'}",
                   data_dir=str(tmp_path), timeout=120)
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  line = next(l for l in out.stderr.splitlines() if l.startswith("jaxad: error: "))
  assert str(tmp_path / "mpi3d_real.npz") in line and "mpi3d.download" in line and mpi3d.URL in line
  assert not (tmp_path / "w").exists()  # nothing half-written
