"""Source-model pretraining (jaxad.methods.supervised): CE steps, labelled batches, top-k summary, export -> ADIB."""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from jaxad import evaluate, train
from jaxad.config import load_config
from jaxad.data import make_task, oe, protocols, sources, transforms
from jaxad.errors import ConfigError
from jaxad.methods import get_method, supervised, transfer
from jaxad.models.resnet26 import ResNet26

from conftest import REPO  # pylint: disable=g-bad-import-order
from main_test import jaxad_main  # pylint: disable=g-bad-import-order


def stand_in_config(data_dir, arg="runlocal"):
  c = load_config(os.path.join(REPO, "configs", "pretrain_resnet26_cifar100.py") + ":" + arg)
  c.data.data_dir = data_dir
  return c


def test_cifar100_own_mean_std_are_recomputed_from_the_real_data(data_dir):
  x = sources.load("cifar100", source="npz", data_dir=data_dir).x_train.astype(np.float64) / 255.0
  np.testing.assert_allclose(transforms.CIFAR100_MEAN, x.mean(axis=(0, 1, 2)), atol=1e-7)
  np.testing.assert_allclose(transforms.CIFAR100_STD, x.std(axis=(0, 1, 2)), atol=1e-7)
  c = stand_in_config(data_dir)
  task = make_task(c.data)  # the stand-in standardises with these, not with TransferAD's CIFAR-10 constants
  raw = sources.load("cifar100", source="npz", data_dir=data_dir)
  assert task.train_labels is not None and len(task.train_labels) == len(task.x_train) == 64
  i = int(np.flatnonzero(np.all(raw.x_train.reshape(50000, -1) == np.round(
      (task.x_train[0] * transforms.CIFAR100_STD + transforms.CIFAR100_MEAN) * 255).reshape(1, -1), axis=1))[0])
  assert raw.y_train[i] == task.train_labels[0]  # the labels stay aligned with the subsampled images


def test_classification_protocol_and_labelled_batches():
  arrays = sources.Arrays(np.zeros((10, 4, 4, 1), np.uint8), np.arange(10) % 3, np.zeros((5, 4, 4, 1), np.uint8),
                          np.arange(5) % 3)
  task = protocols.get_protocol("classification")(arrays, 0)
  np.testing.assert_array_equal(task.train_labels, arrays.y_train)
  np.testing.assert_array_equal(task.test_classes, arrays.y_test)
  x = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
  ds, spe = oe.mixed_batches(x, oe_images=None, oe_per_batch=0, global_batch_size=8, seed=0, num_epochs=2,
                             augment=False, labels=task.train_labels)
  assert spe == 2 and len(ds) == 4
  for step in range(4):  # every image comes with its own label
    b = ds[step]
    np.testing.assert_array_equal(b["label"], task.train_labels[b["image"][:, 0, 0, 0].astype(int)])
  with pytest.raises(ConfigError, match="oe.per_batch=0"):
    oe.mixed_batches(x, oe_images=x, oe_per_batch=8, global_batch_size=16, seed=0, num_epochs=1,
                     labels=task.train_labels)


def test_cross_entropy_steps_decrease_the_loss_on_real_cifar100(data_dir):
  c = stand_in_config(data_dir)
  c.train.update(lr=0.05, weight_decay=5e-4)
  task = make_task(c.data)
  stage, = supervised.stages(c, task.x_train.shape[1:])
  x, y = task.x_train[:16], task.train_labels[:16]
  tx = train.make_optimizer(stage.optim, steps_per_epoch=4)
  state = train.init_state(stage, jax.random.key(0), x, None, tx, predict=None)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(y, jnp.int32)}
  # The loss is the mean softmax cross-entropy, checked against NumPy.
  logits, _ = stage.model.apply(state.variables, batch["image"], train=True, mutable=["batch_stats"])[0]
  z = np.asarray(logits, np.float64)
  expected = np.mean(np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1) - z[np.arange(16), y])
  loss0, _ = stage.loss(state.params, state, batch, 0)
  np.testing.assert_allclose(float(loss0), expected, rtol=1e-5)
  step = jax.jit(train.make_train_step(stage, 4))
  losses = []
  for _ in range(6):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses


def test_supervised_needs_the_classification_protocol(data_dir):
  c = stand_in_config(data_dir)
  c.data.protocol = "one_vs_rest"
  with pytest.raises(ConfigError, match="protocol='classification'"):
    get_method("supervised")(c, (32, 32, 3))


def test_classification_summary_is_top1_top5(tmp_path):
  logits = np.array([[3.0, 1, 2, 0, 0, 0], [0, 1, 0, 0, 0, 5], [1, 0, 0, 0, 0, 0], [0, 1, 2, 3, 4, 5]])
  labels = np.array([0, 1, 1, 0])
  out = evaluate.write_classification_results(str(tmp_path), logits, labels)
  # row 0: top-1 hit; row 1: 2nd; row 2: a tie, broken by class order (2nd); row 3: 6th, a miss
  assert out == {"test/top1": 0.25, "test/top5": 0.75}
  assert json.loads((tmp_path / "summary.json").read_text()) == out
  np.testing.assert_array_equal(np.load(tmp_path / "predictions.npz")["topk"][:, 0], [0, 5, 0, 5])


def test_stand_in_runlocal_then_adib_from_its_source(data_dir, tmp_path):
  work = tmp_path / "src"
  start = time.perf_counter()
  out = jaxad_main("--config=configs/pretrain_resnet26_cifar100.py:runlocal", f"--workdir={work}", data_dir=data_dir)
  elapsed = time.perf_counter() - start
  assert out.returncode == 0, out.stderr[-3000:]
  assert elapsed < 90, elapsed
  summary = json.loads((work / "summary.json").read_text())
  assert set(summary) == {"test/top1", "test/top5"} and 0.0 <= summary["test/top1"] <= summary["test/top5"] <= 1.0
  records = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in records)

  # Recompute the predictions in NumPy from the exported source weights and the same test images.
  src = ocp.StandardCheckpointer().restore(str(work / "source"))
  assert set(src) == {"params", "batch_stats"} and src["params"]["head"]["kernel"].shape == (256, 100)
  task = make_task(stand_in_config(data_dir).data)
  logits, _ = ResNet26(num_classes=100).apply(src, task.x_test, train=False)
  pred = np.argmax(np.asarray(logits), axis=-1)
  saved = np.load(work / "predictions.npz")
  np.testing.assert_array_equal(saved["labels"], task.test_classes)
  assert np.mean(saved["topk"][:, 0] == pred) >= 0.98  # equal up to float ties between 1 and 8 devices
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
  assert 0.0 < json.loads((tmp_path / "adib" / "summary.json").read_text())["test/oe_sigmoid/auroc"] < 1.0


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
  stage, = get_method(c.method)(c, input_shape)
  variables = jax.eval_shape(lambda: stage.init_variables(jax.random.key(0), jnp.zeros((2, *input_shape)), None))
  out = jax.eval_shape(lambda v: stage.score(v, {}, {"image": jnp.zeros((2, *input_shape))}), variables)
  assert out["logits"].shape == (2, 1000)
  feats = jax.eval_shape(lambda v: stage.model.apply(v, jnp.zeros((1, model_input, model_input, 3)), train=False),
                         variables)
  assert feats[1]["layer3"].shape == (1, model_input // 4, model_input // 4, 256)
  runlocal = load_config(os.path.join(REPO, "configs", f"pretrain_resnet26_{config}.py") + ":runlocal")
  assert runlocal.train.batch_size % 8 == 0 and runlocal.data.train_limit == 64


def test_class_labels_for_a_method_that_ignores_them_are_a_config_error(tmp_path):
  from jaxad.methods import hypersphere  # pylint: disable=g-import-not-at-top
  c = hypersphere.base_config()
  stage = hypersphere.stages(c, (32, 32, 3))[0]
  x = np.zeros((16, 32, 32, 3), np.float32)
  with pytest.raises(ConfigError, match="method 'supervised'"):
    train.run_stage(stage, 0, c, str(tmp_path), x, None, None, None, labels=np.zeros(16, np.int64))
