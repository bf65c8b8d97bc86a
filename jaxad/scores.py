"""Anomaly scores: higher = more anomalous, everywhere.

Each function maps network outputs for a batch to one score per example ([B]); turn scores into metrics with
`jaxad.metrics`. Like `jaxad.losses`, this module imports only jax.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, polygamma

from jaxad import losses

ArrayLike = jax.typing.ArrayLike

_EULER_GAMMA = 0.5772156649015329  # -digamma(1)


def oe_sigmoid(logits: ArrayLike) -> jax.Array:
  r"""Outlier-exposure classifier score: the predicted probability of being an outlier, :math:`\sigma(s)`.

  Args:
    logits: [B] or [B, 1] logits of a head trained with :func:`jaxad.losses.outlier_exposure_bce`.

  Returns:
    [B] scores in (0, 1).

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> print(np.asarray(oe_sigmoid(jnp.array([[0.0], [2.0]]))).round(4))
    [0.5    0.8808]

  References:
    Deecke et al., "Transfer-Based Semantic Anomaly Detection", ICML 2021.
  """
  return jax.nn.sigmoid(losses._squeeze_logits(jnp.asarray(logits)))


def hsc(embeddings: ArrayLike) -> jax.Array:
  r"""Hypersphere-classifier score :math:`1 - e^{-d}`, with :math:`d = \sqrt{\|z\|^2 + 1} - 1`.

  Args:
    embeddings: [B, D] network outputs z.

  Returns:
    [B] scores in [0, 1).

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> print(np.asarray(hsc(jnp.array([[0.0, 0.0], [3.0, 4.0]]))).round(4))
    [0.     0.9834]

  References:
    Ruff et al., "Rethinking Assumptions in Deep Anomaly Detection", arXiv:2006.00339, 2020.
  """
  embeddings = jnp.asarray(embeddings)
  losses._check_ndim("embeddings", embeddings, 2, "[B, D]")
  losses._check_nonempty("embeddings", embeddings, "[B, D]")
  return -jnp.expm1(-losses.pseudo_huber_norm(embeddings))


def distance(embeddings: ArrayLike, center: ArrayLike) -> jax.Array:
  r"""One-class (hard-boundary) Deep SVDD / Deep SAD score :math:`\|z - c\|_2^2`.

  Args:
    embeddings: [B, D] network outputs z.
    center: [D] hypersphere center c.

  Returns:
    [B] squared distances.

  Example:
    >>> import jax.numpy as jnp
    >>> print(distance(jnp.array([[1.0, 2.0]]), jnp.array([1.0, 0.0])))
    [4.]

  References:
    Ruff et al., "Deep One-Class Classification", ICML 2018.
  """
  return losses.one_class(embeddings, center)


def soft_distance(embeddings: ArrayLike, center: ArrayLike, radius: ArrayLike) -> jax.Array:
  r"""Soft-boundary Deep SVDD score :math:`\|z - c\|_2^2 - R^2` (positive outside the sphere).

  Args:
    embeddings: [B, D] network outputs z.
    center: [D] hypersphere center c.
    radius: [] radius R (not squared).

  Returns:
    [B] scores.

  Example:
    >>> import jax.numpy as jnp
    >>> print(soft_distance(jnp.array([[1.0, 2.0]]), jnp.array([1.0, 0.0]), 1.5))
    [1.75]

  References:
    Ruff et al., "Deep One-Class Classification", ICML 2018.
  """
  radius = jnp.asarray(radius)
  if radius.ndim != 0:
    raise ValueError(f"radius must be a scalar [], got shape {tuple(radius.shape)}.")
  return losses.one_class(embeddings, center) - jnp.square(radius)


def multi_layer(
    features: Sequence[ArrayLike],
    centers: Sequence[ArrayLike],
    radii: ArrayLike | None = None,
    *,
    squared: bool = True,
) -> jax.Array:
  r"""MOCCA score: mean over layers of the (soft) distance to each layer's center.

  .. math::
    \gamma(x) = \frac{1}{L}\sum_l \big(\|f_l - c_l\|^2 - R_l^2\big) \;\;(\texttt{squared=True}, \text{CIFAR})
    \quad\text{or}\quad \frac{1}{L}\sum_l \big(\|f_l - c_l\| - R_l\big) \;\;(\texttt{squared=False}, \text{MVTec})

  with :math:`R_l = 0` when ``radii`` is None (hard boundary). For MVTec textures take :func:`patch_max` over the
  per-patch scores afterwards.

  Args:
    features: L arrays of shape [B, D_l].
    centers: L arrays of shape [D_l].
    radii: [L] radii R_l (not squared), or None for the hard boundary.
    squared: squared distances minus R^2 (CIFAR code) or norms minus R (MVTec code).

  Returns:
    [B] scores.

  Example:
    >>> import jax.numpy as jnp
    >>> f = [jnp.array([[3.0, 4.0]]), jnp.array([[1.0]])]
    >>> c = [jnp.zeros(2), jnp.zeros(1)]
    >>> print(multi_layer(f, c), multi_layer(f, c, jnp.array([1.0, 1.0]), squared=False))
    [13.] [2.]

  References:
    Massoli et al., "MOCCA: Multi-Layer One-Class Classification for Anomaly Detection", IEEE TNNLS 2021, Eq. 6.
  """
  sq = losses.multi_layer_hypersphere(features, centers, boundary="hard")  # [L, B], validates shapes.
  per_layer = sq if squared else jnp.sqrt(sq)
  if radii is not None:
    radii = jnp.asarray(radii)
    if radii.shape != (sq.shape[0],):
      raise ValueError(f"radii must have shape [L] = ({sq.shape[0]},), got shape {tuple(radii.shape)}.")
    per_layer = per_layer - (jnp.square(radii) if squared else radii)[:, None]
  return jnp.mean(per_layer, axis=0)


def patch_max(patch_scores: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""Image score as the maximum over its patch scores, :math:`\max_p s_p` (MOCCA on MVTec textures).

  Args:
    patch_scores: [..., P, ...] scores with a patch axis.
    axis: the patch axis.

  Returns:
    the scores with ``axis`` removed, e.g. [B] for [B, P] input.

  Example:
    >>> import jax.numpy as jnp
    >>> print(patch_max(jnp.array([[0.1, 0.7, 0.2], [0.0, -1.0, 0.3]])))
    [0.7 0.3]

  References:
    Massoli et al., "MOCCA: Multi-Layer One-Class Classification for Anomaly Detection", IEEE TNNLS 2021.
  """
  patch_scores = jnp.asarray(patch_scores)
  if patch_scores.ndim < 1 or not -patch_scores.ndim <= axis < patch_scores.ndim:
    raise ValueError(f"patch_scores must have a patch axis {axis}, got shape {tuple(patch_scores.shape)}.")
  if patch_scores.shape[axis] == 0:
    raise ValueError(f"patch_scores must have at least one patch along axis {axis}, got shape "
                     f"{tuple(patch_scores.shape)}.")
  return jnp.max(patch_scores, axis=axis)


