"""Source-model pretraining (jaxad.methods.supervised): CE steps, labelled batches, top-k summary, export -> ADIB."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util
from sklearn import metrics as sk_metrics

from jaxad import evaluate, optim, parallel, train
from jaxad.config import load_config
from jaxad.data import Source, make_sources, make_task, pipeline, protocols, sources, transforms
from jaxad.errors import ConfigError
from jaxad.methods import get_method, transfer
from jaxad.methods.base import Context, DataSpec, FitPhase, Method, Output, Scorer
from jaxad.models.resnet26 import ResNet26

import helpers  # pylint: disable=g-bad-import-order
from helpers import REPO, jaxad_main  # pylint: disable=g-bad-import-order


def stand_in_config(data_dir, arg="runlocal"):
  c = load_config(os.path.join(REPO, "configs", "pretrain_resnet26_cifar100.py") + ":" + arg)
  c.data.data_dir = data_dir
  return c


def test_cifar100_own_mean_std_are_recomputed_from_the_real_data(data_dir):
  x = sources.load("cifar100", source="npz", data_dir=data_dir).x_train.astype(np.float64) / 255.0
  mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
  del x
  np.testing.assert_allclose(transforms.CIFAR100_MEAN, mean, atol=1e-7)
  np.testing.assert_allclose(transforms.CIFAR100_STD, std, atol=1e-7)
  c = stand_in_config(data_dir)
  task = make_task(c.data)
  raw = sources.load("cifar100", source="npz", data_dir=data_dir)
  assert task.train_labels is not None and len(task.train_labels) == len(task.x_train) == 64
  assert task.x_train.dtype == np.uint8  # preprocessing happens per batch, in the 'normal' source
  normal = make_sources(c)["normal"]
  batch = normal.batch(np.arange(64))
  # The stand-in standardises with the recomputed CIFAR-100 statistics, not with TransferAD's CIFAR-10 constants.
  np.testing.assert_allclose(batch["image"], (task.x_train / 255.0 - mean) / std, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(batch["class"], task.train_labels)
  i = int(np.flatnonzero(np.all(raw.x_train.reshape(50000, -1) == np.round(
      (batch["image"][0] * std + mean) * 255).reshape(1, -1), axis=1))[0])
  assert raw.y_train[i] == task.train_labels[0] == batch["class"][0]  # labels stay aligned with subsampled images


def test_classification_protocol_and_labelled_batches():
  arrays = sources.Arrays(np.zeros((10, 4, 4, 1), np.uint8), np.arange(10) % 3, np.zeros((5, 4, 4, 1), np.uint8),
                          np.arange(5) % 3)
  task = protocols.get_protocol("classification")(arrays, 0)
  np.testing.assert_array_equal(task.train_labels, arrays.y_train)
  np.testing.assert_array_equal(task.train_classes, arrays.y_train)  # what the 'normal' source's 'class' holds
  np.testing.assert_array_equal(task.test_classes, arrays.y_test)
  x = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
  normal = Source.of(x, **{"class": task.train_classes.astype(np.int32)})
  ds = pipeline.TrainBatches({"normal": normal}, {"normal": 8}, seed=0, num_epochs=2, drop_remainder=False)
  assert ds.steps_per_epoch == 2 and len(ds) == 4
  for step in range(4):  # every image comes with its own label
    b = ds[step]
    np.testing.assert_array_equal(b["class"], task.train_labels[b["image"][:, 0, 0, 0].astype(int)])
  # Class-labelled batches never mix in OE rows (whose classes are another task's): the supervised method's only
  # training phase draws from 'normal' alone and asks for no other source.
  c = load_config(os.path.join(REPO, "configs", "pretrain_resnet26_cifar100.py") + ":runlocal")
  assert get_method("supervised").source_names(c) == set()
  method = get_method("supervised")(c, DataSpec((32, 32, 3), 100))
  assert [dict(p.mix) for p in method.phases if hasattr(p, "mix")] == [{"normal": c.train.batch_size}]


def test_cross_entropy_steps_decrease_the_loss_on_real_cifar100(data_dir):
  c = stand_in_config(data_dir)
  c.train.update(lr=0.05, weight_decay=5e-4)
  c.augment = False  # the same 16 images every step, as a fixed batch
  srcs = make_sources(c)
  phase = get_method("supervised")(c, DataSpec.of(srcs)).phases[0]
  assert phase.name == "train"
  host = srcs["normal"].batch(np.arange(16))
  x, y = host["image"], host["class"]
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=4)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(host["label"]), "class": jnp.asarray(y, jnp.int32)}
  state = train.init_state(phase, jax.random.key(0), batch, {}, tx)
  # The loss is the mean softmax cross-entropy, checked against NumPy.
  logits, _ = phase.model.apply(state.variables, batch["image"], train=True, mutable=["batch_stats"])[0]
  z = np.asarray(logits, np.float64)
  expected = np.mean(np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1) - z[np.arange(16), y])
  ctx = Context(batch_stats=state.batch_stats, extra=state.extra, step=state.step, epoch=jnp.zeros((), jnp.int32),
                rng=jax.random.key(1))
  loss0, _ = phase.loss(state.params, ctx, batch)
  np.testing.assert_allclose(float(loss0), expected, rtol=1e-5)
  step = jax.jit(train.make_train_step(phase, 4, jax.random.key(2)))
  losses = []
  for _ in range(6):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses


def test_supervised_needs_the_classification_protocol(data_dir):
  c = stand_in_config(data_dir)
  c.data.protocol = "one_vs_rest"
  with pytest.raises(ConfigError, match="protocol='classification'"):
    get_method("supervised")(c, DataSpec((32, 32, 3), 100))


def test_classification_summary_is_top1_top5(tmp_path):
  logits = np.array([[3.0, 1, 2, 0, 0, 0], [0, 1, 0, 0, 0, 5], [1, 0, 0, 0, 0, 0], [0, 1, 2, 3, 4, 5]])
  labels = np.array([0, 1, 1, 0])
  out = evaluate.classification(str(tmp_path), logits, labels)
  # row 0: top-1 hit; row 1: 2nd; row 2: a tie, broken by class order (2nd); row 3: 6th, a miss
  assert out == {"test/top1": 0.25, "test/top5": 0.75}
  np.testing.assert_array_equal(np.load(tmp_path / "predictions.npz")["topk"][:, 0], [0, 5, 0, 5])
  # summary.json is written by run_evals: a 'classification' eval of a 'logits' scorer (here: the logits above).
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = ml_collections.ConfigDict(dict(method="fixed_logits",
                                          evals=dict(test=dict(kind="classification", source="test"))))
  method = Method([FitPhase("fit", lambda ctx: Output({}))],
                  {"logits": Scorer(lambda variables, extra, batch: batch["image"], phase="fit", kind="logits")})
  test = Source.of(logits.astype(np.float32), **{"class": labels.astype(np.int32)})
  predict = evaluate.make_predict(parallel.make_mesh(), 3)  # 3: a padded last batch
  summary = evaluate.run_evals(config, method, {"fit": Output({})}, {"test": test}, str(workdir), predict)
  assert summary == out
  assert json.loads((workdir / "summary.json").read_text()) == out
  np.testing.assert_array_equal(np.load(workdir / "predictions.npz")["topk"][:, 0], [0, 5, 0, 5])


def test_stand_in_runlocal_then_adib_from_its_source(data_dir, tmp_path):
  work = tmp_path / "src"
  out = jaxad_main("--config=configs/pretrain_resnet26_cifar100.py:runlocal", f"--workdir={work}", data_dir=data_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((work / "summary.json").read_text())
  assert set(summary) == {"test/top1", "test/top5"} and 0.0 <= summary["test/top1"] <= summary["test/top5"] <= 1.0
  records = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in records)

  # Recompute the predictions in NumPy from the exported source weights and the same test images.
  src = ocp.StandardCheckpointer().restore(str(work / "source"))
  assert set(src) == {"params", "batch_stats"} and src["params"]["head"]["kernel"].shape == (256, 100)
  task = make_task(stand_in_config(data_dir).data)
  mean, std = np.float32(transforms.CIFAR100_MEAN), np.float32(transforms.CIFAR100_STD)  # checked above
  x_test = (task.x_test.astype(np.float32) / np.float32(255) - mean) / std
  logits, _ = ResNet26(num_classes=100).apply(src, x_test, train=False)
  pred = np.argmax(np.asarray(logits), axis=-1)
  saved = np.load(work / "predictions.npz")
  np.testing.assert_array_equal(saved["labels"], task.test_classes)
  assert np.mean(saved["topk"][:, 0] == pred) >= 0.98  # equal up to float ties (batching, XLA fusion)
  assert summary["test/top1"] == pytest.approx(np.mean(saved["topk"][:, 0] == saved["labels"]))
  assert abs(summary["test/top1"] - np.mean(pred == task.test_classes)) <= 1 / 64 + 1e-9

  # The export is a valid transfer source: the backbone loads, the 100-way head is replaced by the AD head.
  ad_vars = ResNet26(num_classes=1).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  loaded = traverse_util.flatten_dict(transfer.load_source(str(work / "source"), ad_vars), sep="/")
  flat_src = traverse_util.flatten_dict(src, sep="/")
  assert all(np.array_equal(v, flat_src[k]) for k, v in loaded.items() if "/head/" not in k)

  out = jaxad_main(f"--config=configs/adib_cifar10.py:normal_class=0,source={work / 'source'},runlocal",
                   f"--workdir={tmp_path / 'adib'}", data_dir=data_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  adib_summary = json.loads((tmp_path / "adib" / "summary.json").read_text())
  assert 0.0 < adib_summary["test/oe_sigmoid/auroc"] < 1.0
  # ADIB really started from the stand-in: its 'source' phase holds the exported backbone, and theta_0 for L2-SP.
  started = ocp.StandardCheckpointer().restore(str(tmp_path / "adib" / "checkpoints" / "source" / "output"))
  start_vars = traverse_util.flatten_dict(started["variables"], sep="/")
  backbone = [k for k in start_vars if "/head/" not in k]
  assert backbone and all(np.array_equal(start_vars[k], flat_src[k]) for k in backbone)
  theta0 = traverse_util.flatten_dict(started["extra"]["theta0"], sep="/")
  assert all(np.array_equal(v, flat_src["params/" + k]) for k, v in theta0.items() if not k.startswith("head/"))
  scores = np.load(tmp_path / "adib" / "scores.npz")
  assert scores["labels"].shape == (64,) and 0 < scores["labels"].sum() < 64
  np.testing.assert_array_equal(scores["labels"], scores["classes"] != 0)
  assert adib_summary["test/oe_sigmoid/auroc"] == pytest.approx(
      sk_metrics.roc_auc_score(scores["labels"], scores["score/oe_sigmoid"]), abs=1e-9)


@pytest.mark.parametrize("name,size", [("imagenet32", 32), ("imagenet64", 64)])
def test_imagenet_resized_loads_through_tfds_mock_data(name, size):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    arrays = sources.load(name, source="tfds")
    x_val, y_val = sources.load_split(name, "test", source="tfds")  # ImageNet's 'validation' split
  assert arrays.x_train.shape == (8, size, size, 3) and arrays.x_train.dtype == np.uint8
  assert arrays.x_test.shape == x_val.shape == (8, size, size, 3)
  assert 0 <= arrays.y_train.min() and arrays.y_train.max() < 1000 and y_val.shape == (8,)
  info = sources.get_info(name)
  assert info.tfds_name == f"imagenet_resized/{size}x{size}" and info.num_classes == 1000


@pytest.mark.parametrize("config,input_shape,model_input", [("imagenet32", (32, 32, 3), 32),
                                                            ("imagenet96", (64, 64, 3), 96)])
def test_imagenet_configs_build_a_1000_way_resnet26(config, input_shape, model_input):
  c = load_config(os.path.join(REPO, "configs", f"pretrain_resnet26_{config}.py"))
  assert c.data.protocol == "classification" and c.train.batch_size == 256 and c.export_source
  method = get_method(c.method)(c, DataSpec(input_shape, 1000))
  phase = method.phases[0]
  sample = {"image": jnp.zeros((2, *input_shape))}
  variables = jax.eval_shape(lambda: phase.init(jax.random.key(0), sample, {}).variables)
  scorer = method.scorers["logits"]
  assert scorer.kind == "logits" and scorer.phase == phase.name
  out = jax.eval_shape(lambda v: scorer.fn(v, {}, sample), variables)
  assert out.shape == (2, 1000)
  feats = jax.eval_shape(lambda v: phase.model.apply(v, jnp.zeros((1, model_input, model_input, 3)), train=False),
                         variables)
  assert feats[1]["layer3"].shape == (1, model_input // 4, model_input // 4, 256)
  runlocal = load_config(os.path.join(REPO, "configs", f"pretrain_resnet26_{config}.py") + ":runlocal")
  assert runlocal.train.batch_size % 8 == 0 and runlocal.data.train_limit == 64


def test_class_labels_for_a_method_that_ignores_them_are_a_config_error(data_dir, tmp_path):
  # data.protocol='classification' gives every training image with its class, and test labels that are classes:
  # a method that trains on normal images alone (Deep SVDD / MOCCA) must refuse it and point to 'supervised'.
  c = helpers.hypersphere_config()
  c.data.update(name="mnist", data_dir=data_dir, protocol="classification", minmax="computed", train_limit=16,
                test_limit=16)
  with pytest.raises(ConfigError, match="method 'supervised'"):
    train.train_and_evaluate(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()  # refused before any data is loaded or any workdir made
