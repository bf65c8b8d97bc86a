"""Inception-V3 and Inception-V4 ImageNet backbones (Flax Linen, NHWC), the layouts of the public weight files.

Minhas & Zelek fine-tune an ImageNet Inception-V4 (a third-party Keras port; ../shared/spec/
reference_implementations.md section 6); Inception-V3 is the Inception of keras.applications and torchvision. The
parameter names mirror the public weight files, so converted weights load by renaming only
(`third_party_weights/inception_names.py`).

**Inception-V3** (Szegedy et al. 2016), as keras.applications.InceptionV3 and torchvision's inception_v3 (the two
agree on the topology): every conv is conv (no bias) -> BN (eps 1e-3) -> ReLU. Stem: 3x3/2 32 valid, 3x3 32 valid,
3x3 64 same, max 3x3/2, 1x1 80, 3x3 192 valid, max 3x3/2; then Mixed_5b/5c/5d (35x35 blocks 'A', pool branch 32,
64, 64 channels), Mixed_6a (grid reduction 'B'), Mixed_6b/6c/6d/6e (17x17 blocks 'C' with factorised 7x7 convs of
128, 160, 160, 192 channels), Mixed_7a (reduction 'D'), Mixed_7b/7c (8x8 blocks 'E' with split 1x3 / 3x1 convs);
global average pooling to 2048, dropout, Dense head. Two details differ between the weight sources and are options:

* `bn_scale`: Keras' BatchNormalization layers have `scale=False` (no gamma); torchvision's have a weight.
* `pool_count_include_pad`: the 3x3 stride-1 average pooling of the 'A', 'C' and 'E' branches divides by 9 at the
  border in torchvision (`F.avg_pool2d(padding=1)`, count_include_pad=True) but by the number of real pixels in
  Keras ('same' pooling).

`inception_v3(variant='torchvision' | 'keras')` sets both (and Keras' BN momentum). Parameters: 23,834,568 for the
torchvision layout and 23,817,352 (+ 34,432 moving statistics: 23,851,784, Keras' count) for the Keras layout, both
with the 1000-way head. torchvision's auxiliary classifier (`AuxLogits`, 3,326,696 parameters, only a training-time
loss in the paper) is not part of this model; the converter drops it. torchvision's `transform_input` (re-scaling
ImageNet-normalised inputs) is not either: feed [-1, 1] images, as Keras' `preprocess_input` makes.

**Inception-V4** (Szegedy et al. 2017), the PyTorch layout of timm `inception_v4` / Cadene's pretrainedmodels (BN
eps 1e-3 with gamma and beta, no conv bias): stem (3x3/2 32 valid, 3x3 32 valid, 3x3 64 same), Mixed_3a (max pool |
3x3/2 96), Mixed_4a (1x1-3x3 | 1x1-1x7-7x1-3x3, valid), Mixed_5a (3x3/2 192 | max pool), 4 x Inception-A (384),
Reduction-A (1024), 7 x Inception-B (1024), Reduction-B (1536), 3 x Inception-C (1536); global average pooling,
dropout (the paper's keep probability 0.8), Dense head. Its 3x3 average poolings exclude the padding. 42,679,816
parameters with timm's 1000-way head, 42,681,353 with Cadene's 1001-way one (class 0 = background).

Both take 299x299 [-1, 1] images (x / 127.5 - 1); any size >= 75 works, global pooling makes the head
size-independent. Names mirror the sources, lower-cased, e.g. `mixed5b/branch1x1/conv/kernel`,
`mixed7c/branch3x3dbl_3a/bn/bias` (V3) and `inception_b3/branch2_4/conv/kernel`, `reduction_a/branch1_2/bn/scale`
(V4, where torch's `features.{i}` become `conv2d_1a_3x3`, ..., `mixed3a`, `inception_a1`, ..., `reduction_b`,
`inception_c3` and `branch1.0` becomes `branch1_0`); BN statistics are `batch_stats/.../bn/{mean,var}`; the
classifier is `head`. Every conv unit is `<unit>/conv` + `<unit>/bn`, so the regex `/bn/` selects all batch norms.

Initialisation (training from scratch only; converted weights replace it): He-normal (fan-in, truncated) convs, BN
scale 1 / bias 0, and PyTorch nn.Linear's default for the head. BatchNorm updates the running variance with
PyTorch's unbiased rule (Keras uses the biased batch variance; the two differ by n / (n - 1), n = B*H*W).

References:
  Szegedy, Vanhoucke, Ioffe, Shlens, Wojna. Rethinking the Inception Architecture for Computer Vision. CVPR 2016.
  Szegedy, Ioffe, Vanhoucke, Alemi. Inception-v4, Inception-ResNet and the Impact of Residual Connections on
    Learning. AAAI 2017.
  Minhas, Zelek. Anomaly Detection in Images (the jaxad paper set, ../papers/).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.errors import ConfigError
from jaxad.models.layers import BatchNorm
from jaxad.models.lenet import torch_bias

ModuleDef = Any

# Smallest input side that survives the valid convs and the four stride-2 reductions of either net (1x1 at the end).
MIN_SIZE = 75

conv_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')
# PyTorch's nn.Linear default for the kernel: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
head_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')

# variant -> Inception-V3 options that differ between the weight sources.
V3_VARIANTS = {
    'torchvision': dict(bn_scale=True, pool_count_include_pad=True, bn_momentum=0.9),
    'keras': dict(bn_scale=False, pool_count_include_pad=False, bn_momentum=0.99),
}


class ConvBN(nn.Module):
  """conv (no bias) -> BN -> ReLU, the unit every Inception conv is (`<name>/conv`, `<name>/bn`).

  Attributes:
    features: output channels.
    kernel: (height, width), e.g. (1, 7).
    strides: one stride for both axes.
    padding: 'SAME' (stride 1 only: symmetric (k - 1) / 2 on each side, as PyTorch's padding and Keras' 'same') or
      'VALID'.
  """
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: str = 'SAME'
  bn_scale: bool = True
  bn_momentum: float = 0.9
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.padding == 'SAME':
      if self.strides != 1:
        raise ValueError(f"ConvBN padding='SAME' is symmetric and needs strides=1, got strides={self.strides}.")
      padding = tuple(((k - 1) // 2, (k - 1) // 2) for k in self.kernel)
    else:
      padding = 'VALID'
    y = nn.Conv(self.features, tuple(self.kernel), (self.strides, self.strides), padding=padding, use_bias=False,
                kernel_init=conv_init, dtype=self.dtype, name='conv')(x)
    y = BatchNorm(self.bn_momentum, 1e-3, use_scale=self.bn_scale, dtype=self.dtype, name='bn')(
        y, use_running_average=not train)
    return nn.relu(y)


def _max_pool(x: jax.Array) -> jax.Array:
  """3x3 stride-2 valid max pooling (every reduction of both nets)."""
  return nn.max_pool(x, (3, 3), (2, 2), padding='VALID')


def _avg_pool(x: jax.Array, count_include_pad: bool) -> jax.Array:
  """3x3 stride-1 average pooling with one pixel of zero padding (the pool branches)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=count_include_pad)


