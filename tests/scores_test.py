"""Tests for jaxad.scores against independent NumPy computations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special

from jaxad import scores



def _rng(seed=0):
  return np.random.default_rng(seed)


def _close(actual, expected, **kw):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **{"rtol": 1e-5, "atol": 1e-6, **kw})


def test_oe_sigmoid():
  s = _rng().normal(scale=3, size=6)
  expected = 1 / (1 + np.exp(-s))
  _close(scores.oe_sigmoid(s), expected)
  _close(jax.jit(scores.oe_sigmoid)(s[:, None]), expected)
  with pytest.raises(ValueError, match=r"logits must have shape \[B\] or \[B, 1\]"):
    scores.oe_sigmoid(jnp.zeros((6, 2)))


def test_hsc_score(x64):
  z = _rng().normal(size=(5, 3))
  d = np.array([np.sqrt(1 + sum(v ** 2 for v in row)) - 1 for row in z])
  _close(scores.hsc(z), 1 - np.exp(-d))
  _close(jax.jit(scores.hsc)(z), 1 - np.exp(-d))
  check_grads(jax.jit(scores.hsc), (jnp.asarray(z),), order=1, modes=["rev"])
  with pytest.raises(ValueError, match=r"embeddings must have shape \[B, D\]"):
    scores.hsc(jnp.zeros(3))


def test_distance_and_soft_distance():
  z, c = _rng().normal(size=(5, 3)), _rng(1).normal(size=3)
  d = np.array([sum((row[k] - c[k]) ** 2 for k in range(3)) for row in z])
  _close(scores.distance(z, c), d)
  _close(jax.jit(scores.distance)(z, c), d)
  _close(scores.soft_distance(z, c, 1.2), d - 1.44)
  _close(jax.jit(scores.soft_distance)(z, c, 1.2), d - 1.44)
  with pytest.raises(ValueError, match=r"radius must be a scalar"):
    scores.soft_distance(z, c, jnp.ones(1))
  with pytest.raises(ValueError, match=r"center must have shape \[D\] = \(3,\)"):
    scores.distance(z, c[:2])


def test_multi_layer_scores_match_numpy():
  rng = _rng()
  dims = (3, 7, 2)
  feats = [rng.normal(size=(4, d)) for d in dims]
  centers = [rng.normal(size=d) for d in dims]
  radii = np.array([0.3, 1.5, 0.9])
  sq = np.array([[np.sum((f[i] - c) ** 2) for i in range(4)] for f, c in zip(feats, centers)])  # [L, B]
  _close(scores.multi_layer(feats, centers), sq.mean(axis=0))
  _close(scores.multi_layer(feats, centers, radii), (sq - radii[:, None] ** 2).mean(axis=0))
  _close(scores.multi_layer(feats, centers, radii, squared=False), (np.sqrt(sq) - radii[:, None]).mean(axis=0))
  _close(scores.multi_layer(feats, centers, squared=False), np.sqrt(sq).mean(axis=0))
  fn = jax.jit(functools.partial(scores.multi_layer, squared=False))
  _close(fn(feats, centers, radii), (np.sqrt(sq) - radii[:, None]).mean(axis=0))
  with pytest.raises(ValueError, match=r"radii must have shape \[L\] = \(3,\)"):
    scores.multi_layer(feats, centers, radii[:2])


def test_patch_max():
  s = _rng().normal(size=(3, 64))
  _close(scores.patch_max(s), s.max(axis=-1))
  _close(jax.jit(functools.partial(scores.patch_max, axis=0))(s), s.max(axis=0))
  with pytest.raises(ValueError, match="patch axis"):
    scores.patch_max(s, axis=2)


def _softmax_rows(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def test_transform_likelihood_matches_loop():
  rng = _rng()
  probs = {"rot": _softmax_rows(rng.normal(size=(5, 4, 4))), "tx": _softmax_rows(rng.normal(size=(5, 3, 3))),
           "jigsaw": _softmax_rows(rng.normal(size=(5, 6, 6)))}
  true_index = {"rot": np.arange(4), "tx": np.array([0, 1, 2]), "jigsaw": np.array([5, 4, 3, 2, 1, 0])}
  expected = np.zeros(5)
  for b in range(5):
    per_task = [sum(probs[t][b, j, true_index[t][j]] for j in range(len(true_index[t]))) for t in probs]
    expected[b] = -np.mean(per_task)
  _close(scores.transform_likelihood(probs, true_index), expected)
  _close(jax.jit(scores.transform_likelihood)(probs, true_index), expected)


def test_transform_likelihood_errors():
  p = {"rot": jnp.full((2, 4, 4), 0.25)}
  with pytest.raises(ValueError, match="same task keys"):
    scores.transform_likelihood(p, {"tx": jnp.arange(4)})
  with pytest.raises(ValueError, match=r"true_index\['rot'\] must be integers of shape \[T\] = \(4,\)"):
    scores.transform_likelihood(p, {"rot": jnp.arange(3)})
  with pytest.raises(ValueError, match=r"probs\['rot'\] must have shape \[B, T, K\]"):
    scores.transform_likelihood({"rot": jnp.ones((2, 4))}, {"rot": jnp.arange(4)})


def test_dirichlet_normality_matches_loop():
  rng = _rng()
  probs = _softmax_rows(rng.normal(size=(3, 5, 4)))
  alpha = rng.uniform(0.5, 5.0, size=(5, 4))
  expected = [-np.mean([sum((alpha[t, k] - 1) * np.log(probs[b, t, k]) for k in range(4)) for t in range(5)])
              for b in range(3)]
  _close(scores.dirichlet_normality(probs, alpha), expected, rtol=1e-4)
  _close(jax.jit(scores.dirichlet_normality)(probs, alpha), expected, rtol=1e-4)
  # An exact zero probability stays finite (log is clipped).
  zero = np.array([[[1.0, 0.0]]], np.float32)
  assert np.isfinite(float(scores.dirichlet_normality(zero, np.array([[2.0, 0.5]]))[0]))
  with pytest.raises(ValueError, match=r"alpha must have shape \[T, K\] = \(5, 4\)"):
    scores.dirichlet_normality(probs, alpha[:, :3])


@pytest.mark.parametrize("alpha", [[2.0, 5.0, 1.0], [0.6, 0.9, 3.0, 8.0]])
def test_fit_dirichlet_recovers_alpha(alpha, x64):
  samples = _rng(1).dirichlet(alpha, size=20000)
  fitted = np.asarray(scores.fit_dirichlet(samples))
  np.testing.assert_allclose(fitted, alpha, rtol=0.04)
  # The MLE is a stationary point of the mean log-likelihood: psi(sum a) - psi(a_k) + mean log p_k = 0.
  stationarity = special.digamma(fitted.sum()) - special.digamma(fitted) + np.log(samples).mean(axis=0)
  np.testing.assert_allclose(stationarity, 0.0, atol=1e-6)


def test_fit_dirichlet_vmaps_over_transforms():
  rng = _rng(2)
  alphas = np.array([[1.5, 3.0, 6.0], [4.0, 1.0, 2.0]])
  samples = np.stack([rng.dirichlet(a, size=5000) for a in alphas], axis=1).astype(np.float32)  # [N, T, K]
  fitted = jax.jit(jax.vmap(scores.fit_dirichlet, in_axes=1))(samples)
  assert fitted.shape == (2, 3)
  np.testing.assert_allclose(np.asarray(fitted), alphas, rtol=0.08)
  with pytest.raises(ValueError, match="N >= 2"):
    scores.fit_dirichlet(samples[:1, 0])
  with pytest.raises(ValueError, match=r"probs must have shape \[N, K\]"):
    scores.fit_dirichlet(samples)


# --------------------------------------------------------------------------------------------------------------------
# Input validation: bad labels, empty inputs, mismatched shapes (eager); jitted paths still run.


@pytest.mark.parametrize("call, match", [
    (lambda: scores.oe_sigmoid(jnp.zeros(0)), r"logits must be non-empty"),
    (lambda: scores.oe_sigmoid(jnp.zeros((0, 1))), r"logits must be non-empty"),
    (lambda: scores.hsc(jnp.zeros((0, 3))), r"embeddings must be non-empty"),
    (lambda: scores.distance(jnp.zeros((0, 3)), jnp.zeros(3)), r"embeddings must be non-empty"),
    (lambda: scores.soft_distance(jnp.zeros((0, 3)), jnp.zeros(3), 1.0), r"embeddings must be non-empty"),
    (lambda: scores.soft_distance(jnp.zeros((2, 3)), jnp.zeros(2), 1.0), r"center must have shape"),
    (lambda: scores.multi_layer([jnp.zeros((0, 2))], [jnp.zeros(2)]), r"features\[0\] must be non-empty"),
    (lambda: scores.multi_layer([jnp.zeros((2, 2))], [jnp.zeros(3)]), r"centers\[0\] must have shape"),
    (lambda: scores.multi_layer([], []), "features and centers"),
    (lambda: scores.patch_max(jnp.zeros((3, 0))), r"patch_scores must have at least one patch"),
    (lambda: scores.patch_max(jnp.zeros(())), r"patch_scores must have a patch axis"),
    (lambda: scores.transform_likelihood({"rot": jnp.full((2, 2, 2), 0.5)}, {"rot": jnp.array([0, 2])}),
     r"true_index\['rot'\] must take values in \[0, 1\]"),
    (lambda: scores.transform_likelihood({"rot": jnp.full((2, 2, 2), 0.5)}, {"rot": jnp.array([-1, 0])}),
     r"true_index\['rot'\]"),
    (lambda: scores.transform_likelihood({"rot": jnp.zeros((0, 2, 2))}, {"rot": jnp.array([0, 1])}),
     r"probs\['rot'\] must be non-empty"),
    (lambda: scores.transform_likelihood({}, {}), "probs"),
    (lambda: scores.dirichlet_normality(jnp.zeros((0, 2, 2)), jnp.ones((2, 2))), r"probs must be non-empty"),
    (lambda: scores.dirichlet_normality(jnp.zeros((2, 0, 2)), jnp.ones((0, 2))), r"probs must be non-empty"),
    (lambda: scores.dirichlet_normality(jnp.full((2, 2, 2), 0.5), jnp.ones((3, 2))), r"alpha must have shape"),
    (lambda: scores.fit_dirichlet(jnp.full((4, 1), 1.0)), r"probs needs K >= 2 classes"),
    (lambda: scores.fit_dirichlet(jnp.zeros((0, 3))), r"probs needs N >= 2"),
])
def test_invalid_inputs_raise_value_error_naming_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_jitted_scores_run_with_valid_traced_inputs():
  rng = _rng(4)
  z, c = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), jnp.asarray(rng.normal(size=3), jnp.float32)
  probs = jnp.asarray(_softmax_rows(rng.normal(size=(5, 2, 3))), jnp.float32)
  cases = [
      (scores.oe_sigmoid, (z[:, :1],)),
      (scores.hsc, (z,)),
      (scores.distance, (z, c)),
      (scores.soft_distance, (z, c, jnp.asarray(0.5))),
      (scores.multi_layer, ([z, z[:, :2]], [c, c[:2]], jnp.ones(2))),
      (scores.patch_max, (z,)),
      (scores.transform_likelihood, ({"rot": probs}, {"rot": jnp.array([2, 0])})),
      (scores.dirichlet_normality, (probs, jnp.full((2, 3), 2.0))),
  ]
  for fn, args in cases:
    jitted, eager = jax.jit(fn)(*args), fn(*args)
    assert np.all(np.isfinite(np.asarray(jitted))), fn
    _close(jitted, eager, rtol=1e-5, atol=1e-5)
  # Traced true_index values are not inspected under jit (documented); shapes still are.
  jax.jit(scores.transform_likelihood)({"rot": probs}, {"rot": jnp.array([2, 9])})
  with pytest.raises(ValueError, match=r"probs\['rot'\] must be non-empty"):
    jax.jit(scores.transform_likelihood)({"rot": probs[:0]}, {"rot": jnp.array([2, 0])})
