"""Tests for jaxad.metrics against scikit-learn and brute-force loops over thresholds."""

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.svm import OneClassSVM

from jaxad import metrics


def _data(seed=0, n=200, ties=True):
  rng = np.random.default_rng(seed)
  labels = (rng.uniform(size=n) < 0.3).astype(int)
  scores = rng.normal(size=n) + 1.2 * labels
  if ties:
    scores = np.round(scores, 1)  # many tied scores across both classes
  return labels, scores


def _candidates(scores):
  return np.concatenate([[np.inf], np.unique(scores)[::-1]])


def _rates(labels, scores, t):
  """(TPR, FPR) when 'anomalous' means score >= t."""
  pred = scores >= t
  return pred[labels == 1].mean(), pred[labels == 0].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_ap_match_sklearn(seed):
  labels, scores = _data(seed)
  assert metrics.auroc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
  assert metrics.average_precision(labels, scores) == pytest.approx(skm.average_precision_score(labels, scores))


def test_auroc_counts_ties_as_half():
  # Pairs (normal, anomaly): (0.5, 0.5) tie -> 1/2, (0.5, 0.9) -> 1, (0.1, 0.5) -> 1, (0.1, 0.9) -> 1.
  assert metrics.auroc([0, 0, 1, 1], [0.5, 0.1, 0.5, 0.9]) == pytest.approx(3.5 / 4)
  assert metrics.auroc([0, 1, 0, 1], [1.0, 1.0, 1.0, 1.0]) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_balanced_accuracy_matches_brute_force(seed):
  labels, scores = _data(seed)
  best, best_t = -1.0, None
  for t in _candidates(scores):
    tpr, fpr = _rates(labels, scores, t)
    ba = (tpr + (1 - fpr)) / 2
    if ba > best:
      best, best_t = ba, t
  value, threshold = metrics.max_balanced_accuracy(labels, scores)
  assert value == pytest.approx(best)
  assert threshold == best_t
  tpr, fpr = _rates(labels, scores, threshold)
  assert (tpr + 1 - fpr) / 2 == pytest.approx(value)


def _eer_by_grid(labels, scores):
  # Independent route: sample the piecewise-linear ROC on a fine FPR grid and find FNR == FPR.
  fpr, tpr, _ = skm.roc_curve(labels, scores)
  grid = np.linspace(0, 1, 200001)
  fnr = 1 - np.interp(grid, fpr, tpr)
  return grid[np.argmin(np.abs(fnr - grid))]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equal_error_rate_matches_grid_search(seed):
  labels, scores = _data(seed, ties=seed % 2 == 0)
  assert metrics.equal_error_rate(labels, scores) == pytest.approx(_eer_by_grid(labels, scores), abs=2e-5)


