"""Layers shared by jaxad's model families.

`BatchNorm` is torch.nn.BatchNorm2d in flax, which every family with batch norm uses (LeNet, ResNet26, WRN,
DenseNet, ResNet-152, Inception with `use_scale=False` for Keras' weights, the MOCCA AEs, the face CNN), so
converted weights, running statistics and training runs match the reference. `max_pool_2x2` is the LeNets'
F.max_pool2d(2, 2); `PatchConv` a convolution computed as one matmul, for 1x1 kernels and inputs smaller than
the kernel; `conv_transpose` / `PhaseConvTranspose` a strided transposed convolution as stride-1 convolutions
by output phases (the MOCCA decoders'), and `Stride2Conv` a 3x3 stride-2 convolution whose input gradient is
computed that way; `torch_conv` picks among them and `nn.Conv` for the residual nets' bias-free convolutions.
"""

import functools
import itertools
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
  """A bias-free convolution with explicit padding, computed as one matmul over im2col patches.

  The same function and parameter (`kernel`, [kh, kw, in, features]) as `nn.Conv(features, kernel_size, strides,
  padding=padding, use_bias=False)`, and so (stride 1) as an `nn.ConvTranspose` with the same padding. Why: two
  shapes where XLA:CPU's convolution is slow and the patches stay small (issue #12):
  * 1x1 convolutions (the ResNet26 adapters, the WRN shortcuts), where the patches are the input itself (every
    `strides`-th pixel) and the weight gradient one [pixels, in]^T x [pixels, out] matmul: forward and backward
    x1.3-2.8 at the ResNet26 and WRN-16-4 shapes, the weight gradient x1.7-7.6 (benchmarks/conv_layers.py);
  * inputs smaller than the kernel (the LeNet autoencoder's first 5x5 transposed conv on 4x4 maps: 26.8 ms
    forward and backward at batch 200, 2.6 ms as patches, PyTorch 2.9 ms; benchmarks/lenet_layers.py).
  Where a larger kernel slides over larger maps, building the patches costs more than the convolution saves (the
  LeNets' other 5x5 convs: 1.9-6.2x slower): keep `nn.Conv` for those.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    padding: ((top, bottom), (left, right)).
    strides: (sh, sw).
    kernel_init: the kernel's initializer.
    dtype: compute dtype (None: that of the inputs and kernel, as flax's Conv).
  """
  features: int
  kernel_size: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
  strides: tuple[int, int] = (1, 1)
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    (kh, kw), ((top, bottom), (left, right)), (sh, sw) = self.kernel_size, self.padding, self.strides
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    b, h, w, c = x.shape
    out_h, out_w = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows, cols = sh * (out_h - 1) + 1, sw * (out_w - 1) + 1
    patches = [xp[:, i:i + rows:sh, j:j + cols:sw] for i in range(kh) for j in range(kw)]
    patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    y = jnp.dot(patches.reshape(-1, kh * kw * c), kernel.reshape(kh * kw * c, self.features))
    return y.reshape(b, out_h, out_w, self.features)


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
                   padding: tuple[tuple[int, int], ...]) -> jax.Array:
  """flax's `nn.ConvTranspose` (transpose_kernel=False, no bias) as stride-1 convolutions, one per output phase.

  The function `lax.conv_transpose` computes: x dilated by `strides` (s - 1 zeros between neighbours), padded by
  `padding` (lo, hi) per spatial dim, then a VALID stride-1 convolution with `kernel` (not flipped). Why not that:
  XLA:CPU runs such a dilated convolution, above all its weight gradient, on a slow generic path: MOCCA's MVTec
  autoencoder step took 13.5x as long with it (issue #12; README, MOCCA's throughput). Output position
  o = s*m + r (per dim) only meets the taps j with (r + j - lo) divisible by s, which read x[m + (r + j - lo) / s]:
  each phase r is a stride-1 VALID convolution of the undilated x with the taps kernel[(lo - r) % s::s], and the
  phases interleave into the output. Same values, fewer multiplications (none on zeros), gradients by autodiff.

  Args:
    x: [B, *spatial, in].
    kernel: [*kernel_size, in, out].
    strides: per spatial dim.
    padding: (lo, hi) per spatial dim, on the dilated input.

  Returns:
    [B, *out_spatial, out] with out_n = (n - 1) * s + 1 + lo + hi - k + 1, as `lax.conv_transpose`.
  """
  nd = x.ndim - 2
  sizes, ks = x.shape[1:-1], kernel.shape[:nd]
  outs = [(n - 1) * s + lo + hi - k + 2 for n, s, (lo, hi), k in zip(sizes, strides, padding, ks)]
  rows = [-(-o // s) for o, s in zip(outs, strides)]  # outputs per phase, the last phase cropped below
  spec = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, ("N" + "DHW"[-nd:] + "C", "DHW"[-nd:] + "IO",
                                                                "N" + "DHW"[-nd:] + "C"))
  phases = []
  for r in itertools.product(*(range(s) for s in strides)):
    first = [(lo - ri) % s for ri, s, (lo, _) in zip(r, strides, padding)]  # first tap of phase r, per dim
    if any(f >= k for f, k in zip(first, ks)):  # no tap reaches this phase: zeros
      phases.append(jnp.zeros((x.shape[0], *rows, kernel.shape[-1]), jnp.result_type(x, kernel)))
      continue
    sub = kernel[tuple(slice(f, None, s) for f, s in zip(first, strides))]
    # Tap j reads x[m + d_j], d_j = (r + j - lo) / s, consecutive over the phase's taps: pad (or crop) x so that a
    # VALID convolution's output m starts at d_first and runs `rows` long.
    pads = [(0, 0, 0)]
    for ri, s, (lo, _), f, n, m, t in zip(r, strides, padding, first, sizes, rows, sub.shape[:nd]):
      d0 = (ri + f - lo) // s
      pads.append((-d0, m + d0 + t - 1 - n, 0))
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype), (*pads, (0, 0, 0)))
    phases.append(jax.lax.conv_general_dilated(xp, sub, (1,) * nd, "VALID", dimension_numbers=spec))
  y = jnp.stack(phases).reshape(*strides, x.shape[0], *rows, kernel.shape[-1])
  # [s_1..s_nd, B, m_1..m_nd, C] -> [B, m_1, s_1, ..., m_nd, s_nd, C]: output s*m + r.
  y = y.transpose(nd, *(a for i in range(nd) for a in (nd + 1 + i, i)), 2 * nd + 1)
  y = y.reshape(x.shape[0], *(m * s for m, s in zip(rows, strides)), kernel.shape[-1])
  return y[(slice(None), *(slice(0, o) for o in outs))]


