"""Andrews et al. (2016): the class-sets protocol, frozen backbones, fitted linear one-class SVMs, the configs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxad import metrics, train
from jaxad.checkpoint import restore_output
from jaxad.data import protocols, sources
from jaxad.errors import ConfigError, DataError
from jaxad.methods import deep_features
from jaxad.models import backbones, vgg
from jaxad.models import preprocess as imagenet

from helpers import config_file, jaxad_main_in_process  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name, arg, data_dir):
  from jaxad.config import import_sibling  # pylint: disable=g-import-not-at-top
  path = config_file(name)
  config = import_sibling(path, os.path.splitext(os.path.basename(path))[0]).get_config(arg)
  config.data.data_dir = data_dir
  return config


def test_class_sets_sample_sizes_labels_and_fixed_test_set():
  rng = np.random.default_rng(0)
  y_train, y_test = rng.integers(0, 10, 3000), rng.integers(0, 10, 1000)
  arrays = sources.Arrays(np.arange(3000)[:, None, None, None], y_train, np.arange(1000)[:, None, None, None], y_test)
  odd, even = (1, 3, 5, 7, 9), (0, 2, 4, 6, 8)
  tasks = [protocols.class_sets(arrays, normal=odd, anomalous=even, train_size=200, test_normal=50, test_anomalous=40,
                                trial=t) for t in (0, 1)]
  for task in tasks:
    assert len(task.x_train) == 200 and np.isin(y_train[task.x_train[:, 0, 0, 0]], odd).all()
    idx = task.x_test[:, 0, 0, 0]
    assert len(idx) == 90 and len(set(idx)) == 90
    np.testing.assert_array_equal(task.test_labels, np.isin(y_test[idx], even).astype(np.int32))
    assert task.test_labels.sum() == 40
  np.testing.assert_array_equal(tasks[0].x_test, tasks[1].x_test)  # the test set is fixed across trials
  assert not np.array_equal(tasks[0].x_train, tasks[1].x_train)  # the training sample is the trial's
  task = protocols.class_sets(arrays, normal=(5,), anomalous=(2,))  # 0 = every image of the classes
  assert len(task.x_train) == (y_train == 5).sum() and len(task.x_test) == np.isin(y_test, (2, 5)).sum()
  for bad in (dict(normal=(5,), anomalous=(5,)), dict(normal=(), anomalous=(2,)), dict(normal=(12,), anomalous=(2,)),
              dict(normal=(5,), anomalous=(2,), train_size=10**6)):
    with pytest.raises(ConfigError):
      protocols.class_sets(arrays, **bad)


def test_input_scalings_match_the_backbones_own_preprocessing():
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  full_mean = np.asarray(jax.random.uniform(jax.random.key(1), (224, 224, 3)) * 255)
  for mean in (full_mean, np.array([122.8, 114.9, 101.6], np.float32)):
    np.testing.assert_allclose(backbones.make_prepare("matconvnet", 224, mean)(x), vgg.preprocess(x * 255, mean),
                               rtol=1e-5, atol=1e-3)
  rgb = jax.image.resize(jnp.repeat(x, 3, -1) * 255, (2, 64, 64, 3), "bilinear")
  for mode in imagenet.MODES:
    np.testing.assert_allclose(backbones.make_prepare(mode, 64)(x), imagenet.imagenet_preprocess(rgb, mode),
                               rtol=1e-5, atol=1e-4)
  assert backbones.make_prepare("data", 0)(x) is x
  with pytest.raises(ConfigError, match="input_scaling"):
    backbones.make_prepare("bgr", 0)


@pytest.fixture(scope="module")
def resnet26_source(tmp_path_factory):
  """A ResNet26 'source' export (as configs/pretrain_resnet26_* write), random weights."""
  from jaxad.methods import transfer  # pylint: disable=g-import-not-at-top
  from jaxad.models import get_model  # pylint: disable=g-import-not-at-top
  model = get_model("resnet26_transferad")(num_classes=10)
  variables = model.init(jax.random.key(7), jnp.zeros((1, 32, 32, 3)), train=False)
  path = transfer.save_source(str(tmp_path_factory.mktemp("src") / "source"), variables)
  return path, jax.tree.map(np.asarray, variables)


def test_fitted_svms_give_the_papers_number_on_any_jaxad_backbone(resnet26_source, tmp_path, data_dir):
  """A ResNet26 source as the backbone: the phase's SVMs + the evaluator = an independent sklearn fit per nu."""
  path, variables = resnet26_source
  config = load_config("andrews_vggf_mnist.py", "task=3,runlocal=True,weights=random", data_dir)
  config.model.update(name="resnet26_transferad", weights=path, kwargs={"num_classes": 10}, input_scaling="torch",
                      input_size=32)
  config.objective.layers = ("pooled", "layer2")
  config.objective.nus = (0.05, 0.3, 0.7)
  summary = train.train_and_evaluate(config, str(tmp_path))
  saved = restore_output(str(tmp_path / "checkpoints" / "ocsvm" / "output"))
  jax.tree.map(np.testing.assert_array_equal, saved.variables["params"], variables["params"])  # the source, as is
  # The reference: the network applied directly (torch scaling written out here), sklearn's SVMs on its features.
  _, srcs = train.build(config)
  net = backbones.load(config.model, srcs["normal"].shape, jax.random.key(0)).model
  feats = {}
  for name in ("normal", "test"):
    x = jnp.asarray(srcs[name].batch(np.arange(len(srcs[name])))["image"]) * 255.0
    x = jax.image.resize(jnp.repeat(x, 3, axis=-1), (len(x), 32, 32, 3), "bilinear")
    x = (x / 255.0 - jnp.array([0.485, 0.456, 0.406])) / jnp.array([0.229, 0.224, 0.225])
    feats[name] = net.apply(variables, x, train=False)[1]
  labels = srcs["test"].field("label")
  per_nu = json.loads((tmp_path / "ocsvm.json").read_text())["auroc_per_nu"]
  for layer in ("pooled", "layer2"):
    train_f = np.asarray(feats["normal"][layer]).reshape(len(srcs["normal"]), -1)
    test_f = np.asarray(feats["test"][layer]).reshape(len(labels), -1)
    mean, reference = metrics.ocsvm_auroc_over_nu(train_f, test_f, labels, nus=config.objective.nus)
    np.testing.assert_allclose(per_nu[layer], reference, atol=2e-3)
    assert summary[f"test/{layer}/ocsvm_auroc"] == pytest.approx(mean, abs=2e-3)