def test_equal_error_rate_extremes():
  assert metrics.equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
  assert metrics.equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 1.0
  assert metrics.equal_error_rate([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5


@pytest.mark.parametrize("bpcer", [0.0, 0.05, 0.1, 0.5, 1.0])
def test_apcer_at_bpcer_matches_brute_force(bpcer):
  labels, scores = _data(4)
  best = None
  for t in _candidates(scores):  # descending thresholds: keep the last (lowest) one meeting the BPCER budget
    tpr, fpr = _rates(labels, scores, t)
    if fpr <= bpcer:
      best = 1 - tpr
  assert metrics.apcer_at_bpcer(labels, scores, bpcer=bpcer) == pytest.approx(best)
  with pytest.raises(ValueError, match=r"bpcer must be in \[0, 1\]"):
    metrics.apcer_at_bpcer(labels, scores, bpcer=1.5)


@pytest.mark.parametrize("seed", [0, 1])
def test_f1_max_matches_brute_force(seed):
  labels, scores = _data(seed)
  best = 0.0
  for t in _candidates(scores):
    pred = scores >= t
    tp = np.sum(pred & (labels == 1))
    fp = np.sum(pred & (labels == 0))
    fn = np.sum(~pred & (labels == 1))
    if tp:
      best = max(best, 2 * tp / (2 * tp + fp + fn))
  assert metrics.f1_max(labels, scores) == pytest.approx(best)


ALL_METRICS = [metrics.auroc, metrics.average_precision, metrics.max_balanced_accuracy, metrics.equal_error_rate,
               metrics.apcer_at_bpcer, metrics.f1_max]


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_validation(metric):
  with pytest.raises(ValueError, match="single class"):
    metric([0, 0, 0], [0.1, 0.2, 0.3])
  with pytest.raises(ValueError, match="single class"):
    metric([1, 1], [0.1, 0.2])
  with pytest.raises(ValueError, match=r"labels must be binary in \{0, 1\}"):
    metric([0, 2, 1], [0.1, 0.2, 0.3])
  with pytest.raises(ValueError, match=r"labels must be binary in \{0, 1\}"):
    metric([0, 0.5, 1], [0.1, 0.2, 0.3])
  with pytest.raises(ValueError, match=r"scores must have shape \[N\] = \(3,\) like labels, got shape \(2,\)"):
    metric([0, 1, 1], [0.1, 0.2])
  with pytest.raises(ValueError, match=r"labels must have shape \[N\]"):
    metric([[0, 1]], [[0.1, 0.2]])
  with pytest.raises(ValueError, match="scores must be finite"):
    metric([0, 1, 1], [0.1, np.nan, 0.3])
  with pytest.raises(ValueError, match="scores must be finite"):
    metric([0, 1, 1], [0.1, np.inf, 0.3])


def test_bool_labels_accepted():
  assert metrics.auroc(np.array([False, True]), [0.1, 0.9]) == 1.0


def test_ocsvm_auroc_over_nu_matches_sklearn():
  rng = np.random.default_rng(0)
  train = rng.normal(size=(60, 8)) + 3.0 * np.eye(8)[0]
  test_normal = rng.normal(size=(30, 8)) + 3.0 * np.eye(8)[0]
  test_anom = rng.normal(size=(30, 8)) + 3.0 * np.eye(8)[1]
  test = np.concatenate([test_normal, test_anom])
  labels = np.repeat([0, 1], 30)
  mean, per_nu = metrics.ocsvm_auroc_over_nu(train, test, labels)
  assert len(per_nu) == 21
  expected = []
  for nu in np.linspace(0.01, 0.99, 21):
    tr = train / np.sqrt((train ** 2).sum(axis=1))[:, None]
    te = test / np.sqrt((test ** 2).sum(axis=1))[:, None]
    model = OneClassSVM(kernel="linear", nu=nu).fit(tr)
    expected.append(skm.roc_auc_score(labels, -model.decision_function(te)))
  np.testing.assert_allclose(per_nu, expected)
  assert mean == pytest.approx(np.mean(expected))
  assert mean > 0.9


def test_ocsvm_auroc_over_nu_errors():
  train, test = np.ones((4, 3)), np.ones((4, 3))
  with pytest.raises(ValueError, match="train_features and test_features must have shapes"):
    metrics.ocsvm_auroc_over_nu(train, np.ones((4, 2)), [0, 1, 0, 1])
  with pytest.raises(ValueError, match=r"test_labels must have shape \[N_test\] = \(4,\)"):
    metrics.ocsvm_auroc_over_nu(train, test, [0, 1])
  with pytest.raises(ValueError, match="single class"):
    metrics.ocsvm_auroc_over_nu(train, test, [0, 0, 0, 0])
  with pytest.raises(ValueError, match=r"nus must be a non-empty sequence of values in \(0, 1\]"):
    metrics.ocsvm_auroc_over_nu(train, test, [0, 1, 0, 1], nus=[0.0, 0.5])


def test_summarize_and_summarize_runs():
  labels, s1 = _data(0)
  _, s2 = _data(1)
  out = metrics.summarize({"a": s1, "b": -s1}, labels)
  assert set(out) == {f"{k}/{m}" for k in "ab" for m in
                      ("auroc", "ap", "max_ba", "eer", "apcer_at_bpcer", "f1_max")}
  assert out["a/auroc"] == pytest.approx(skm.roc_auc_score(labels, s1))
  assert out["b/auroc"] == pytest.approx(1 - out["a/auroc"])
  assert out["a/max_ba"] == metrics.max_balanced_accuracy(labels, s1)[0]
  assert out["a/apcer_at_bpcer"] == metrics.apcer_at_bpcer(labels, s1, bpcer=0.05)

  runs = [metrics.summarize({"a": s}, labels) for s in (s1, s2)] + [{"a/auroc": 0.5}]
  agg = metrics.summarize_runs(runs)
  values = [r["a/auroc"] for r in runs]
  assert agg["a/auroc"] == {"mean": pytest.approx(np.mean(values)), "std": pytest.approx(np.std(values)), "n": 3}
  assert agg["a/ap"]["n"] == 2
  assert metrics.summarize_runs([{"x": 0.25}]) == {"x": {"mean": 0.25, "std": 0.0, "n": 1}}
  with pytest.raises(ValueError, match="at least one"):
    metrics.summarize_runs([])
  with pytest.raises(ValueError, match=r"runs\[...\]\['x'\] must be numbers"):
    metrics.summarize_runs([{"x": "high"}])


# --------------------------------------------------------------------------------------------------------------------
# Input validation: empty inputs, bad labels, mismatched shapes.


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_empty_and_bad_inputs_name_the_argument(metric):
  with pytest.raises(ValueError, match="labels must be non-empty"):
    metric([], [])
  with pytest.raises(ValueError, match="labels must be non-empty"):
    metric(np.zeros(0), np.zeros(0))
  with pytest.raises(ValueError, match="labels must be binary"):
    metric([0, -1, 1], [0.1, 0.2, 0.3])
  with pytest.raises(ValueError, match="scores must have shape"):
    metric([0, 1], [[0.1, 0.2]])
  with pytest.raises(ValueError, match="scores must be numbers"):
    metric([0, 1], ["a", "b"])


def test_apcer_at_bpcer_rejects_bad_bpcer():
  with pytest.raises(ValueError, match="bpcer must be in"):
    metrics.apcer_at_bpcer([0, 1], [0.1, 0.2], bpcer=1.5)
  with pytest.raises(ValueError, match="bpcer must be a number"):
    metrics.apcer_at_bpcer([0, 1], [0.1, 0.2], bpcer="low")
  with pytest.raises(ValueError, match="bpcer must be in"):
    metrics.apcer_at_bpcer([0, 1], [0.1, 0.2], bpcer=float("nan"))


def test_ocsvm_auroc_over_nu_empty_inputs():
  with pytest.raises(ValueError, match="train_features must be non-empty"):
    metrics.ocsvm_auroc_over_nu(np.zeros((0, 3)), np.ones((2, 3)), [0, 1])
  with pytest.raises(ValueError, match="train_features must be non-empty"):
    metrics.ocsvm_auroc_over_nu(np.zeros((2, 0)), np.ones((2, 0)), [0, 1])
  with pytest.raises(ValueError, match="test_features must be non-empty"):
    metrics.ocsvm_auroc_over_nu(np.ones((2, 3)), np.zeros((0, 3)), [])
  with pytest.raises(ValueError, match="test_labels must have shape"):
    metrics.ocsvm_auroc_over_nu(np.ones((2, 3)), np.ones((2, 3)), [[0, 1]])
  with pytest.raises(ValueError, match="labels must be binary"):
    metrics.ocsvm_auroc_over_nu(np.ones((2, 3)), np.ones((2, 3)), [0, 3])
  with pytest.raises(ValueError, match="nus must be a non-empty"):
    metrics.ocsvm_auroc_over_nu(np.ones((2, 3)), np.ones((2, 3)), [0, 1], nus=[])


def test_summarize_validates_labels_and_scores():
  with pytest.raises(ValueError, match="labels must be binary"):
    metrics.summarize({"a": [0.1, 0.2]}, [0, 2])
  with pytest.raises(ValueError, match="labels must be non-empty"):
    metrics.summarize({"a": []}, [])
  with pytest.raises(ValueError, match="scores must have shape"):
    metrics.summarize({"a": [0.1]}, [0, 1])
  with pytest.raises(ValueError, match="bpcer must be in"):
    metrics.summarize({"a": [0.1, 0.2]}, [0, 1], bpcer=-0.1)
