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

from jaxad import evaluate, optim, parallel, train
from jaxad.config import load_config
from jaxad.data import (Source, make_oe, make_oe_source, make_preprocess, make_reference, make_sources, pipeline,
                        sources as data_sources)
from jaxad.errors import ConfigError, DataError
from jaxad.methods import get_method, transfer
from jaxad.methods.base import Context, DataSpec, FitContext, FitPhase, Output, TrainPhase
from jaxad.models import count_params
from jaxad.models.resnet26 import ResNet26

from helpers import REPO, config_file, jaxad_main  # pylint: disable=g-bad-import-order

SHAPE = (32, 32, 3)
SUMMARY_METRICS = ("auroc", "ap", "max_ba", "eer", "apcer_at_bpcer", "f1_max")
# TransferAD's CIFAR Normalize constants and CIFAR-100's own mean/std, written out as independent references.
CIFAR_MEAN, CIFAR_STD = np.array([125.3, 123.0, 113.9]) / 255, np.array([63.0, 62.1, 66.7]) / 255


def config(name, data_dir, **args):
  arg = ",".join(["runlocal", *(f"{k}={v}" for k, v in args.items())])
  c = load_config(config_file(f"{name}_cifar10.py") + ":" + arg)
  c.data.data_dir = data_dir
  return c


def build(cfg):
  return get_method(cfg.method)(cfg, DataSpec(SHAPE))


def fit_context(sources, previous=None, seed=0):
  predict = evaluate.make_predict(parallel.make_mesh(), 8)
  return FitContext(previous=dict(previous or {}), sources=sources,
                    predict=lambda fn, v, s: predict(fn, v, sources[s] if isinstance(s, str) else s),
                    rng=jax.random.key(seed), workdir="")


def fit_until_train(method, sources, seed=0):
  """Runs the fit phases before the 'train' phase, in order; returns (that phase, the outputs so far)."""
  outputs = {}
  for i, phase in enumerate(method.phases):
    if isinstance(phase, TrainPhase):
      return phase, outputs
    outputs[phase.name] = phase.fit(fit_context(sources, outputs, seed + i))
  raise AssertionError("no training phase")


def make_state(cfg, seed=0, n=16, **extra_sources):
  """The method, its 'train' phase, the initial train state (after the fit phases on n random 'normal' images) and
  a batch of those images, the first half labelled normal, the second OE."""
  method = build(cfg)
  x = np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)
  phase, outputs = fit_until_train(method, {"normal": Source.of(x), **extra_sources}, seed)
  batch = {"image": jnp.asarray(x), "label": jnp.asarray(np.repeat([0, 1], n // 2).astype(np.int32))}
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=4)
  state = train.init_state(phase, jax.random.key(seed), batch, outputs, tx)
  return method, phase, state, batch


def context(state):
  return Context(batch_stats=state.batch_stats, extra=state.extra, step=jnp.zeros((), jnp.int32),
                 epoch=jnp.zeros((), jnp.int32), rng=jax.random.key(0))


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
    params = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), jnp.zeros((1, *SHAPE)), train=False))
    params = params["params"]
    assert count_params(params) == total, name
    rules = c.train.trainable
    mask = optim.trainable_mask(params, list(rules)) if rules else jax.tree.map(lambda _: True, params)
    n = sum(int(p.size) for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m)
    assert n == trainable, name


