"""jaxad.models.layers against NumPy, flax and PyTorch: BatchNorm's training and running-statistics rules, and the
2x2 max pool's values and tie gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxad.models import layers


def test_batchnorm_matches_torch_rule_in_numpy():
  x = np.random.default_rng(0).normal(2.0, 3.0, (4, 3, 5, 6)).astype(np.float32)
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(0), x, use_running_average=False)
  assert set(variables['batch_stats']) == {'mean', 'var'} and set(variables['params']) == {'scale', 'bias'}
  y, updates = bn.apply(variables, x, use_running_average=False, mutable=['batch_stats'])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  n = 4 * 3 * 5
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(updates['batch_stats']['mean'], 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(updates['batch_stats']['var'], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
  y_eval = bn.apply(variables, x, use_running_average=True)
  np.testing.assert_allclose(y_eval, x / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_non_affine_has_no_parameters_and_shifts_nothing():
  x = np.random.default_rng(1).normal(-1.0, 2.0, (8, 3)).astype(np.float32)
  bn = layers.BatchNorm(epsilon=1e-4, use_scale=False, use_bias=False)
  variables = bn.init(jax.random.key(0), x, use_running_average=False)
  assert 'params' not in variables and set(variables['batch_stats']) == {'mean', 'var'}
  y, _ = bn.apply(variables, x, use_running_average=False, mutable=['batch_stats'])
  np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-4), rtol=1e-5, atol=1e-5)


def test_variance_survives_a_large_mean():
  """Activations with mean 1000 and spread 0.05: the two-pass variance keeps 1e-4 of its value in float32, where
  E[x^2] - E[x]^2 (flax's fast variance) loses it to cancellation."""
  x64 = 1000.0 + 0.05 * np.random.default_rng(2).normal(size=(256, 4))
  x = x64.astype(np.float32)
  bn = layers.BatchNorm(momentum=0.0, use_scale=False, use_bias=False)
  _, updates = bn.apply(bn.init(jax.random.key(0), x, use_running_average=False), x, use_running_average=False,
                        mutable=['batch_stats'])
  var = x.astype(np.float64).var(0) * 256 / 255  # momentum 0: the running variance is this batch's unbiased one
  np.testing.assert_allclose(updates['batch_stats']['var'], var, rtol=1e-4)
  fast = (x * x).mean(0) - x.mean(0) ** 2  # float32, the formula this module avoids
  assert np.max(np.abs(fast - x.var(0)) / x.var(0)) > 1e-2


def test_batch_norm_train_gradients_equal_autodiff_and_torch():
  """The written-out backward pass against JAX's autodiff of the plain formula (cotangents on all three outputs),
  and the gradients through y against torch's BatchNorm2d (the image x channel layout moved)."""
  rng = np.random.default_rng(3)
  x = rng.normal(0.5, 2.0, (6, 5, 4, 3)).astype(np.float32)
  scale, bias = rng.normal(1.0, 0.3, 3).astype(np.float32), rng.normal(0.0, 0.3, 3).astype(np.float32)
  g, g_mean, g_var = (rng.normal(size=s).astype(np.float32) for s in ((6, 5, 4, 3), 3, 3))

  def plain(x, scale, bias):
    mean = jnp.mean(x, (0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), (0, 1, 2))
    return (x - mean) / jnp.sqrt(var + 1e-3) * scale + bias, mean, var

  outs, vjp = jax.vjp(lambda *a: layers.batch_norm_train(*a, 1e-3), x, scale, bias)
  ref_outs, ref_vjp = jax.vjp(plain, x, scale, bias)
  for a, b in zip(outs, ref_outs):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  for a, b in zip(vjp((g, g_mean, g_var)), ref_vjp((g, g_mean, g_var))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

  tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
  bn = torch.nn.BatchNorm2d(3, eps=1e-3)
  with torch.no_grad():
    bn.weight.copy_(torch.tensor(scale))
    bn.bias.copy_(torch.tensor(bias))
  bn(tx).backward(torch.tensor(g.transpose(0, 3, 1, 2)))
  dx, d_scale, d_bias = vjp((g, np.zeros(3, np.float32), np.zeros(3, np.float32)))
  np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(d_scale, bn.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(d_bias, bn.bias.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('shape,padding', [((3, 4, 4, 8), ((2, 2), (2, 2))), ((2, 5, 7, 3), ((1, 3), (0, 2)))])
def test_patch_conv_equals_flax_conv_and_transpose(shape, padding):
  """Values and gradients of `PatchConv` against nn.Conv and the stride-1 nn.ConvTranspose on the same kernel."""
  x = jnp.asarray(np.random.default_rng(4).normal(size=shape).astype(np.float32))
  patch = layers.PatchConv(6, (5, 5), padding)
  params = patch.init(jax.random.key(0), x)
  for ref in (nn.Conv(6, (5, 5), padding=padding, use_bias=False),
              nn.ConvTranspose(6, (5, 5), padding=padding, use_bias=False)):
    assert jax.tree.map(jnp.shape, ref.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)

    def loss(p, x, model):
      return jnp.sum(jnp.sin(model.apply(p, x)))

    np.testing.assert_allclose(patch.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.grad(loss, (0, 1))(params, x, patch), jax.grad(loss, (0, 1))(params, x, ref)):
      np.testing.assert_allclose(jax.tree.leaves(a)[0], jax.tree.leaves(b)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kernel,strides,padding,shape', [
    ((1, 1), (1, 1), ((0, 0), (0, 0)), (3, 6, 6, 5)),  # the ResNet26 adapters and WRN shortcuts
    ((1, 1), (2, 2), ((0, 0), (0, 0)), (2, 7, 8, 5)),  # odd size: the last row is a patch, not dropped
    ((3, 3), (2, 3), ((1, 1), (0, 2)), (2, 9, 8, 3)),
    ((3, 3), (1, 1), ((0, 0), (0, 0)), (1, 4, 5, 16)),
])
def test_strided_patch_conv_equals_flax_conv(kernel, strides, padding, shape):
  """Values and gradients of a strided `PatchConv` against nn.Conv (same kernel), in float32 and bfloat16."""
  x = jnp.asarray(np.random.default_rng(5).normal(size=shape).astype(np.float32))
  for dtype, tol in ((None, 1e-5), (jnp.bfloat16, 2e-2)):
    patch = layers.PatchConv(7, kernel, padding, strides, dtype=dtype)
    ref = nn.Conv(7, kernel, strides, padding=padding, use_bias=False, dtype=dtype)
    params = patch.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, ref.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, params)
    y, y_ref = patch.apply(params, x), ref.apply(params, x)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), rtol=tol, atol=tol)

    def loss(p, x, model):
      return jnp.sum(jnp.sin(model.apply(p, x).astype(jnp.float32)))

    for a, b in zip(jax.grad(loss, (0, 1))(params, x, patch), jax.grad(loss, (0, 1))(params, x, ref)):
      a, b = jax.tree.leaves(a)[0], jax.tree.leaves(b)[0]
      np.testing.assert_allclose(a, b, rtol=10 * tol, atol=10 * tol * float(jnp.abs(b).max()))


