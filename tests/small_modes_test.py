"""Small modes (Deecke et al. 2021 section 5.4) through the config-driven runner: make_task, the test source's
'secondary' field, primary/secondary AUROCs in jaxad.evaluate, and configs/adib_small_modes.py end to end on real
CIFAR-10."""

import json
import logging

import ml_collections
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxad import evaluate, parallel, train
from jaxad.config import load_config
from jaxad.data import Source, default_config, make_sources, make_task, protocols, sources, transforms
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer

from helpers import config_file  # pylint: disable=g-bad-import-order

SHIP, TRUCK = 8, 9
# TransferAD's CIFAR Normalize constants, written out here as the independent reference.
CIFAR_MEAN, CIFAR_STD = np.array([125.3, 123.0, 113.9]) / 255, np.array([63.0, 62.1, 66.7]) / 255
SUMMARY_METRICS = ("auroc", "ap", "max_ba", "eer", "apcer_at_bpcer", "f1_max")


def small_modes_data(data_dir, **overrides):
  return default_config(**{**dict(name="cifar10", source="npz", data_dir=data_dir, protocol="small_modes",
                                  normal_class=SHIP, secondary_class=TRUCK, minor_mode_r=0.2, protocol_seed=3,
                                  preprocess="standardize", minmax="computed"), **overrides})


def test_make_task_small_modes_on_real_cifar10(data_dir):
  arrays = sources.load("cifar10", source="npz", data_dir=data_dir)
  task = make_task(small_modes_data(data_dir, test_limit=2000))
  # 5,000 ships + round(0.2 * 5,000) trucks, the same subset as the library function with the same seed.
  direct = protocols.small_modes(arrays, primary=SHIP, secondary=TRUCK, r=0.2, seed=3)
  assert task.x_train.shape == (6000, 32, 32, 3) and task.x_train.dtype == np.uint8  # uint8 until batching
  np.testing.assert_array_equal(task.x_train, direct.x_train)
  # The 'normal' source standardises them as TransferAD does.
  srcs = make_sources(ml_collections.ConfigDict(dict(data=small_modes_data(data_dir, test_limit=2000))))
  x = srcs["normal"].batch(np.arange(6000))["image"]
  assert x.dtype == np.float32
  np.testing.assert_allclose(x, transforms.standardize(transforms.to_unit(direct.x_train)), atol=1e-6)
  np.testing.assert_allclose(x[::97], (direct.x_train[::97] / 255.0 - CIFAR_MEAN) / CIFAR_STD, atol=1e-5)
  assert len(srcs["normal"]) == 6000 and not srcs["normal"].field("label").any()
  other_seed = make_task(small_modes_data(data_dir, protocol_seed=4, test_limit=10))
  assert not np.array_equal(other_seed.x_train, task.x_train)
  # Test: a fixed subset of 2,000; ships and trucks normal, trucks marked secondary, aligned after subsampling.
  assert task.x_test.shape == (2000, 32, 32, 3) and task.secondary_class == TRUCK
  np.testing.assert_array_equal(task.test_labels, ~np.isin(task.test_classes, (SHIP, TRUCK)))
  np.testing.assert_array_equal(task.test_secondary, task.test_classes == TRUCK)
  assert 100 < task.test_secondary.sum() < 300 and 1400 < task.test_labels.sum() < 1800
  keep = np.sort(np.random.default_rng(0).permutation(10_000)[:2000])  # data.test_limit's subset
  np.testing.assert_array_equal(task.test_classes, arrays.y_test[keep])
  # The 'test' source carries the same labels, classes and the 'secondary' mask, row for row.
  test = srcs["test"]
  np.testing.assert_array_equal(test.field("class"), arrays.y_test[keep])
  np.testing.assert_array_equal(test.field("label"), ~np.isin(arrays.y_test[keep], (SHIP, TRUCK)))
  np.testing.assert_array_equal(test.field("secondary"), arrays.y_test[keep] == TRUCK)
  # One-vs-rest ignores the new keys; small_modes without them says which keys to set.
  one_vs_rest = small_modes_data(data_dir, protocol="one_vs_rest", test_limit=10)
  assert make_task(one_vs_rest).test_secondary is None
  assert "secondary" not in make_sources(ml_collections.ConfigDict(dict(data=one_vs_rest)))["test"].examples[0]
  with pytest.raises(ConfigError, match=r"data.secondary_class .* and data.minor_mode_r"):
    make_task(small_modes_data(data_dir, secondary_class=-1))
  with pytest.raises(ConfigError, match=r"must be a number in \[0, 1\], got 1.5"):
    make_task(small_modes_data(data_dir, minor_mode_r=1.5))