def test_adra_step_trains_exactly_adapters_bn_and_head(data_dir):
  method, phase, state, batch = make_state(config("adra", data_dir))
  assert [p.name for p in method.phases] == ["source", "train"]
  before = flat(state.params)
  stats_before = flat(state.batch_stats)
  step = jax.jit(train.make_train_step(phase, 4, jax.random.key(1)))
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
  _, phase, state, batch = make_state(cfg)
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
  loss, (_, _, metrics) = jax.jit(lambda p: phase.loss(p, context(state), batch))(new_params)
  np.testing.assert_allclose(float(metrics["l2_sp"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(metrics["data_loss"]) + 1e-2 * expected, rtol=1e-5)
  assert not squared or cfg.objective.squared


@pytest.mark.parametrize("name,scorer", [("hsc", "hsc"), ("sad", "distance"), ("dsvdd_resnet26", "distance")])
def test_baselines_train_and_score(name, scorer, data_dir):
  method, phase, state, batch = make_state(config(name, data_dir), n=8)
  phases = ["source", "train"] if name == "hsc" else ["source", "center", "train"]
  assert [p.name for p in method.phases] == phases
  if name == "dsvdd_resnet26":
    batch = {**batch, "label": jnp.zeros(8, jnp.int32)}
    assert dict(phase.mix) == {"normal": 8}  # no OE
  else:
    assert dict(phase.mix) == {"normal": 8, "oe": 8}
  new, metrics = jax.jit(train.make_train_step(phase, 4, jax.random.key(1)))(state, batch)
  assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
  assert list(method.scorers) == [scorer] and method.scorers[scorer].phase == "train"
  score = jax.jit(method.scorers[scorer].fn)
  out = score(new.variables, new.extra, batch)
  assert out.shape == (8,)
  # From the fitted start (one step at lr 0.1 on random images may push SAD's 1/d term far out): finite scores,
  # 1 - exp(-d) in [0, 1] for HSC (1 in float32 once d is large), squared distances >= 0 otherwise.
  out0 = np.asarray(score(state.variables, state.extra, batch))
  assert np.all(np.isfinite(out0)) and np.all(out0 >= 0) and (name != "hsc" or np.all(out0 <= 1))
  if name != "hsc":  # the center is the eps-guarded mean pooled feature of the normal images (exact zeros kept)
    c = np.asarray(state.extra["center"])
    assert c.shape == (256,) and np.all((np.abs(c) >= 0.1) | (c == 0)) and np.any(c > 0.1)


def test_missing_source_is_a_data_error_naming_the_converter(data_dir, tmp_path):
  with pytest.raises(ConfigError, match="convert_resnet26_torch.py"):  # at config load time
    config("adib", data_dir, source=str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  model = ResNet26(num_classes=1)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)
  with pytest.raises(DataError, match="not a readable Orbax checkpoint"):
    transfer.load_source(str(tmp_path / "empty"), variables)
  c = config("adib", data_dir)
  c.transfer.source = str(tmp_path / "nope")  # an override is caught when the method is built
  with pytest.raises(DataError, match=f"Source weights {tmp_path / 'nope'} do not exist.*convert_resnet26_torch.py"):
    build(c)


def find_rows(rows, pool_u8, mean, std):
  """Index into `pool_u8` of each preprocessed row ((x / 255 - mean) / std), checked to 1e-5 against the pool image."""
  index = {img.tobytes(): i for i, img in enumerate(pool_u8)}
  out = []
  for row in rows:
    raw = np.clip(np.rint((row * std + mean) * 255), 0, 255).astype(np.uint8)
    i = index.get(raw.tobytes())
    assert i is not None, "a batch row is not an image of its source"
    np.testing.assert_allclose(row, (pool_u8[i] / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    out.append(i)
  return np.array(out)


def test_runlocal_batches_hold_normal_then_oe_rows(data_dir):
  """The runlocal recipe's training batches: 8 standardised CIFAR-10 normal images, then 8 CIFAR-100 OE images."""
  cfg = config("adib", data_dir, normal_class=4)
  spec = get_method(cfg.method)
  assert spec.source_names(cfg) == {"oe"}
  srcs = make_sources(cfg, spec.source_names(cfg))
  phase = next(p for p in spec(cfg, DataSpec.of(srcs)).phases if p.name == "train")
  assert dict(phase.mix) == {"normal": 8, "oe": 8} and not phase.drop_remainder
  batches = pipeline.TrainBatches(srcs, phase.mix, seed=0, num_epochs=cfg.train.epochs,
                                  drop_remainder=phase.drop_remainder)
  assert batches.steps_per_epoch == 4 and len(batches) == 4
  c10 = data_sources.load("cifar10", source="npz", data_dir=data_dir)
  c100 = data_sources.load("cifar100", source="npz", data_dir=data_dir)
  normal = c10.x_train[c10.y_train == 4]
  seen_normal, seen_oe = [], []
  for step in range(len(batches)):
    batch = batches[step]
    assert batch["image"].shape == (16, *SHAPE) and batch["image"].dtype == np.float32
    np.testing.assert_array_equal(batch["label"], [0] * 8 + [1] * 8)
    np.testing.assert_array_equal(batch["source"], [0] * 8 + [1] * 8)
    seen_normal += list(find_rows(batch["image"][:8], normal, CIFAR_MEAN, CIFAR_STD))
    i = find_rows(batch["image"][8:], c100.x_train, CIFAR_MEAN, CIFAR_STD)  # OE: CIFAR-10's constants too
    np.testing.assert_array_equal(batch["class"][8:], c100.y_train[i])
    seen_oe += list(i)
  # 4 steps x 8 = the 32 normal images (train_limit) once each; 32 distinct of the 64 OE images (oe.limit).
  assert len(set(seen_normal)) == 32 and len(set(seen_oe)) == 32


def test_runlocal_batches_of_doc_hold_labelled_reference_rows(data_dir, source_with_head):
  """DOC's batches: 8 normal images, then 8 CIFAR-100 reference images with their CIFAR-100 classes, standardised
  with CIFAR-100's own mean/std (as the source model was trained)."""
  cfg = config("doc", data_dir, reference="cifar100", source=source_with_head)
  spec = get_method(cfg.method)
  assert spec.source_names(cfg) == {"reference"}
  srcs = make_sources(cfg, spec.source_names(cfg))
  phase = next(p for p in spec(cfg, DataSpec.of(srcs)).phases if p.name == "train")
  assert dict(phase.mix) == {"normal": 8, "reference": 8}
  batch = pipeline.TrainBatches(srcs, phase.mix, seed=0, num_epochs=1, drop_remainder=False)[0]
  np.testing.assert_array_equal(batch["label"], [0] * 8 + [1] * 8)
  c100 = data_sources.load("cifar100", source="npz", data_dir=data_dir)
  i = find_rows(batch["image"][8:], c100.x_train, np.array([0.50707516, 0.48654887, 0.44091784]),
                np.array([0.26733429, 0.25643846, 0.27615047]))
  np.testing.assert_array_equal(batch["class"][8:], c100.y_train[i])


def check_run(workdir, scorer, phases, *, n_test=64, loss_keys=()):
  """What every runlocal run leaves: finite metrics under the expected keys, 4 logged steps, scores, files."""
  summary = json.loads((workdir / "summary.json").read_text())
  assert set(summary) == {f"test/{scorer}/{m}" for m in SUMMARY_METRICS}
  assert all(np.isfinite(v) for v in summary.values())
  assert 0.0 < summary[f"test/{scorer}/auroc"] < 1.0 and 0.0 < summary[f"test/{scorer}/ap"] <= 1.0
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and {r["stage"] for r in records} == {"train"}
  assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in records)
  assert all(k in records[-1] for k in loss_keys)
  scores = np.load(workdir / "scores.npz")
  assert scores[f"score/{scorer}"].shape == scores["labels"].shape == scores["classes"].shape == (n_test,)
  assert np.all(np.isfinite(scores[f"score/{scorer}"]))
  assert 0 < scores["labels"].sum() < n_test
  threshold = json.loads((workdir / "threshold.json").read_text())[scorer]
  assert threshold["min"] <= threshold["threshold"] <= threshold["max"]
  for name in ("config.json", "data.json", "roc.png", "scores.png", f"extremes_{scorer}.png"):
    assert (workdir / name).is_file(), name
  assert sorted(os.listdir(workdir / "checkpoints")) == sorted(phases)
  assert all((workdir / "checkpoints" / p / "output").is_dir() for p in phases)
  return summary, records, scores


@pytest.mark.parametrize("name,source", [("adib", True), ("adra", False)])
def test_runlocal_end_to_end(name, source, data_dir, source_dir, tmp_path):
  args = "normal_class=0,runlocal" + (f",source={source_dir}" if source else "")
  start = time.perf_counter()
  out = jaxad_main(f"--config=configs/{name}_cifar10.py:{args}", f"--workdir={tmp_path}", data_dir=data_dir)
  elapsed = time.perf_counter() - start
  assert out.returncode == 0, out.stderr[-3000:]
  _, records, scores = check_run(tmp_path, "oe_sigmoid", ["source", "train"])
  assert ("l2_sp" in records[-1]) == (name == "adib")
  assert np.all((scores["score/oe_sigmoid"] >= 0) & (scores["score/oe_sigmoid"] <= 1))  # sigmoid scores
  np.testing.assert_array_equal(scores["labels"], scores["classes"] != 0)  # one-vs-rest, normal class 0
  assert json.loads((tmp_path / "data.json").read_text())["shape"] == list(SHAPE)
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
  variables = model.init(jax.random.key(7), jnp.zeros((1, *SHAPE)), train=False)
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
  reference = make_reference(cfg.reference, cfg.data, SHAPE)  # the labelled source-task images (CIFAR-100 train)
  method, phase, state, batch = make_state(cfg, n=8, reference=reference)
  assert [p.name for p in method.phases] == ["source", "fisher", "train"]
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
  loss, (_, _, metrics) = jax.jit(lambda p: phase.loss(p, context(state), batch))(new_params)
  np.testing.assert_allclose(float(metrics["ewc"]), expected, rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(metrics["data_loss"]) + 400.0 * expected, rtol=1e-5)


def test_ewc_and_doc_need_a_source_classifier(data_dir, source_dir):
  for name in ("ewc", "doc"):
    with pytest.raises(ConfigError, match="source classifier"):
      build(config(name, data_dir, reference="cifar100"))
    with pytest.raises(DataError, match="no classifier head.*--keep_head"):  # converted without --keep_head
      build(config(name, data_dir, reference="cifar100", source=source_dir))


def test_doc_keeps_the_source_head_and_scores_against_the_final_template(data_dir, source_with_head):
  cfg = config("doc", data_dir, source=source_with_head, reference="cifar100")
  method, phase, state, batch = make_state(cfg, n=8)
  assert [p.name for p in method.phases] == ["source", "train", "template"]
  src = flat(ocp.StandardCheckpointer().restore(source_with_head))
  np.testing.assert_array_equal(flat(state.params)["head/kernel"], src["params/head/kernel"])  # 100-way, kept
  labels = np.asarray(batch["label"])
  ref_class = np.where(labels == 1, np.arange(8) * 11 % 100, -1).astype(np.int32)
  batch = {**batch, "class": jnp.asarray(ref_class)}
  loss, (_, _, metrics) = jax.jit(lambda p: phase.loss(p, context(state), batch))(state.params)
  (logits, feats), _ = phase.model.apply(state.variables, batch["image"], train=True, mutable=["batch_stats"])
  logits, pooled = np.asarray(logits, np.float64), np.asarray(feats["pooled"], np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  ref = labels == 1
  expected_d = -np.mean(logp[ref, ref_class[ref]])
  z = pooled[~ref]
  n = len(z)
  expected_c = np.mean([np.sum((z[i] - np.delete(z, i, 0).mean(0)) ** 2) for i in range(n)]) / z.shape[1]
  np.testing.assert_allclose(float(metrics["descriptiveness"]), expected_d, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["compactness"]), expected_c, rtol=1e-4)
  np.testing.assert_allclose(float(loss), expected_d + 0.1 * expected_c, rtol=1e-4)
  # After training: the template is the mean eval-mode pooled feature of the normal images; score = distance to it.
  images = np.asarray(batch["image"])[:4]
  template = method.phases[-1]
  assert isinstance(template, FitPhase)
  out = template.fit(fit_context({"normal": Source.of(images)}, {"train": Output(state.variables, state.extra)}))
  _, feats = phase.model.apply(state.variables, jnp.asarray(images), train=False)
  np.testing.assert_allclose(out.extra["center"], np.asarray(feats["pooled"]).mean(0), rtol=1e-5, atol=1e-6)
  scorer = method.scorers["distance"]
  assert list(method.scorers) == ["distance"] and scorer.phase == "template"
  scores = scorer.fn(out.variables, out.extra, {"image": jnp.asarray(images)})
  np.testing.assert_allclose(scores, ((np.asarray(feats["pooled"]) - out.extra["center"]) ** 2).sum(1), rtol=1e-4)


@pytest.mark.parametrize("name", ["ewc", "doc"])
def test_ewc_and_doc_runlocal_end_to_end(name, data_dir, source_with_head, tmp_path):
  out = jaxad_main(f"--config=configs/{name}_cifar10.py:normal_class=2,runlocal,reference=cifar100,"
                   f"source={source_with_head}", f"--workdir={tmp_path}", data_dir=data_dir)
  assert out.returncode == 0, out.stderr[-3000:]
  scorer = "oe_sigmoid" if name == "ewc" else "distance"
  phases = ["source", "fisher", "train"] if name == "ewc" else ["source", "train", "template"]
  _, records, scores = check_run(tmp_path, scorer, phases)
  assert len(records) == 4
  assert ("ewc" in records[-1]) == (name == "ewc") and ("compactness" in records[-1]) == (name == "doc")
  assert ("descriptiveness" in records[-1]) == (name == "doc")
  np.testing.assert_array_equal(scores["labels"], scores["classes"] != 2)  # one-vs-rest, normal class 2
  if name == "doc":
    assert np.all(scores["score/distance"] >= 0)  # squared distances to the template


def test_svhn_as_alternative_oe(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / "svhn.npz", x_train=x, y_train=np.arange(12) % 10, x_test=x[:4], y_test=np.arange(4))
  c = config("adib", str(tmp_path), oe="svhn")
  assert (c.oe.name, c.oe.split) == ("svhn", "train")
  oe_images, oe_classes = make_oe(c.oe, c.data)  # uint8, as stored
  np.testing.assert_array_equal(oe_images, x)
  np.testing.assert_array_equal(oe_classes, np.arange(12) % 10)
  # The 'oe' source is standardised with the *normal* data's (CIFAR-10) constants.
  oe = make_oe_source(c.oe, c.data, make_preprocess(c.data))
  np.testing.assert_allclose(oe.batch(np.arange(12))["image"], (x / 255.0 - CIFAR_MEAN) / CIFAR_STD, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(oe.field("label"), 1)
  with pytest.raises(ConfigError, match="oe must be one of"):
    config("adra", str(tmp_path), oe="imagenet32")