@pytest.mark.parametrize('shape', [(3, 8, 6, 5), (2, 7, 9, 3)])  # odd sizes: a cropped last phase
def test_stride2_conv_equals_flax_conv(shape):
  """Values and both gradients of `Stride2Conv` (input gradient by output phases) against nn.Conv(3x3, stride 2,
  padding 1) on the same kernel, in float32 and bfloat16."""
  x = jnp.asarray(np.random.default_rng(6).normal(size=shape).astype(np.float32))
  for dtype, tol in ((None, 1e-5), (jnp.bfloat16, 2e-2)):
    conv = layers.Stride2Conv(7, dtype=dtype)
    ref = nn.Conv(7, (3, 3), (2, 2), padding=((1, 1), (1, 1)), use_bias=False, dtype=dtype)
    params = conv.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, ref.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, params)
    y, y_ref = conv.apply(params, x), ref.apply(params, x)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), rtol=tol, atol=tol)

    def loss(p, x, model):  # a nonlinear loss: every output pixel gets its own cotangent
      return jnp.sum(jnp.sin(3 * model.apply(p, x).astype(jnp.float32)))

    grads = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)
    for a, b in zip(grads(params, x, conv), grads(params, x, ref)):
      a, b = jax.tree.leaves(a)[0], jax.tree.leaves(b)[0]
      assert a.dtype == b.dtype
      np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=10 * tol,
                                 atol=10 * tol * float(jnp.abs(b.astype(jnp.float32)).max()))