def _chain(conv: ModuleDef, x: jax.Array, train: bool, *units: tuple) -> jax.Array:
  """Applies conv units in turn; a unit (name, features, kernel[, strides[, padding]]) is `conv(...)` named name."""
  for name, features, kernel, *rest in units:
    x = conv(features, kernel, *rest, name=name)(x, train=train)
  return x


def _check_input(x: jax.Array, model: str) -> None:
  if x.ndim != 4 or min(x.shape[1:3]) < MIN_SIZE:
    raise ValueError(f'{model} expects NHWC images [B, H, W, C] with H, W >= {MIN_SIZE} (299 is the native size), '
                     f'got x.shape={x.shape}; resize the images.')


# --- Inception-V3 ---------------------------------------------------------------------------------------------------


class InceptionA(nn.Module):
  """35x35 block (Mixed_5b/c/d): 1x1 64 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 pool_features."""
  pool_features: int
  conv: ModuleDef
  count_include_pad: bool

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b1 = c(('branch1x1', 64, (1, 1)))
    b5 = c(('branch5x5_1', 48, (1, 1)), ('branch5x5_2', 64, (5, 5)))
    b3 = c(('branch3x3dbl_1', 64, (1, 1)), ('branch3x3dbl_2', 96, (3, 3)), ('branch3x3dbl_3', 96, (3, 3)))
    bp = _chain(self.conv, _avg_pool(x, self.count_include_pad), train, ('branch_pool', self.pool_features, (1, 1)))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """35 -> 17 reduction (Mixed_6a): 3x3/2 384 | 1x1 64 -> 3x3 96 -> 3x3/2 96 | max pool."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b3 = c(('branch3x3', 384, (3, 3), 2, 'VALID'))
    bd = c(('branch3x3dbl_1', 64, (1, 1)), ('branch3x3dbl_2', 96, (3, 3)),
           ('branch3x3dbl_3', 96, (3, 3), 2, 'VALID'))
    return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class InceptionC(nn.Module):
  """17x17 block (Mixed_6b-e) with factorised 7x7 convs of `channels_7x7` channels; 768 channels out."""
  channels_7x7: int
  conv: ModuleDef
  count_include_pad: bool

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c7 = self.channels_7x7
    c = functools.partial(_chain, self.conv, x, train)
    b1 = c(('branch1x1', 192, (1, 1)))
    b7 = c(('branch7x7_1', c7, (1, 1)), ('branch7x7_2', c7, (1, 7)), ('branch7x7_3', 192, (7, 1)))
    bd = c(('branch7x7dbl_1', c7, (1, 1)), ('branch7x7dbl_2', c7, (7, 1)), ('branch7x7dbl_3', c7, (1, 7)),
           ('branch7x7dbl_4', c7, (7, 1)), ('branch7x7dbl_5', 192, (1, 7)))
    bp = _chain(self.conv, _avg_pool(x, self.count_include_pad), train, ('branch_pool', 192, (1, 1)))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """17 -> 8 reduction (Mixed_7a): 1x1 192 -> 3x3/2 320 | 1x1 192 -> 1x7 -> 7x1 -> 3x3/2 192 | max pool."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b3 = c(('branch3x3_1', 192, (1, 1)), ('branch3x3_2', 320, (3, 3), 2, 'VALID'))
    b7 = c(('branch7x7x3_1', 192, (1, 1)), ('branch7x7x3_2', 192, (1, 7)), ('branch7x7x3_3', 192, (7, 1)),
           ('branch7x7x3_4', 192, (3, 3), 2, 'VALID'))
    return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class InceptionE(nn.Module):
  """8x8 block (Mixed_7b/c): 1x1 320 | 1x1 384 -> (1x3 | 3x1) | 1x1 448 -> 3x3 384 -> (1x3 | 3x1) | avg -> 1x1 192."""
  conv: ModuleDef
  count_include_pad: bool

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    conv = self.conv
    c = functools.partial(_chain, conv, x, train)
    b1 = c(('branch1x1', 320, (1, 1)))
    b3 = c(('branch3x3_1', 384, (1, 1)))
    b3 = jnp.concatenate([conv(384, (1, 3), name='branch3x3_2a')(b3, train=train),
                          conv(384, (3, 1), name='branch3x3_2b')(b3, train=train)], axis=-1)
    bd = c(('branch3x3dbl_1', 448, (1, 1)), ('branch3x3dbl_2', 384, (3, 3)))
    bd = jnp.concatenate([conv(384, (1, 3), name='branch3x3dbl_3a')(bd, train=train),
                          conv(384, (3, 1), name='branch3x3dbl_3b')(bd, train=train)], axis=-1)
    bp = _chain(conv, _avg_pool(x, self.count_include_pad), train, ('branch_pool', 192, (1, 1)))
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """Inception-V3 returning `(logits, features)`; see the module docstring for the layout and the two variants.

  Attributes:
    num_classes: outputs of the Dense head (1000 for the ImageNet weights).
    bn_scale: BN with gamma (torchvision) or without (Keras' `scale=False`).
    pool_count_include_pad: average pooling divides by 9 at the border (torchvision) or by the real pixel count
      (Keras).
    bn_momentum: flax convention (0.9 = PyTorch's momentum 0.1; Keras' default is 0.99).
    dropout_rate: dropout on the pooled features before the head in training (torchvision: 0.5; Keras has none).
    dtype: computation dtype (None: inferred from inputs and parameters).

  Returns from `__call__(x, *, train)` for x [B, H, W, 3] in [-1, 1] (H, W >= 75; 299 native):
    logits [B, num_classes] and features 'mixed5b' ... 'mixed7c' (block outputs; Keras' 'mixed0' ... 'mixed10'),
    e.g. at 299x299 'mixed5d' [B, 35, 35, 288], 'mixed6e' [B, 17, 17, 768], 'mixed7c' [B, 8, 8, 2048], and 'pool'
    [B, 2048] (global average, before dropout). Dropout draws from the 'dropout' rng when `train`.

  Example (shapes only, with `jax.eval_shape`; jit `model.init` for real variables, op-by-op it takes ~30 s):
    >>> model = inception_v3('keras')
    >>> x = jnp.zeros((2, 299, 299, 3))
    >>> variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    >>> sum(a.size for a in jax.tree.leaves(variables))  # params + batch_stats: Keras' count
    23851784
    >>> logits, feats = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    >>> logits.shape, feats['mixed5d'].shape, feats['mixed7c'].shape, feats['pool'].shape
    ((2, 1000), (2, 35, 35, 288), (2, 8, 8, 2048), (2, 2048))
  """
  num_classes: int = 1000
  bn_scale: bool = True
  pool_count_include_pad: bool = True
  bn_momentum: float = 0.9
  dropout_rate: float = 0.5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    _check_input(x, 'InceptionV3')
    conv = functools.partial(ConvBN, bn_scale=self.bn_scale, bn_momentum=self.bn_momentum, dtype=self.dtype)
    pad = self.pool_count_include_pad
    y = _chain(conv, x, train, ('conv2d_1a_3x3', 32, (3, 3), 2, 'VALID'), ('conv2d_2a_3x3', 32, (3, 3), 1, 'VALID'),
               ('conv2d_2b_3x3', 64, (3, 3)))
    y = _chain(conv, _max_pool(y), train, ('conv2d_3b_1x1', 80, (1, 1), 1, 'VALID'),
               ('conv2d_4a_3x3', 192, (3, 3), 1, 'VALID'))
    y = _max_pool(y)
    blocks = [InceptionA(32, conv, pad, name='mixed5b'), InceptionA(64, conv, pad, name='mixed5c'),
              InceptionA(64, conv, pad, name='mixed5d'), InceptionB(conv, name='mixed6a'),
              InceptionC(128, conv, pad, name='mixed6b'), InceptionC(160, conv, pad, name='mixed6c'),
              InceptionC(160, conv, pad, name='mixed6d'), InceptionC(192, conv, pad, name='mixed6e'),
              InceptionD(conv, name='mixed7a'), InceptionE(conv, pad, name='mixed7b'),
              InceptionE(conv, pad, name='mixed7c')]
    return _finish(self, y, blocks, train)


