"""Scoring on the mesh and the evaluators of `config.evals`; what lands in the workdir.

`config.evals` maps an evaluation's name to its settings (big_vision style); each runs the method's scorers over a
named source and writes `<source>/<scorer>/<metric>` entries into `summary.json`:

* `kind='anomaly'`: every 'score' scorer (or those in `scorers`), reduced by the scorer's named reduction
  (`jaxad.reductions`), against the source's labels: AUROC, AP, max balanced accuracy, EER, APCER@BPCER 5%,
  F1-max (`jaxad.metrics.summarize`), and the small-modes primary/secondary AUROCs where the source marks them.
  Also `scores.npz` (raw scores, labels, classes), `roc.png`, `scores.png` (histograms with the decision
  threshold), `extremes_<scorer>.png` (the most and least anomalous images) and `threshold.json`. With
  `decision_threshold` t set (a classifier's own decision, e.g. 0.5 on a 2-way softmax probability = its argmax), also
  the confusion matrix of `score > t` and its precision, recall, F1 and accuracy (`decisions`).
* `kind='classification'`: top-1 / top-5 accuracy of a 'logits' scorer against the source's classes
  (`<source>/top1`, `<source>/top5`) and `predictions.npz`.
* `kind='ocsvm'`: Andrews et al.'s AUROC averaged over the nu of linear one-class SVMs,
  `<source>/<scorer>/ocsvm_auroc` (and its min and max over nu). A 'nu_scores' scorer brings SVMs a phase has
  fitted (`jaxad.methods.deep_features`: [N, P] scores, one column per nu; per-nu AUROCs in `ocsvm.json`); for a
  'features' scorer the evaluator fits them itself on the 'normal' source's unit-normalised features (`nus`).

`threshold.json` is what a user needs to apply a model later (`--mode=predict`): per scorer, the decision threshold
= the `threshold.quantile` of held-out normal scores (the 'val' source when the run has one, else a fixed subset of
the normal training images; never the test labels), and the min/max of those scores for normalisation.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Mapping

import jax
import ml_collections
import numpy as np

from jaxad import files, metrics, parallel, plots, reductions
from jaxad.data import Source, fixed_subset, pipeline
from jaxad.data.examples import device_fields
from jaxad.errors import ConfigError

_LOG = logging.getLogger(__name__)
EVAL_KINDS = ("anomaly", "classification", "ocsvm")
DEFAULT_EVALS = {"test": {"kind": "anomaly", "source": "test"}}
DEFAULT_THRESHOLD = {"quantile": 0.95, "limit": 1000}
DATA_SPEC_FILE = "data.json"


def save_data_spec(workdir: str, sources: Mapping[str, Source]) -> None:
  """Writes `data.json`: the input shape, the raw image shape and the preprocessing, for `--mode=predict`."""
  normal = sources["normal"]
  spec = {"shape": list(normal.shape), "raw_shape": list(np.shape(normal.examples[0]["image"])),
          "num_classes": int(normal.num_classes), "preprocess": normal.preprocess.to_dict()}
  if jax.process_index() == 0:
    with files.atomic_open(os.path.join(workdir, DATA_SPEC_FILE)) as f:
      json.dump(spec, f, indent=2)


def make_predict(mesh, batch_size: int):
  """`predict(fn, variables, source) -> {name: np.ndarray [N, ...]}`: a jitted `fn(variables, batch)` over a source.

  `fn` returns an array or a dict of arrays (an array comes back under 'out'). `source` is a `Source` or an array of
  already preprocessed images.
  """
  # Scoring has no batch-size semantics: round up so the batch splits evenly over the devices.
  batch_size = -(-batch_size // mesh.size) * mesh.size
  cache: dict[Any, Callable] = {}

  def predict(fn, variables, source) -> dict[str, np.ndarray]:
    if not isinstance(source, Source):
      source = Source.of(np.asarray(source))
    if fn not in cache:  # one compilation per function, not per call
      cache[fn] = jax.jit(lambda v, b: _as_dict(fn(v, b)),
                          in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
                          out_shardings=parallel.replicated(mesh))
    jitted = cache[fn]
    outputs: dict[str, list[np.ndarray]] = {}
    for local_batch, valid in pipeline.eval_batches(source, batch_size):
      out = jitted(variables, parallel.shard_batch(device_fields(local_batch), mesh))
      for k, v in out.items():
        outputs.setdefault(k, []).append(parallel.to_host(v)[:valid])
    return {k: np.concatenate(v) for k, v in outputs.items()}

  return predict


def _as_dict(out) -> dict:
  return out if isinstance(out, dict) else {"out": out}


def _scores(predict, scorer, output, source) -> np.ndarray:
  """One scorer's raw outputs over a source: [N] or [N, P] scores, [N, K] logits or [N, D] features."""
  return raw_scores(predict, {"scorer": scorer}, {scorer.phase: output}, source)["scorer"]


