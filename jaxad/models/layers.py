"""Layers shared by jaxad's model families.

`BatchNorm` is torch.nn.BatchNorm2d in flax, which every family with batch norm uses (LeNet, ResNet26, WRN,
DenseNet, ResNet-152, Inception with `use_scale=False` for Keras' weights, the MOCCA AEs, the face CNN), so
converted weights, running statistics and training runs match the reference. `max_pool_2x2` is the LeNets'
F.max_pool2d(2, 2); `PatchConv` a stride-1 convolution computed as one matmul, for inputs smaller than the kernel.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchNorm(nn.Module):
  """Batch norm matching torch.nn.BatchNorm2d exactly, including its running-variance update.

  Why not `flax.linen.BatchNorm`: both normalise a training batch with the biased batch variance, but PyTorch
  updates `running_var` with the *unbiased* variance (times n / (n - 1), n = elements per channel) while flax uses
  the biased one. Converted PyTorch weights and the reference training runs need the PyTorch rule, so this module
  implements it. The batch variance is two-pass, mean((x - mean)^2), as PyTorch's: flax's default E[x^2] - E[x]^2
  loses float32 digits to cancellation where a channel's mean is large against its spread. Variable names and
  collections are those of flax's BatchNorm (params `scale`, `bias`; batch_stats `mean`, `var`), so the rest of
  jaxad treats both alike. The statistics reduce over all axes but the last; under `jit` with a sharded batch they
  are global-batch statistics.

  Attributes:
    momentum: flax convention, new_stat = momentum * stat + (1 - momentum) * batch_stat; PyTorch's momentum 0.1 is
      0.9 here.
    epsilon: added to the variance.
    use_scale, use_bias: learn `scale` / `bias` (PyTorch's affine=True); False for Deep SVDD's non-affine LeNets.
    dtype: output dtype (None: that of the input and parameters). Statistics use at least float32.
    param_dtype: dtype of `scale` and `bias`.
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,), self.param_dtype) if self.use_scale else 1.0
    bias = self.param('bias', nn.initializers.zeros, (features,), self.param_dtype) if self.use_bias else 0.0
    stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((features,), stat_dtype))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((features,), stat_dtype))

    xf = x.astype(stat_dtype)
    scale = jnp.broadcast_to(jnp.asarray(scale, stat_dtype), (features,))
    bias = jnp.broadcast_to(jnp.asarray(bias, stat_dtype), (features,))
    if use_running_average:
      mean, var = ra_mean.value.astype(stat_dtype), ra_var.value.astype(stat_dtype)
      y = (xf - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    else:
      y, mean, var = batch_norm_train(xf, scale, bias, self.epsilon)
      if not self.is_initializing():
        n = x.size // features
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum
        ra_mean.value = (m * ra_mean.value + (1.0 - m) * mean).astype(ra_mean.value.dtype)
        ra_var.value = (m * ra_var.value + (1.0 - m) * unbiased).astype(ra_var.value.dtype)
    out_dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    return y.astype(out_dtype)


def _channel_sum(a: jax.Array) -> jax.Array:
  """[B, ..., C] -> [C]: the sum over every axis but the last, as one [1, M] @ [M, C] matvec per example, then a sum
  over the batch.

  Why dots: XLA:CPU runs them through YNNPACK at memory speed, while it rewrites a reduce over the B*H*W rows into a
  tree of reduce-windows, several passes each (issue #12: the LeNet encoder's three BN + leaky ReLU + pool blocks,
  forward and backward, 26 ms instead of 132 ms, PyTorch channels_last 47 ms; benchmarks/lenet_layers.py).
  Why per example: one matvec over all B*H*W rows accumulates sequentially (1.1e-5 relative error on a [200, 32, 32,
  32] batch, against 2.5e-6 for XLA's reduce and 1.4e-7 per example; the same benchmark). HIGHEST precision keeps
  them float32 sums where a platform would round a dot's inputs (TF32 on GPUs, bfloat16 passes on TPUs).
  """
  if a.ndim == 2:
    return jnp.sum(a, axis=0)
  b, c = a.shape[0], a.shape[-1]
  ones = jnp.ones((b, a.size // (b * c)), a.dtype)
  per_example = jnp.einsum("bm,bmc->bc", ones, a.reshape(b, -1, c), precision=jax.lax.Precision.HIGHEST)
  return jnp.sum(per_example, axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float):
  """Training-mode batch norm with its backward pass written out: `(y, mean, var)`.

  y = (x - mean) / sqrt(var + epsilon) * scale + bias, with the per-channel mean and biased (two-pass) variance of
  `x` over every axis but the last. The forward and backward reductions are `_channel_sum` dots: JAX's own VJP of
  the same formula reduces through XLA's reduce, which is the slow part on CPU (see `_channel_sum`).

  Args:
    x: [..., C], float32 or wider.
    scale, bias: [C].
    epsilon: added to the variance.

  Returns:
    y [..., C]; mean [C]; var [C] (biased, as PyTorch normalises with).
  """
  return _batch_norm_train_fwd(x, scale, bias, epsilon)[0]


def _batch_norm_train_fwd(x, scale, bias, epsilon):
  m = x.size // x.shape[-1]
  mean = _channel_sum(x) / m
  centred = x - mean
  var = _channel_sum(jnp.square(centred)) / m
  inv = jax.lax.rsqrt(var + epsilon)
  x_hat = centred * inv
  return (x_hat * scale + bias, mean, var), (x_hat, inv, scale)


def _batch_norm_train_bwd(epsilon, residuals, cotangents):
  del epsilon
  x_hat, inv, scale = residuals
  g, g_mean, g_var = cotangents
  m = x_hat.size // x_hat.shape[-1]
  d_bias = _channel_sum(g)
  d_scale = _channel_sum(g * x_hat)
  # Through y: scale * inv * (g - mean(g) - x_hat * mean(g * x_hat)). Through the returned statistics (zero unless
  # a caller differentiates them): d mean/dx = 1/m and d var/dx = 2 (x - mean) / m, with x - mean = x_hat / inv.
  d_x = (scale * inv) * (g - d_bias / m - x_hat * (d_scale / m)) + g_mean / m + x_hat * (2.0 * g_var / (inv * m))
  return d_x, d_scale, d_bias


batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


class PatchConv(nn.Module):
  """A stride-1, bias-free convolution with explicit padding, computed as one matmul over im2col patches.

  The same function and parameter (`kernel`, [kh, kw, in, features]) as `nn.Conv(features, kernel_size,
  padding=padding, use_bias=False)`, and so as a stride-1 `nn.ConvTranspose` with the same padding. Why: XLA:CPU's
  convolution is slow where the input is smaller than the kernel (the LeNet autoencoder's first 5x5 transposed conv
  on 4x4 maps: 26.8 ms forward and backward at batch 200, 2.6 ms as patches, PyTorch 2.9 ms; issue #12,
  benchmarks/lenet_layers.py), while its patches stay small there. On the LeNets' larger maps building the patches
  costs more than the convolution saves (1.9-6.2x slower): keep `nn.Conv` for those.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    padding: ((top, bottom), (left, right)).
    kernel_init: the kernel's initializer.
    dtype: compute dtype (None: that of the inputs and kernel, as flax's Conv).
  """
  features: int
  kernel_size: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    (kh, kw), ((top, bottom), (left, right)) = self.kernel_size, self.padding
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    b, h, w, c = x.shape
    out_h, out_w = h + top + bottom - kh + 1, w + left + right - kw + 1
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + out_h, j:j + out_w] for i in range(kh) for j in range(kw)], axis=-1)
    y = jnp.dot(patches.reshape(-1, kh * kw * c), kernel.reshape(kh * kw * c, self.features))
    return y.reshape(b, out_h, out_w, self.features)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """PyTorch's F.max_pool2d(x, 2, 2) on NHWC: an odd last row or column is dropped, and a tie's gradient goes to the
  window's first maximum in row-major order, as in PyTorch and `nn.max_pool`.

  Why not `nn.max_pool`: its gradient is a select-and-scatter, which XLA:CPU runs as a slow loop (issue #12); a
  plain reshape + max is fast but splits a tie's gradient evenly between the tied inputs, and real images tie
  (0.7% of a CIFAR-10 LeNet's conv1 windows). This is the reshape + max with the first-maximum gradient.

  Args:
    x: [B, H, W, C].

  Returns:
    [B, H // 2, W // 2, C].
  """
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  return _max_pool_2x2_even(x[:, :h, :w])


def _windows(x):  # [B, H, W, C] -> [B, H/2, 2, W/2, 2, C]
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def _max_pool_2x2_even(x):
  return _windows(x).max(axis=(2, 4))


def _max_pool_fwd(x):
  y = _max_pool_2x2_even(x)
  return y, (x, y)


def _max_pool_bwd(residuals, g):
  x, y = residuals
  hit = _windows(x) == y[:, :, None, :, None, :]
  # PyTorch scans a window as (0, 0), (0, 1), (1, 0), (1, 1) and keeps the first maximum it meets.
  order = [hit[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]
  taken, first = jnp.zeros_like(order[0]), []
  for h in order:
    first.append(h & ~taken)
    taken = taken | h
  mask = jnp.stack([jnp.stack(first[:2], axis=3), jnp.stack(first[2:], axis=3)], axis=2)  # [B, H/2, 2, W/2, 2, C]
  grad = jnp.where(mask, g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
  return (grad.reshape(x.shape),)


_max_pool_2x2_even.defvjp(_max_pool_fwd, _max_pool_bwd)