def test_vgg_f_config_runs_end_to_end_and_needs_its_weights(tmp_path, data_dir):
  code, stderr = jaxad_main_in_process("--config=configs/andrews_vggf_mnist.py:task=1", f"--workdir={tmp_path / 'a'}",
                                       data_dir=data_dir)
  assert code == 2 and "model.weights=weights/vgg_f does not exist" in stderr and "convert_matconvnet.py" in stderr
  assert not (tmp_path / "a").exists()
  code, stderr = jaxad_main_in_process("--config=configs/andrews_vggf_mnist.py:task=1,runlocal=True,weights=random",
                                       f"--workdir={tmp_path / 'b'}", data_dir=data_dir)
  assert code == 0, stderr[-3000:]
  summary = json.loads((tmp_path / "b" / "summary.json").read_text())
  for layer in ("P5", "FC6", "FC7", "FC8"):  # random VGG-F features already separate 5 from 2: the paper's floor
    assert 0.6 < summary[f"test/{layer}/ocsvm_auroc"] <= 1.0
    assert summary[f"test/{layer}/ocsvm_auroc_min_nu"] <= summary[f"test/{layer}/ocsvm_auroc"]


def test_method_refuses_unknown_layers_and_unscaled_data(resnet26_source, data_dir):
  config = load_config("andrews_vggf_mnist.py", "task=1,runlocal=True,weights=random", data_dir)
  config.objective.layers = ("P5", "FC9")
  with pytest.raises(ConfigError, match=r"\['FC9'\] are not features"):
    train.build(config)
  config = load_config("andrews_vggf_mnist.py", "task=1,runlocal=True,weights=random", data_dir)
  config.data.preprocess = "signed"
  with pytest.raises(ConfigError, match="data.preprocess='unit'"):
    train.build(config)
  config = load_config("andrews_vggf_mnist.py", "task=1,runlocal=True,weights=random", data_dir)
  config.model.update(name="resnet26_transferad", weights=resnet26_source[0], kwargs={"num_classes": 7},
                      input_scaling="torch", input_size=32)
  with pytest.raises(DataError, match="mis-shaped"):  # the source's 10-way head does not fit a 7-way net
    train.build(config)