def sklearn_mode_aurocs(labels, scores, secondary):
  primary = ~secondary
  second = secondary | (labels == 1)
  return roc_auc_score(labels[primary], scores[primary]), roc_auc_score(labels[second], scores[second])


def given_scores_run(raw, labels, classes, secondary=None):
  """A method whose scorers return given scores, and its sources: the scores ride in the test images' pixels
  (scorer k reads channel k), so the anomaly evaluator scores exactly `raw`."""
  names = list(raw)
  images = np.zeros((len(labels), 1, 1, 3), np.float32)
  for k, name in enumerate(names):
    images[:, 0, 0, k] = raw[name]
  fields = {"label": labels.astype(np.int32), "class": classes.astype(np.int32)}
  if secondary is not None:
    fields["secondary"] = secondary
  srcs = {"normal": Source.of(images[labels == 0]), "test": Source.of(images, **fields)}
  scorers = {name: Scorer(lambda v, e, b, k=k: b["image"][:, 0, 0, k], phase="given") for k, name in enumerate(names)}
  method = Method([FitPhase("given", lambda ctx: Output({}))], scorers)
  config = ml_collections.ConfigDict(dict(method="given", eval=dict(batch_size=64),
                                          threshold=dict(quantile=0.95, limit=1000)))
  return config, method, {"given": Output({}, {})}, srcs


def test_anomaly_evaluator_primary_and_secondary_auroc_match_sklearn(tmp_path):
  rng = np.random.default_rng(0)
  classes = rng.integers(0, 10, 500)
  labels = (~np.isin(classes, (SHIP, TRUCK))).astype(np.int32)
  secondary = classes == TRUCK
  sigmoid = lambda z: (1 / (1 + np.exp(-z))).astype(np.float32)  # scores in [0, 1]: they are also pixel values
  raw = {"a": sigmoid(rng.normal(size=500) + labels), "b": sigmoid(rng.normal(size=500) - 0.5 * secondary)}
  predict = evaluate.make_predict(parallel.make_mesh(), 64)
  config, method, outputs, srcs = given_scores_run(raw, labels, classes, secondary)
  summary = evaluate.run_evals(config, method, outputs, srcs, str(tmp_path), predict)
  for name, s in raw.items():
    primary, second = sklearn_mode_aurocs(labels, s, secondary)
    assert summary[f"test/{name}/auroc_primary"] == pytest.approx(primary, abs=1e-12)
    assert summary[f"test/{name}/auroc_secondary"] == pytest.approx(second, abs=1e-12)
    assert summary[f"test/{name}/auroc"] == pytest.approx(roc_auc_score(labels, s), abs=1e-12)
  assert summary["test/b/auroc_secondary"] > summary["test/b/auroc_primary"]  # lower truck scores: told apart
  assert json.loads((tmp_path / "summary.json").read_text()) == pytest.approx(summary)
  saved = np.load(tmp_path / "scores.npz")
  np.testing.assert_array_equal(saved["secondary"], secondary)
  np.testing.assert_array_equal(saved["score/a"], raw["a"])
  np.testing.assert_array_equal(saved["labels"], labels)
  np.testing.assert_array_equal(saved["classes"], classes)
  # Without the mask: unchanged keys, and no 'secondary' in scores.npz.
  (tmp_path / "plain").mkdir()
  config, method, outputs, srcs = given_scores_run(raw, labels, classes)
  plain = evaluate.run_evals(config, method, outputs, srcs, str(tmp_path / "plain"), predict)
  assert not any("primary" in k or "secondary" in k for k in plain)
  assert set(plain) == {f"test/{n}/{m}" for n in raw for m in SUMMARY_METRICS}
  assert "secondary" not in np.load(tmp_path / "plain" / "scores.npz")
  # The split of mode_aurocs is keyword-only (the mask cannot be taken for it, nor it for the mask).
  with pytest.raises(TypeError):
    evaluate.mode_aurocs(raw, labels, secondary, "test")  # pylint: disable=too-many-function-args


