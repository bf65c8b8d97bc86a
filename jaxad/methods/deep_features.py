"""Andrews et al. (2016): a frozen network's features, scaled to unit length, scored by linear one-class SVMs.

Method = [Fit('ocsvm'): the network's weights and one linear one-class nu-SVM per layer and per nu] plus one scorer
per layer. The backbone is any jaxad model (`jaxad.models.backbones`: MatConvNet VGG-F / VGG-M,
the ImageNet nets, a ResNet26 source, a trained WRN, the Male-5045 auxiliary classifier), with the weights and input
scaling `config.model` names. 'ocsvm' runs the backbone over the 'normal' source, scales each layer's flattened
activations to unit L2 norm (`objective.unit_length`, default True; False leaves them as they are, as the paper's GS
row of raw pixels, configs/andrews_gs_mnist.py) and fits scikit-learn's `OneClassSVM(kernel='linear', nu=nu)` for
every nu of `objective.nus` (the paper: 21 values evenly spaced in [0.01, 0.99]); a linear SVM is a vector w and an
offset b (`decision = <x, w> + b`), saved with the phase, so scoring is one jitted matrix product and survives a
restart.

Scorer `<layer>` (kind 'nu_scores') gives [B, P]: `-(<x, w_p> + b_p)` for each of the P nus, higher = more anomalous.
The 'ocsvm' evaluator reports `<split>/<layer>/ocsvm_auroc`, the AUROC averaged over the P nus (the paper's number),
and its min and max over nu.

The auxiliary-task route (Male-5045 on face identities, or any labelled folder): train the classifier on
sub-categories of the normal class with `method='supervised'` (configs/andrews_male5045_casia.py, stage
'classifier'), then point `model.weights` at its `source` export (stage 'features').

References:
  Andrews, Tanay, Morton, Griffin. Transfer Representation-Learning for Anomaly Detection. ICML 2016 workshop.
  Schölkopf et al. Estimating the Support of a High-Dimensional Distribution. Neural Computation 2001.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxad import parallel
from jaxad.errors import ConfigError
from jaxad.methods.base import FitPhase, Method, Output, Scorer
from jaxad.models import backbones, compute_kwargs

DEFAULT_NUS = tuple(float(v) for v in np.linspace(0.01, 0.99, 21))


def flat_features(features: jax.Array) -> jax.Array:
  """[B, ...] -> [B, D] float32."""
  return features.reshape(features.shape[0], -1).astype(jnp.float32)


def unit_features(features: jax.Array) -> jax.Array:
  """[B, ...] -> [B, D]: flattened and scaled to unit L2 norm (all-zero rows stay zero)."""
  x = flat_features(features)
  norm = jnp.linalg.norm(x, axis=1, keepdims=True)
  return x / jnp.where(norm > 0, norm, 1.0)


def fit_linear_ocsvm(features: np.ndarray, nus) -> tuple[np.ndarray, np.ndarray]:
  """A linear one-class nu-SVM per nu on [N, D] features: (w [P, D], b [P]), decision = x @ w.T + b.

  The same solution as scikit-learn's `OneClassSVM(kernel='linear', nu)` (libsvm), fitted on the precomputed Gram
  matrix x @ x.T instead: libsvm then looks kernel values up instead of recomputing D-dim dot products, which is
  15-30x faster for 2,048 x 4,096 features (benchmarks/backbone_features.py); w = sum_i alpha_i x_i over the
  support vectors. tests/andrews_test.py checks the decision function against the linear-kernel fit.
  """
  from sklearn.svm import OneClassSVM  # pylint: disable=g-import-not-at-top

  x = np.asarray(features, np.float64)
  gram = x @ x.T
  ws, bs = [], []
  for nu in nus:
    svm = OneClassSVM(kernel="precomputed", nu=float(nu)).fit(gram)
    ws.append(svm.dual_coef_[0] @ x[svm.support_])
    bs.append(svm.intercept_[0])
  return np.asarray(ws, np.float32), np.asarray(bs, np.float32)


def method(config: ml_collections.ConfigDict, spec) -> Method:
  """[Fit('ocsvm')] and one 'nu_scores' scorer per layer of `objective.layers`."""
  layers = tuple(config.objective.layers)
  nus = tuple(float(v) for v in (config.objective.get("nus") or DEFAULT_NUS))
  if not layers:
    raise ConfigError("objective.layers must name at least one feature of the backbone, e.g. ('P5', 'FC6').")
  if not nus or not all(0.0 < nu <= 1.0 for nu in nus):
    raise ConfigError(f"objective.nus must be values in (0, 1], got {nus}.")
  if config.model.get("input_scaling", "data") != "data" and config.data.preprocess != "unit":
    raise ConfigError(f"model.input_scaling={config.model.input_scaling!r} rescales images from [0, 1]: set "
                      f"data.preprocess='unit' (got {config.data.preprocess!r}).")
  compute_kwargs(config.model)  # the frozen backbones take no model.dtype / model.remat: refuse them by name
  backbone = backbones.load(config.model, spec.shape, jax.random.key(config.seed))
  _, sample_features = jax.eval_shape(lambda v, x: backbone.apply(v, x), backbone.variables,
                                      jax.ShapeDtypeStruct((1, *spec.shape), jnp.float32))
  missing = [name for name in layers if name not in sample_features]
  if missing:
    raise ConfigError(f"objective.layers {missing} are not features of model {config.model.name!r}; it has "
                      f"{sorted(sample_features)}.")

  # The paper rescales the networks' features to unit length, not its GS baseline (configs/andrews_gs_mnist.py).
  scale = unit_features if config.objective.get("unit_length", True) else flat_features

  def features(variables, batch):
    _, feats = backbone.apply(variables, batch["image"])
    return {name: scale(feats[name]) for name in layers}

  def fit_ocsvm(ctx) -> Output:  # the phase output keeps the weights it scored with beside the SVMs
    variables = backbone.variables
    t0 = time.perf_counter()
    normal = ctx.predict(features, variables, "normal")
    extra = {}
    for name in layers:
      t1 = time.perf_counter()
      w, b = fit_linear_ocsvm(normal[name], nus)
      extra[name] = {"w": w, "b": b}
      parallel.log(f"ocsvm: {name} ({w.shape[1]}-d, {len(normal[name])} images, {len(nus)} nus) fitted in "
                   f"{time.perf_counter() - t1:.1f} s.")
    parallel.log(f"ocsvm: features and SVMs in {time.perf_counter() - t0:.1f} s.")
    return Output(variables, extra)

  def nu_scores(variables, extra, batch):
    x = features(variables, batch)
    return {name: -(x[name] @ extra[name]["w"].T + extra[name]["b"]) for name in layers}

  scorers = {name: Scorer(nu_scores, phase="ocsvm", kind="nu_scores", key=name) for name in layers}
  return Method([FitPhase("ocsvm", fit_ocsvm)], scorers)