class PhaseConvTranspose(nn.Module):
  """A bias-free `nn.ConvTranspose` (same `kernel` [*kernel_size, in, features], same function) computed by
  `conv_transpose`: stride-1 convolutions per output phase, fast on XLA:CPU where the dilated form is not.

  Attributes:
    features: output channels.
    kernel_size: per spatial dim (2-D or 3-D).
    strides: per spatial dim.
    padding: (lo, hi) per spatial dim, flax's convention (on the dilated input).
    kernel_init: the kernel's initializer.
    dtype: compute dtype (None: that of the inputs and kernel, as flax's ConvTranspose).
  """
  features: int
  kernel_size: tuple[int, ...]
  strides: tuple[int, ...]
  padding: tuple[tuple[int, int], ...]
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return conv_transpose(x, kernel, self.strides, self.padding)


class Stride2Conv(nn.Module):
  """A bias-free 3x3 convolution with stride 2 and padding 1 (PyTorch's Conv2d(k=3, stride=2, padding=1)) whose
  input gradient is computed by output phases.

  The same function and parameter (`kernel`, [3, 3, in, features]) as `nn.Conv(features, (3, 3), (2, 2),
  padding=((1, 1), (1, 1)), use_bias=False)`. Why: XLA:CPU computes the input gradient of a strided convolution
  as a convolution of the zero-dilated output gradient with all 9 taps at every input pixel, three quarters of it
  on zeros; `conv_3x3_stride2`'s backward pass computes each of the four (row, column parity) phases of the input
  gradient as a stride-1 convolution with the 1, 2 or 4 taps that reach it (`conv_transpose`), and interleaves
  them: x1.6-2.2 on the stride-2 convs of ResNet26 and WRN-16-4 (issue #12, benchmarks/conv_layers.py). The
  forward pass and the weight gradient are XLA's.

  Attributes:
    features: output channels.
    kernel_init: the kernel's initializer.
    dtype: compute dtype (None: that of the inputs and kernel, as flax's Conv).
  """
  features: int
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return conv_3x3_stride2(x, kernel)


def _conv_3x3_stride2(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def conv_3x3_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """NHWC x [B, H, W, in] convolved with kernel [3, 3, in, out], stride 2, padding 1: [B, ceil(H/2), ceil(W/2), out].

  The backward pass computes the input gradient by output phases (see `Stride2Conv`); the weight gradient is XLA's.
  """
  return _conv_3x3_stride2(x, kernel)


def _conv_3x3_stride2_fwd(x, kernel):
  return _conv_3x3_stride2(x, kernel), (x, kernel)


def _conv_3x3_stride2_bwd(residuals, g):
  x, kernel = residuals
  # The input gradient is the stride-2 transposed convolution of g with the kernel flipped in space, in and out
  # swapped (padding 1 before; after, whatever restores x's size): `conv_transpose` computes it by output phases.
  flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
  dx = conv_transpose(g, flipped, (2, 2), tuple((1, n - 2 * m + 2) for n, m in zip(x.shape[1:3], g.shape[1:3])))
  dkernel = jax.vjp(lambda k: _conv_3x3_stride2(x, k), kernel)[1](g)[0]
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


conv_3x3_stride2.defvjp(_conv_3x3_stride2_fwd, _conv_3x3_stride2_bwd)


def torch_conv(features: int, kernel: int, stride: int, *, kernel_init: Any, dtype: Any, name: str) -> nn.Module:
  """A bias-free square convolution padded as PyTorch's Conv2d(padding=(kernel - 1) // 2), in the formulation
  fastest on XLA:CPU for its shape: `PatchConv` for 1x1 kernels, `Stride2Conv` for 3x3 stride 2, else `nn.Conv`.

  All three have one parameter, `kernel` [kernel, kernel, in, features], the same function and the same gradients,
  so checkpoints and converted weights do not depend on the choice. Explicit symmetric padding, not 'SAME', which
  would pad (0, 1) for stride 2 and shift the grid.
  """
  if kernel == 1:
    return PatchConv(features, (1, 1), strides=(stride, stride), kernel_init=kernel_init, dtype=dtype, name=name)
  if kernel == 3 and stride == 2:
    return Stride2Conv(features, kernel_init=kernel_init, dtype=dtype, name=name)
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)), use_bias=False,
                 kernel_init=kernel_init, dtype=dtype, name=name)


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
