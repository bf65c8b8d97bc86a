"""Scoring on the mesh, metrics, and what lands in the workdir: summary.json, scores.npz, roc.png, scores.png."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np

from jaxad import metrics, parallel
from jaxad.data import pipeline

_LOG = logging.getLogger(__name__)


def make_predict(mesh, batch_size: int):
  """Returns `predict(fn, variables, images)` that maps a jitted `fn(variables, batch)` over all images."""
  # Scoring has no batch-size semantics: round up so the batch splits evenly over the devices.
  batch_size = -(-batch_size // mesh.size) * mesh.size
  cache: dict[Any, Callable] = {}

  def predict(fn, variables, images: np.ndarray) -> dict[str, np.ndarray]:
    if fn not in cache:  # one compilation per function, not per call
      cache[fn] = jax.jit(fn, in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                          out_shardings=parallel.replicated(mesh))
    jitted = cache[fn]
    outputs: dict[str, list[np.ndarray]] = {}
    for local_batch, valid in pipeline.eval_batches(batch_size, image=images):
      out = jitted(variables, parallel.shard_batch(local_batch, mesh))
      for k, v in out.items():
        outputs.setdefault(k, []).append(parallel.to_host(v)[:valid])
    return {k: np.concatenate(v) for k, v in outputs.items()}

  return predict


def write_results(workdir: str, raw_scores: Mapping[str, np.ndarray], labels: np.ndarray,
                  classes: np.ndarray, split: str = "test", *,
                  secondary: np.ndarray | None = None) -> dict[str, float]:
  """Computes the metrics, saves raw scores and plots; returns the flat `<split>/<scorer>/<metric>` summary.

  `secondary` (small_modes, `Task.test_secondary`): bool [N] marking the secondary class's (normal) test images; the
  summary then also holds `<split>/<scorer>/auroc_primary` and `auroc_secondary` (see `mode_aurocs`), and
  scores.npz the mask as `secondary`.
  """
  summary = {f"{split}/{k}": v for k, v in metrics.summarize(raw_scores, labels).items()}
  extra = {}
  if secondary is not None:
    summary.update(mode_aurocs(raw_scores, labels, secondary, split=split))
    extra["secondary"] = np.asarray(secondary, bool)
  if jax.process_index() == 0:
    np.savez(os.path.join(workdir, "scores.npz"), labels=labels, classes=classes, **extra,
             **{f"score/{k}": v for k, v in raw_scores.items()})
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2, sort_keys=True)
    plot(workdir, raw_scores, labels)
  return summary


def mode_aurocs(raw_scores: Mapping[str, np.ndarray], labels: np.ndarray, secondary: np.ndarray, *,
                split: str = "test") -> dict[str, float]:
  """Primary and secondary AUROC of the small-modes protocol (Deecke et al. 2021 section 5.4, Fig. 5).

  primary = AUROC over the test images that are not secondary (primary-class normals vs. all anomalies);
  secondary = AUROC over the secondary images and the anomalies (secondary-class normals vs. all anomalies).

  Args:
    raw_scores: scorer name -> [N] scores (higher = more anomalous).
    labels: [N] in {0, 1} (1 = anomalous).
    secondary: bool [N], True for the secondary class's test images (all normal).
    split: the key prefix.

  Returns:
    `{'<split>/<scorer>/auroc_primary': ..., '<split>/<scorer>/auroc_secondary': ...}`; a subset that lacks
    normal or anomalous images (e.g. `data.test_limit` kept no secondary image) is left out with a warning.
  """
  labels, secondary = np.asarray(labels), np.asarray(secondary)
  if secondary.dtype != bool or secondary.shape != labels.shape:
    raise ValueError(f"secondary must be a bool mask of shape {labels.shape} like labels, got {secondary.dtype} "
                     f"{secondary.shape}.")
  if np.any(secondary & (labels == 1)):
    raise ValueError(f"secondary marks normal test images, but {int(np.sum(secondary & (labels == 1)))} of them are "
                     "labelled anomalous.")
  out = {}
  for mode, mask in (("primary", ~secondary), ("secondary", secondary | (labels == 1))):
    if not np.any(labels[mask] == 0) or not np.any(labels[mask] == 1):
      _LOG.warning("No %s AUROC: its test subset (%d images) lacks normal or anomalous images.", mode,
                   int(mask.sum()))
      continue
    for name, s in raw_scores.items():
      out[f"{split}/{name}/auroc_{mode}"] = metrics.auroc(labels[mask], np.asarray(s)[mask])
  return out


def write_classification_results(workdir: str, logits: np.ndarray, labels: np.ndarray,
                                 split: str = "test") -> dict[str, float]:
  """Top-1 (and top-5 when K >= 5) accuracy of [N, K] `logits` against [N] class `labels`.

  Writes `summary.json` (`<split>/top1`, `<split>/top5`) and `predictions.npz` (`labels` [N] and `topk` [N, k]: the
  k = min(5, K) highest-scoring classes, best first); returns the summary.
  """
  logits, labels = np.asarray(logits), np.asarray(labels)
  k = min(5, logits.shape[-1])
  topk = np.argsort(-logits, axis=-1, kind="stable")[:, :k].astype(np.int32)
  hits = topk == labels[:, None]
  summary = {f"{split}/top1": float(hits[:, 0].mean())}
  if k == 5:
    summary[f"{split}/top5"] = float(hits.any(axis=1).mean())
  if jax.process_index() == 0:
    np.savez(os.path.join(workdir, "predictions.npz"), labels=labels, topk=topk)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2, sort_keys=True)
  return summary


def plot(workdir: str, raw_scores: Mapping[str, np.ndarray], labels: np.ndarray) -> None:
  """roc.png (one curve per scorer) and scores.png (normal vs anomalous histograms)."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (plotting is the only user)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sklearn import metrics as skm  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  for name, s in raw_scores.items():
    fpr, tpr, _ = skm.roc_curve(labels, s)
    ax.plot(fpr, tpr, label=f"{name} (AUROC {skm.roc_auc_score(labels, s):.3f})")
  ax.plot([0, 1], [0, 1], "k:", lw=0.8)
  ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (label 1 = anomalous)")
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "roc.png"), dpi=120)
  plt.close(fig)

  fig, axes = plt.subplots(1, len(raw_scores), figsize=(4.5 * len(raw_scores), 3.5), squeeze=False)
  for ax, (name, s) in zip(axes[0], raw_scores.items()):
    bins = np.histogram_bin_edges(s, bins=50)
    ax.hist(s[labels == 0], bins=bins, alpha=0.6, density=True, label="normal")
    ax.hist(s[labels == 1], bins=bins, alpha=0.6, density=True, label="anomalous")
    ax.set(xlabel=f"{name} score (higher = more anomalous)", ylabel="density")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "scores.png"), dpi=120)
  plt.close(fig)