def raw_scores(predict, scorers, outputs, source) -> dict[str, np.ndarray]:
  """Every scorer's raw outputs over a source, one pass per `Scorer.pass_id` (scorers of one dict-valued `fn`)."""
  passes: dict[tuple, dict[str, np.ndarray]] = {}
  out = {}
  for name, scorer in scorers.items():
    if scorer.pass_id not in passes:
      output = outputs[scorer.phase]
      passes[scorer.pass_id] = predict(scorer.on_output, (output.variables, output.extra), source)
    result, key = passes[scorer.pass_id], scorer.key or "out"  # `predict` puts an array-valued fn's output at 'out'
    if key not in result:
      raise KeyError(f"Scorer {name!r} reads {key!r} of its scorer function's outputs, which has only "
                     f"{sorted(result)}.")
    out[name] = result[key]
  return out


def reduced(scorer, raw: np.ndarray, source: Source) -> tuple[np.ndarray, np.ndarray, dict]:
  """The scorer's reduction applied to raw scores: (scores [M], labels [M], meta)."""
  meta = {k: source.field(k) for k in ("video", "frame") if _has_field(source, k)}
  return reductions.reduce(scorer.reduction, raw, source.field("label"), meta)


def _has_field(source: Source, name: str) -> bool:
  return name in source.examples[0]


def source_auroc(predict, scorer, output, source: Source) -> float:
  """AUROC of one scorer on a labelled source (e.g. 'val', for keep='best_val')."""
  s, labels, _ = reduced(scorer, _scores(predict, scorer, output, source), source)
  return metrics.auroc(labels, s)


def evals_of(config: ml_collections.ConfigDict) -> dict[str, dict]:
  evals = config.get("evals")
  evals = DEFAULT_EVALS if evals is None else evals.to_dict() if hasattr(evals, "to_dict") else dict(evals)
  for name, e in evals.items():
    if e.get("kind") not in EVAL_KINDS:
      raise ConfigError(f"evals.{name}.kind must be one of {EVAL_KINDS}, got {e.get('kind')!r}.")
  return evals


def sources_of(config: ml_collections.ConfigDict) -> set[str]:
  """The named sources the evaluators read."""
  return {e.get("source", "test") for e in evals_of(config).values()}


def run_evals(config, method, outputs, sources: Mapping[str, Source], workdir: str, predict) -> dict[str, float]:
  """Runs every evaluator of `config.evals`; writes summary.json and the evaluators' files; returns the summary."""
  summary: dict[str, float] = {}
  for name, e in evals_of(config).items():
    src_name = e.get("source", "test")
    if src_name not in sources:
      raise ConfigError(f"evals.{name}.source={src_name!r} is not a source of this run ({sorted(sources)}).")
    kind = e["kind"]
    wanted = tuple(e.get("scorers", ()) or ())
    kind_of = {"anomaly": ("score",), "classification": ("logits",), "ocsvm": ("features", "nu_scores")}[kind]
    scorers = {k: s for k, s in method.scorers.items() if s.kind in kind_of and (not wanted or k in wanted)}
    if not scorers:
      raise ConfigError(f"evals.{name} ({kind}) has no {' or '.join(map(repr, kind_of))} scorer to run; method "
                        f"{config.method!r} has "
                        f"{ {k: s.kind for k, s in method.scorers.items()} }.")
    if kind == "anomaly":
      summary.update(anomaly(config, scorers, outputs, sources, src_name, workdir, predict,
                             decision_threshold=e.get("decision_threshold")))
    elif kind == "classification":
      (scorer_name, scorer), = list(scorers.items())[:1]
      logits = _scores(predict, scorer, outputs[scorer.phase], sources[src_name])
      summary.update(classification(workdir, logits, sources[src_name].field("class"), split=src_name))
    else:
      fitted = {k: s for k, s in scorers.items() if s.kind == "nu_scores"}
      if fitted:
        summary.update(fitted_ocsvm(fitted, outputs, sources[src_name], src_name, workdir, predict))
      for scorer_name, scorer in scorers.items():
        if scorer.kind == "features":
          summary.update(ocsvm(scorer_name, scorer, outputs[scorer.phase], sources, src_name, predict,
                               nus=e.get("nus", None)))
  if jax.process_index() == 0:
    with files.atomic_open(os.path.join(workdir, "summary.json")) as f:
      json.dump(summary, f, indent=2, sort_keys=True)
  return summary


