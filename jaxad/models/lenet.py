"""The LeNet encoders and autoencoders of Deep SVDD (Ruff et al. 2018), which MOCCA (Massoli et al.) reuses.

Layouts follow the authors' PyTorch code (../shared/spec/reference_implementations.md sections 3.1 and 4.1): all
convolutions and the code layer are bias-free, BatchNorm is non-affine with eps 1e-4 (PyTorch momentum 0.1 = flax
0.9), activations are leaky ReLU with slope 0.01. Images are NHWC.

Every model returns `(output, features)`; `features` holds the pre-BN conv outputs `conv1..convK` ([B, H, W, C]
maps) and the `code` ([B, rep_dim]), which the multi-layer losses of MOCCA use.

Mixed precision (`dtype=jnp.bfloat16`, `config.model.dtype='bfloat16'`): convolutions, matmuls and activations run
in the compute dtype while parameters stay float32 (param_dtype) and BatchNorm reduces its statistics in float32;
every output and feature is cast back to float32 (`float32_outputs`), so the losses, centres and scores that read
them are float32 computations. This file also holds that cast, shared by the other families.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.models.layers import BatchNorm, PatchConv, max_pool_2x2

_SLOPE = 0.01  # PyTorch's F.leaky_relu default, used by both papers' code.
# torch.nn.init.calculate_gain('leaky_relu') uses slope 0.01 too: sqrt(2 / (1 + 0.01^2)).
_LRELU_GAIN = math.sqrt(2.0 / (1.0 + _SLOPE**2))

# Xavier-uniform with the leaky-ReLU gain, as Deep SVDD initialises its CIFAR-10 autoencoder convolutions.
xavier_lrelu = nn.initializers.variance_scaling(_LRELU_GAIN**2, "fan_avg", "uniform")
# PyTorch's default for Linear/Conv (kaiming_uniform with a=sqrt(5)): U(+-1/sqrt(fan_in)).
torch_default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# The same default on a ConvTranspose: PyTorch computes its fan_in from the *output* channels.
torch_default_transpose = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def torch_bias(fan_in: int):
  """PyTorch's Linear/Conv (and LSTM) bias default U(-1/sqrt(fan_in), 1/sqrt(fan_in)): a bias shape alone lacks
  fan_in, so it is given."""
  bound = 1.0 / fan_in**0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def float32_outputs(tree):
  """Casts the floating arrays of `tree` narrower than float32 (bfloat16, float16) to float32; others pass.

  Models apply it to what they return, so a bf16-compute network hands float32 outputs and features to the losses
  and scorers (which then reduce in float32), while float32 and float64 (x64 tests) networks are left unchanged.
  Dicts keep their order (features are listed in layer order; `jax.tree.map` would sort the keys).
  """
  if isinstance(tree, dict):
    return {k: float32_outputs(v) for k, v in tree.items()}
  if isinstance(tree, (tuple, list)):
    return type(tree)(float32_outputs(v) for v in tree)
  if jnp.issubdtype(tree.dtype, jnp.floating) and jnp.finfo(tree.dtype).bits < 32:
    return tree.astype(jnp.float32)
  return tree


def _bn(train: bool, name: str, dtype: Any = None):
  """Non-affine BatchNorm (eps 1e-4) applied in train or eval mode: PyTorch's BatchNorm2d(affine=False).

  `layers.BatchNorm` rather than flax's: PyTorch's unbiased running-variance update, and a two-pass batch variance.
  flax's default E[x^2] - E[x]^2 cancels in float32 where a channel's mean is large against its spread, which made
  the LeNet AE's gradients depend on how XLA happened to round the convolutions (4e-4 of the gradient norm between
  two XLA:CPU fusion settings, where the two-pass form agrees to 1e-6 with PyTorch under both).
  """
  bn = BatchNorm(momentum=0.9, epsilon=1e-4, use_scale=False, use_bias=False, dtype=dtype, name=name)
  return lambda x: bn(x, use_running_average=not train)


def _lrelu(x):
  return nn.leaky_relu(x, _SLOPE)


def _pool(x):  # F.max_pool2d(2, 2), ties' gradient included
  return max_pool_2x2(x)


def _upsample(x):  # F.interpolate(scale_factor=2), nearest
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _deconv(features: int, torch_padding: int, kernel_init, name: str, dtype: Any = None, by_patches: bool = False):
  """A stride-1 PyTorch ConvTranspose2d(k=5, padding=p, bias=False): it changes the size by 4 - 2p; flax pads the
  input itself, so the same geometry is flax padding k - 1 - p on each side. `by_patches`: the same function and
  parameter as `layers.PatchConv`, for inputs smaller than the kernel."""
  pad = ((5 - 1 - torch_padding,) * 2,) * 2
  if by_patches:
    return PatchConv(features, (5, 5), pad, kernel_init=kernel_init, dtype=dtype, name=name)
  return nn.ConvTranspose(features, (5, 5), padding=pad, use_bias=False, kernel_init=kernel_init, dtype=dtype,
                          name=name)


class LeNetEncoder(nn.Module):
  """Conv(5x5) -> BN -> lrelu -> maxpool blocks, flatten, bias-free Dense to the code.

  `LeNetEncoder((32, 64, 128), 128)` is the CIFAR-10 net (520,544 parameters);
  `LeNetEncoder((8, 4), 32, conv_init=torch_default)` is the MNIST net (7,272 parameters).
  `dtype` is the compute dtype (None: that of the inputs, float32); outputs are float32 either way.
  """
  channels: tuple[int, ...] = (32, 64, 128)
  rep_dim: int = 128
  conv_init: Any = xavier_lrelu
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    features = {}
    for i, ch in enumerate(self.channels, start=1):
      x = nn.Conv(ch, (5, 5), padding=2, use_bias=False, kernel_init=self.conv_init, dtype=self.dtype,
                  name=f"conv{i}")(x)
      features[f"conv{i}"] = x
      x = _pool(_lrelu(_bn(train, f"bn{i}", self.dtype)(x)))
    # Flattened in (H, W, C) order; PyTorch's is (C, H, W). Only a weight converter would need to permute.
    x = x.reshape(x.shape[0], -1)
    code = nn.Dense(self.rep_dim, use_bias=False, kernel_init=torch_default, dtype=self.dtype, name="fc1")(x)
    features["code"] = code
    return float32_outputs((code, features))


class LeNetCifarAE(nn.Module):
  """Deep SVDD's CIFAR-10 LeNet autoencoder (encoder 520,544 + decoder 284,000 parameters).

  `variant='mocca'` is MOCCA's copy: a second non-affine BN1d at the start of the decoder, and the first
  transposed conv keeps PyTorch's default init instead of Xavier. `dtype`: the compute dtype, as `LeNetEncoder`.
  """
  rep_dim: int = 128
  variant: str = "dsvdd"
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.variant not in ("dsvdd", "mocca"):
      raise ValueError(f"variant must be 'dsvdd' or 'mocca', got {self.variant!r}")
    dt = self.dtype
    code, features = LeNetEncoder((32, 64, 128), self.rep_dim, dtype=dt, name="encoder")(x, train=train)
    h = _bn(train, "bn_code", dt)(code)
    if self.variant == "mocca":
      h = _bn(train, "bn_decoder_in", dt)(h)
    # PyTorch views the code as (C=rep_dim/16, 4, 4); move C last for NHWC.
    h = h.reshape(h.shape[0], self.rep_dim // 16, 4, 4).transpose(0, 2, 3, 1)
    h = _lrelu(h)
    first_init = torch_default_transpose if self.variant == "mocca" else xavier_lrelu
    for i, (ch, init) in enumerate(((128, first_init), (64, xavier_lrelu), (32, xavier_lrelu)), start=1):
      h = _deconv(ch, 2, init, f"deconv{i}", dt, by_patches=i == 1)(h)  # deconv1 reads 4x4 maps
      h = _upsample(_lrelu(_bn(train, f"bn_deconv{i}", dt)(h)))
    h = _deconv(x.shape[-1], 2, xavier_lrelu, "deconv4", dt)(h)
    return float32_outputs((nn.sigmoid(h), features))


class LeNetMnistAE(nn.Module):
  """Deep SVDD's MNIST LeNet autoencoder for 28x28x1 inputs (encoder 7,272 + decoder 1,200 parameters).

  `dtype`: the compute dtype, as `LeNetEncoder`.
  """
  rep_dim: int = 32
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    dt = self.dtype
    code, features = LeNetEncoder((8, 4), self.rep_dim, conv_init=torch_default, dtype=dt, name="encoder")(
        x, train=train)
    if dt is not None:
      code = code.astype(dt)  # the encoder hands float32 out; the decoder computes in `dtype` again
    h = code.reshape(code.shape[0], self.rep_dim // 16, 4, 4).transpose(0, 2, 3, 1)
    h = _upsample(_lrelu(h))                                           # 8x8
    h = _deconv(4, 2, torch_default_transpose, "deconv1", dt)(h)       # 8x8
    h = _upsample(_lrelu(_bn(train, "bn_deconv1", dt)(h)))             # 16x16
    h = _deconv(8, 3, torch_default_transpose, "deconv2", dt)(h)       # 14x14
    h = _upsample(_lrelu(_bn(train, "bn_deconv2", dt)(h)))             # 28x28
    h = _deconv(x.shape[-1], 2, torch_default_transpose, "deconv3", dt)(h)
    return float32_outputs((nn.sigmoid(h), features))


def _check_selector(selector: str) -> None:
  # MOCCA's CIFAR-10 net uses average pooling as its only "selector" (paper section IV-D), which the method applies.
  if selector != "pool":
    raise ValueError(f"The LeNet encoders have no selector heads: model.selector must be 'pool', got {selector!r}.")


def lenet_cifar10(rep_dim: int = 128, ae_variant: str = "dsvdd", layers=(), selector: str = "pool", dtype=None):
  """(autoencoder, encoder) pair; the encoder's params are the autoencoder's params['encoder'].

  `layers` is accepted for the hypersphere methods' common signature: the encoder returns every layer anyway.
  `dtype`: the compute dtype of both (None: float32).
  """
  del layers
  _check_selector(selector)
  return LeNetCifarAE(rep_dim, ae_variant, dtype), LeNetEncoder((32, 64, 128), rep_dim, dtype=dtype)


def lenet_mnist(rep_dim: int = 32, ae_variant: str = "dsvdd", layers=(), selector: str = "pool", dtype=None):
  del ae_variant, layers  # MOCCA has no MNIST net; Deep SVDD's is the only one.
  _check_selector(selector)
  return LeNetMnistAE(rep_dim, dtype), LeNetEncoder((8, 4), rep_dim, conv_init=torch_default, dtype=dtype)
