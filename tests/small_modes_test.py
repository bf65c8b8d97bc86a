"""Small modes (Deecke et al. 2021 section 5.4) through the config-driven runner: make_task, primary/secondary
AUROCs in jaxad.evaluate, and configs/adib_small_modes.py end to end on real CIFAR-10."""

import json
import logging
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxad import evaluate, train
from jaxad.config import load_config
from jaxad.data import default_config, make_task, protocols, sources, transforms
from jaxad.errors import ConfigError

from conftest import REPO  # pylint: disable=g-bad-import-order

SHIP, TRUCK = 8, 9


def small_modes_data(data_dir, **overrides):
  return default_config(**{**dict(name="cifar10", source="npz", data_dir=data_dir, protocol="small_modes",
                                  normal_class=SHIP, secondary_class=TRUCK, minor_mode_r=0.2, protocol_seed=3,
                                  preprocess="standardize", minmax="computed"), **overrides})


def test_make_task_small_modes_on_real_cifar10(data_dir):
  arrays = sources.load("cifar10", source="npz", data_dir=data_dir)
  task = make_task(small_modes_data(data_dir, test_limit=2000))
  # 5,000 ships + round(0.2 * 5,000) trucks, the same subset as the library function with the same seed.
  direct = protocols.small_modes(arrays, primary=SHIP, secondary=TRUCK, r=0.2, seed=3)
  assert task.x_train.shape == (6000, 32, 32, 3) and task.x_train.dtype == np.float32
  np.testing.assert_allclose(task.x_train, transforms.standardize(transforms.to_unit(direct.x_train)), atol=1e-6)
  other_seed = make_task(small_modes_data(data_dir, protocol_seed=4, test_limit=10))
  assert not np.array_equal(other_seed.x_train, task.x_train)
  # Test: a fixed subset of 2,000; ships and trucks normal, trucks marked secondary, aligned after subsampling.
  assert task.x_test.shape == (2000, 32, 32, 3) and task.secondary_class == TRUCK
  np.testing.assert_array_equal(task.test_labels, ~np.isin(task.test_classes, (SHIP, TRUCK)))
  np.testing.assert_array_equal(task.test_secondary, task.test_classes == TRUCK)
  assert 100 < task.test_secondary.sum() < 300 and 1400 < task.test_labels.sum() < 1800
  keep = np.sort(np.random.default_rng(0).permutation(10_000)[:2000])  # data.test_limit's subset
  np.testing.assert_array_equal(task.test_classes, arrays.y_test[keep])
  # One-vs-rest ignores the new keys; small_modes without them says which keys to set.
  assert make_task(small_modes_data(data_dir, protocol="one_vs_rest", test_limit=10)).test_secondary is None
  with pytest.raises(ConfigError, match=r"data.secondary_class .* and data.minor_mode_r"):
    make_task(small_modes_data(data_dir, secondary_class=-1))
  with pytest.raises(ConfigError, match=r"must be a number in \[0, 1\], got 1.5"):
    make_task(small_modes_data(data_dir, minor_mode_r=1.5))


def sklearn_mode_aurocs(labels, scores, secondary):
  primary = ~secondary
  second = secondary | (labels == 1)
  return roc_auc_score(labels[primary], scores[primary]), roc_auc_score(labels[second], scores[second])


def test_write_results_primary_and_secondary_auroc_match_sklearn(tmp_path):
  rng = np.random.default_rng(0)
  classes = rng.integers(0, 10, 500)
  labels = (~np.isin(classes, (SHIP, TRUCK))).astype(np.int32)
  secondary = classes == TRUCK
  raw = {"a": rng.normal(size=500) + labels, "b": rng.normal(size=500) - 0.5 * secondary}
  summary = evaluate.write_results(str(tmp_path), raw, labels, classes, secondary=secondary)
  for name, s in raw.items():
    primary, second = sklearn_mode_aurocs(labels, s, secondary)
    assert summary[f"test/{name}/auroc_primary"] == pytest.approx(primary, abs=1e-12)
    assert summary[f"test/{name}/auroc_secondary"] == pytest.approx(second, abs=1e-12)
    assert summary[f"test/{name}/auroc"] == pytest.approx(roc_auc_score(labels, s), abs=1e-12)
  assert summary["test/b/auroc_secondary"] > summary["test/b/auroc_primary"]  # lower truck scores: told apart
  assert json.loads((tmp_path / "summary.json").read_text()) == pytest.approx(summary)
  np.testing.assert_array_equal(np.load(tmp_path / "scores.npz")["secondary"], secondary)
  # Without the mask: unchanged keys, and the mask is keyword-only (train.py's positional call keeps working).
  plain = evaluate.write_results(str(tmp_path), raw, labels, classes)
  assert not any("primary" in k or "secondary" in k for k in plain)
  assert "secondary" not in np.load(tmp_path / "scores.npz")
  with pytest.raises(TypeError):
    evaluate.write_results(str(tmp_path), raw, labels, classes, "test", secondary)  # pylint: disable=too-many-function-args


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
  config = load_config(os.path.join(REPO, "configs", "adib_small_modes.py") + ":runlocal,r=0.5,seed=2")
  assert (config.data.protocol, config.data.normal_class, config.data.secondary_class) == ("small_modes", 8, 9)
  assert config.data.minor_mode_r == 0.5 and config.data.protocol_seed == config.seed == 2
  config.data.data_dir = data_dir
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert 0.0 < summary["test/oe_sigmoid/auroc"] < 1.0
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in records)
  # Primary/secondary AUROCs from the saved scores, against sklearn; the summary has them once train.py passes
  # secondary=task.test_secondary to evaluate.write_results.
  task = make_task(config.data)
  saved = np.load(tmp_path / "scores.npz")
  np.testing.assert_array_equal(saved["classes"], task.test_classes)
  scores, labels, secondary = saved["score/oe_sigmoid"], saved["labels"], task.test_secondary
  assert scores.shape == (64,) and secondary.any() and (~secondary & (labels == 0)).any()
  primary, second = sklearn_mode_aurocs(labels, scores, secondary)
  if "test/oe_sigmoid/auroc_primary" in summary:
    assert summary["test/oe_sigmoid/auroc_primary"] == pytest.approx(primary, abs=1e-12)
    assert summary["test/oe_sigmoid/auroc_secondary"] == pytest.approx(second, abs=1e-12)
  (tmp_path / "again").mkdir()
  again = evaluate.write_results(str(tmp_path / "again"), {"oe_sigmoid": scores}, labels, saved["classes"],
                                 secondary=secondary)
  assert again["test/oe_sigmoid/auroc_primary"] == pytest.approx(primary, abs=1e-12)
  assert again["test/oe_sigmoid/auroc_secondary"] == pytest.approx(second, abs=1e-12)


@pytest.mark.parametrize("arg,match", [("method=dsvdd", "Unknown method 'dsvdd' for small modes"),
                                       ("source=/no/such/weights", "/no/such/weights do not exist")])
def test_adib_small_modes_config_arguments(arg, match):
  path = os.path.join(REPO, "configs", "adib_small_modes.py")
  with pytest.raises(ConfigError, match=match):
    load_config(f"{path}:{arg}")
  for method, (name, loss, adapters) in {"adib": ("adib", "bce", False), "adra": ("adra", "bce", True),
                                         "sad": ("sad", "sad", False), "adib_alpha0": ("adib", "bce", False)}.items():
    c = load_config(f"{path}:method={method}")
    assert (c.method, c.objective.loss, c.model.adapters) == (name, loss, adapters)
    assert (c.objective.regularizer == "l2_sp") == (method == "adib")
