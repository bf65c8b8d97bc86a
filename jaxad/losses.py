"""Per-example anomaly-detection losses (optax style).

Every loss takes data arguments first and hyperparameters keyword-only, returns one value per example (shape [B])
unless the quantity is inherently global (parameter penalties, DOC compactness, radii), and leaves the reduction to
the caller. Label 1 means anomalous / outlier exposure (OE) everywhere.

This module imports only jax, optax and numpy, so `import jaxad.losses` is cheap in other projects.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

ArrayLike = jax.typing.ArrayLike
# None (every leaf), a pytree of bools shaped like params, or a predicate on '/'-joined key paths.
Mask = Callable[[str], bool] | Any


# --------------------------------------------------------------------------------------------------------------------
# Validation helpers.


def _check_ndim(name: str, x: jax.Array, ndim: int, spec: str) -> None:
  if x.ndim != ndim:
    raise ValueError(f"{name} must have shape {spec}, got shape {tuple(x.shape)}.")


def _check_center(embeddings: jax.Array, center: jax.Array, name: str = "center") -> None:
  _check_ndim("embeddings", embeddings, 2, "[B, D]")
  _check_nonempty("embeddings", embeddings, "[B, D]")
  if center.shape != embeddings.shape[1:]:
    raise ValueError(
        f"{name} must have shape [D] = {embeddings.shape[1:]} to match embeddings {tuple(embeddings.shape)}, "
        f"got shape {tuple(center.shape)}.")


def _check_labels(name: str, labels: jax.Array, batch: int) -> None:
  if labels.shape != (batch,):
    raise ValueError(f"{name} must have shape [B] = ({batch},), got shape {tuple(labels.shape)}.")


def _check_nonempty(name: str, x: jax.Array, spec: str) -> None:
  """Static check (shapes are known under jit): every axis of ``x`` has at least one entry."""
  if 0 in x.shape:
    raise ValueError(f"{name} must be non-empty with shape {spec}, got shape {tuple(x.shape)}.")


def _is_tracer(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def check_labels(name: str, labels: ArrayLike, allowed: Any = None, *, low: float | None = None,
                 high: float | None = None) -> bool:
  """Raises ``ValueError`` naming ``name`` unless every label is in ``allowed`` (and in [low, high]).

  Run it host-side before a jitted call: the losses check label values only eagerly, because a traced value
  cannot be inspected (under ``jit`` use ``jax.experimental.checkify`` or validate before the call). On a tracer it
  does nothing and returns False; otherwise it returns True once the labels are valid.

  Args:
    name: the argument name used in the error message.
    labels: the labels (any shape).
    allowed: optional collection of allowed values, e.g. ``(0, 1)`` or ``(-1, 0, 1)``.
    low: optional inclusive lower bound (e.g. 0 for soft targets in [0, 1]).
    high: optional inclusive upper bound.

  Returns:
    True if the values were checked, False if ``labels`` is traced (nothing checked).

  Example:
    >>> check_labels('labels', [0, 1, 1], (0, 1))
    True
    >>> check_labels('semi_targets', [0, 5], (-1, 0, 1))
    Traceback (most recent call last):
    ...
    ValueError: semi_targets must take values in {-1, 0, 1}, got invalid values [5].
  """
  if _is_tracer(labels):
    return False
  values = np.asarray(labels)
  if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
    raise ValueError(f"{name} must be numbers, got dtype {values.dtype}.")
  bad = np.zeros(values.shape, bool) if values.dtype == bool else ~np.isfinite(values)
  if allowed is not None:
    bad |= ~np.isin(values, np.asarray(list(allowed)))
  if low is not None:
    bad |= values < low
  if high is not None:
    bad |= values > high
  if np.any(bad):
    want = []
    if allowed is not None:
      want.append("{" + ", ".join(str(a) for a in allowed) + "}")
    if low is not None or high is not None:
      want.append(f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]")
    want = " and ".join(want) or "finite numbers"
    raise ValueError(f"{name} must take values in {want}, got invalid values {np.unique(values[bad])[:10].tolist()}.")
  return True


def _concrete(x: Any) -> float | None:
  """The Python value of a scalar hyperparameter, or None when it is traced (checked eagerly only)."""
  try:
    return float(x)
  except TypeError:  # jax's ConcretizationTypeError is a TypeError.
    return None


def _check_nu(nu: Any) -> None:
  value = _concrete(nu)
  if value is not None and not 0.0 < value <= 1.0:
    raise ValueError(f"nu must be in (0, 1], got {value}.")


def _squared_distance(embeddings: jax.Array, center: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(embeddings - center), axis=-1)


def _squeeze_logits(logits: jax.Array) -> jax.Array:
  if logits.ndim == 2 and logits.shape[1] == 1:
    logits = logits[:, 0]
  _check_ndim("logits", logits, 1, "[B] or [B, 1]")
  _check_nonempty("logits", logits, "[B] or [B, 1]")
  return logits


# --------------------------------------------------------------------------------------------------------------------
# Hypersphere losses: Deep SVDD, MOCCA, Deep SAD, HSC.


def one_class(embeddings: ArrayLike, center: ArrayLike) -> jax.Array:
  r"""Deep SVDD one-class loss: squared distance to the hypersphere center.

  .. math::
    \ell(z) = \|z - c\|_2^2

  Args:
    embeddings: [B, D] network outputs z.
    center: [D] fixed hypersphere center c (see :func:`hypersphere_center`).

  Returns:
    [B] per-example squared distances; the one-class Deep SVDD objective is their mean.

  Example:
    >>> import jax.numpy as jnp
    >>> print(one_class(jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.array([1.0, 0.0])))
    [4. 1.]

  References:
    Ruff et al., "Deep One-Class Classification", ICML 2018.
  """
  embeddings, center = jnp.asarray(embeddings), jnp.asarray(center)
  _check_center(embeddings, center)
  return _squared_distance(embeddings, center)


def soft_boundary(embeddings: ArrayLike, center: ArrayLike, *, radius: ArrayLike, nu: float) -> jax.Array:
  r"""Deep SVDD soft-boundary loss, per example.

  .. math::
    \ell(z) = R^2 + \frac{1}{\nu} \max(0, \|z - c\|_2^2 - R^2)

  The batch mean is the soft-boundary objective :math:`R^2 + \frac{1}{\nu n}\sum_i \max(0, d_i - R^2)`. R is not
  learned by gradient in the reference code: update it with :func:`radius_from_distances`.

  Args:
    embeddings: [B, D] network outputs z.
    center: [D] fixed hypersphere center c.
    radius: [] current radius R (not squared).
    nu: fraction of allowed outliers, in (0, 1].

  Returns:
    [B] per-example losses.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[0.5, 0.0], [2.0, 0.0]])
    >>> print(soft_boundary(z, jnp.zeros(2), radius=1.0, nu=0.5))
    [1. 7.]

  References:
    Ruff et al., "Deep One-Class Classification", ICML 2018.
  """
  _check_nu(nu)
  radius = jnp.asarray(radius)
  if radius.ndim != 0:
    raise ValueError(f"radius must be a scalar [], got shape {tuple(radius.shape)}.")
  r2 = jnp.square(radius)
  return r2 + jnp.maximum(one_class(embeddings, center) - r2, 0.0) / nu


def radius_from_distances(sq_distances: ArrayLike, *, nu: float) -> jax.Array:
  r"""Soft-boundary radius update: the (1 - nu) quantile of the distances (not squared).

  .. math::
    R = \operatorname{quantile}_{1-\nu}\big(\{\sqrt{d_i}\}_{i=1}^{B}\big)

  with linear interpolation between order statistics (NumPy's default), computed on the current batch as the
  Deep SVDD and MOCCA code do. ``nu = 1`` gives the smallest distance. The result is wrapped in ``stop_gradient``
  because R is assigned, not learned (and sqrt has no gradient at 0). For MOCCA's per-layer radii use
  ``jax.vmap(functools.partial(radius_from_distances, nu=nu))(d)`` on d of shape [L, B].

  Args:
    sq_distances: [B] squared distances ||z - c||^2 of one batch.
    nu: fraction of allowed outliers, in (0, 1].

  Returns:
    [] the radius R.

  Example:
    >>> import jax.numpy as jnp
    >>> print(round(float(radius_from_distances(jnp.array([0.0, 1.0, 4.0, 9.0, 16.0]), nu=0.1)), 4))
    3.6

  References:
    Ruff et al., "Deep One-Class Classification", ICML 2018; Massoli et al., "MOCCA", IEEE TNNLS 2021.
  """
  _check_nu(nu)
  sq_distances = jnp.asarray(sq_distances)
  _check_ndim("sq_distances", sq_distances, 1, "[B]")
  _check_nonempty("sq_distances", sq_distances, "[B]")
  dist = jnp.sqrt(jax.lax.stop_gradient(sq_distances))
  return jnp.quantile(dist, 1.0 - nu)


def hypersphere_center(embeddings: ArrayLike, *, eps: float = 0.1) -> jax.Array:
  r"""Hypersphere center: batch mean with small coordinates pushed away from zero.

  .. math::
    c = \frac{1}{B}\sum_i z_i, \qquad
    c_k \leftarrow \begin{cases} -\epsilon & -\epsilon < c_k < 0 \\ \epsilon & 0 < c_k < \epsilon \\
    c_k & \text{otherwise} \end{cases}

  The inequalities are strict as in Deep SVDD's code: exact zeros stay zero (a dead unit then maps every input to
  the center along that coordinate, which is what the reference does). Pass the mean over the whole training set
  in eval mode, e.g. by feeding all embeddings at once.

  Args:
    embeddings: [B, D] network outputs over the training set.
    eps: minimum magnitude of a nonzero coordinate.

  Returns:
    [D] the center c.

  Example:
    >>> import jax.numpy as jnp
    >>> print(hypersphere_center(jnp.array([[0.02, 0.0, -0.5], [0.04, 0.0, -0.3]])))
    [ 0.1  0.  -0.4]

  References:
    Ruff et al., "Deep One-Class Classification", ICML 2018.
  """
  embeddings = jnp.asarray(embeddings)
  _check_ndim("embeddings", embeddings, 2, "[B, D]")
  _check_nonempty("embeddings", embeddings, "[B, D]")
  c = jnp.mean(embeddings, axis=0)
  small = jnp.abs(c) < eps
  c = jnp.where(small & (c < 0), -eps, c)
  return jnp.where(small & (c > 0), eps, c)


def multi_layer_hypersphere(
    features: Sequence[ArrayLike],
    centers: Sequence[ArrayLike],
    *,
    boundary: str,
    radii: ArrayLike | None = None,
    nu: float = 0.1,
) -> jax.Array:
  r"""MOCCA per-layer, per-example hypersphere losses.

  .. math::
    \ell_{l,i} = \begin{cases} R_l^2 + \frac{1}{\nu}\max(0, \|f_{l,i} - c_l\|^2 - R_l^2) & \text{soft} \\
    \|f_{l,i} - c_l\|^2 & \text{hard} \end{cases}

  The MOCCA objective (paper Eq. 4) is ``losses.mean(axis=1).mean()``: mean over examples, then over layers. The
  released code sums the layers and adds a constant 1 instead; neither changes the minimiser for a fixed L. The
  paper's Eq. 3 also divides the hard loss by nu; like the code we do not (it only rescales the loss).

  Args:
    features: L arrays of shape [B, D_l] (e.g. global-average-pooled layer outputs).
    centers: L arrays of shape [D_l].
    boundary: 'soft' or 'hard'.
    radii: [L] radii R_l, required for 'soft', ignored for 'hard'.
    nu: fraction of allowed outliers in (0, 1], used by 'soft'.

  Returns:
    [L, B] losses, row l for layer l.

  Example:
    >>> import jax.numpy as jnp
    >>> f = [jnp.ones((2, 3)), jnp.zeros((2, 5))]
    >>> c = [jnp.zeros(3), jnp.ones(5)]
    >>> print(multi_layer_hypersphere(f, c, boundary='hard'))
    [[3. 3.]
     [5. 5.]]

  References:
    Massoli et al., "MOCCA: Multi-Layer One-Class Classification for Anomaly Detection", IEEE TNNLS 2021.
  """
  if boundary not in ("soft", "hard"):
    raise ValueError(f"boundary must be 'soft' or 'hard', got {boundary!r}.")
  features, centers = list(features), list(centers)
  if not features or len(features) != len(centers):
    raise ValueError(f"features and centers must be non-empty sequences of the same length L, got "
                     f"{len(features)} features and {len(centers)} centers.")
  for l, (f, c) in enumerate(zip(features, centers)):
    f_shape, c_shape = tuple(jnp.shape(f)), tuple(jnp.shape(c))
    if len(f_shape) != 2 or 0 in f_shape:
      raise ValueError(f"features[{l}] must be non-empty with shape [B, D_l], got shape {f_shape}.")
    if c_shape != f_shape[1:]:
      raise ValueError(f"centers[{l}] must have shape [D_l] = {f_shape[1:]} to match features[{l}], got shape "
                       f"{c_shape}.")
  batch = {jnp.shape(f)[0] if jnp.ndim(f) else None for f in features}
  if len(batch) != 1:
    raise ValueError(f"every features[l] must have the same batch size B, got shapes "
                     f"{[tuple(jnp.shape(f)) for f in features]}.")
  if boundary == "hard":
    return jnp.stack([one_class(f, c) for f, c in zip(features, centers)])
  if radii is None:
    raise ValueError("radii of shape [L] is required for boundary='soft'.")
  radii = jnp.asarray(radii)
  if radii.shape != (len(features),):
    raise ValueError(f"radii must have shape [L] = ({len(features)},), got shape {tuple(radii.shape)}.")
  return jnp.stack([soft_boundary(f, c, radius=radii[l], nu=nu) for l, (f, c) in enumerate(zip(features, centers))])


def deep_sad(
    embeddings: ArrayLike,
    center: ArrayLike,
    semi_targets: ArrayLike,
    *,
    eta: float = 1.0,
    eps: float = 1e-6,
) -> jax.Array:
  r"""Deep SAD loss: pull unlabelled and labelled-normal points in, push labelled anomalies out.

  .. math::
    \ell(z, \tilde y) = \begin{cases} d & \tilde y = 0 \\ \eta\,(d + \epsilon)^{\tilde y} & \tilde y = \pm 1
    \end{cases}, \qquad d = \|z - c\|_2^2

  so a labelled anomaly (:math:`\tilde y = -1`) costs :math:`\eta / (d + \epsilon)`.

  Args:
    embeddings: [B, D] network outputs z.
    center: [D] fixed hypersphere center c.
    semi_targets: [B] in {-1, 0, +1}: 0 unlabelled, +1 labelled normal, -1 labelled anomaly. Values are checked
      eagerly; under jit use `jax.experimental.checkify` or validate before the call (:func:`check_labels`).
    eta: weight of the labelled terms.
    eps: keeps the inverse distance finite.

  Returns:
    [B] per-example losses.

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> z = jnp.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    >>> print(np.asarray(deep_sad(z, jnp.zeros(2), jnp.array([0, 1, -1]), eta=2.0)).round(4))
    [1.  2.  0.5]

  References:
    Ruff et al., "Deep Semi-Supervised Anomaly Detection", ICLR 2020.
  """
  dist = one_class(embeddings, center)
  semi_targets = jnp.asarray(semi_targets)
  _check_labels("semi_targets", semi_targets, dist.shape[0])
  check_labels("semi_targets", semi_targets, (-1, 0, 1))
  labelled = eta * jnp.power(dist + eps, semi_targets.astype(dist.dtype))
  return jnp.where(semi_targets == 0, dist, labelled)


def hypersphere_classifier(embeddings: ArrayLike, labels: ArrayLike) -> jax.Array:
  r"""Hypersphere classifier (HSC) loss: a radial BCE with a pseudo-Huber distance to the origin.

  .. math::
    d = \sqrt{\|z\|^2 + 1} - 1, \qquad
    \ell = \begin{cases} d & y = 0 \\ -\log(1 - e^{-d} + 10^{-9}) & y = 1 \end{cases}

  Args:
    embeddings: [B, D] network outputs z (the center is the origin).
    labels: [B] in {0, 1}, 1 = anomaly / outlier exposure. Values are checked eagerly; under jit use
      `jax.experimental.checkify` or validate before the call (:func:`check_labels`).

  Returns:
    [B] per-example losses.

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> z = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    >>> print(np.asarray(hypersphere_classifier(z, jnp.array([0, 1]))).round(4))
    [0.     0.0167]

  References:
    Ruff et al., "Rethinking Assumptions in Deep Anomaly Detection", arXiv:2006.00339, 2020.
  """
  embeddings, labels = jnp.asarray(embeddings), jnp.asarray(labels)
  _check_ndim("embeddings", embeddings, 2, "[B, D]")
  _check_nonempty("embeddings", embeddings, "[B, D]")
  _check_labels("labels", labels, embeddings.shape[0])
  check_labels("labels", labels, (0, 1))
  d = pseudo_huber_norm(embeddings)
  # -expm1(-d) is 1 - exp(-d) without cancellation for small d.
  return jnp.where(labels == 1, -jnp.log(-jnp.expm1(-d) + 1e-9), d)


def pseudo_huber_norm(embeddings: ArrayLike) -> jax.Array:
  r"""Pseudo-Huber distance to the origin, :math:`\sqrt{\|z\|^2 + 1} - 1`, over the last axis ([..., D] -> [...]).

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> print(np.asarray(pseudo_huber_norm(jnp.array([[3.0, 4.0], [0.0, 0.0]]))).round(4))
    [4.099 0.   ]

  References:
    Ruff et al., "Rethinking Assumptions in Deep Anomaly Detection", arXiv:2006.00339, 2020.
  """
  embeddings = jnp.asarray(embeddings)
  if embeddings.ndim < 1:
    raise ValueError(f"embeddings must have shape [..., D], got shape {tuple(embeddings.shape)}.")
  _check_nonempty("embeddings", embeddings, "[..., D]")
  return jnp.sqrt(jnp.sum(jnp.square(embeddings), axis=-1) + 1.0) - 1.0


# --------------------------------------------------------------------------------------------------------------------
# Classification-style losses.


def outlier_exposure_bce(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  r"""Binary cross-entropy with logits for normal-vs-outlier-exposure training (ADIB, BCE-OE).

  .. math::
    \ell(s, y) = -y \log \sigma(s) - (1 - y) \log(1 - \sigma(s))

  computed stably from the logit s.

  Args:
    logits: [B] or [B, 1] logits (higher = more anomalous).
    labels: [B] targets in [0, 1]; 1 = OE / anomalous, 0 = normal. Values are checked eagerly; under jit use
      `jax.experimental.checkify` or validate before the call (:func:`check_labels`).

  Returns:
    [B] per-example losses.

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> print(np.asarray(outlier_exposure_bce(jnp.array([[0.0], [2.0]]), jnp.array([1, 0]))).round(4))
    [0.6931 2.1269]

  References:
    Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure", ICLR 2019; Deecke et al., "Transfer-Based
    Semantic Anomaly Detection", ICML 2021.
  """
  logits = _squeeze_logits(jnp.asarray(logits))
  labels = jnp.asarray(labels)
  _check_labels("labels", labels, logits.shape[0])
  check_labels("labels", labels, low=0, high=1)
  return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))


def multi_task_cross_entropy(logits: Mapping[str, ArrayLike], labels: Mapping[str, ArrayLike]) -> jax.Array:
  r"""Sum over self-supervised tasks of the softmax cross-entropy (rotation, translations, jigsaw, GeoTrans).

  .. math::
    \ell_i = \sum_{t} -\log \operatorname{softmax}(s^{(t)}_i)_{y^{(t)}_i}

  Args:
    logits: mapping task name -> [B, K_t] logits of that task's head.
    labels: mapping task name -> [B] integer class in [0, K_t) of the applied transformation; same keys as
      ``logits``. Values are checked eagerly; under jit use `jax.experimental.checkify` or validate before the
      call (:func:`check_labels`).

  Returns:
    [B] per-example losses (divide by the number of tasks for the ss-ood mean).

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> logits = {'rot': jnp.zeros((2, 4)), 'tx': jnp.zeros((2, 3))}
    >>> labels = {'rot': jnp.array([0, 3]), 'tx': jnp.array([1, 2])}
    >>> print(np.asarray(multi_task_cross_entropy(logits, labels)).round(4))
    [2.4849 2.4849]

  References:
    Hendrycks et al., "Using Self-Supervised Learning Can Improve Model Robustness and Uncertainty", NeurIPS 2019;
    Jezequel et al., "Anomaly Detection via Multi-Scale/Multi-Task Self-Supervision"; Golan & El-Yaniv, "Deep
    Anomaly Detection Using Geometric Transformations", NeurIPS 2018.
  """
  if set(logits) != set(labels):
    raise ValueError(f"logits and labels must have the same task keys, got {sorted(logits)} and {sorted(labels)}.")
  if not logits:
    raise ValueError("logits must contain at least one task.")
  total, batch = None, None
  for task in sorted(logits):
    task_logits, task_labels = jnp.asarray(logits[task]), jnp.asarray(labels[task])
    _check_ndim(f"logits[{task!r}]", task_logits, 2, "[B, K]")
    _check_nonempty(f"logits[{task!r}]", task_logits, "[B, K]")
    batch = task_logits.shape[0] if batch is None else batch
    if task_logits.shape[0] != batch:
      raise ValueError(f"logits[{task!r}] must have batch size {batch} like the other tasks, got shape "
                       f"{tuple(task_logits.shape)}.")
    _check_labels(f"labels[{task!r}]", task_labels, batch)
    if not jnp.issubdtype(task_labels.dtype, jnp.integer):
      raise ValueError(f"labels[{task!r}] must be integers, got dtype {task_labels.dtype}.")
    check_labels(f"labels[{task!r}]", task_labels, low=0, high=task_logits.shape[1] - 1)
    loss = optax.softmax_cross_entropy_with_integer_labels(task_logits, task_labels)
    total = loss if total is None else total + loss
  return total


def reconstruction(x: ArrayLike, x_hat: ArrayLike) -> jax.Array:
  r"""Autoencoder reconstruction loss: per-example sum of squared errors.

  .. math::
    \ell(x, \hat x) = \sum_{j} (x_j - \hat x_j)^2

  summed over all non-batch axes; the Deep SVDD / MOCCA pretraining loss is the batch mean.

  Args:
    x: [B, ...] inputs.
    x_hat: [B, ...] reconstructions, same shape as x.

  Returns:
    [B] per-example losses.

  Example:
    >>> import jax.numpy as jnp
    >>> print(reconstruction(jnp.ones((2, 2, 2, 1)), jnp.zeros((2, 2, 2, 1))))
    [4. 4.]

  References:
    Ruff et al., "Deep One-Class Classification", ICML 2018.
  """
  x, x_hat = jnp.asarray(x), jnp.asarray(x_hat)
  if x.ndim < 1 or x.shape != x_hat.shape:
    raise ValueError(f"x and x_hat must have the same shape [B, ...], got {tuple(x.shape)} and "
                     f"{tuple(x_hat.shape)}.")
  _check_nonempty("x", x, "[B, ...]")
  return jnp.sum(jnp.square(x - x_hat).reshape(x.shape[0], -1), axis=1)


def doc_compactness(features: ArrayLike, *, mask: ArrayLike | None = None) -> jax.Array:
  r"""DOC compactness loss: how far each feature vector lies from the mean of the other samples.

  .. math::
    l_C = \frac{1}{nk}\sum_{i=1}^n z_i^\top z_i, \quad z_i = x_i - \frac{1}{n-1}\sum_{j \ne i} x_j
        = \frac{n}{n-1}(x_i - \bar x)
    \;\Rightarrow\; l_C = \frac{n^2}{(n-1)^2}\,\frac{1}{k}\sum_{m=1}^k \sigma_m^2

  with :math:`\sigma_m^2` the biased (1/n) batch variance of feature m. Inherently a batch quantity.

  Args:
    features: [n, k] features of one batch, n >= 2.
    mask: optional [n] bools: only these rows form the batch (n = their count), e.g. the normal rows of a batch
      that also holds reference images. Keeps shapes static under `jit`; at least 2 rows must be selected.
      Its values (bools or {0, 1}, >= 2 selected) are checked eagerly; under jit use `jax.experimental.checkify`
      or validate before the call.

  Returns:
    [] the compactness loss.

  Example:
    >>> import jax.numpy as jnp
    >>> print(float(doc_compactness(jnp.array([[0.0, 0.0], [2.0, 4.0]]))))
    10.0

  References:
    Perera & Patel, "Learning Deep Features for One-Class Classification", IEEE TIP 2019.
  """
  features = jnp.asarray(features)
  _check_ndim("features", features, 2, "[n, k]")
  if features.shape[1] == 0:
    raise ValueError(f"features must have k >= 1 feature, got shape {tuple(features.shape)}.")
  if mask is None:
    n = features.shape[0]
    if n < 2:
      raise ValueError(f"features needs n >= 2 samples (each is compared with the others), got shape "
                       f"{tuple(features.shape)}.")
    return (n / (n - 1)) ** 2 * jnp.mean(jnp.var(features, axis=0))
  mask = jnp.asarray(mask)
  _check_labels("mask", mask, features.shape[0])
  if check_labels("mask", mask, (0, 1)):
    selected = int(np.count_nonzero(np.asarray(mask)))
    if selected < 2:
      raise ValueError(f"mask must select at least 2 rows (each is compared with the others), got {selected}.")
  w = mask.astype(features.dtype)
  n = jnp.sum(w)
  mean = jnp.sum(w[:, None] * features, axis=0) / n
  var = jnp.sum(w[:, None] * jnp.square(features - mean), axis=0) / n
  return jnp.square(n / (n - 1)) * jnp.mean(var)


# --------------------------------------------------------------------------------------------------------------------
# Parameter-space regularisers: L2-SP and EWC.


def _key_name(path) -> str:
  return jax.tree_util.keystr(path, simple=True, separator="/")


def _selected_leaves(name: str, tree: Any, ref_tree: Any, mask: Mask, extra: Sequence[Any] = ()):
  """Flattens params, references (and e.g. Fisher) together and keeps the leaves selected by ``mask``."""
  structure = jax.tree.structure(tree)
  for other_name, other in [("ref_params", ref_tree), *extra]:
    if jax.tree.structure(other) != structure:
      raise ValueError(f"{other_name} must have the same tree structure as params.\n"
                       f"params: {structure}\n{other_name}: {jax.tree.structure(other)}")
  paths_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  names = [_key_name(path) for path, _ in paths_leaves]
  if mask is None:
    keep = [True] * len(names)
  elif callable(mask):
    keep = [bool(mask(n)) for n in names]
  else:
    if jax.tree.structure(mask) != structure:
      raise ValueError(f"mask must be None, a predicate on '/'-joined names, or a tree of bools with the same "
                       f"structure as params.\nparams: {structure}\nmask: {jax.tree.structure(mask)}")
    keep = [bool(m) for m in jax.tree.leaves(mask)]
  columns = [jax.tree.leaves(t) for t in (tree, ref_tree, *(o for _, o in extra))]
  selected = []
  for i, leaf_name in enumerate(names):
    if not keep[i]:
      continue
    leaves = [jnp.asarray(col[i]) for col in columns]
    if any(leaf.shape != leaves[0].shape for leaf in leaves):
      raise ValueError(f"{name}: leaf {leaf_name!r} has mismatched shapes {[tuple(l.shape) for l in leaves]}.")
    selected.append(leaves)
  return selected


def l2_sp(params: Any, ref_params: Any, *, squared: bool = False, mask: Mask = None) -> jax.Array:
  r"""L2-SP penalty: distance of the parameters to their pretrained starting point.

  .. math::
    \Omega(\theta) = \|\theta - \theta_0\|_2 \;\;(\text{default, ADIB code}) \quad\text{or}\quad
    \tfrac{1}{2}\|\theta - \theta_0\|_2^2 \;\;(\texttt{squared=True}, \text{Li et al.})

  over the concatenation of the selected leaves. Multiply by alpha (0.01 in ADIB) yourself. The unsquared form
  has gradient :math:`(\theta - \theta_0)/\|\theta - \theta_0\|`; at :math:`\theta = \theta_0` it is defined as 0
  (double-``where`` trick), not NaN.

  Args:
    params: pytree of parameters theta.
    ref_params: pytree theta_0 with the same structure and shapes (treated as constants by the caller).
    squared: use (1/2)||.||^2 instead of ||.||.
    mask: None (all leaves), a pytree of Python bools with the structure of params, or a predicate on
      '/'-joined key paths such as ``'block1/conv1/kernel'`` (e.g. ``lambda n: n.endswith('kernel')``). The mask
      is applied at trace time: under ``jax.jit`` close over it (``functools.partial``), don't pass it traced.

  Returns:
    [] the penalty (0 if no leaf is selected).

  Example:
    >>> import jax.numpy as jnp
    >>> p = {'conv': {'kernel': jnp.array([3.0, 4.0])}, 'bn': {'scale': jnp.array([9.0])}}
    >>> p0 = {'conv': {'kernel': jnp.zeros(2)}, 'bn': {'scale': jnp.zeros(1)}}
    >>> print(float(l2_sp(p, p0, mask=lambda name: name.endswith('kernel'))))
    5.0
    >>> print(float(l2_sp(p, p0, squared=True)))
    53.0

  References:
    Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional Networks",
    ICML 2018; Deecke et al., "Transfer-Based Semantic Anomaly Detection", ICML 2021.
  """
  selected = _selected_leaves("l2_sp", params, ref_params, mask)
  sq = sum((jnp.sum(jnp.square(p - p0)) for p, p0 in selected), jnp.zeros(()))
  if squared:
    return 0.5 * sq
  # sqrt'(0) is infinite: feed sqrt a safe value where sq == 0 so the unused branch has a finite gradient.
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def ewc(params: Any, ref_params: Any, fisher: Any, *, mask: Mask = None) -> jax.Array:
  r"""Elastic weight consolidation penalty with a diagonal Fisher.

  .. math::
    \Omega(\theta) = \sum_j \tfrac{1}{2} F_j (\theta_j - \theta_{0,j})^2

  over the selected leaves. Multiply by lambda (the "Fisher multiplier") yourself.

  Args:
    params: pytree of parameters theta.
    ref_params: pytree theta_0, same structure and shapes.
    fisher: pytree of diagonal Fisher values F, same structure and shapes (see :func:`diagonal_fisher`).
    mask: as in :func:`l2_sp`.

  Returns:
    [] the penalty.

  Example:
    >>> import jax.numpy as jnp
    >>> print(float(ewc({'w': jnp.array([1.0, 2.0])}, {'w': jnp.zeros(2)}, {'w': jnp.array([2.0, 0.5])})))
    2.0

  References:
    Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017.
  """
  selected = _selected_leaves("ewc", params, ref_params, mask, extra=[("fisher", fisher)])
  return sum((0.5 * jnp.sum(f * jnp.square(p - p0)) for p, p0, f in selected), jnp.zeros(()))


def diagonal_fisher(per_example_grads: Any) -> Any:
  r"""Empirical diagonal Fisher: mean over examples of squared per-example gradients.

  .. math::
    F_j = \frac{1}{N}\sum_{n=1}^N \big(\partial_{\theta_j} \log p(y_n \mid x_n; \theta)\big)^2

  Args:
    per_example_grads: pytree whose leaves are [N, ...] gradients, one row per example (e.g. from
      ``jax.vmap(jax.grad(loss), in_axes=(None, 0))``).

  Returns:
    pytree of [...] Fisher values with the per-example axis removed.

  Example:
    >>> import jax.numpy as jnp
    >>> print(diagonal_fisher({'w': jnp.array([[1.0, 2.0], [3.0, 0.0]])})['w'])
    [5. 2.]

  References:
    Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017.
  """
  def leaf_fisher(path, g):
    g = jnp.asarray(g)
    if g.ndim < 1:
      raise ValueError(f"per_example_grads leaf {_key_name(path)!r} must have a leading example axis [N, ...], "
                       f"got shape {tuple(g.shape)}.")
    if g.shape[0] == 0:
      raise ValueError(f"per_example_grads leaf {_key_name(path)!r} must hold at least one example, got shape "
                       f"{tuple(g.shape)}.")
    return jnp.mean(jnp.square(g), axis=0)
  return jax.tree_util.tree_map_with_path(leaf_fisher, per_example_grads)


def empirical_fisher(log_likelihood: Callable[..., jax.Array], params: Any, inputs: ArrayLike, labels: ArrayLike, *,
                     chunk_size: int = 8) -> Any:
  r"""Empirical diagonal Fisher of a model's log-likelihood over a dataset, `chunk_size` examples at a time.

  .. math::
    F_j = \frac{1}{N}\sum_{n=1}^N \big(\partial_{\theta_j} \log p(y_n \mid x_n; \theta)\big)^2

  Per-example gradients come from ``jax.vmap(jax.grad(log_likelihood))`` over each chunk (memory: `chunk_size` x the
  parameter count); the chunks' ``diagonal_fisher`` values are combined in float64 on the host, so the result does
  not depend on the chunking. The sign of the log-likelihood does not matter (it is squared): a negative
  log-likelihood, e.g. a cross-entropy, gives the same Fisher.

  Args:
    log_likelihood: ``(params, x, y) -> []`` for one example (x without a batch axis).
    params: the parameter pytree.
    inputs: [N, ...] examples.
    labels: [N] their labels.
    chunk_size: examples per vmapped gradient batch.

  Returns:
    A pytree like `params` of float32 Fisher values.

  Example:
    >>> import jax.numpy as jnp
    >>> ll = lambda p, x, y: y * p['w'] * x  # gradient y * x
    >>> print(empirical_fisher(ll, {'w': jnp.array(1.0)}, jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 1.0, -1.0]),
    ...                        chunk_size=2)['w'])
    4.6666665

  References:
    Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017.
  """
  if jnp.ndim(inputs) < 1:
    raise ValueError(f"inputs must have shape [N, ...], got shape {tuple(jnp.shape(inputs))}.")
  if jnp.ndim(labels) < 1:
    raise ValueError(f"labels must have shape [N], got shape {tuple(jnp.shape(labels))}.")
  n = len(inputs)
  if not n:
    raise ValueError("inputs must hold at least one example to estimate a Fisher, got none.")
  if len(labels) != n:
    raise ValueError(f"labels must have shape [N] = ({n},) like inputs, got {len(labels)} labels.")
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
  fisher_of_chunk = jax.jit(lambda p, x, y: diagonal_fisher(jax.vmap(jax.grad(log_likelihood), (None, 0, 0))(p, x, y)))
  total = None
  for start in range(0, n, chunk_size):
    x, y = inputs[start:start + chunk_size], labels[start:start + chunk_size]
    part = jax.tree.map(lambda f, m=len(x): np.asarray(f, np.float64) * m, fisher_of_chunk(params, x, y))
    total = part if total is None else jax.tree.map(np.add, total, part)
  return jax.tree.map(lambda t: jnp.asarray(t / n, jnp.float32), total)
