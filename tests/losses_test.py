"""Tests for jaxad.losses against independent NumPy computations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxad import losses



def _rng(seed=0):
  return np.random.default_rng(seed)


def _grads(f, args, order=1):
  """check_grads on the jitted function (reverse mode); eager order-2 checks are slow on a shared CPU."""
  check_grads(jax.jit(f), args, order=order, modes=["rev"])


def _close(actual, expected, **kw):
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **{"rtol": 1e-5, "atol": 1e-6, **kw})


# --------------------------------------------------------------------------------------------------------------------
# Deep SVDD: one-class, soft boundary, radius, center.


def _np_sq_dist(z, c):
  return np.array([sum((zi[k] - c[k]) ** 2 for k in range(len(c))) for zi in z])


def test_one_class_matches_numpy_and_jit():
  z, c = _rng().normal(size=(5, 3)), _rng(1).normal(size=3)
  expected = _np_sq_dist(z, c)
  _close(losses.one_class(z, c), expected)
  _close(jax.jit(losses.one_class)(z, c), expected)
  assert losses.one_class(z, c).shape == (5,)


def test_one_class_grads(x64):
  z, c = jnp.asarray(_rng().normal(size=(4, 3))), jnp.asarray(_rng(1).normal(size=3))
  _grads(losses.one_class, (z, c), order=2)


@pytest.mark.parametrize("z_shape, c_shape, match", [
    ((5,), (5,), r"embeddings must have shape \[B, D\], got shape \(5,\)"),
    ((5, 3), (4,), r"center must have shape \[D\] = \(3,\).*got shape \(4,\)"),
    ((5, 3), (5, 3), r"center must have shape \[D\]"),
])
def test_one_class_shape_errors(z_shape, c_shape, match):
  with pytest.raises(ValueError, match=match):
    losses.one_class(jnp.zeros(z_shape), jnp.zeros(c_shape))


def test_soft_boundary_matches_numpy_and_jit():
  z, c = _rng().normal(size=(8, 4)), _rng(1).normal(size=4)
  radius, nu = 1.7, 0.3
  d = _np_sq_dist(z, c)
  expected = [radius ** 2 + max(0.0, di - radius ** 2) / nu for di in d]
  _close(losses.soft_boundary(z, c, radius=radius, nu=nu), expected)
  fn = jax.jit(functools.partial(losses.soft_boundary, nu=nu))
  _close(fn(z, c, radius=radius), expected)
  # The batch mean is the Deep SVDD objective R^2 + 1/(nu n) sum max(0, d - R^2).
  objective = radius ** 2 + np.sum(np.maximum(d - radius ** 2, 0)) / (nu * len(d))
  _close(jnp.mean(losses.soft_boundary(z, c, radius=radius, nu=nu)), objective)


def test_soft_boundary_grads(x64):
  z, c = jnp.asarray(_rng().normal(size=(6, 3))), jnp.asarray(_rng(1).normal(size=3))
  fn = functools.partial(losses.soft_boundary, nu=0.2)
  _grads(lambda z, c, r: fn(z, c, radius=r), (z, c, jnp.asarray(1.3)))


@pytest.mark.parametrize("nu", [0.0, -0.1, 1.0001, 2.0])
def test_nu_out_of_range_raises(nu):
  z, c = jnp.ones((3, 2)), jnp.zeros(2)
  with pytest.raises(ValueError, match=r"nu must be in \(0, 1\]"):
    losses.soft_boundary(z, c, radius=1.0, nu=nu)
  with pytest.raises(ValueError, match=r"nu must be in \(0, 1\]"):
    losses.radius_from_distances(jnp.ones(3), nu=nu)


def test_soft_boundary_nu_one_and_radius_shape():
  z, c = jnp.array([[2.0, 0.0], [0.0, 0.5]]), jnp.zeros(2)
  _close(losses.soft_boundary(z, c, radius=1.0, nu=1.0), [4.0, 1.0])
  with pytest.raises(ValueError, match=r"radius must be a scalar \[\], got shape \(2,\)"):
    losses.soft_boundary(z, c, radius=jnp.ones(2), nu=0.1)


@pytest.mark.parametrize("nu", [1e-3, 0.1, 0.5, 0.77, 1.0])
def test_radius_from_distances_matches_np_quantile(nu):
  d = _rng().uniform(0, 5, size=13) ** 2
  expected = np.quantile(np.sqrt(d), 1 - nu)  # NumPy default: linear interpolation.
  _close(losses.radius_from_distances(d, nu=nu), expected)
  _close(jax.jit(functools.partial(losses.radius_from_distances, nu=nu))(d), expected)


def test_radius_nu_bounds_are_min_and_near_max():
  d = jnp.array([9.0, 1.0, 4.0, 16.0])
  assert float(losses.radius_from_distances(d, nu=1.0)) == pytest.approx(1.0)  # (1 - nu) = 0 quantile = min
  assert float(losses.radius_from_distances(d, nu=1e-9)) == pytest.approx(4.0, rel=1e-5)  # -> max


def test_radius_per_layer_vmap_and_no_gradient():
  d = _rng().uniform(0, 4, size=(3, 10))
  radii = jax.vmap(functools.partial(losses.radius_from_distances, nu=0.1))(d)
  _close(radii, [np.quantile(np.sqrt(row), 0.9) for row in d])
  grad = jax.grad(lambda d: losses.radius_from_distances(d, nu=0.5))(jnp.zeros(4))
  assert np.all(np.asarray(grad) == 0)  # stop_gradient: no NaN from sqrt at 0.


def test_radius_shape_error():
  with pytest.raises(ValueError, match=r"sq_distances must have shape \[B\], got shape \(2, 3\)"):
    losses.radius_from_distances(jnp.ones((2, 3)), nu=0.1)


def _np_center(z, eps):
  c = z.mean(axis=0)
  out = []
  for ci in c:
    if -eps < ci < 0:
      out.append(-eps)
    elif 0 < ci < eps:
      out.append(eps)
    else:
      out.append(ci)
  return np.array(out)


def test_hypersphere_center_eps_guard():
  # Column means: 0.05, -0.05, exact 0, 0.1 (== eps, kept), -0.3, 0.099.
  z = np.array([[0.1, -0.1, 1.0, 0.1, -0.2, 0.099],
                [0.0, 0.0, -1.0, 0.1, -0.4, 0.099]], np.float32)
  expected = np.array([0.1, -0.1, 0.0, 0.1, -0.3, 0.1], np.float32)
  _close(losses.hypersphere_center(z), expected)
  _close(jax.jit(losses.hypersphere_center)(z), expected)
  assert float(losses.hypersphere_center(z)[2]) == 0.0  # exact zeros stay zero


def test_hypersphere_center_random_matches_numpy():
  z = _rng().normal(scale=0.2, size=(50, 16))
  for eps in (0.1, 0.03):
    _close(losses.hypersphere_center(z, eps=eps), _np_center(z, eps))
  with pytest.raises(ValueError, match=r"embeddings must have shape \[B, D\]"):
    losses.hypersphere_center(jnp.zeros(3))


# --------------------------------------------------------------------------------------------------------------------
# MOCCA.


def _layers(seed=0, batch=5, dims=(3, 6, 2)):
  rng = _rng(seed)
  return [rng.normal(size=(batch, d)) for d in dims], [rng.normal(size=d) for d in dims]


def test_multi_layer_hypersphere_soft_and_hard_match_numpy():
  feats, centers = _layers()
  radii, nu = np.array([0.5, 2.0, 1.0]), 0.1
  hard = [_np_sq_dist(f, c) for f, c in zip(feats, centers)]
  soft = [[r ** 2 + max(0.0, d - r ** 2) / nu for d in row] for row, r in zip(hard, radii)]
  _close(losses.multi_layer_hypersphere(feats, centers, boundary="hard"), hard)
  _close(losses.multi_layer_hypersphere(feats, centers, boundary="soft", radii=radii, nu=nu), soft)
  fn = jax.jit(functools.partial(losses.multi_layer_hypersphere, boundary="soft", nu=nu))
  out = fn(feats, centers, radii=radii)
  assert out.shape == (3, 5)
  _close(out, soft)
  # The paper's objective: mean over examples, then over layers.
  _close(out.mean(axis=1).mean(), np.mean([np.mean(row) for row in soft]))


def test_multi_layer_hypersphere_grads(x64):
  feats, centers = _layers(batch=3)
  feats = [jnp.asarray(f) for f in feats]
  fn = lambda fs, r: losses.multi_layer_hypersphere(fs, centers, boundary="soft", radii=r, nu=0.3)
  _grads(fn, (feats, jnp.array([0.5, 2.0, 1.0])))


def test_multi_layer_hypersphere_errors():
  feats, centers = _layers()
  with pytest.raises(ValueError, match="boundary must be 'soft' or 'hard'"):
    losses.multi_layer_hypersphere(feats, centers, boundary="medium")
  with pytest.raises(ValueError, match="same length L, got 3 features and 2 centers"):
    losses.multi_layer_hypersphere(feats, centers[:2], boundary="hard")
  with pytest.raises(ValueError, match=r"radii of shape \[L\] is required"):
    losses.multi_layer_hypersphere(feats, centers, boundary="soft")
  with pytest.raises(ValueError, match=r"radii must have shape \[L\] = \(3,\), got shape \(2,\)"):
    losses.multi_layer_hypersphere(feats, centers, boundary="soft", radii=jnp.ones(2))
  with pytest.raises(ValueError, match="same batch size"):
    losses.multi_layer_hypersphere([feats[0], feats[1][:2], feats[2]], centers, boundary="hard")
  with pytest.raises(ValueError, match=r"nu must be in \(0, 1\]"):
    losses.multi_layer_hypersphere(feats, centers, boundary="soft", radii=jnp.ones(3), nu=0.0)


# --------------------------------------------------------------------------------------------------------------------
# Deep SAD, HSC, BCE-OE.


def test_deep_sad_matches_numpy(x64):
  z, c = _rng().normal(size=(6, 3)), _rng(1).normal(size=3)
  semi = np.array([0, 1, -1, 0, -1, 1])
  eta, eps = 2.5, 1e-6
  d = _np_sq_dist(z, c)
  expected = [di if s == 0 else eta * (di + eps) ** s for di, s in zip(d, semi)]
  _close(losses.deep_sad(z, c, semi, eta=eta), expected)
  _close(jax.jit(functools.partial(losses.deep_sad, eta=eta))(z, c, semi), expected)
  _grads(lambda z: losses.deep_sad(z, c, semi, eta=eta), (jnp.asarray(z),))
  with pytest.raises(ValueError, match=r"semi_targets must have shape \[B\] = \(6,\), got shape \(5,\)"):
    losses.deep_sad(z, c, semi[:5])


def _np_pseudo_huber(z):
  return np.array([np.sqrt(np.sum(zi ** 2) + 1) - 1 for zi in z])


def test_hypersphere_classifier_matches_numpy(x64):
  z = _rng().normal(scale=2.0, size=(7, 4))
  z[0] = 0.0  # the origin: an OE sample there costs -log(1e-9).
  y = np.array([1, 0, 1, 1, 0, 0, 1])
  d = _np_pseudo_huber(z)
  expected = [-np.log(1 - np.exp(-di) + 1e-9) if yi == 1 else di for di, yi in zip(d, y)]
  _close(losses.hypersphere_classifier(z, y), expected)
  _close(jax.jit(losses.hypersphere_classifier)(z, y), expected)
  _grads(lambda z: losses.hypersphere_classifier(z, y[1:]), (jnp.asarray(z[1:]),), order=2)
  assert np.all(np.isfinite(jax.grad(lambda z: losses.hypersphere_classifier(z, y).sum())(jnp.asarray(z))))
  with pytest.raises(ValueError, match=r"labels must have shape \[B\] = \(7,\)"):
    losses.hypersphere_classifier(z, y[:, None])


def _np_bce(s, y):
  p = 1 / (1 + np.exp(-s))
  return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_outlier_exposure_bce_matches_numpy(x64):
  s = _rng().normal(scale=3.0, size=9)
  y = (_rng(1).uniform(size=9) > 0.5).astype(np.int32)
  _close(losses.outlier_exposure_bce(s, y), _np_bce(s, y))
  _close(jax.jit(losses.outlier_exposure_bce)(s[:, None], y), _np_bce(s, y))
  _grads(lambda s: losses.outlier_exposure_bce(s, y), (jnp.asarray(s),))


def test_outlier_exposure_bce_is_stable_and_validates():
  out = losses.outlier_exposure_bce(jnp.array([100.0, -100.0, 100.0]), jnp.array([1, 0, 0]))
  _close(out, [0.0, 0.0, 100.0], atol=1e-5)
  with pytest.raises(ValueError, match=r"logits must have shape \[B\] or \[B, 1\], got shape \(3, 2\)"):
    losses.outlier_exposure_bce(jnp.zeros((3, 2)), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"labels must have shape \[B\] = \(3,\), got shape \(4,\)"):
    losses.outlier_exposure_bce(jnp.zeros(3), jnp.zeros(4))


# --------------------------------------------------------------------------------------------------------------------
# Self-supervised multi-task CE, reconstruction, DOC.


def _np_ce(logits, labels):
  out = []
  for row, label in zip(logits, labels):
    m = np.max(row)
    out.append(m + np.log(np.sum(np.exp(row - m))) - row[label])
  return np.array(out)


def test_multi_task_cross_entropy_matches_numpy(x64):
  rng = _rng()
  logits = {"rot": rng.normal(size=(4, 4)), "tx": rng.normal(size=(4, 3)), "jigsaw": rng.normal(size=(4, 5))}
  labels = {"rot": np.array([0, 1, 2, 3]), "tx": np.array([2, 2, 0, 1]), "jigsaw": np.array([4, 0, 1, 1])}
  expected = sum(_np_ce(logits[t], labels[t]) for t in logits)
  _close(losses.multi_task_cross_entropy(logits, labels), expected)
  _close(jax.jit(losses.multi_task_cross_entropy)(logits, labels), expected)
  jlogits = {k: jnp.asarray(v) for k, v in logits.items()}
  _grads(lambda lg: losses.multi_task_cross_entropy(lg, labels), (jlogits,))
  # GeoTrans: a single 72-way task.
  geo = rng.normal(size=(3, 72))
  _close(losses.multi_task_cross_entropy({"geo": geo}, {"geo": np.array([0, 35, 71])}),
         _np_ce(geo, [0, 35, 71]))


def test_multi_task_cross_entropy_errors():
  lg, lb = {"rot": jnp.zeros((2, 4))}, {"rot": jnp.array([0, 1])}
  with pytest.raises(ValueError, match="same task keys"):
    losses.multi_task_cross_entropy(lg, {"tx": lb["rot"]})
  with pytest.raises(ValueError, match="must be integers"):
    losses.multi_task_cross_entropy(lg, {"rot": jnp.array([0.0, 1.0])})
  with pytest.raises(ValueError, match=r"labels\['rot'\] must have shape \[B\] = \(2,\)"):
    losses.multi_task_cross_entropy(lg, {"rot": jnp.array([0, 1, 2])})
  with pytest.raises(ValueError, match=r"logits\['tx'\] must have batch size 2"):
    losses.multi_task_cross_entropy({**lg, "tx": jnp.zeros((3, 3))}, {**lb, "tx": jnp.array([0, 1, 2])})
  with pytest.raises(ValueError, match=r"logits\['rot'\] must have shape \[B, K\]"):
    losses.multi_task_cross_entropy({"rot": jnp.zeros(2)}, lb)


def test_reconstruction_matches_numpy(x64):
  x, x_hat = _rng().uniform(size=(3, 4, 4, 2)), _rng(1).uniform(size=(3, 4, 4, 2))
  expected = [sum((a - b) ** 2 for a, b in zip(xi.ravel(), yi.ravel())) for xi, yi in zip(x, x_hat)]
  _close(losses.reconstruction(x, x_hat), expected)
  _close(jax.jit(losses.reconstruction)(x, x_hat), expected)
  _grads(losses.reconstruction, (jnp.asarray(x), jnp.asarray(x_hat)))
  with pytest.raises(ValueError, match="x and x_hat must have the same shape"):
    losses.reconstruction(x, x_hat[:, :2])


def _np_doc(x):
  n, k = x.shape
  total = 0.0
  for i in range(n):
    m_i = np.mean(np.delete(x, i, axis=0), axis=0)  # mean of the other n - 1 samples
    z_i = x[i] - m_i
    total += z_i @ z_i
  return total / (n * k)


def test_doc_compactness_matches_direct_loop(x64):
  for n, k in [(2, 1), (5, 3), (16, 8)]:
    x = _rng(n).normal(size=(n, k))
    _close(losses.doc_compactness(x), _np_doc(x))
    _close(jax.jit(losses.doc_compactness)(x), _np_doc(x))
  _grads(losses.doc_compactness, (jnp.asarray(_rng().normal(size=(6, 4))),), order=2)
  with pytest.raises(ValueError, match=r"n >= 2 samples"):
    losses.doc_compactness(jnp.ones((1, 3)))
  with pytest.raises(ValueError, match=r"features must have shape \[n, k\]"):
    losses.doc_compactness(jnp.ones(3))


def test_doc_compactness_mask_selects_rows(x64):
  x = _rng(3).normal(size=(12, 5))
  mask = np.zeros(12, bool)
  mask[[0, 2, 3, 7, 11]] = True
  _close(losses.doc_compactness(x, mask=mask), _np_doc(x[mask]))
  _close(jax.jit(losses.doc_compactness)(x, mask=jnp.asarray(mask)), _np_doc(x[mask]))
  with pytest.raises(ValueError, match=r"mask must have shape \[B\]"):
    losses.doc_compactness(x, mask=mask[:4])


# --------------------------------------------------------------------------------------------------------------------
# L2-SP, EWC.


def _params(seed):
  rng = _rng(seed)
  return {
      "block1": {"conv1": {"kernel": rng.normal(size=(3, 3, 2, 4))}, "bn": {"scale": rng.normal(size=4)}},
      "head": {"kernel": rng.normal(size=(4, 1)), "bias": rng.normal(size=1)},
  }


def _np_flat(tree, names):
  parts = []
  for name in names:
    node = tree
    for key in name.split("/"):
      node = node[key]
    parts.append(np.ravel(node))
  return np.concatenate(parts) if parts else np.zeros(0)


ALL = ["block1/bn/scale", "block1/conv1/kernel", "head/bias", "head/kernel"]
KERNELS = ["block1/conv1/kernel", "head/kernel"]


def test_l2_sp_all_forms_of_mask(x64):
  p, p0 = _params(0), _params(1)
  diff_all = _np_flat(p, ALL) - _np_flat(p0, ALL)
  diff_k = _np_flat(p, KERNELS) - _np_flat(p0, KERNELS)
  _close(losses.l2_sp(p, p0), np.sqrt(np.sum(diff_all ** 2)))
  _close(losses.l2_sp(p, p0, squared=True), 0.5 * np.sum(diff_all ** 2))
  predicate = lambda name: name.endswith("kernel")
  _close(losses.l2_sp(p, p0, mask=predicate), np.sqrt(np.sum(diff_k ** 2)))
  bool_mask = jax.tree_util.tree_map_with_path(
      lambda path, _: jax.tree_util.keystr(path, simple=True, separator="/") in KERNELS, p)
  _close(losses.l2_sp(p, p0, mask=bool_mask, squared=True), 0.5 * np.sum(diff_k ** 2))
  _close(jax.jit(functools.partial(losses.l2_sp, mask=predicate))(p, p0), np.sqrt(np.sum(diff_k ** 2)))
  assert float(losses.l2_sp(p, p0, mask=lambda name: False)) == 0.0


def test_l2_sp_gradients(x64):
  p, p0 = _params(0), _params(1)
  jp = jax.tree.map(jnp.asarray, p)
  _grads(lambda p: losses.l2_sp(p, p0), (jp,), order=2)
  _grads(lambda p: losses.l2_sp(p, p0, squared=True), (jp,))
  # Unsquared gradient is the unit vector (theta - theta0) / ||theta - theta0||.
  grad = jax.grad(lambda p: losses.l2_sp(p, p0, mask=lambda n: n.endswith("kernel")))(jp)
  diff = _np_flat(p, KERNELS) - _np_flat(p0, KERNELS)
  _close(_np_flat(grad, KERNELS), diff / np.linalg.norm(diff))
  _close(_np_flat(grad, ["block1/bn/scale", "head/bias"]), np.zeros(5))


def test_l2_sp_gradient_is_safe_at_reference():
  p = jax.tree.map(jnp.asarray, _params(0))
  value, grad = jax.jit(jax.value_and_grad(lambda q: losses.l2_sp(q, p)))(p)
  assert float(value) == 0.0
  for leaf in jax.tree.leaves(grad):
    assert np.all(np.asarray(leaf) == 0.0)  # zero, not NaN
  small = {"w": jnp.array([1.0, -2.0])}
  hess = jax.hessian(lambda q: losses.l2_sp(q, small))(small)
  assert np.all(np.isfinite(np.asarray(hess["w"]["w"])))


def test_l2_sp_structure_errors():
  p, p0 = _params(0), _params(1)
  with pytest.raises(ValueError, match="ref_params must have the same tree structure as params"):
    losses.l2_sp(p, {"block1": p0["block1"]})
  with pytest.raises(ValueError, match="mask must be None, a predicate"):
    losses.l2_sp(p, p0, mask={"block1": True, "head": False})
  p0_bad = jax.tree.map(lambda x: x, p0)
  p0_bad["head"]["bias"] = np.zeros(2)
  with pytest.raises(ValueError, match="leaf 'head/bias' has mismatched shapes"):
    losses.l2_sp(p, p0_bad)


def test_ewc_and_diagonal_fisher(x64):
  p, p0 = _params(0), _params(1)
  fisher = jax.tree.map(lambda x: np.abs(x), _params(2))
  expected = 0.5 * np.sum(_np_flat(fisher, ALL) * (_np_flat(p, ALL) - _np_flat(p0, ALL)) ** 2)
  _close(losses.ewc(p, p0, fisher), expected)
  _close(jax.jit(losses.ewc)(p, p0, fisher), expected)
  expected_k = 0.5 * np.sum(_np_flat(fisher, KERNELS) * (_np_flat(p, KERNELS) - _np_flat(p0, KERNELS)) ** 2)
  _close(losses.ewc(p, p0, fisher, mask=lambda n: "kernel" in n), expected_k)
  _grads(lambda q: losses.ewc(q, p0, fisher), (jax.tree.map(jnp.asarray, p),))
  with pytest.raises(ValueError, match="fisher must have the same tree structure"):
    losses.ewc(p, p0, {"head": fisher["head"]})


def test_diagonal_fisher_from_per_example_grads():
  rng = _rng()
  w, xs, ys = jnp.asarray(rng.normal(size=3)), rng.normal(size=(10, 3)), rng.normal(size=10)
  params = {"w": w, "b": jnp.zeros(())}
  nll = lambda p, x, y: 0.5 * (x @ p["w"] + p["b"] - y) ** 2
  grads = jax.vmap(jax.grad(nll), in_axes=(None, 0, 0))(params, xs, ys)
  fisher = losses.diagonal_fisher(grads)
  resid = xs @ np.asarray(w) - ys
  _close(fisher["w"], np.mean([(r * x) ** 2 for r, x in zip(resid, xs)], axis=0), rtol=1e-4)
  _close(fisher["b"], np.mean(resid ** 2), rtol=1e-4)
  with pytest.raises(ValueError, match="leading example axis"):
    losses.diagonal_fisher({"b": jnp.ones(())})


# --------------------------------------------------------------------------------------------------------------------
# Input validation: bad labels, empty inputs, mismatched shapes (eager); jitted paths still run.


def test_check_labels_helper():
  assert losses.check_labels("labels", [0, 1, 1], (0, 1)) is True
  assert losses.check_labels("labels", np.array([True, False]), (0, 1)) is True
  assert losses.check_labels("labels", [0.0, 0.3, 1.0], low=0, high=1) is True
  with pytest.raises(ValueError, match=r"semi_targets must take values in \{-1, 0, 1\}, got invalid values \[5\]"):
    losses.check_labels("semi_targets", [0, 5, -1], (-1, 0, 1))
  with pytest.raises(ValueError, match=r"labels must take values in \[0, 1\]"):
    losses.check_labels("labels", [0.5, 1.5], low=0, high=1)
  with pytest.raises(ValueError, match="labels must take values"):
    losses.check_labels("labels", [0.0, np.nan], low=0, high=1)
  with pytest.raises(ValueError, match="labels must be numbers"):
    losses.check_labels("labels", np.array(["a", "b"]), (0, 1))
  # Traced values cannot be checked: the helper is a no-op under jit and says so.
  checked = []
  jax.jit(lambda y: checked.append(losses.check_labels("labels", y, (0, 1))) or y)(jnp.array([0, 7]))
  assert checked == [False]


@pytest.mark.parametrize("call, match", [
    (lambda: losses.one_class(jnp.zeros((0, 3)), jnp.zeros(3)), r"embeddings must be non-empty"),
    (lambda: losses.one_class(jnp.zeros((2, 0)), jnp.zeros(0)), r"embeddings must be non-empty"),
    (lambda: losses.soft_boundary(jnp.zeros((0, 2)), jnp.zeros(2), radius=1.0, nu=0.5), "embeddings"),
    (lambda: losses.radius_from_distances(jnp.zeros(0), nu=0.1), r"sq_distances must be non-empty"),
    (lambda: losses.hypersphere_center(jnp.zeros((0, 3))), r"embeddings must be non-empty"),
    (lambda: losses.multi_layer_hypersphere([jnp.zeros((0, 2))], [jnp.zeros(2)], boundary="hard"),
     r"features\[0\] must be non-empty"),
    (lambda: losses.multi_layer_hypersphere([jnp.zeros((2, 2)), jnp.zeros((2, 3))], [jnp.zeros(2), jnp.zeros(2)],
                                            boundary="hard"), r"centers\[1\] must have shape \[D_l\] = \(3,\)"),
    (lambda: losses.multi_layer_hypersphere([jnp.zeros(2)], [jnp.zeros(2)], boundary="hard"),
     r"features\[0\] must be non-empty with shape \[B, D_l\]"),
    (lambda: losses.deep_sad(jnp.zeros((0, 2)), jnp.zeros(2), jnp.zeros(0)), "embeddings"),
    (lambda: losses.deep_sad(jnp.ones((2, 2)), jnp.zeros(2), jnp.array([0, 5])), "semi_targets"),
    (lambda: losses.deep_sad(jnp.ones((2, 2)), jnp.zeros(2), jnp.array([0.0, 0.5])), "semi_targets"),
    (lambda: losses.deep_sad(jnp.ones((2, 2)), jnp.zeros(3), jnp.array([0, 1])), "center"),
    (lambda: losses.hypersphere_classifier(jnp.ones((2, 2)), jnp.array([0, 2])), r"labels must take values in"),
    (lambda: losses.hypersphere_classifier(jnp.ones((2, 2)), jnp.array([0, -1])), "labels"),
    (lambda: losses.hypersphere_classifier(jnp.zeros((0, 2)), jnp.zeros(0)), r"embeddings must be non-empty"),
    (lambda: losses.pseudo_huber_norm(jnp.zeros(())), r"embeddings must have shape \[\.\.\., D\]"),
    (lambda: losses.pseudo_huber_norm(jnp.zeros((3, 0))), r"embeddings must be non-empty"),
    (lambda: losses.outlier_exposure_bce(jnp.zeros(2), jnp.array([0, 2])), r"labels must take values in \[0, 1\]"),
    (lambda: losses.outlier_exposure_bce(jnp.zeros(2), jnp.array([0.0, -0.1])), "labels"),
    (lambda: losses.outlier_exposure_bce(jnp.zeros(0), jnp.zeros(0)), r"logits must be non-empty"),
    (lambda: losses.outlier_exposure_bce(jnp.zeros((0, 1)), jnp.zeros(0)), r"logits must be non-empty"),
    (lambda: losses.multi_task_cross_entropy({"rot": jnp.zeros((2, 4))}, {"rot": jnp.array([0, 4])}),
     r"labels\['rot'\] must take values in \[0, 3\]"),
    (lambda: losses.multi_task_cross_entropy({"rot": jnp.zeros((2, 4))}, {"rot": jnp.array([-1, 0])}),
     r"labels\['rot'\]"),
    (lambda: losses.multi_task_cross_entropy({"rot": jnp.zeros((0, 4))}, {"rot": jnp.zeros(0, int)}),
     r"logits\['rot'\] must be non-empty"),
    (lambda: losses.multi_task_cross_entropy({}, {}), "logits"),
    (lambda: losses.reconstruction(jnp.zeros((0, 3)), jnp.zeros((0, 3))), r"x must be non-empty"),
    (lambda: losses.reconstruction(jnp.zeros(()), jnp.zeros(())), r"x and x_hat must have the same shape"),
    (lambda: losses.reconstruction(jnp.zeros((2, 3)), jnp.zeros((3, 3))), "x_hat"),
    (lambda: losses.doc_compactness(jnp.zeros((0, 3))), "features"),
    (lambda: losses.doc_compactness(jnp.zeros((4, 0))), r"features must have k >= 1"),
    (lambda: losses.doc_compactness(jnp.ones((4, 2)), mask=jnp.array([0, 2, 1, 1])), r"mask must take values"),
    (lambda: losses.doc_compactness(jnp.ones((4, 2)), mask=jnp.array([True, False, False, False])),
     r"mask must select at least 2 rows"),
    (lambda: losses.l2_sp({"w": jnp.ones(2)}, {"w": jnp.ones(3)}), "mismatched shapes"),
    (lambda: losses.ewc({"w": jnp.ones(2)}, {"w": jnp.ones(2)}, {"w": jnp.ones(3)}), "mismatched shapes"),
    (lambda: losses.diagonal_fisher({"w": jnp.zeros((0, 3))}), r"per_example_grads leaf 'w' must hold at least"),
    (lambda: losses.empirical_fisher(lambda p, x, y: p * x, jnp.ones(()), jnp.ones(()), jnp.ones(())),
     r"inputs must have shape \[N, \.\.\.\]"),
    (lambda: losses.empirical_fisher(lambda p, x, y: p * x, jnp.ones(()), jnp.ones(2), jnp.ones(())),
     r"labels must have shape \[N\]"),
    (lambda: losses.empirical_fisher(lambda p, x, y: p * x, jnp.ones(()), jnp.ones(2), jnp.ones(3)), "labels"),
    (lambda: losses.empirical_fisher(lambda p, x, y: p * x, jnp.ones(()), jnp.ones(0), jnp.ones(0)), "inputs"),
])
def test_invalid_inputs_raise_value_error_naming_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_issue_examples_no_longer_fail_silently():
  with pytest.raises(ValueError, match="embeddings"):  # was NaN
    losses.hypersphere_center(np.zeros((0, 4), np.float32))
  with pytest.raises(ValueError, match="labels"):  # was accepted
    losses.outlier_exposure_bce(jnp.zeros(3), np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="semi_targets"):  # was accepted
    losses.deep_sad(jnp.ones((3, 2)), jnp.zeros(2), np.array([0, 1, 5]))
  with pytest.raises(ValueError, match="sq_distances"):  # was a low-level quantile error
    losses.radius_from_distances(np.zeros(0), nu=0.5)
  with pytest.raises(ValueError, match="x"):  # was a low-level reshape error
    losses.reconstruction(np.zeros((0, 2, 2)), np.zeros((0, 2, 2)))


def test_jitted_losses_run_with_valid_traced_inputs():
  """Value checks are skipped for tracers: every jitted loss still traces, compiles and matches eager."""
  rng = _rng(5)
  z, c = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32), jnp.asarray(rng.normal(size=3), jnp.float32)
  y01 = jnp.array([0, 1, 1, 0, 1, 0])
  semi = jnp.array([0, 1, -1, 0, -1, 1])
  soft = jnp.array([0.0, 0.2, 1.0, 0.7, 1.0, 0.0])
  mask = jnp.array([True, False, True, True, False, True])
  logits = {"rot": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
  task_labels = {"rot": jnp.array([0, 1, 2, 3, 3, 0])}
  cases = [
      (losses.one_class, (z, c)),
      (functools.partial(losses.soft_boundary, nu=0.3), (z, c), {"radius": jnp.asarray(1.0)}),
      (functools.partial(losses.radius_from_distances, nu=0.3), (jnp.sum(z ** 2, axis=1),)),
      (losses.hypersphere_center, (z,)),
      (functools.partial(losses.multi_layer_hypersphere, boundary="soft"), ([z, z[:, :2]], [c, c[:2]]),
       {"radii": jnp.ones(2)}),
      (losses.deep_sad, (z, c, semi)),
      (losses.hypersphere_classifier, (z, y01)),
      (losses.pseudo_huber_norm, (z,)),
      (losses.outlier_exposure_bce, (z[:, 0], y01)),
      (losses.outlier_exposure_bce, (z[:, :1], soft)),
      (losses.multi_task_cross_entropy, (logits, task_labels)),
      (losses.reconstruction, (z, z * 0.5)),
      (losses.doc_compactness, (z,), {"mask": mask}),
      (losses.l2_sp, ({"w": z}, {"w": z * 0.0})),
      (losses.ewc, ({"w": z}, {"w": z * 0.0}, {"w": jnp.abs(z)})),
      (losses.diagonal_fisher, ({"w": z},)),
  ]
  for case in cases:
    fn, args, kwargs = case if len(case) == 3 else (*case, {})
    jitted = jax.tree.leaves(jax.jit(fn)(*args, **kwargs))
    eager = jax.tree.leaves(fn(*args, **kwargs))
    for a, b in zip(jitted, eager):
      assert np.all(np.isfinite(np.asarray(a))), fn
      _close(a, b, rtol=1e-5, atol=1e-5)


def test_value_checks_are_skipped_under_jit():
  """Documented behaviour: traced labels are not inspected (validate with `check_labels` before the call)."""
  z, c = jnp.ones((2, 2)), jnp.zeros(2)
  jax.jit(losses.deep_sad)(z, c, jnp.array([0, 5]))  # no error, no host sync
  jax.jit(losses.outlier_exposure_bce)(jnp.zeros(2), jnp.array([0, 2]))
  # Shape and emptiness checks are static and still run under jit.
  with pytest.raises(ValueError, match="semi_targets"):
    jax.jit(losses.deep_sad)(z, c, jnp.array([0, 1, 1]))
  with pytest.raises(ValueError, match="embeddings"):
    jax.jit(losses.hypersphere_center)(jnp.zeros((0, 2)))
