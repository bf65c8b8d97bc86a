"""ADIB, ADRA and the ResNet26 baselines (jaxad.methods.transfer): counts, freezing, L2-SP, source weights, CLI."""

import importlib.util
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import linen as nn
from flax import traverse_util

from jaxad import train
from jaxad.config import load_config
from jaxad.data import make_oe, transforms
from jaxad.errors import ConfigError, DataError
from jaxad.methods import transfer
from jaxad.models import count_params
from jaxad.models.resnet26 import ResNet26

from conftest import REPO  # pylint: disable=g-bad-import-order
from main_test import jaxad_main  # pylint: disable=g-bad-import-order


def config(name, data_dir, **args):
  arg = ",".join(["runlocal", *(f"{k}={v}" for k, v in args.items())])
  c = load_config(os.path.join(REPO, "configs", f"{name}_cifar10.py") + ":" + arg)
  c.data.data_dir = data_dir
  return c


def make_state(cfg, seed=0, n=16):
  stage, = transfer.stages(cfg, (32, 32, 3))
  x = np.random.default_rng(seed).normal(size=(n, 32, 32, 3)).astype(np.float32)
  tx = train.make_optimizer(stage.optim, steps_per_epoch=4)
  predict = lambda fn, v, images: jax.tree.map(np.asarray, jax.jit(fn)(v, {"image": jnp.asarray(images)}))
  state = train.init_state(stage, jax.random.key(seed), x, None, tx, predict)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(np.repeat([0, 1], n // 2).astype(np.int32))}
  return stage, state, batch


def flat(tree):
  return traverse_util.flatten_dict(jax.tree.map(np.asarray, tree), sep="/")


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
  """A source checkpoint written by the converter's own writer: random ResNet26 variables (seed 123), BN stats moved
  away from their init so that copying them is visible."""
  spec = importlib.util.spec_from_file_location(
      "convert_resnet26_torch", os.path.join(REPO, "third_party_weights", "convert_resnet26_torch.py"))
  converter = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(converter)
  variables = converter.template_variables(rng=123)
  rng = np.random.default_rng(0)
  variables["batch_stats"] = jax.tree.map(lambda v: v + rng.uniform(0.1, 0.2, v.shape).astype(v.dtype),
                                          variables["batch_stats"])
  return converter.save_variables(tmp_path_factory.mktemp("source") / "resnet26_transferad", variables)


def test_parameter_counts_total_and_trainable(data_dir):
  for name, total, trainable in (("adib", 5_834_305, 5_834_305), ("adra", 6_481_665, 655_425)):
    c = config(name, data_dir)
    model = ResNet26(num_classes=1, adapters=c.model.adapters)
    params = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    params = params["params"]
    assert count_params(params) == total, name
    rules = c.train.trainable
    mask = train.trainable_mask(params, list(rules)) if rules else jax.tree.map(lambda _: True, params)
    n = sum(int(p.size) for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m)
    assert n == trainable, name


def test_adra_step_trains_exactly_adapters_bn_and_head(data_dir):
  stage, state, batch = make_state(config("adra", data_dir))
  before = flat(state.params)
  stats_before = flat(state.batch_stats)
  step = jax.jit(train.make_train_step(stage, 4))
  new, metrics = step(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  after = flat(new.params)
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  expected = {k for k in before if any(s in k for s in ("adapter", "bn", "head"))}
  assert changed == expected
  convs = [k for k in before if transfer.is_conv3x3(k)]
  assert len(convs) == 25 and all(before[k].shape[:2] == (3, 3) for k in convs)
  assert all(np.array_equal(before[k], after[k]) for k in convs)  # bit-identical
  stats_after = flat(new.batch_stats)
  assert all(not np.array_equal(stats_before[k], stats_after[k]) for k in stats_before)  # BN stats keep updating


@pytest.mark.parametrize("squared", [False, True])
def test_adib_l2_sp_is_over_the_3x3_kernels_of_the_source(squared, data_dir, source_dir):
  cfg = config("adib", data_dir, source=str(source_dir), squared=squared)
  stage, state, batch = make_state(cfg)
  src = flat(ocp.StandardCheckpointer().restore(source_dir))
  params = flat(state.params)
  theta0 = flat(state.extra["theta0"])
  for k, v in params.items():  # the net starts from the source weights, with a fresh head
    if k.startswith("head"):
      assert not np.array_equal(v, src["params/" + k])
    else:
      np.testing.assert_array_equal(v, src["params/" + k])
      np.testing.assert_array_equal(theta0[k], src["params/" + k])
  for k, v in flat(state.batch_stats).items():
    np.testing.assert_array_equal(v, src["batch_stats/" + k])
  # Move every parameter (conv, BN, head); only the 3x3 kernels may count.
  rng = np.random.default_rng(1)
  moved = {k: v + 0.01 * rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
  sq = sum(np.sum((moved[k].astype(np.float64) - theta0[k]) ** 2) for k in moved if transfer.is_conv3x3(k))
  expected = 0.5 * sq if squared else np.sqrt(sq)
  new_params = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in moved.items()}, sep="/")
  loss, (_, _, metrics) = jax.jit(lambda p: stage.loss(p, state, batch, 0))(new_params)
  np.testing.assert_allclose(float(metrics["l2_sp"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(metrics["data_loss"]) + 1e-2 * expected, rtol=1e-5)
  assert not squared or cfg.objective.squared


@pytest.mark.parametrize("name,scorer", [("hsc", "hsc"), ("sad", "distance"), ("dsvdd_resnet26", "distance")])
def test_baselines_train_and_score(name, scorer, data_dir):
  stage, state, batch = make_state(config(name, data_dir), n=8)
  if name == "dsvdd_resnet26":
    batch = {**batch, "label": jnp.zeros(8, jnp.int32)}
  new, metrics = jax.jit(train.make_train_step(stage, 4))(state, batch)
  assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
  out = jax.jit(stage.score)(new.variables, new.extra, batch)
  assert list(out) == [scorer] and out[scorer].shape == (8,)
  if name != "hsc":  # the center is the eps-guarded mean pooled feature of the normal images (exact zeros kept)
    c = np.asarray(state.extra["center"])
    assert c.shape == (256,) and np.all((np.abs(c) >= 0.1) | (c == 0)) and np.any(c > 0.1)


def test_missing_source_is_a_data_error_naming_the_converter(data_dir, tmp_path):
  with pytest.raises(ConfigError, match="convert_resnet26_torch.py"):  # at config load time
    config("adib", data_dir, source=str(tmp_path / "nope"))
  c = config("adib", data_dir)
  c.transfer.source = str(tmp_path / "nope")  # an override is caught when the method is built
  with pytest.raises(DataError, match=f"Source weights {tmp_path / 'nope'} do not exist.*convert_resnet26_torch.py"):
    transfer.stages(c, (32, 32, 3))
  (tmp_path / "empty").mkdir()
  model = ResNet26(num_classes=1)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)
  with pytest.raises(DataError, match="not a readable Orbax checkpoint"):
    transfer.load_source(str(tmp_path / "empty"), variables)


@pytest.mark.parametrize("name,source", [("adib", True), ("adra", False)])
def test_runlocal_end_to_end(name, source, data_dir, source_dir, tmp_path):
  args = "normal_class=0,runlocal" + (f",source={source_dir}" if source else "")
  start = time.perf_counter()
  out = jaxad_main(f"--config=configs/{name}_cifar10.py:{args}", f"--workdir={tmp_path}", data_dir=data_dir)
  elapsed = time.perf_counter() - start
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert 0.0 < summary["test/oe_sigmoid/auroc"] < 1.0
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  assert all(np.isfinite(r["loss"]) for r in records)
  assert ("l2_sp" in records[-1]) == (name == "adib")
  assert np.load(tmp_path / "scores.npz")["score/oe_sigmoid"].shape == (64,)
  print(f"{name} runlocal: {elapsed:.1f} s")


def test_missing_source_on_the_command_line_is_one_clear_line(data_dir, tmp_path):
  missing = tmp_path / "no_weights"
  out = jaxad_main(f"--config=configs/adra_cifar10.py:runlocal,source={missing}", f"--workdir={tmp_path / 'w'}",
                   data_dir=data_dir, timeout=120)
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  line = next(l for l in out.stderr.splitlines() if l.startswith("jaxad: error: "))
  assert str(missing) in line and "convert_resnet26_torch.py --input resnet26.pth" in line
  assert not (tmp_path / "w").exists()  # nothing half-written
  # A source given as an override is checked too (when the method is built).
  out = jaxad_main("--config=configs/adra_cifar10.py:runlocal", f"--config.transfer.source={missing}",
                   f"--workdir={tmp_path / 'w2'}", data_dir=data_dir, timeout=120)
  assert out.returncode == 2 and "Traceback" not in out.stderr and str(missing) in out.stderr, out.stderr


@pytest.fixture(scope="module")
def source_with_head(tmp_path_factory):
  """A 100-way source classifier (random ResNet26 with its head) saved as a pretrain run exports it."""
  model = ResNet26(num_classes=100)
  variables = model.init(jax.random.key(7), jnp.zeros((1, 32, 32, 3)), train=False)
  return transfer.save_source(str(tmp_path_factory.mktemp("source_head") / "source"), variables)


class _Softmax(nn.Module):
  """A linear softmax classifier with the models' (logits, features) interface: its Fisher has a closed form."""

  @nn.compact
  def __call__(self, x, *, train):
    del train
    return nn.Dense(5, name="head")(x.reshape(len(x), -1)), {}


def test_source_fisher_matches_the_closed_form_of_a_softmax_classifier(x64):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(11, 2, 2, 1)), rng.integers(0, 5, 11)
  model = _Softmax()
  variables = model.init(jax.random.key(0), jnp.asarray(x[:1]), train=False)
  fisher = transfer.source_fisher(model, variables, x, y, chunk_size=4)  # 3 chunks, the last one partial
  w, b = (np.asarray(variables["params"]["head"][k], np.float64) for k in ("kernel", "bias"))
  flat_x = x.reshape(11, -1)
  logits = flat_x @ w + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  delta = p - np.eye(5)[y]  # d(-log p_y)/d logits
  np.testing.assert_allclose(fisher["head"]["bias"], np.mean(delta ** 2, 0), rtol=1e-5)
  np.testing.assert_allclose(fisher["head"]["kernel"], np.mean(flat_x[:, :, None] ** 2 * delta[:, None, :] ** 2, 0),
                             rtol=1e-5)


def test_ewc_penalty_uses_the_source_fisher_on_the_backbone_only(data_dir, source_with_head):
  cfg = config("ewc", data_dir, source=source_with_head, reference="cifar100")
  assert cfg.objective.ewc_lambda == 400.0 and cfg.reference.standardize_stats == "cifar100_own"
  stage, state, batch = make_state(cfg, n=8)
  fisher, theta0, params = flat(state.extra["fisher"]), flat(state.extra["theta0"]), flat(state.params)
  assert set(fisher) == set(params)
  assert not fisher["head/kernel"].any() and not fisher["head/bias"].any()  # the AD head is new: no Fisher
  assert all(np.all(v >= 0) for v in fisher.values()) and fisher["stem/conv/kernel"].sum() > 0
  src = flat(ocp.StandardCheckpointer().restore(source_with_head))
  np.testing.assert_array_equal(theta0["layer3_3/conv2/kernel"], src["params/layer3_3/conv2/kernel"])
  rng = np.random.default_rng(2)
  moved = {k: v + 0.01 * rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
  expected = sum(0.5 * np.sum(fisher[k].astype(np.float64) * (moved[k].astype(np.float64) - theta0[k]) ** 2)
                 for k in moved if not k.startswith("head/"))
  new_params = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in moved.items()}, sep="/")
  loss, (_, _, metrics) = jax.jit(lambda p: stage.loss(p, state, batch, 0))(new_params)
  np.testing.assert_allclose(float(metrics["ewc"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(metrics["data_loss"]) + 400.0 * expected, rtol=1e-5)


def test_ewc_and_doc_need_a_source_classifier(data_dir, source_dir):
  for name in ("ewc", "doc"):
    with pytest.raises(ConfigError, match="source classifier"):
      transfer.stages(config(name, data_dir, reference="cifar100"), (32, 32, 3))
    with pytest.raises(DataError, match="no classifier head.*--keep_head"):  # converted without --keep_head
      transfer.stages(config(name, data_dir, reference="cifar100", source=source_dir), (32, 32, 3))


def test_doc_keeps_the_source_head_and_scores_against_the_final_template(data_dir, source_with_head):
  cfg = config("doc", data_dir, source=source_with_head, reference="cifar100")
  stage, state, batch = make_state(cfg, n=8)
  src = flat(ocp.StandardCheckpointer().restore(source_with_head))
  np.testing.assert_array_equal(flat(state.params)["head/kernel"], src["params/head/kernel"])  # 100-way, kept
  labels = np.asarray(batch["label"])
  oe_class = np.where(labels == 1, np.arange(8) * 11 % 100, -1).astype(np.int32)
  batch = {**batch, "oe_class": jnp.asarray(oe_class)}
  loss, (_, _, metrics) = jax.jit(lambda p: stage.loss(p, state, batch, 0))(state.params)
  (logits, feats), _ = stage.model.apply(state.variables, batch["image"], train=True, mutable=["batch_stats"])
  logits, pooled = np.asarray(logits, np.float64), np.asarray(feats["pooled"], np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  ref = labels == 1
  expected_d = -np.mean(logp[ref, oe_class[ref]])
  z = pooled[~ref]
  n = len(z)
  expected_c = np.mean([np.sum((z[i] - np.delete(z, i, 0).mean(0)) ** 2) for i in range(n)]) / z.shape[1]
  np.testing.assert_allclose(float(metrics["descriptiveness"]), expected_d, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["compactness"]), expected_c, rtol=1e-4)
  np.testing.assert_allclose(float(loss), expected_d + 0.1 * expected_c, rtol=1e-4)
  # After training: the template is the mean eval-mode pooled feature of the normal images; score = distance to it.
  images = np.asarray(batch["image"])[:4]
  predict = lambda fn, v, x: jax.tree.map(np.asarray, jax.jit(fn)(v, {"image": jnp.asarray(x)}))
  extra = stage.finalize_extra(state.variables, state.extra, predict, images)
  _, feats = stage.model.apply(state.variables, jnp.asarray(images), train=False)
  np.testing.assert_allclose(extra["center"], np.asarray(feats["pooled"]).mean(0), rtol=1e-5, atol=1e-6)
  out = stage.score(state.variables, extra, {"image": jnp.asarray(images)})
  np.testing.assert_allclose(out["distance"], ((np.asarray(feats["pooled"]) - extra["center"]) ** 2).sum(1),
                             rtol=1e-4)


@pytest.mark.parametrize("name", ["ewc", "doc"])
def test_ewc_and_doc_runlocal_end_to_end(name, data_dir, source_with_head, tmp_path):
  out = jaxad_main(f"--config=configs/{name}_cifar10.py:normal_class=2,runlocal,reference=cifar100,"
                   f"source={source_with_head}", f"--workdir={tmp_path}", data_dir=data_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  scorer = "oe_sigmoid" if name == "ewc" else "distance"
  assert 0.0 < summary[f"test/{scorer}/auroc"] < 1.0
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert len(records) == 4 and all(np.isfinite(r["loss"]) for r in records)
  assert ("ewc" in records[-1]) == (name == "ewc") and ("compactness" in records[-1]) == (name == "doc")


def test_svhn_as_alternative_oe(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / "svhn.npz", x_train=x, y_train=np.arange(12) % 10, x_test=x[:4], y_test=np.arange(4))
  c = config("adib", str(tmp_path), oe="svhn")
  assert (c.oe.name, c.oe.split) == ("svhn", "train")
  oe_images = make_oe(c.oe, c.data)  # standardised with the *normal* data's (CIFAR-10) constants
  mean, std = transforms.STANDARDIZE_STATS["cifar10"]
  np.testing.assert_allclose(oe_images, (x / 255.0 - np.asarray(mean)) / np.asarray(std), rtol=1e-5, atol=1e-5)
  with pytest.raises(ConfigError, match="oe must be one of"):
    config("adra", str(tmp_path), oe="imagenet32")
