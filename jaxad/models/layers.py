"""Layers shared by jaxad's model families.

`BatchNorm` is torch.nn.BatchNorm2d in flax, which every family with batch norm uses (LeNet, ResNet26, WRN,
DenseNet, ResNet-152, Inception with `use_scale=False` for Keras' weights, the MOCCA AEs, the face CNN), so
converted weights, running statistics and training runs match the reference. `max_pool_2x2` is the LeNets'
F.max_pool2d(2, 2).
"""

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
    if use_running_average:
      mean, var = ra_mean.value.astype(stat_dtype), ra_var.value.astype(stat_dtype)
    else:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)  # biased: used to normalise, as in PyTorch
      if not self.is_initializing():
        n = x.size // features
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum
        ra_mean.value = (m * ra_mean.value + (1.0 - m) * mean).astype(ra_mean.value.dtype)
        ra_var.value = (m * ra_var.value + (1.0 - m) * unbiased).astype(ra_var.value.dtype)

    mul = jax.lax.rsqrt(var + self.epsilon) * jnp.asarray(scale, stat_dtype)
    y = (xf - mean) * mul + jnp.asarray(bias, stat_dtype)
    out_dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    return y.astype(out_dtype)


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
