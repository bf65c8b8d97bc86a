"""The workdir's figures: ROC curves, score histograms, and the most / least anomalous images.

Host-side, NumPy in, PNG out. matplotlib (Agg backend, no display needed) and scikit-learn are imported inside the
functions, so `import jaxad.plots` costs nothing for code that never plots. Higher score = more anomalous, label 1 =
anomalous.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from jaxad import files

# A histogram switches to a log x-axis when all scores are positive and the middle 90% of them (between these
# quantiles) span at least LOG_AXIS_MIN_DECADES decades (see `histogram_axis`).
LOG_AXIS_QUANTILES = (0.05, 0.95)
LOG_AXIS_MIN_DECADES = 3.0
HISTOGRAM_BINS = 50


def _pyplot():
  """matplotlib.pyplot on the Agg backend, imported on first use."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (plotting is the only user)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _validate(scores: Mapping[str, ArrayLike], labels: ArrayLike) -> tuple[dict[str, np.ndarray], np.ndarray]:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.all((labels == 0) | (labels == 1)):
    raise ValueError(f"labels must be [N] in {{0, 1}} (1 = anomalous), got shape {labels.shape} and values "
                     f"{np.unique(labels)[:10]}.")
  if not scores:
    raise ValueError("scores is empty: nothing to plot.")
  arrays = {}
  for name, s in scores.items():
    s = np.asarray(s, dtype=np.float64)
    if s.shape != labels.shape:
      raise ValueError(f"scores[{name!r}] must have shape {labels.shape} like labels, got {s.shape}.")
    if not np.all(np.isfinite(s)):
      raise ValueError(f"scores[{name!r}] has {int(np.sum(~np.isfinite(s)))} NaN/inf values.")
    arrays[name] = s
  return arrays, labels.astype(np.int64)


def roc(path: str, scores: Mapping[str, ArrayLike], labels: ArrayLike) -> None:
  """Writes one ROC curve per scorer, its AUROC in the legend, over the chance diagonal.

  Args:
    path: the PNG to write.
    scores: scorer name -> [N] scores (higher = more anomalous).
    labels: [N] in {0, 1} (1 = anomalous); both classes must be present.
  """
  from sklearn import metrics as skm  # pylint: disable=g-import-not-at-top

  scores, labels = _validate(scores, labels)
  if labels.min() == labels.max():
    raise ValueError(f"A ROC curve needs normal (0) and anomalous (1) examples; labels are all {labels[0]}.")
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  for name, s in scores.items():
    fpr, tpr, _ = skm.roc_curve(labels, s)
    ax.plot(fpr, tpr, label=f"{name} (AUROC {skm.roc_auc_score(labels, s):.3f})")
  ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="chance")
  ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (label 1 = anomalous)",
         xlim=(0, 1), ylim=(0, 1.01))
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  with files.atomic_open(path, "wb") as f:  # a full disk leaves no truncated PNG
    fig.savefig(f, dpi=120, format="png")
  plt.close(fig)


class HistogramAxis(NamedTuple):
  """The x-axis of one score histogram (see `histogram_axis`)."""
  low: float
  high: float
  log: bool
  num_clipped: int  # scores above `high`, drawn in the last bin