def transform_likelihood(probs: Mapping[str, ArrayLike], true_index: Mapping[str, ArrayLike]) -> jax.Array:
  r"""Multi-task self-supervision score: negative mean over tasks of the summed true-class probability.

  .. math::
    s(x) = -\frac{1}{N}\sum_{i=1}^N \sum_{j=1}^{T_i} p^{(i)}\big(y = j \mid T^{(i)}_j(x)\big)

  i.e. the negated Jezequel et al. Eqs. 5-6: a network that recognises the transformations of x well says x is
  normal.

  Args:
    probs: mapping task -> [B, T_t, K_t] softmax outputs, one row per transformed copy of each example.
    true_index: mapping task -> [T_t] integer true class in [0, K_t) of each copy; same keys as ``probs``. Values
      are checked eagerly; under jit use `jax.experimental.checkify` or validate before the call
      (:func:`jaxad.losses.check_labels`).

  Returns:
    [B] scores in [-max_t T_t, 0].

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> probs = {'rot': jnp.array([[[0.7, 0.3], [0.4, 0.6]]])}  # B=1, two rotated copies, 2 classes
    >>> print(np.asarray(transform_likelihood(probs, {'rot': jnp.array([0, 1])})).round(4))
    [-1.3]

  References:
    Jezequel et al., "Anomaly Detection via Multi-Scale Contrasted Memory / Multi-Task Self-Supervision", Eqs. 5-6;
    Hendrycks et al., "Using Self-Supervised Learning Can Improve Model Robustness and Uncertainty", NeurIPS 2019.
  """
  if set(probs) != set(true_index):
    raise ValueError(f"probs and true_index must have the same task keys, got {sorted(probs)} and "
                     f"{sorted(true_index)}.")
  if not probs:
    raise ValueError("probs must contain at least one task.")
  per_task, batch = [], None
  for task in sorted(probs):
    p, idx = jnp.asarray(probs[task]), jnp.asarray(true_index[task])
    losses._check_ndim(f"probs[{task!r}]", p, 3, "[B, T, K]")
    losses._check_nonempty(f"probs[{task!r}]", p, "[B, T, K]")
    batch = p.shape[0] if batch is None else batch
    if p.shape[0] != batch:
      raise ValueError(f"probs[{task!r}] must have batch size {batch} like the other tasks, got shape "
                       f"{tuple(p.shape)}.")
    if idx.shape != (p.shape[1],) or not jnp.issubdtype(idx.dtype, jnp.integer):
      raise ValueError(f"true_index[{task!r}] must be integers of shape [T] = ({p.shape[1]},), got shape "
                       f"{tuple(idx.shape)} and dtype {idx.dtype}.")
    losses.check_labels(f"true_index[{task!r}]", idx, low=0, high=p.shape[2] - 1)
    per_task.append(jnp.sum(p[:, jnp.arange(p.shape[1]), idx], axis=1))
  return -jnp.mean(jnp.stack(per_task), axis=0)