def _finish(model: nn.Module, y: jax.Array, blocks: list[nn.Module],
            train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Runs the blocks (features under their names), pools, drops out and classifies; called inside `model`'s
  compact `__call__`, so the modules made here are its children."""
  features = {}
  for block in blocks:
    y = block(y, train=train)
    features[block.name] = y
  pooled = jnp.mean(y, axis=(1, 2))
  features['pool'] = pooled
  h = pooled
  if model.dropout_rate > 0:
    h = nn.Dropout(model.dropout_rate, deterministic=not train, name='dropout')(h)
  logits = nn.Dense(model.num_classes, dtype=model.dtype, kernel_init=head_kernel_init,
                    bias_init=torch_bias(pooled.shape[-1]), name='head')(h)
  return logits, features


def inception_v3(variant: str = 'torchvision', *, num_classes: int = 1000, **kwargs) -> InceptionV3:
  """InceptionV3 in the layout of the 'torchvision' or 'keras' weights (see `V3_VARIANTS`); kwargs override.

  Raises:
    ConfigError: an unknown variant.
  """
  if variant not in V3_VARIANTS:
    raise ConfigError(f'Unknown Inception-V3 variant={variant!r}; valid: {sorted(V3_VARIANTS)}.')
  return InceptionV3(num_classes=num_classes, **{**V3_VARIANTS[variant], **kwargs})


# --- Inception-V4 ---------------------------------------------------------------------------------------------------


class Mixed3a(nn.Module):
  """Stem part: max pool | 3x3/2 96 (valid) -> 160 channels."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return jnp.concatenate([_max_pool(x), _chain(self.conv, x, train, ('conv', 96, (3, 3), 2, 'VALID'))], axis=-1)


class Mixed4a(nn.Module):
  """Stem part: 1x1 64 -> 3x3 96 | 1x1 64 -> 1x7 64 -> 7x1 64 -> 3x3 96 (valid 3x3s) -> 192 channels."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b0 = c(('branch0_0', 64, (1, 1)), ('branch0_1', 96, (3, 3), 1, 'VALID'))
    b1 = c(('branch1_0', 64, (1, 1)), ('branch1_1', 64, (1, 7)), ('branch1_2', 64, (7, 1)),
           ('branch1_3', 96, (3, 3), 1, 'VALID'))
    return jnp.concatenate([b0, b1], axis=-1)


class Mixed5a(nn.Module):
  """Stem part: 3x3/2 192 (valid) | max pool -> 384 channels."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    return jnp.concatenate([_chain(self.conv, x, train, ('conv', 192, (3, 3), 2, 'VALID')), _max_pool(x)], axis=-1)


class InceptionV4A(nn.Module):
  """35x35 block: 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 96 (384 channels)."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b0 = c(('branch0', 96, (1, 1)))
    b1 = c(('branch1_0', 64, (1, 1)), ('branch1_1', 96, (3, 3)))
    b2 = c(('branch2_0', 64, (1, 1)), ('branch2_1', 96, (3, 3)), ('branch2_2', 96, (3, 3)))
    b3 = _chain(self.conv, _avg_pool(x, False), train, ('branch3_1', 96, (1, 1)))
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class ReductionA(nn.Module):
  """35 -> 17: 3x3/2 384 | 1x1 192 -> 3x3 224 -> 3x3/2 256 | max pool (1024 channels)."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b0 = c(('branch0', 384, (3, 3), 2, 'VALID'))
    b1 = c(('branch1_0', 192, (1, 1)), ('branch1_1', 224, (3, 3)), ('branch1_2', 256, (3, 3), 2, 'VALID'))
    return jnp.concatenate([b0, b1, _max_pool(x)], axis=-1)


class InceptionV4B(nn.Module):
  """17x17 block (1024 channels).

  1x1 384 | 1x1 192 -> 1x7 224 -> 7x1 256 | 1x1 192 -> 7x1 192 -> 1x7 224 -> 7x1 224 -> 1x7 256 | avg -> 1x1 128.
  """
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b0 = c(('branch0', 384, (1, 1)))
    b1 = c(('branch1_0', 192, (1, 1)), ('branch1_1', 224, (1, 7)), ('branch1_2', 256, (7, 1)))
    b2 = c(('branch2_0', 192, (1, 1)), ('branch2_1', 192, (7, 1)), ('branch2_2', 224, (1, 7)),
           ('branch2_3', 224, (7, 1)), ('branch2_4', 256, (1, 7)))
    b3 = _chain(self.conv, _avg_pool(x, False), train, ('branch3_1', 128, (1, 1)))
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class ReductionB(nn.Module):
  """17 -> 8: 1x1 192 -> 3x3/2 192 | 1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3/2 320 | max pool (1536 channels)."""
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    c = functools.partial(_chain, self.conv, x, train)
    b0 = c(('branch0_0', 192, (1, 1)), ('branch0_1', 192, (3, 3), 2, 'VALID'))
    b1 = c(('branch1_0', 256, (1, 1)), ('branch1_1', 256, (1, 7)), ('branch1_2', 320, (7, 1)),
           ('branch1_3', 320, (3, 3), 2, 'VALID'))
    return jnp.concatenate([b0, b1, _max_pool(x)], axis=-1)


class InceptionV4C(nn.Module):
  """8x8 block (1536 channels).

  1x1 256 | 1x1 384 -> (1x3 256 | 3x1 256) | 1x1 384 -> 3x1 448 -> 1x3 512 -> (1x3 256 | 3x1 256) | avg -> 1x1 256.
  (3x1 448 before 1x3 512, as in the released weights.)
  """
  conv: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    conv = self.conv
    c = functools.partial(_chain, conv, x, train)
    b0 = c(('branch0', 256, (1, 1)))
    b1 = c(('branch1_0', 384, (1, 1)))
    b1 = jnp.concatenate([conv(256, (1, 3), name='branch1_1a')(b1, train=train),
                          conv(256, (3, 1), name='branch1_1b')(b1, train=train)], axis=-1)
    b2 = c(('branch2_0', 384, (1, 1)), ('branch2_1', 448, (3, 1)), ('branch2_2', 512, (1, 3)))
    b2 = jnp.concatenate([conv(256, (1, 3), name='branch2_3a')(b2, train=train),
                          conv(256, (3, 1), name='branch2_3b')(b2, train=train)], axis=-1)
    b3 = _chain(conv, _avg_pool(x, False), train, ('branch3_1', 256, (1, 1)))
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


# Inception-V4's blocks after the three stem convs, in the order of torch's `features.3` ... `features.21`.
V4_BLOCKS = (('mixed3a', Mixed3a), ('mixed4a', Mixed4a), ('mixed5a', Mixed5a),
             *((f'inception_a{i}', InceptionV4A) for i in range(1, 5)), ('reduction_a', ReductionA),
             *((f'inception_b{i}', InceptionV4B) for i in range(1, 8)), ('reduction_b', ReductionB),
             *((f'inception_c{i}', InceptionV4C) for i in range(1, 4)))


class InceptionV4(nn.Module):
  """Inception-V4 (timm / Cadene layout) returning `(logits, features)`; see the module docstring.

  Attributes:
    num_classes: outputs of the Dense head (timm's ImageNet weights: 1000; Cadene's: 1001, class 0 = background).
    bn_momentum: flax convention (0.9 = PyTorch's momentum 0.1).
    dropout_rate: dropout on the pooled features before the head in training (the paper: keep probability 0.8).
    dtype: computation dtype (None: inferred from inputs and parameters).

  Returns from `__call__(x, *, train)` for x [B, H, W, 3] in [-1, 1] (H, W >= 75; 299 native):
    logits [B, num_classes] and features named as the blocks: 'mixed3a', 'mixed4a', 'mixed5a' [B, 35, 35, 384] at
    299x299, 'inception_a1' ... 'inception_a4', 'reduction_a' [B, 17, 17, 1024], 'inception_b1' ... 'inception_b7',
    'reduction_b' [B, 8, 8, 1536], 'inception_c1' ... 'inception_c3', and 'pool' [B, 1536] (global average, before
    dropout). Dropout draws from the 'dropout' rng when `train`.

  Example (shapes only, with `jax.eval_shape`; jit `model.init` for real variables):
    >>> model = InceptionV4(num_classes=1001)
    >>> x = jnp.zeros((2, 299, 299, 3))
    >>> variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    >>> sum(a.size for a in jax.tree.leaves(variables['params']))
    42681353
    >>> logits, feats = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    >>> logits.shape, feats['reduction_a'].shape, feats['inception_c3'].shape, feats['pool'].shape
    ((2, 1001), (2, 17, 17, 1024), (2, 8, 8, 1536), (2, 1536))
  """
  num_classes: int = 1000
  bn_momentum: float = 0.9
  dropout_rate: float = 0.2
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    _check_input(x, 'InceptionV4')
    conv = functools.partial(ConvBN, bn_scale=True, bn_momentum=self.bn_momentum, dtype=self.dtype)
    y = _chain(conv, x, train, ('conv2d_1a_3x3', 32, (3, 3), 2, 'VALID'), ('conv2d_2a_3x3', 32, (3, 3), 1, 'VALID'),
               ('conv2d_2b_3x3', 64, (3, 3)))
    return _finish(self, y, [block(conv, name=name) for name, block in V4_BLOCKS], train)


def inception_v4(*, num_classes: int = 1000, **kwargs) -> InceptionV4:
  """InceptionV4(num_classes=..., **kwargs); 1000 for timm's weights, 1001 for Cadene's."""
  return InceptionV4(num_classes=num_classes, **kwargs)
