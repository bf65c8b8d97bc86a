"""The evaluators of `config.evals` against independent references: anomaly metrics after reductions, the saved
threshold and normalisation, top-k classification and the one-class SVM nu sweep."""

import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn import svm

from jaxad import evaluate, parallel
from jaxad.data import Source
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer


def config(evals=None, **threshold):
  c = ml_collections.ConfigDict({"method": "test", "eval": {"batch_size": 8},
                                 "threshold": {"quantile": 0.9, "limit": 1000, **threshold}})
  if evals is not None:
    c.evals = evals
  return c


def fixed_method(scorers):
  """One fit phase with weights w: scorers read them, so scores are simple functions of the images."""
  w = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
  phase = FitPhase("fit", lambda ctx: Output({"params": {"w": w}, "batch_stats": {}}))
  return Method([phase], {k: Scorer(fn, "fit", kind=kind, reduction=red) for k, (fn, kind, red) in scorers.items()}), w


def sources(rng):
  normal = rng.normal(size=(40, 4)).astype(np.float32)
  test = np.concatenate([rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 1.5]).astype(np.float32)
  labels = np.repeat(np.array([0, 1], np.int32), 30)
  classes = np.concatenate([np.zeros(30), rng.integers(1, 5, 30)]).astype(np.int32)
  return {"normal": Source.of(normal), "test": Source.of(test, label=labels, **{"class": classes})}


def run(cfg, method, srcs, workdir):
  predict = evaluate.make_predict(parallel.make_mesh(), cfg.eval.batch_size)
  outputs = {"fit": method.phases[0].fit(None)}
  return evaluate.run_evals(cfg, method, outputs, srcs, str(workdir), predict)


def test_anomaly_metrics_threshold_and_normalisation_match_numpy(tmp_path):
  rng = np.random.default_rng(0)
  srcs = sources(rng)
  method, w = fixed_method({
      "linear": (lambda v, e, b: b["image"] @ v["params"]["w"], "score", "none"),
      # Four "patches" per example; the image score is their maximum (MOCCA MVTec, Eq. 7).
      "patches": (lambda v, e, b: b["image"] * v["params"]["w"], "score", "max_patches")})
  summary = run(config(), method, srcs, tmp_path)
  test = srcs["test"].batch(np.arange(60))
  labels = test["label"]
  linear, patches = test["image"] @ w, (test["image"] * w).max(axis=1)
  assert summary["test/linear/auroc"] == pytest.approx(skm.roc_auc_score(labels, linear), abs=1e-12)
  assert summary["test/patches/auroc"] == pytest.approx(skm.roc_auc_score(labels, patches), abs=1e-12)
  assert summary["test/linear/ap"] == pytest.approx(skm.average_precision_score(labels, linear), abs=1e-12)
  saved = np.load(tmp_path / "scores.npz")
  np.testing.assert_allclose(saved["score/patches"], patches, rtol=1e-6)
  np.testing.assert_array_equal(saved["labels"], labels)
  # The threshold comes from the normal training images only, never from the test labels.
  normal = srcs["normal"].batch(np.arange(40))["image"]
  thresholds = json.loads((tmp_path / "threshold.json").read_text())
  for name, s in (("linear", normal @ w), ("patches", (normal * w).max(axis=1))):
    t = thresholds[name]
    assert t["threshold"] == pytest.approx(np.quantile(s, 0.9), rel=1e-6)
    assert (t["min"], t["max"]) == pytest.approx((s.min(), s.max()), rel=1e-6)
    assert t["from"].startswith("normal (40")
  t = thresholds["linear"]
  normalised = evaluate.normalize(linear, t)
  np.testing.assert_allclose(normalised, np.clip((linear - t["threshold"]) / (t["max"] - t["min"]) + 0.5, 0, 1),
                             rtol=1e-5, atol=1e-7)  # float32 scores
  assert np.all((normalised > 0.5) == (linear > t["threshold"]))
  for name in ("roc.png", "scores.png", "summary.json"):  # no image grid: these examples are vectors
    assert (tmp_path / name).exists(), name