def _faces(folder, pattern, n, seed, period=4):
  """`n` 100x100 grey PNGs: vertical stripes of `period` (sub-categories differ by period) or rings, plus noise."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:100, :100]
  base = {"stripes": np.sin(xx / period), "rings": np.sin(np.hypot(yy - 50, xx - 50) / period)}[pattern]
  for i in range(n):
    img = 127 + 100 * base + rng.normal(0, 20, (100, 100))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(os.path.join(folder, f"{i}.png"))


def test_auxiliary_route_classifier_then_its_features(tmp_path):
  """Stage 1 trains the Male-5045 net on identity sub-folders; stage 2 scores with its P8 / FC9 features."""
  ids, normal, test = tmp_path / "ids", tmp_path / "normal", tmp_path / "test"
  for k in range(3):
    _faces(ids / f"id{k}", "stripes", 8, seed=k, period=3 + k)
  _faces(normal, "stripes", 16, seed=5)
  _faces(test / "good", "stripes", 8, seed=6)
  _faces(test / "female", "rings", 8, seed=7)
  args = f"train_dir={ids},test_dir={test},classes=3,runlocal=True"
  code, stderr = jaxad_main_in_process(f"--config=configs/andrews_male5045_casia.py:stage=classifier,{args}",
                                       f"--workdir={tmp_path / 'clf'}")
  assert code == 0, stderr[-3000:]
  source = tmp_path / "clf" / "source"
  assert source.is_dir()
  args = f"train_dir={normal},test_dir={test},classes=3,runlocal=True,source={source}"
  code, stderr = jaxad_main_in_process(f"--config=configs/andrews_male5045_casia.py:stage=features,{args}",
                                       f"--workdir={tmp_path / 'ad'}")
  assert code == 0, stderr[-3000:]
  summary = json.loads((tmp_path / "ad" / "summary.json").read_text())
  assert summary["test/P8/ocsvm_auroc"] > 0.9 and summary["test/FC9/ocsvm_auroc"] > 0.5
  trained = restore_output(str(tmp_path / "clf" / "checkpoints" / "train" / "output")).variables["params"]
  used = restore_output(str(tmp_path / "ad" / "checkpoints" / "ocsvm" / "output")).variables["params"]
  jax.tree.map(np.testing.assert_array_equal, used, trained)  # stage 2 scores with stage 1's weights


def test_linear_svm_fit_is_sklearns_decision_function():
  rng = np.random.default_rng(0)
  x = np.asarray(deep_features.unit_features(jnp.asarray(rng.normal(size=(40, 3, 2)))))
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
  w, b = deep_features.fit_linear_ocsvm(x, (0.1, 0.5))
  from sklearn.svm import OneClassSVM  # pylint: disable=g-import-not-at-top
  for p, nu in enumerate((0.1, 0.5)):
    svm = OneClassSVM(kernel="linear", nu=nu).fit(x.astype(np.float64))
    np.testing.assert_allclose(x @ w[p] + b[p], svm.decision_function(x), rtol=1e-5, atol=1e-6)


def test_gs_baseline_is_the_raw_pixels_as_sklearn_scores_them(tmp_path, data_dir):
  """configs/andrews_gs_mnist.py: the digits' own pixels, not scaled to unit length (the paper's GS row), through the
  phase's SVMs = sklearn's fit on the raw pixels; `objective.unit_length=True` = sklearn's on unit-length pixels."""
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  from sklearn.svm import OneClassSVM  # pylint: disable=g-import-not-at-top
  summaries, refs = {}, {}
  for unit in (False, True):
    config = load_config("andrews_gs_mnist.py", "task=3,runlocal=True", data_dir)
    assert config.model.name == "greyscale" and config.objective.unit_length is False
    config.objective.unit_length = unit
    summaries[unit] = train.train_and_evaluate(config, str(tmp_path / str(unit)))
    _, srcs = train.build(config)
    x = {name: np.asarray(srcs[name].batch(np.arange(len(srcs[name])))["image"], np.float64).reshape(
        len(srcs[name]), -1) for name in ("normal", "test")}
    if unit:
      x = {name: v / np.linalg.norm(v, axis=1, keepdims=True) for name, v in x.items()}
    per_nu = [roc_auc_score(srcs["test"].field("label"), -OneClassSVM(kernel="linear", nu=nu).fit(
        x["normal"]).decision_function(x["test"])) for nu in config.objective.nus]  # sklearn on the features
    refs[unit] = float(np.mean(per_nu))
    saved = json.loads((tmp_path / str(unit) / "ocsvm.json").read_text())["auroc_per_nu"]["GS"]
    np.testing.assert_allclose(saved, per_nu, atol=2e-3)
    assert summaries[unit]["test/GS/ocsvm_auroc"] == pytest.approx(refs[unit], abs=2e-3)
  assert abs(refs[True] - refs[False]) > 0.01  # the scaling matters: the test tells the two apart


def test_greyscale_model_is_the_luma_of_colour_images():
  from jaxad.models import get_model  # pylint: disable=g-import-not-at-top
  rgb = np.random.default_rng(0).uniform(size=(2, 5, 4, 3)).astype(np.float32)
  model = get_model("greyscale")()
  out, feats = model.apply({}, jnp.asarray(rgb))
  luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(feats["GS"][..., 0], luma, rtol=1e-6)
  np.testing.assert_allclose(out, luma.reshape(2, -1), rtol=1e-6)
  grey = rgb[..., :1]
  assert model.apply({}, jnp.asarray(grey))[1]["GS"].shape == (2, 5, 4, 1)