def anomaly(config, scorers, outputs, sources, split: str, workdir: str, predict, *,
            decision_threshold: float | None = None) -> dict[str, float]:
  """The anomaly evaluator (see the module docstring)."""
  source = sources[split]
  raw, reduced_scores, labels = raw_scores(predict, scorers, outputs, source), {}, None
  for name, scorer in scorers.items():
    reduced_scores[name], labels, _ = reduced(scorer, raw[name], source)
  summary = {f"{split}/{k}": v for k, v in metrics.summarize(reduced_scores, labels).items()}
  if decision_threshold is not None:
    for name, s in reduced_scores.items():
      summary.update({f"{split}/{name}/{k}": v for k, v in decisions(labels, s, float(decision_threshold)).items()})
  extra = {}
  if _has_field(source, "secondary"):
    secondary = source.field("secondary").astype(bool)
    summary.update(mode_aurocs(reduced_scores, labels, secondary, split=split))
    extra["secondary"] = secondary
  thresholds = threshold_file(config, scorers, outputs, sources, predict)
  if jax.process_index() == 0:
    with files.atomic_open(os.path.join(workdir, "scores.npz"), "wb") as f:
      np.savez(f, labels=labels, classes=source.field("class"), **extra,
               **{f"score/{k}": v for k, v in reduced_scores.items()})
    with files.atomic_open(os.path.join(workdir, "threshold.json")) as f:
      json.dump(thresholds, f, indent=2, sort_keys=True)
    plots.roc(os.path.join(workdir, "roc.png"), reduced_scores, labels)
    plots.score_histograms(os.path.join(workdir, "scores.png"), reduced_scores, labels,
                           thresholds={k: t["threshold"] for k, t in thresholds.items()})
    image = np.shape(source.examples[0]["image"])
    if len(labels) == len(source) >= 2 and len(image) == 3 and image[-1] in (1, 3):  # one score per image
      for name, s in reduced_scores.items():
        extremes(os.path.join(workdir, f"extremes_{name}.png"), source, s, labels=labels, title=name)
  return summary


def decisions(labels, scores, threshold: float) -> dict[str, float]:
  """The confusion matrix of the decisions `score > threshold` (anomalous) against `labels` (1 = anomalous).

  Returns `tp`, `fn`, `fp`, `tn` (counts; rows of the paper's tables: actual anomaly -> tp, fn; actual normal -> fp,
  tn), `precision` = tp / (tp + fp), `recall` = tp / (tp + fn), `f1` = 2 tp / (2 tp + fp + fn) and `accuracy`, with
  the anomaly as the positive class; a ratio whose denominator is 0 is 0 (sklearn's zero_division=0).

  Example:
    >>> decisions([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.4], 0.5)['f1']
    0.5
  """
  labels = np.asarray(labels).astype(bool)
  predicted = np.asarray(scores, np.float64) > threshold
  tp, fn = int(np.sum(predicted & labels)), int(np.sum(~predicted & labels))
  fp, tn = int(np.sum(predicted & ~labels)), int(np.sum(~predicted & ~labels))
  ratio = lambda a, b: float(a / b) if b else 0.0
  return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
          "f1": ratio(2 * tp, 2 * tp + fp + fn), "accuracy": ratio(tp + tn, len(labels))}