def test_threshold_uses_the_normal_part_of_a_val_source_and_a_fixed_subset(tmp_path):
  rng = np.random.default_rng(1)
  srcs = sources(rng)
  val = rng.normal(size=(20, 4)).astype(np.float32)
  val_labels = np.array([0] * 12 + [1] * 8, np.int32)
  srcs["val"] = Source.of(val, label=val_labels)
  method, w = fixed_method({"linear": (lambda v, e, b: b["image"] @ v["params"]["w"], "score", "none")})
  run(config(limit=5), method, srcs, tmp_path)
  t = json.loads((tmp_path / "threshold.json").read_text())["linear"]
  assert t["from"].startswith("val (5 normal")
  normal_val = (val @ w)[:12]
  keep = np.sort(np.random.default_rng(0).permutation(12)[:5])  # jaxad's fixed subsets: seed 0
  assert t["threshold"] == pytest.approx(np.quantile(normal_val[keep], 0.9), rel=1e-6)


def test_classification_evaluator_top1_top5(tmp_path):
  rng = np.random.default_rng(2)
  x = rng.normal(size=(50, 4)).astype(np.float32)
  classes = rng.integers(0, 6, 50).astype(np.int32)
  srcs = {"normal": Source.of(x), "test": Source.of(x, **{"class": classes})}
  proj = rng.normal(size=(4, 6)).astype(np.float32)
  method, _ = fixed_method({"logits": (lambda v, e, b: b["image"] @ jnp.asarray(proj), "logits", "none")})
  summary = run(config({"test": {"kind": "classification", "source": "test"}}), method, srcs, tmp_path)
  logits = x @ proj
  order = np.argsort(-logits, axis=1)
  assert summary["test/top1"] == pytest.approx(np.mean(order[:, 0] == classes))
  assert summary["test/top5"] == pytest.approx(np.mean([c in o[:5] for c, o in zip(classes, order)]))
  assert np.load(tmp_path / "predictions.npz")["topk"].shape == (50, 5)


def test_ocsvm_evaluator_averages_a_linear_one_class_svm_over_nu(tmp_path):
  rng = np.random.default_rng(3)
  srcs = sources(rng)
  method, _ = fixed_method({"features": (lambda v, e, b: jnp.tanh(b["image"]), "features", "none")})
  nus = (0.1, 0.5, 0.9)
  summary = run(config({"svm": {"kind": "ocsvm", "source": "test", "nus": nus}}), method, srcs, tmp_path)
  unit = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)
  train = unit(np.tanh(srcs["normal"].batch(np.arange(40))["image"].astype(np.float64)))
  test = srcs["test"].batch(np.arange(60))
  feats = unit(np.tanh(test["image"].astype(np.float64)))
  per_nu = [skm.roc_auc_score(test["label"], -svm.OneClassSVM(kernel="linear", nu=nu).fit(train).decision_function(
      feats)) for nu in nus]
  assert summary["test/features/ocsvm_auroc"] == pytest.approx(np.mean(per_nu), abs=1e-6)
  assert summary["test/features/ocsvm_auroc_min_nu"] == pytest.approx(min(per_nu), abs=1e-6)


def test_evals_config_errors_name_the_key(tmp_path):
  rng = np.random.default_rng(4)
  method, _ = fixed_method({"linear": (lambda v, e, b: b["image"] @ v["params"]["w"], "score", "none")})
  with pytest.raises(ConfigError, match="evals.x.kind must be one of"):
    run(config({"x": {"kind": "roc", "source": "test"}}), method, sources(rng), tmp_path)
  with pytest.raises(ConfigError, match=r"evals.x \(classification\) has no 'logits' scorer"):
    run(config({"x": {"kind": "classification", "source": "test"}}), method, sources(rng), tmp_path)
  with pytest.raises(ConfigError, match="evals.x.source='val' is not a source of this run"):
    run(config({"x": {"kind": "anomaly", "source": "val"}}), method, sources(rng), tmp_path)