def _log_probs(probs: jax.Array) -> jax.Array:
  # float32 softmax outputs can underflow to exactly 0; clip so log stays finite.
  return jnp.log(jnp.clip(probs, jnp.finfo(probs.dtype).tiny, 1.0))


def dirichlet_normality(probs: ArrayLike, alpha: ArrayLike) -> jax.Array:
  r"""GeoTrans score: the negated Dirichlet normality score, averaged over transformations.

  .. math::
    s(x) = -\frac{1}{T}\sum_{t=1}^T \sum_{k=1}^K (\alpha_{t,k} - 1)\log p_{t,k}(x)

  where :math:`p_t(x)` is the softmax output for the t-th transformed copy of x and :math:`\alpha_t` a Dirichlet
  fitted to the normal training outputs with :func:`fit_dirichlet`. GeoTrans reports the normality (without the
  minus sign) with normal as the positive class; probabilities are clipped to the smallest normal float.

  Args:
    probs: [B, T, K] softmax outputs of the T transformed copies of each example.
    alpha: [T, K] Dirichlet parameters, e.g. ``jax.vmap(fit_dirichlet, in_axes=1)(train_probs)``.

  Returns:
    [B] scores.

  Example:
    >>> import numpy as np, jax.numpy as jnp
    >>> alpha = jnp.array([[5.0, 1.0]])
    >>> print(np.asarray(dirichlet_normality(jnp.array([[[0.9, 0.1]], [[0.1, 0.9]]]), alpha)).round(4))
    [0.4214 9.2103]

  References:
    Golan & El-Yaniv, "Deep Anomaly Detection Using Geometric Transformations", NeurIPS 2018.
  """
  probs, alpha = jnp.asarray(probs), jnp.asarray(alpha)
  losses._check_ndim("probs", probs, 3, "[B, T, K]")
  losses._check_nonempty("probs", probs, "[B, T, K]")
  if alpha.shape != probs.shape[1:]:
    raise ValueError(f"alpha must have shape [T, K] = {probs.shape[1:]} to match probs {tuple(probs.shape)}, "
                     f"got shape {tuple(alpha.shape)}.")
  normality = jnp.sum((alpha - 1.0) * _log_probs(probs), axis=-1)  # [B, T]
  return -jnp.mean(normality, axis=-1)


