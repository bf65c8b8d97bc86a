"""Minhas & Zelek (2019): Keras' decay schedule, the anomaly-vs-rest-sample protocol, freezing, the argmax
decisions, the configs and a runlocal run end to end on real CIFAR-10 with a small backbone."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported (the SGD reference below)

import json  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxad import evaluate, optim, train
from jaxad.checkpoint import restore_output
from jaxad.data import protocols, sources
from jaxad.errors import ConfigError
from jaxad.methods import finetune, get_method
from jaxad.methods.base import DataSpec
from jaxad.models import get_model

from helpers import config_file, jaxad_main_in_process  # pylint: disable=g-bad-import-order

BACKBONES = ("densenet169", "resnet152", "inception_v4")


def load_config(name, arg, data_dir=""):
  from jaxad.config import import_sibling  # pylint: disable=g-import-not-at-top
  path = config_file(name)
  config = import_sibling(path, os.path.splitext(os.path.basename(path))[0]).get_config(arg)
  config.data.data_dir = data_dir
  return config


# --------------------------------------------------------------------------------------------------------------------
# Keras' time-based decay.


def test_keras_decay_schedule_is_lr_over_one_plus_decay_times_step():
  import keras  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(dict(lr=1e-3, epochs=50, schedule="keras_decay", schedule_kwargs={"decay": 1e-6}))
  schedule = optim.make_schedule(config, steps_per_epoch=563)
  keras_schedule = keras.optimizers.schedules.InverseTimeDecay(1e-3, decay_steps=1, decay_rate=1e-6)
  steps = np.array([0, 1, 2, 562, 563, 10_000, 28_149, 10**6])
  ours = np.array([float(schedule(t)) for t in steps])
  np.testing.assert_allclose(ours, 1e-3 / (1.0 + 1e-6 * steps), rtol=1e-7)
  np.testing.assert_allclose(ours, [float(keras_schedule(t)) for t in steps], rtol=1e-6)
  assert ours[-1] == pytest.approx(0.5e-3)  # 10^6 steps halve the lr: the decay is per step, not per epoch
  config.schedule_kwargs = {"decay": -1e-6}
  with pytest.raises(ConfigError, match="decay"):
    optim.make_schedule(config, steps_per_epoch=1)


def test_paper_sgd_follows_keras_sgd_with_decay_and_nesterov():
  """The configs' optimizer (optax sgd + keras_decay) against Keras' SGD(momentum 0.9, nesterov, decay 1e-6)."""
  import keras  # pylint: disable=g-import-not-at-top
  c = load_config("minhas_densenet169_cifar10.py", "weights=random")
  tx = optim.make_optimizer(ml_collections.ConfigDict({**c.train.to_dict(), "trainable": ()}), steps_per_epoch=10)
  grads = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
  params = jnp.linspace(-1.0, 1.0, 5)
  state = tx.init(params)
  var = keras.Variable(np.asarray(params))
  opt = keras.optimizers.SGD(learning_rate=keras.optimizers.schedules.InverseTimeDecay(1e-3, 1, 1e-6), momentum=0.9,
                             nesterov=True)
  for g in grads:
    updates, state = tx.update(jnp.asarray(g), state, params)
    params = params + updates
    opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    np.testing.assert_allclose(params, np.asarray(var), rtol=1e-6, atol=1e-7)
  assert not np.allclose(params, jnp.linspace(-1.0, 1.0, 5))


# --------------------------------------------------------------------------------------------------------------------
# The protocol.


def _arrays(seed=0):
  rng = np.random.default_rng(seed)
  y_train, y_test = rng.integers(0, 10, 2000), rng.integers(0, 10, 600)
  idx = lambda n: np.arange(n).reshape(n, 1, 1, 1)  # each image holds its own index
  return sources.Arrays(idx(2000), y_train, idx(600), y_test)


def test_anomaly_vs_rest_sample_matches_a_numpy_reference():
  arrays = _arrays()
  for k, seed in ((3, 0), (3, 1), (9, 5)):
    task = protocols.anomaly_vs_rest_sample(arrays, k, seed=seed)
    rng = np.random.default_rng(seed)  # the documented draws, written out
    expected = []
    for y in (arrays.y_train, arrays.y_test):
      anomalies = np.nonzero(y == k)[0]
      normal = rng.choice(np.nonzero(y != k)[0], size=anomalies.size, replace=False)
      expected.append(np.sort(np.concatenate([anomalies, normal])))
    train_idx, test_idx = expected
    np.testing.assert_array_equal(task.x_train[:, 0, 0, 0], train_idx)
    np.testing.assert_array_equal(task.train_classes, arrays.y_train[train_idx])
    np.testing.assert_array_equal(task.train_labels, (arrays.y_train[train_idx] == k).astype(np.int32))
    np.testing.assert_array_equal(task.x_test[:, 0, 0, 0], test_idx)
    np.testing.assert_array_equal(task.test_labels, (arrays.y_test[test_idx] == k).astype(np.int32))
    np.testing.assert_array_equal(task.test_classes, arrays.y_test[test_idx])
    # Equal halves, every anomaly of the split, the normal half from the other nine classes.
    assert task.train_labels.sum() * 2 == len(task.train_labels) == 2 * (arrays.y_train == k).sum()
    assert task.test_labels.sum() * 2 == len(task.test_labels)
    assert set(np.unique(task.train_classes[task.train_labels == 0])) <= set(range(10)) - {k}
  a, b = (protocols.anomaly_vs_rest_sample(arrays, 3, seed=s) for s in (0, 1))
  assert not np.array_equal(a.x_train, b.x_train)  # the seed draws another normal sample
  full = protocols.anomaly_vs_rest_sample(arrays, 3, test="all")
  np.testing.assert_array_equal(full.x_test[:, 0, 0, 0], np.arange(600))
  np.testing.assert_array_equal(full.test_labels, (arrays.y_test == 3).astype(np.int32))
  np.testing.assert_array_equal(full.x_train, a.x_train)  # the training sample is drawn first, the same
  for bad in (dict(anomaly_class=10), dict(anomaly_class=-1), dict(anomaly_class=3, test="half")):
    with pytest.raises(ConfigError):
      protocols.anomaly_vs_rest_sample(arrays, **bad)
  lopsided = sources.Arrays(arrays.x_train, np.where(arrays.y_train < 6, 0, 1), arrays.x_test, arrays.y_test)
  with pytest.raises(ConfigError, match="as many other images"):  # class 0 is 60% of the split
    protocols.anomaly_vs_rest_sample(lopsided, 0)


# --------------------------------------------------------------------------------------------------------------------
# Decisions at the argmax.


def test_decisions_match_sklearn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  scores = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.3, 300), 0, 1)
  scores[:5] = 0.5  # exactly at the threshold: not anomalous (a 2-way argmax picks class 0 on a tie)
  out = evaluate.decisions(labels, scores, 0.5)
  predicted = (scores > 0.5).astype(int)
  tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
  assert (out["tp"], out["fn"], out["fp"], out["tn"]) == (tp, fn, fp, tn)
  p, r, f1, _ = skm.precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
  assert (out["precision"], out["recall"], out["f1"]) == pytest.approx((p, r, f1), abs=1e-12)
  assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
  none = evaluate.decisions([0, 1, 1], [0.1, 0.2, 0.3], 0.9)  # nothing predicted anomalous
  assert none["precision"] == 0.0 and none["recall"] == 0.0 and none["f1"] == 0.0 and none["tn"] == 1


# --------------------------------------------------------------------------------------------------------------------
# Freezing and the configs.


@pytest.mark.parametrize("backbone", BACKBONES)
def test_trainable_rules_select_the_last_block_and_the_head(backbone):
  config = load_config(f"minhas_{backbone}_cifar10.py", "weights=random,runlocal")
  model = get_model(backbone)(**config.model.kwargs)
  size = config.model.input_size
  params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), jnp.zeros((1, size, size, 3)))
  mask = optim.trainable_mask(params["params"], optim.trainable_rules(config.train))
  by_top = {}
  for path, trainable in jax.tree_util.tree_flatten_with_path(mask)[0]:
    by_top.setdefault(path[0].key, set()).add(trainable)
  assert all(len(v) == 1 for v in by_top.values())  # a top-level block trains or is frozen as a whole
  trained = {k for k, v in by_top.items() if v == {True}}
  expected = {"densenet169": {"denseblock4", "final_bn", "head"}, "resnet152": {"stage4", "head"},
              "inception_v4": {"inception_c1", "inception_c2", "inception_c3", "head"}}[backbone]
  assert trained == expected
  assert params["params"]["head"]["kernel"].shape[-1] == 2


@pytest.mark.parametrize("backbone,dataset", [("densenet169", "cifar10"), ("resnet152", "cifar10"),
                                              ("inception_v4", "cifar10"), ("densenet169", "mnist")])
def test_configs_build_with_random_weights(backbone, dataset, data_dir):
  config = load_config(f"minhas_{backbone}_cifar10.py", f"weights=random,runlocal,dataset={dataset},anomaly_class=4",
                       data_dir)
  method, srcs = train.build(config)  # no variables: the backbone is initialised when its phase starts
  (phase,) = method.phases
  assert phase.keep == "best_val" and phase.val_scorer == "p_anomaly" and phase.batch_size == 16
  assert config.train.optimizer_kwargs.to_dict() == {"momentum": 0.9, "nesterov": True}
  assert (config.train.schedule, config.train.schedule_kwargs.decay, config.train.lr) == ("keras_decay", 1e-6, 1e-3)
  full = load_config(f"minhas_{backbone}_cifar10.py", f"dataset={dataset}")
  assert (full.train.epochs, full.model.input_size) == (50, 299 if backbone == "inception_v4" else 224)
  # The training images of both classes reach the method as 'label'; 'val' is a labelled share of them.
  normal, val = srcs["normal"], srcs["val"]
  for source in (normal, val):
    np.testing.assert_array_equal(source.field("label"), (source.field("class") == 4).astype(np.int32))
  assert set(np.unique(val.field("label"))) == {0, 1} and len(normal) + len(val) == 64
  assert normal.shape == ((28, 28, 1) if dataset == "mnist" else (32, 32, 3))


def test_method_refuses_what_it_cannot_train():
  config = load_config("minhas_resnet152_cifar10.py", "weights=random,runlocal")
  build = lambda c: get_method("finetune")(c, DataSpec((32, 32, 3), 10))
  for key, value, match in (("data.protocol", "one_vs_rest", "labelled anomalies"),
                            ("model.kwargs.num_classes", 10, "2-way"),
                            ("data.val_fraction", 0.0, "val_fraction"),
                            ("keep", "min_loss", "keep"),
                            ("data.preprocess", "standardize", "preprocess='unit'")):
    c = ml_collections.ConfigDict(config.to_dict())
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=match):
      build(c)
  assert finetune.two_way_model_config(config.model).dont_load == (finetune.HEAD,)


def test_missing_weights_stop_the_run_with_how_to_get_them(tmp_path, data_dir):
  code, stderr = jaxad_main_in_process("--config=configs/minhas_densenet169_cifar10.py:anomaly_class=1",
                                       f"--workdir={tmp_path / 'w'}", data_dir=data_dir)
  assert code == 2, stderr[-2000:]
  assert "model.weights=weights/densenet169_keras does not exist" in stderr
  assert "densenet169_weights_tf_dim_ordering_tf_kernels.h5" in stderr and "convert_keras.py" in stderr
  assert "Traceback" not in stderr and not (tmp_path / "w").exists()


# --------------------------------------------------------------------------------------------------------------------
# End to end.


def test_runlocal_end_to_end_on_cifar10_with_a_small_backbone(tmp_path, data_dir):
  """ResNet26 'source' weights with a 10-way head (as an ImageNet file with --keep_head) in place of ResNet-152."""
  from jaxad.methods import transfer  # pylint: disable=g-import-not-at-top
  source_model = get_model("resnet26_transferad")(num_classes=10)
  source = source_model.init(jax.random.key(7), jnp.zeros((1, 32, 32, 3)), train=False)
  path = transfer.save_source(str(tmp_path / "source"), source)
  config = load_config("minhas_resnet152_cifar10.py", "anomaly_class=1,runlocal", data_dir)
  config.model.update(name="resnet26_transferad", weights=path, input_scaling="torch", input_size=32)
  config.model.kwargs = {"num_classes": 2}  # (update() would merge into the resnet152 kwargs)
  config.train.trainable = ((r"^(layer3_3|end_bn|head)/", True), (".*", False))
  workdir = tmp_path / "run"
  summary = train.train_and_evaluate(config, str(workdir))
  for key in ("auroc", "ap", "f1_max", "tp", "fn", "fp", "tn", "precision", "recall", "f1", "accuracy"):
    assert f"test/p_anomaly/{key}" in summary, sorted(summary)
  # The evaluator's numbers = sklearn's on the saved scores (the argmax: p_anomaly > 0.5).
  saved = np.load(workdir / "scores.npz")
  scores, labels = saved["score/p_anomaly"], saved["labels"]
  assert len(labels) == 64 and 0 < labels.sum() < 64 and np.all((scores >= 0) & (scores <= 1))
  assert summary["test/p_anomaly/auroc"] == pytest.approx(skm.roc_auc_score(labels, scores))
  tn, fp, fn, tp = skm.confusion_matrix(labels, scores > 0.5, labels=[0, 1]).ravel()
  assert [summary[f"test/p_anomaly/{k}"] for k in ("tp", "fn", "fp", "tn")] == [tp, fn, fp, tn]
  assert summary["test/p_anomaly/f1"] == pytest.approx(skm.f1_score(labels, scores > 0.5, zero_division=0))
  on_disk = json.loads((workdir / "summary.json").read_text())
  assert on_disk["test/p_anomaly/tp"] == tp and on_disk["test/p_anomaly/auroc"] == summary["test/p_anomaly/auroc"]
  # Best-val selection ran at each epoch end.
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert sum("val/p_anomaly/auroc" in r for r in records) == config.train.epochs
  # Frozen leaves are the loaded source's, bit for bit; every trainable leaf moved; the head is a fresh 2-way one.
  out = restore_output(str(workdir / "checkpoints" / "train" / "output")).variables["params"]
  src = jax.tree.map(np.asarray, source["params"])
  mask = optim.trainable_mask(out, optim.trainable_rules(config.train))
  moved = frozen = 0
  for (path, leaf), trainable in zip(jax.tree_util.tree_flatten_with_path(out)[0], jax.tree.leaves(mask)):
    top = path[0].key
    if top == "head":
      assert leaf.shape[-1] == 2
      continue
    before = src[top]
    for k in path[1:]:
      before = before[k.key]
    if trainable:
      assert not np.array_equal(leaf, before), path
      moved += 1
    else:
      np.testing.assert_array_equal(leaf, before, err_msg=str(path))
      frozen += 1
  assert moved >= 6 and frozen > 50


def test_grey_images_are_replicated_and_resized_for_the_backbone(data_dir):
  """MNIST: the pipeline's [28, 28, 1] batch reaches a 3-channel backbone at model.input_size, loss and score."""
  config = load_config("minhas_densenet169_cifar10.py", "weights=random,runlocal,dataset=mnist", data_dir)
  config.model.update(name="resnet26_transferad", input_size=40)
  config.model.kwargs = {"num_classes": 2}
  config.train.trainable = ((r"^(layer3_3|end_bn|head)/", True), (".*", False))
  method, srcs = train.build(config)
  (phase,) = method.phases
  batch = srcs["normal"].batch(np.arange(4))
  assert batch["image"].shape == (4, 28, 28, 1)
  out = phase.init(jax.random.key(0), batch, {})
  assert out.variables["params"]["stem"]["conv"]["kernel"].shape[2] == 3  # an RGB network
  ctx = _context(out)
  loss, (_, _, logged) = jax.eval_shape(phase.loss, out.variables["params"], ctx, batch)
  assert loss.shape == () and logged["train_accuracy"].shape == ()
  scores = jax.jit(method.scorers["p_anomaly"].fn)(out.variables, {}, batch)
  assert scores.shape == (4,) and np.all((np.asarray(scores) > 0) & (np.asarray(scores) < 1))


def _context(out):
  from jaxad.methods.base import Context  # pylint: disable=g-import-not-at-top
  return Context(batch_stats=out.variables["batch_stats"], extra={}, step=jnp.zeros((), jnp.int32),
                 epoch=jnp.zeros((), jnp.int32), rng=jax.random.key(1))