def histogram_axis(scores: ArrayLike, *, clip_quantile: float = 0.99) -> HistogramAxis:
  """Chooses a readable x-axis for a histogram of `scores` (both classes together).

  A few huge outliers (a Deep SVDD distance of 40 among scores in [0, 1]) would stretch a linear axis so far that
  every other score falls into the first bin. Two rules keep the bulk visible:

  - Log axis: when every score is positive and the middle 90% of them span at least `LOG_AXIS_MIN_DECADES` (3)
    decades, i.e. log10(quantile(0.95) / quantile(0.05)) >= 3, the axis is logarithmic over [min, max] and nothing
    is clipped. Quantiles rather than min/max decide, so a few stray scores near 0 or far out do not turn a [0, 1]
    histogram logarithmic (uniform [0, 1] scores span 1.3 decades, log-uniform 1e-3..1e3 ones 5.4).
  - Otherwise linear over [min, quantile(clip_quantile)]; the `num_clipped` scores above go into the last bin. If
    that range is empty (more than `clip_quantile` of the scores tie at the minimum) it is [min, max], and a
    constant score gets [s - 0.5, s + 0.5].

  Args:
    scores: [N] finite scores.
    clip_quantile: in (0, 1]; 1 never clips. It does not enter the log-axis rule.

  Returns:
    `HistogramAxis(low, high, log, num_clipped)`.
  """
  scores = np.asarray(scores, dtype=np.float64).ravel()
  if not 0 < clip_quantile <= 1:
    raise ValueError(f"clip_quantile must be in (0, 1], got {clip_quantile}.")
  if scores.size == 0:
    raise ValueError("histogram_axis needs at least one score.")
  low, top = float(scores.min()), float(scores.max())
  if low > 0:
    q_low, q_high = np.quantile(scores, LOG_AXIS_QUANTILES)
    if np.log10(q_high / q_low) >= LOG_AXIS_MIN_DECADES:
      return HistogramAxis(low, top, True, 0)
  high = float(np.quantile(scores, clip_quantile))
  if high <= low:
    high = top
  if high <= low:
    low, high = low - 0.5, low + 0.5
  return HistogramAxis(low, high, False, int(np.sum(scores > high)))