def extremes(path: str, source: Source, scores: np.ndarray, *, labels=None, title: str = "", k: int = 8) -> None:
  """A PNG grid of the k most and k least anomalous images of a source (only those images are read)."""
  order = np.argsort(-np.asarray(scores), kind="stable")
  k = min(k, len(order) // 2)
  pick = np.concatenate([order[:k], order[::-1][:k]])
  images = source.examples.take(pick)["image"]
  plots.image_grid(path, images, np.asarray(scores)[pick], labels=None if labels is None else np.asarray(labels)[pick],
                   k=k, title=title)


def threshold_file(config, scorers, outputs, sources, predict) -> dict[str, dict]:
  """Per scorer: the decision threshold and the min/max for normalisation, from held-out normal scores."""
  t = {**DEFAULT_THRESHOLD, **(config.get("threshold") or {})}
  q = float(t["quantile"])
  if not 0.0 < q < 1.0:
    raise ConfigError(f"threshold.quantile must be in (0, 1), got {q}.")
  if "val" in sources:
    name, source = "val", sources["val"]
    source = _normal_part(source)
  else:
    name, source = "normal", sources["normal"]
  keep = fixed_subset(len(source), int(t["limit"]))
  if keep is not None:
    source = source.subset(keep)
  out, raw = {}, raw_scores(predict, scorers, outputs, source)
  for scorer_name, scorer in scorers.items():
    s, _, _ = reduced(scorer, raw[scorer_name], source)
    out[scorer_name] = {"threshold": float(np.quantile(s, q)), "min": float(np.min(s)), "max": float(np.max(s)),
                        "quantile": q, "from": f"{name} ({len(s)} normal examples)"}
  return out


def _normal_part(source: Source) -> Source:
  labels = source.field("label")
  if np.all(labels == 0):
    return source
  keep = np.flatnonzero(labels == 0)
  return source.subset(keep)


def normalize(scores: np.ndarray, threshold: Mapping[str, float]) -> np.ndarray:
  """anomalib's min-max normalisation: the threshold maps to 0.5, [min, max] of the normal scores to a unit span.

  normalised = clip((s - threshold) / (max - min) + 0.5, 0, 1); a score above the threshold is above 0.5.
  """
  span = max(threshold["max"] - threshold["min"], 1e-12)
  return np.clip((np.asarray(scores, np.float64) - threshold["threshold"]) / span + 0.5, 0.0, 1.0)


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


def classification(workdir: str, logits: np.ndarray, labels: np.ndarray, split: str = "test") -> dict[str, float]:
  """Top-1 (and top-5 when K >= 5) accuracy of [N, K] `logits` against [N] class `labels`.

  Writes `predictions.npz` (`labels` [N] and `topk` [N, k]: the k = min(5, K) highest-scoring classes, best first);
  returns `{'<split>/top1': ..., '<split>/top5': ...}`.
  """
  logits, labels = np.asarray(logits), np.asarray(labels)
  k = min(5, logits.shape[-1])
  topk = np.argsort(-logits, axis=-1, kind="stable")[:, :k].astype(np.int32)
  hits = topk == labels[:, None]
  summary = {f"{split}/top1": float(hits[:, 0].mean())}
  if k == 5:
    summary[f"{split}/top5"] = float(hits.any(axis=1).mean())
  if jax.process_index() == 0:
    with files.atomic_open(os.path.join(workdir, "predictions.npz"), "wb") as f:
      np.savez(f, labels=labels, topk=topk)
  return summary


def fitted_ocsvm(scorers, outputs, source: Source, split: str, workdir: str, predict) -> dict[str, float]:
  """Andrews et al.'s number from one-class SVMs fitted by a phase: 'nu_scores' scorers give [N, P] scores (one column
  per nu); the AUROC of each column, averaged over the P columns (and their min and max). Per-nu AUROCs go to
  `ocsvm.json`."""
  raw = raw_scores(predict, scorers, outputs, source)
  labels = source.field("label")
  summary, per_nu = {}, {}
  for name, scores in raw.items():
    if scores.ndim != 2:
      raise ValueError(f"Scorer {name!r} of kind 'nu_scores' must give [N, P] scores, got shape {scores.shape}.")
    aurocs = [metrics.auroc(labels, scores[:, p]) for p in range(scores.shape[1])]
    per_nu[name] = aurocs
    summary.update({f"{split}/{name}/ocsvm_auroc": float(np.mean(aurocs)),
                    f"{split}/{name}/ocsvm_auroc_min_nu": float(np.min(aurocs)),
                    f"{split}/{name}/ocsvm_auroc_max_nu": float(np.max(aurocs))})
  if jax.process_index() == 0:
    with files.atomic_open(os.path.join(workdir, "ocsvm.json")) as f:
      json.dump({"split": split, "auroc_per_nu": per_nu}, f, indent=2)
  return summary


def ocsvm(name: str, scorer, output, sources, split: str, predict, *, nus=None) -> dict[str, float]:
  """Andrews et al.'s evaluation: a linear one-class SVM fitted on the 'normal' features, AUROC averaged over nu."""
  train = _scores(predict, scorer, output, sources["normal"])
  test_source = sources[split]
  test = _scores(predict, scorer, output, test_source)
  kwargs = {} if nus is None else {"nus": tuple(nus)}
  mean, per_nu = metrics.ocsvm_auroc_over_nu(train.reshape(len(train), -1), test.reshape(len(test), -1),
                                             test_source.field("label"), **kwargs)
  return {f"{split}/{name}/ocsvm_auroc": mean, f"{split}/{name}/ocsvm_auroc_min_nu": float(np.min(per_nu)),
          f"{split}/{name}/ocsvm_auroc_max_nu": float(np.max(per_nu))}
