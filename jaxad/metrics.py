"""Host-side detection metrics (NumPy / scikit-learn). Label 1 = anomalous, higher score = more anomalous.

Every metric validates its inputs: labels must be binary {0, 1} with both classes present, scores finite and of
the same length. Ties in scores are handled as scikit-learn does (thresholds sit at distinct score values, so tied
examples are always classified together; AUROC counts a tied normal/anomaly pair as 1/2).
"""

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm
from sklearn import svm


def _validate(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  labels, scores = np.asarray(labels), np.asarray(scores)
  if labels.ndim != 1:
    raise ValueError(f"labels must have shape [N], got shape {labels.shape}.")
  if labels.size == 0:
    raise ValueError("labels must be non-empty: detection metrics need at least one normal and one anomalous "
                     "example, got none.")
  if scores.shape != labels.shape:
    raise ValueError(f"scores must have shape [N] = {labels.shape} like labels, got shape {scores.shape}.")
  if not (np.issubdtype(labels.dtype, np.number) or labels.dtype == bool) or not np.all(
      (labels == 0) | (labels == 1)):
    raise ValueError(f"labels must be binary in {{0, 1}} (1 = anomalous), got values {np.unique(labels)[:10]}.")
  if not np.issubdtype(scores.dtype, np.number):
    raise ValueError(f"scores must be numbers, got dtype {scores.dtype}.")
  if not np.all(np.isfinite(scores)):
    raise ValueError(f"scores must be finite, got {np.sum(~np.isfinite(scores))} NaN/inf values.")
  labels = labels.astype(np.int64)
  if labels.min() == labels.max():
    raise ValueError(f"labels contain a single class ({labels[0]}); detection metrics need both normal (0) and "
                     f"anomalous (1) examples.")
  return labels, scores.astype(np.float64)


def _roc(labels: np.ndarray, scores: np.ndarray):
  """All ROC points: thresholds descending (the first is +inf); 'anomalous' means score >= threshold."""
  return skm.roc_curve(labels, scores, drop_intermediate=False)


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
  """Area under the ROC curve (sklearn ``roc_auc_score``, anomaly = positive class).

  Example:
    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
  """
  labels, scores = _validate(labels, scores)
  return float(skm.roc_auc_score(labels, scores))


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
  """Average precision with anomaly as the positive class (sklearn ``average_precision_score``).

  Example:
    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8333
  """
  labels, scores = _validate(labels, scores)
  return float(skm.average_precision_score(labels, scores))


def max_balanced_accuracy(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
  """Maximum balanced accuracy (TPR + TNR) / 2 over thresholds, and its threshold (MOCCA's maxBA).

  An example is predicted anomalous iff ``score >= threshold``; candidate thresholds are the distinct scores (and
  +inf, predicting everything normal). Among equal maxima the highest threshold is returned.

  Returns:
    (max balanced accuracy, threshold).

  Example:
    >>> max_balanced_accuracy([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    (0.75, 0.8)
  """
  labels, scores = _validate(labels, scores)
  fpr, tpr, thresholds = _roc(labels, scores)
  ba = (tpr + 1.0 - fpr) / 2.0
  best = int(np.argmax(ba))
  return float(ba[best]), float(thresholds[best])


def equal_error_rate(labels: ArrayLike, scores: ArrayLike) -> float:
  """Equal error rate: where the false-positive rate equals the false-negative rate (1 - TPR).

  FPR - FNR is non-decreasing along the ROC curve, from -1 to +1; the EER is read at its zero crossing on the
  piecewise-linear ROC curve (linear interpolation between the two ROC points around it).

  Example:
    >>> equal_error_rate([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.5
  """
  labels, scores = _validate(labels, scores)
  fpr, tpr, _ = _roc(labels, scores)
  gap = fpr - (1.0 - tpr)  # -1 at threshold +inf, +1 at the lowest threshold.
  i = int(np.argmax(gap >= 0))
  if gap[i] == 0:
    return float(fpr[i])
  t = -gap[i - 1] / (gap[i] - gap[i - 1])
  return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def apcer_at_bpcer(labels: ArrayLike, scores: ArrayLike, *, bpcer: float = 0.05) -> float:
  """APCER at a fixed BPCER: the fraction of anomalies missed when at most ``bpcer`` of normals are rejected.

  Threshold rule: predict anomalous iff ``score >= t``; BPCER(t) = fraction of normals with score >= t,
  APCER(t) = fraction of anomalies with score < t. t is the smallest candidate (distinct scores and +inf) with
  BPCER(t) <= ``bpcer``, which gives the lowest APCER under that constraint. No interpolation: with few normals the
  achieved BPCER can be well below the target.

  Args:
    labels: [N] in {0, 1}.
    scores: [N] anomaly scores.
    bpcer: the allowed fraction of normals flagged anomalous, in [0, 1] (5% in Jezequel et al.'s Table 5).

  Example:
    >>> apcer_at_bpcer([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], bpcer=0.5)
    0.0
  """
  labels, scores = _validate(labels, scores)
  try:
    bpcer = float(bpcer)
  except (TypeError, ValueError):
    raise ValueError(f"bpcer must be a number in [0, 1], got {bpcer!r}.") from None
  if not 0.0 <= bpcer <= 1.0:
    raise ValueError(f"bpcer must be in [0, 1], got {bpcer}.")
  fpr, tpr, _ = _roc(labels, scores)
  ok = np.flatnonzero(fpr <= bpcer)  # fpr is non-decreasing as thresholds decrease; index 0 (+inf) has fpr 0.
  return float(1.0 - tpr[ok[-1]])


def f1_max(labels: ArrayLike, scores: ArrayLike) -> float:
  """Maximum F1 score of the anomaly class over thresholds (predict anomalous iff ``score >= threshold``).

  Example:
    >>> round(f1_max([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
    0.8
  """
  labels, scores = _validate(labels, scores)
  precision, recall, _ = skm.precision_recall_curve(labels, scores)
  denom = precision + recall
  f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
  return float(np.max(f1))


def ocsvm_auroc_over_nu(
    train_features: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    nus: Sequence[float] = np.linspace(0.01, 0.99, 21),
) -> tuple[float, list[float]]:
  """AUROC of a linear one-class SVM on L2-normalised features, averaged over nu (Andrews et al. 2016).

  Each row is scaled to unit L2 norm (all-zero rows stay zero), an sklearn ``OneClassSVM(kernel='linear', nu=nu)``
  is fitted on the normal training features, and the test score is ``-decision_function`` (higher = more
  anomalous).

  Args:
    train_features: [N_train, D] features of normal training images.
    test_features: [N_test, D] features of test images.
    test_labels: [N_test] in {0, 1}, 1 = anomalous.
    nus: values of nu in (0, 1]; the paper uses 21 evenly spaced values in [0.01, 0.99].

  Returns:
    (mean AUROC over nus, list of per-nu AUROCs).

  References:
    Andrews et al., "Transfer Representation-Learning for Anomaly Detection", ICML Workshop 2016.
  """
  train, test = np.asarray(train_features, np.float64), np.asarray(test_features, np.float64)
  if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
    raise ValueError(f"train_features and test_features must have shapes [N_train, D] and [N_test, D], got "
                     f"{train.shape} and {test.shape}.")
  if train.shape[0] == 0 or train.shape[1] == 0:
    raise ValueError(f"train_features must be non-empty with shape [N_train, D], got shape {train.shape}.")
  if test.shape[0] == 0:
    raise ValueError(f"test_features must be non-empty with shape [N_test, D], got shape {test.shape}.")
  if np.shape(test_labels) != (len(test),):
    raise ValueError(f"test_labels must have shape [N_test] = ({len(test)},), got shape {np.shape(test_labels)}.")
  labels, _ = _validate(test_labels, np.zeros(len(test)))
  nus = [float(nu) for nu in nus]
  if not nus or not all(0.0 < nu <= 1.0 for nu in nus):
    raise ValueError(f"nus must be a non-empty sequence of values in (0, 1], got {nus}.")

  def unit(x):
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)

  train, test = unit(train), unit(test)
  per_nu = [auroc(labels, -svm.OneClassSVM(kernel="linear", nu=nu).fit(train).decision_function(test))
            for nu in nus]
  return float(np.mean(per_nu)), per_nu


def summarize(scores_by_scorer: Mapping[str, ArrayLike], labels: ArrayLike, *, bpcer: float = 0.05) -> dict:
  """All metrics for several scorers, as a flat ``{'<scorer>/<metric>': value}`` dict.

  Metrics: ``auroc``, ``ap``, ``max_ba``, ``eer``, ``apcer_at_bpcer`` (at ``bpcer``) and ``f1_max``.

  Example:
    >>> out = summarize({'sigmoid': [0.1, 0.4, 0.35, 0.8]}, [0, 0, 1, 1])
    >>> sorted(out)[:3], out['sigmoid/auroc']
    (['sigmoid/ap', 'sigmoid/apcer_at_bpcer', 'sigmoid/auroc'], 0.75)
  """
  out = {}
  for name, scores in scores_by_scorer.items():
    out[f"{name}/auroc"] = auroc(labels, scores)
    out[f"{name}/ap"] = average_precision(labels, scores)
    out[f"{name}/max_ba"] = max_balanced_accuracy(labels, scores)[0]
    out[f"{name}/eer"] = equal_error_rate(labels, scores)
    out[f"{name}/apcer_at_bpcer"] = apcer_at_bpcer(labels, scores, bpcer=bpcer)
    out[f"{name}/f1_max"] = f1_max(labels, scores)
  return out


def summarize_runs(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
  """Mean and standard deviation over runs (e.g. seeds) of flat metric dicts.

  The std is the population std (``np.std``, ddof=0), so a single run has std 0. A key missing from some runs is
  aggregated over the runs that have it, and ``n`` says how many.

  Example:
    >>> summarize_runs([{'a/auroc': 0.5}, {'a/auroc': 0.75}])
    {'a/auroc': {'mean': 0.625, 'std': 0.125, 'n': 2}}
  """
  if not runs:
    raise ValueError("runs must contain at least one metrics dict.")
  keys = sorted({k for run in runs for k in run})
  out = {}
  for key in keys:
    try:
      values = np.array([float(run[key]) for run in runs if key in run])
    except (TypeError, ValueError) as e:
      raise ValueError(f"runs[...][{key!r}] must be numbers: {e}") from None
    out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
  return out