def _inverse_digamma(y: jax.Array, num_newton: int = 5) -> jax.Array:
  """Solves digamma(x) = y with Minka's initialisation and a few Newton steps."""
  x = jnp.where(y >= -2.22, jnp.exp(y) + 0.5, -1.0 / (y + _EULER_GAMMA))
  for _ in range(num_newton):
    x = x - (digamma(x) - y) / polygamma(1, x)
  return x


def fit_dirichlet(probs: ArrayLike, *, max_iter: int = 1000, tol: float = 1e-9) -> jax.Array:
  r"""Maximum-likelihood Dirichlet parameters by Minka's fixed-point iteration (as GeoTrans fits its score).

  .. math::
    \alpha_k \leftarrow \psi^{-1}\Big(\psi\big(\textstyle\sum_j \alpha_j\big) + \overline{\log p_k}\Big),
    \qquad \overline{\log p_k} = \frac{1}{N}\sum_n \log p_{n,k}

  started from :math:`\alpha = \bar p\, s_0` with the precision approximation
  :math:`s_0 = \frac{(K-1)\,\gamma}{\sum_k \bar p_k(\log \bar p_k - \overline{\log p_k})}` (:math:`\gamma = -\psi(1)`),
  iterated until :math:`\|\Delta\alpha\|_2 <` ``tol`` or ``max_iter`` steps.

  Args:
    probs: [N, K] probability vectors (rows on the simplex), N >= 2. For T transformations, use
      ``jax.vmap(fit_dirichlet, in_axes=1)`` on [N, T, K] to get [T, K].
    max_iter: maximum number of fixed-point steps.
    tol: stopping threshold on the L2 change of alpha.

  Returns:
    [K] Dirichlet concentration parameters alpha.

  Example:
    >>> import numpy as np
    >>> samples = np.random.default_rng(0).dirichlet([2.0, 5.0, 1.0], size=5000)
    >>> print(np.asarray(fit_dirichlet(samples)).round())
    [2. 5. 1.]

  References:
    Minka, "Estimating a Dirichlet distribution", 2000; Golan & El-Yaniv, "Deep Anomaly Detection Using Geometric
    Transformations", NeurIPS 2018.
  """
  probs = jnp.asarray(probs)
  losses._check_ndim("probs", probs, 2, "[N, K]")
  if probs.shape[0] < 2:
    raise ValueError(f"probs needs N >= 2 samples to fit a Dirichlet, got shape {tuple(probs.shape)}.")
  if probs.shape[1] < 2:
    raise ValueError(f"probs needs K >= 2 classes to fit a Dirichlet, got shape {tuple(probs.shape)}.")
  num_classes = probs.shape[1]
  mean_log = jnp.mean(_log_probs(probs), axis=0)
  mean = jnp.mean(probs, axis=0)
  s0 = (num_classes - 1) * _EULER_GAMMA / jnp.sum(mean * (jnp.log(mean) - mean_log))
  alpha0 = mean * s0

  def cond(state):
    step, _, change = state
    return (step < max_iter) & (change >= tol)

  def body(state):
    step, alpha, _ = state
    new = _inverse_digamma(digamma(jnp.sum(alpha)) + mean_log)
    return step + 1, new, jnp.linalg.norm(new - alpha)

  init = (jnp.zeros((), jnp.int32), alpha0, jnp.full((), jnp.inf, alpha0.dtype))
  return jax.lax.while_loop(cond, body, init)[1]