# (input shape, kernel size, strides, flax padding): MOCCA's 2-D 5x5 and 1x1 (output_padding 1) and 3-D 5x5x5
# transposed convs, odd sizes, asymmetric padding, stride 3 and mixed strides, a phase that no tap reaches (the
# 1x1's odd outputs; the last case's stride 3 beside a 1-tap kernel), stride 1, and a padding that crops.
@pytest.mark.parametrize('shape,kernel,strides,padding', [
    ((2, 4, 4, 6), (5, 5), (2, 2), ((2, 3), (2, 3))),
    ((2, 4, 5, 6), (1, 1), (2, 2), ((0, 1), (0, 1))),
    ((2, 5, 4, 3), (3, 3), (2, 2), ((1, 2), (1, 1))),
    ((2, 4, 4, 3), (4, 1), (3, 2), ((0, 2), (3, 0))),
    ((1, 2, 4, 4, 3), (5, 5, 5), (1, 2, 2), ((2, 2), (2, 3), (2, 3))),
    ((2, 3, 4, 4, 3), (5, 5, 5), (2, 2, 2), ((2, 3), (2, 3), (2, 3))),
    ((2, 4, 4, 3), (5, 5), (1, 1), ((2, 2), (2, 2))),
    ((2, 5, 5, 2), (3, 3), (2, 2), ((0, 0), (-1, 1))),
])
def test_phase_conv_transpose_equals_flax_conv_transpose(shape, kernel, strides, padding, x64):
  """`PhaseConvTranspose` (stride-1 convolutions per output phase) against nn.ConvTranspose, the dilated
  convolution, on the same kernel: values and both gradients in float64; the same parameter tree."""
  x = jnp.asarray(np.random.default_rng(8).normal(size=shape))
  conv = layers.PhaseConvTranspose(4, kernel, strides, padding)
  ref = nn.ConvTranspose(4, kernel, strides, padding=padding, use_bias=False)
  params = conv.init(jax.random.key(4), x)
  assert jax.tree.map(jnp.shape, ref.init(jax.random.key(4), x)) == jax.tree.map(jnp.shape, params)
  y, y_ref = conv.apply(params, x), ref.apply(params, x)
  assert y.shape == y_ref.shape and y.dtype == jnp.float64
  np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
  g = jnp.asarray(np.random.default_rng(9).normal(size=y.shape))
  grads = jax.vjp(lambda p, x: conv.apply(p, x), params, x)[1](g)
  grads_ref = jax.vjp(lambda p, x: ref.apply(p, x), params, x)[1](g)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('kernel,stride', [(1, 1), (1, 2), (3, 1), (3, 2), (5, 1)])
def test_torch_conv_equals_pytorch_padded_flax_conv(kernel, stride):
  """`torch_conv`, whichever formulation it picks, is nn.Conv with PyTorch's padding (kernel - 1) // 2."""
  x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 8, 10, 3)).astype(np.float32))
  init = nn.initializers.normal(0.5)
  conv = layers.torch_conv(4, kernel, stride, kernel_init=init, dtype=None, name='c')
  pad = (kernel - 1) // 2
  ref = nn.Conv(4, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)), use_bias=False)
  params = conv.init(jax.random.key(3), x)
  np.testing.assert_allclose(conv.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)


def _tied_images(shape, seed):
  return np.random.default_rng(seed).integers(0, 3, size=shape).astype(np.float32)  # most windows hold ties


@pytest.mark.parametrize('shape', [(3, 8, 8, 4), (2, 7, 9, 3)])  # odd sizes: the last row / column is dropped
def test_max_pool_equals_flax_values_and_tie_gradients(shape):
  x = jnp.asarray(_tied_images(shape, 0))
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  y, vjp = jax.vjp(jax.jit(layers.max_pool_2x2), x)
  y_ref, vjp_ref = jax.vjp(ref, x)
  np.testing.assert_array_equal(y, y_ref)
  g = jnp.asarray(np.random.default_rng(1).normal(size=y.shape).astype(np.float32))
  np.testing.assert_array_equal(vjp(g)[0], vjp_ref(g)[0])
  # Under vmap (jaxad.sweep's task axis) too.
  stacked = jnp.stack([x, x + 1.0])
  np.testing.assert_array_equal(jax.vmap(layers.max_pool_2x2)(stacked)[1], y_ref + 1.0)


def test_max_pool_tie_gradient_equals_torch():
  x = _tied_images((4, 10, 6, 5), 2)
  g = np.random.default_rng(3).normal(size=(4, 5, 3, 5)).astype(np.float32)
  grad = jax.vjp(layers.max_pool_2x2, jnp.asarray(x))[1](jnp.asarray(g))[0]
  t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
  torch.nn.functional.max_pool2d(t, 2, 2).backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
  np.testing.assert_array_equal(np.asarray(grad), t.grad.numpy().transpose(0, 2, 3, 1))
  # A reshape + max would split each tie's gradient: the test above would fail for it.
  split = jax.grad(lambda x: (x.reshape(4, 5, 2, 3, 2, 5).max((2, 4)) * g).sum())(jnp.asarray(x))
  assert np.abs(np.asarray(split) - np.asarray(grad)).max() > 0.1