def score_histograms(path: str, scores: Mapping[str, ArrayLike], labels: ArrayLike, *, clip_quantile: float = 0.99,
                     thresholds: Mapping[str, float] | None = None) -> dict[str, tuple[float, float]]:
  """Writes one panel per scorer: normal vs anomalous score distributions on shared bins.

  The x-axis of each panel follows `histogram_axis`: linear over [min, quantile(clip_quantile)] of all its scores
  with the scores beyond counted in the last bin (the panel says how many), or logarithmic over [min, max] when
  positive scores span several decades. Bars are the fraction of each class per bin, so classes of different sizes
  compare directly (on equal-width bins that is the density up to the bin width, on a log axis the density per
  decade).

  Args:
    path: the PNG to write.
    scores: scorer name -> [N] scores (higher = more anomalous).
    labels: [N] in {0, 1} (1 = anomalous); a class with no examples is left out of the panel.
    clip_quantile: in (0, 1]; see `histogram_axis`.
    thresholds: optional scorer name -> decision threshold, drawn as a vertical line (its legend entry says when
      the threshold lies beyond the drawn range).

  Returns:
    scorer name -> the (low, high) x-range drawn.
  """
  scores, labels = _validate(scores, labels)
  thresholds = dict(thresholds or {})
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(scores), figsize=(4.5 * len(scores), 3.5), squeeze=False)
  ranges = {}
  for ax, (name, s) in zip(axes[0], scores.items()):
    axis = histogram_axis(s, clip_quantile=clip_quantile)
    if axis.log:
      bins = np.geomspace(axis.low, axis.high, HISTOGRAM_BINS + 1)
      ax.set_xscale("log")
    else:
      bins = np.linspace(axis.low, axis.high, HISTOGRAM_BINS + 1)
    # Scores above the range are drawn in the last bin rather than dropped, so no class loses mass.
    shown = np.clip(s, axis.low, axis.high)
    for label, class_name, color in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
      in_class = shown[labels == label]
      if in_class.size:
        ax.hist(in_class, bins=bins, weights=np.full(in_class.size, 1 / in_class.size), alpha=0.55, color=color,
                label=f"{class_name} (n={in_class.size})")
    if name in thresholds:
      t = float(thresholds[name])
      if axis.low <= t <= axis.high:
        ax.axvline(t, color="k", ls="--", lw=1, label=f"threshold {t:.3g}")
      else:
        # No line outside the range, or the axis would stretch to it again; the legend still gives its value.
        ax.plot([], [], color="k", ls="--", lw=1, label=f"threshold {t:.3g} (beyond the axis)")
    ax.set_xlim(axis.low, axis.high)
    scale = ", log axis" if axis.log else ""
    ax.set(xlabel=f"{name} score (higher = more anomalous{scale})", ylabel="fraction of class per bin")
    # The clipping note goes under the title, where it cannot hide bars.
    clipped = f"\n{axis.num_clipped} score(s) > {axis.high:.3g} drawn in the last bin" if axis.num_clipped else ""
    ax.set_title(name + clipped, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ranges[name] = (axis.low, axis.high)
  fig.tight_layout()
  with files.atomic_open(path, "wb") as f:  # a full disk leaves no truncated PNG
    fig.savefig(f, dpi=120, format="png")
  plt.close(fig)
  return ranges


def image_grid(path: str, images: ArrayLike, scores: ArrayLike, *, labels: ArrayLike | None = None, k: int = 8,
               title: str = "") -> dict[str, np.ndarray]:
  """Writes two rows of images: the k most anomalous (highest scores) and the k least anomalous.

  Each tile is captioned with its score and, when labels are given, 'anomalous' (red) or 'normal' (blue), so
  mistakes at either end stand out.

  Args:
    path: the PNG to write.
    images: [N, H, W, C] with C = 1 or 3, uint8 in [0, 255] or float in [0, 1].
    scores: [N] scores (higher = more anomalous).
    labels: optional [N] in {0, 1} (1 = anomalous).
    k: images per row; clipped to N // 2 when N < 2k so the two rows never share an image.
    title: figure title.

  Returns:
    `{'most': [k] indices, highest score first, 'least': [k] indices, lowest score first}`; ties go to the lower
    index first.
  """
  images, scores = np.asarray(images), np.asarray(scores, dtype=np.float64)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must have shape [N, H, W, C] with C = 1 or 3, got {images.shape}.")
  num_images = images.shape[0]
  if num_images == 0:
    raise ValueError("image_grid needs at least one image, got N = 0.")
  if scores.shape != (num_images,):
    raise ValueError(f"scores must have shape [{num_images}] like images, got {scores.shape}.")
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (num_images,):
      raise ValueError(f"labels must have shape [{num_images}] like images, got {labels.shape}.")
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}.")
  if images.dtype == np.uint8:
    vmax = 255
  elif np.issubdtype(images.dtype, np.floating):
    if images.size and (images.min() < 0 or images.max() > 1):
      raise ValueError(f"float images must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}].")
    vmax = 1
  else:
    raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}.")

  k = min(k, num_images // 2)
  if k == 0:
    raise ValueError("image_grid needs at least 2 images to show a most and a least anomalous one, got N = 1.")
  # Stable sorts break ties by index; negating keeps that for the descending order.
  most = np.argsort(-scores, kind="stable")[:k]
  least = np.argsort(scores, kind="stable")[:k]

  plt = _pyplot()
  # Constrained layout leaves room for the two-line captions between the rows.
  fig, axes = plt.subplots(2, k, figsize=(1.6 * k + 0.6, 4.8 if title else 4.4), squeeze=False,
                           layout="constrained")
  for row, (indices, row_name) in enumerate(((most, "most anomalous"), (least, "least anomalous"))):
    for col, index in enumerate(indices):
      ax = axes[row, col]
      tile = images[index]
      if tile.shape[-1] == 1:
        ax.imshow(tile[..., 0], cmap="gray", vmin=0, vmax=vmax)
      else:
        ax.imshow(tile if vmax == 1 else tile.astype(np.uint8))
      caption, color = f"{scores[index]:.3g}", "black"
      if labels is not None:
        is_anomalous = labels[index] == 1
        caption += "\nanomalous" if is_anomalous else "\nnormal"
        color = "tab:red" if is_anomalous else "tab:blue"
      ax.set_title(caption, fontsize=8, color=color)
      ax.set_xticks([])
      ax.set_yticks([])
      if col == 0:
        ax.set_ylabel(row_name, fontsize=9)
  if title:
    fig.suptitle(title)
  with files.atomic_open(path, "wb") as f:  # a full disk leaves no truncated PNG
    fig.savefig(f, dpi=120, format="png")
  plt.close(fig)
  return {"most": most, "least": least}