def test_mode_aurocs_checks_the_mask_and_skips_empty_subsets(caplog):
  labels = np.array([0, 0, 1, 1, 0])
  raw = {"s": np.array([0.1, 0.2, 0.9, 0.8, 0.3])}
  with pytest.raises(ValueError, match="bool mask of shape"):
    evaluate.mode_aurocs(raw, labels, np.array([0, 0, 0, 0, 1]))
  with pytest.raises(ValueError, match="1 of them are labelled anomalous"):
    evaluate.mode_aurocs(raw, labels, np.array([False, False, True, False, True]))
  with caplog.at_level(logging.WARNING):
    out = evaluate.mode_aurocs(raw, labels, np.zeros(5, bool), split="val")  # no secondary image kept
  assert out == {"val/s/auroc_primary": 1.0} and "No secondary AUROC" in caplog.text


def test_adib_small_modes_runlocal_end_to_end(data_dir, tmp_path):
  config = load_config(config_file("adib_small_modes.py") + ":runlocal,r=0.5,seed=2")
  assert (config.data.protocol, config.data.normal_class, config.data.secondary_class) == ("small_modes", 8, 9)
  assert config.data.minor_mode_r == 0.5 and config.data.protocol_seed == config.seed == 2
  config.data.data_dir = data_dir
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert 0.0 < summary["test/oe_sigmoid/auroc"] < 1.0
  assert set(summary) == ({f"test/oe_sigmoid/{m}" for m in SUMMARY_METRICS}
                          | {"test/oe_sigmoid/auroc_primary", "test/oe_sigmoid/auroc_secondary"})
  assert all(np.isfinite(v) for v in summary.values())
  assert json.loads((tmp_path / "summary.json").read_text()) == pytest.approx(summary)
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in records)
  assert "l2_sp" in records[-1]  # ADIB
  # Primary/secondary AUROCs from the saved scores, against sklearn.
  task = make_task(config.data)
  saved = np.load(tmp_path / "scores.npz")
  np.testing.assert_array_equal(saved["classes"], task.test_classes)
  np.testing.assert_array_equal(saved["labels"], task.test_labels)
  np.testing.assert_array_equal(saved["secondary"], task.test_secondary)
  scores, labels, secondary = saved["score/oe_sigmoid"], saved["labels"], task.test_secondary
  assert scores.shape == (64,) and secondary.any() and (~secondary & (labels == 0)).any()
  primary, second = sklearn_mode_aurocs(labels, scores, secondary)
  assert summary["test/oe_sigmoid/auroc_primary"] == pytest.approx(primary, abs=1e-12)
  assert summary["test/oe_sigmoid/auroc_secondary"] == pytest.approx(second, abs=1e-12)
  again = evaluate.mode_aurocs({"oe_sigmoid": scores}, labels, secondary)
  assert again["test/oe_sigmoid/auroc_primary"] == pytest.approx(primary, abs=1e-12)
  assert again["test/oe_sigmoid/auroc_secondary"] == pytest.approx(second, abs=1e-12)


@pytest.mark.parametrize("arg,match", [("method=dsvdd", "Unknown method 'dsvdd' for small modes"),
                                       ("source=/no/such/weights", "/no/such/weights do not exist")])
def test_adib_small_modes_config_arguments(arg, match):
  path = config_file("adib_small_modes.py")
  with pytest.raises(ConfigError, match=match):
    load_config(f"{path}:{arg}")
  for method, (name, loss, adapters) in {"adib": ("adib", "bce", False), "adra": ("adra", "bce", True),
                                         "sad": ("sad", "sad", False), "adib_alpha0": ("adib", "bce", False)}.items():
    c = load_config(f"{path}:method={method}")
    assert (c.method, c.objective.loss, c.model.adapters) == (name, loss, adapters)
    assert (c.objective.regularizer == "l2_sp") == (method == "adib")
