"""DenseNet-BC (121/161/169/201) for ImageNet, loadable from keras.applications and torchvision weights exactly.

Minhas & Zelek fine-tune an ImageNet DenseNet-169 (keras.applications) for anomaly detection; jaxad converts either
the Keras or the torchvision weights (third_party_weights/convert_keras.py, convert_torch_imagenet.py). Layout
(Huang et al.), images NHWC, 224x224 for the ImageNet weights (any size >= 32 runs: the head follows global average
pooling):

* stem: 7x7 stride-2 conv (pad 3, no bias) 3 -> `num_init_features`, BN, ReLU, 3x3 stride-2 max pooling (pad 1);
* four dense blocks of `block_config` layers; a layer is BN-ReLU-conv1x1 (`bn_size * growth_rate`) - BN-ReLU-conv3x3
  (`growth_rate`, pad 1), and its output is concatenated after its input's channels;
* between blocks a transition: BN-ReLU-conv1x1 halving the channels, then 2x2 stride-2 average pooling;
* final BN, ReLU, global average pooling (`pool`: 1024/2208/1664/1920 channels for 121/161/169/201), Dense head.

Keras and torchvision build the same function; the only numeric difference is the BN epsilon (`epsilon`: Keras
1.001e-5, torchvision 1e-5; `KERAS` and `TORCHVISION` hold the settings). Keras pads with zeros before its stem max
pooling where torchvision pads with -inf; after the ReLU both give the same result. Keras' `predictions` layer
applies a softmax; jaxad's head returns logits. Every conv is bias-free in both. DenseNet-169 has 14,149,480
parameters with the 1000-way head (12,484,480 without), plus 158,400 BN running statistics in `batch_stats` (Keras'
`count_params()` counts both: 14,307,880).

Parameter names (stable; regex freezing uses them): `stem/conv`, `stem/bn`, `denseblock{b}/layer{i}/{bn1,conv1,bn2,
conv2}` (b from 1, i from 0), `transition{b}/{bn,conv}`, `final_bn`, `head`; e.g. 'denseblock1/layer0/conv1/kernel'.

BatchNorm is `layers.BatchNorm` (PyTorch's unbiased running-variance update when fine-tuning). Initialisation as
torchvision: convs He normal (fan-in), BN 1/0, head kernel U(+-1/sqrt(fan_in)) and bias 0.

References:
  Huang, Liu, van der Maaten, Weinberger. Densely Connected Convolutional Networks. CVPR 2017.
  Minhas, Zelek. Anomaly Detection in Images. arXiv:1905.13147 (2019).
"""

from __future__ import annotations

import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.errors import ConfigError
from jaxad.models.layers import BatchNorm

# name -> (block_config, growth_rate, num_init_features)
DEPTHS = {
    121: ((6, 12, 24, 16), 32, 64),
    161: ((6, 12, 36, 24), 48, 96),
    169: ((6, 12, 32, 32), 32, 64),
    201: ((6, 12, 48, 32), 32, 64),
}
KERAS = {'epsilon': 1.001e-5}
TORCHVISION = {'epsilon': 1e-5}

conv_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')  # torchvision's kaiming_normal_
head_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')  # nn.Linear's default


class Stem(nn.Module):
  """7x7 stride-2 conv (pad 3), BN, ReLU, 3x3 stride-2 max pooling (pad 1)."""
  features: int
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = nn.Conv(self.features, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False, kernel_init=conv_init,
                dtype=self.dtype, name='conv')(x)
    y = nn.relu(BatchNorm(epsilon=self.epsilon, dtype=self.dtype, name='bn')(y, use_running_average=not train))
    # nn.max_pool pads with -inf (as torchvision); Keras pads the ReLU output with zeros, the same after a ReLU.
    return nn.max_pool(y, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class DenseLayer(nn.Module):
  """BN-ReLU-conv1x1(bn_size * growth) - BN-ReLU-conv3x3(growth); returns only the new `growth_rate` channels."""
  growth_rate: int
  bn_size: int = 4
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    bn = lambda name: BatchNorm(epsilon=self.epsilon, dtype=self.dtype, name=name)
    y = nn.relu(bn('bn1')(x, use_running_average=not train))
    y = nn.Conv(self.bn_size * self.growth_rate, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype,
                name='conv1')(y)
    y = nn.relu(bn('bn2')(y, use_running_average=not train))
    return nn.Conv(self.growth_rate, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=conv_init,
                   dtype=self.dtype, name='conv2')(y)


class DenseBlock(nn.Module):
  """`num_layers` DenseLayers, each fed the concatenation of the block input and all earlier layers' outputs."""
  num_layers: int
  growth_rate: int
  bn_size: int = 4
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i in range(self.num_layers):
      new = DenseLayer(self.growth_rate, self.bn_size, self.epsilon, self.dtype, name=f'layer{i}')(x, train=train)
      x = jnp.concatenate([x, new.astype(x.dtype)], axis=-1)
    return x


class Transition(nn.Module):
  """BN-ReLU-conv1x1(`features`) then 2x2 stride-2 average pooling (halves H and W, floor for odd sizes)."""
  features: int
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = nn.relu(BatchNorm(epsilon=self.epsilon, dtype=self.dtype, name='bn')(x, use_running_average=not train))
    y = nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=conv_init, dtype=self.dtype, name='conv')(y)
    return nn.avg_pool(y, (2, 2), (2, 2), padding='VALID')


class DenseNet(nn.Module):
  """ImageNet DenseNet-BC returning `(logits, features)`; DenseNet-169 by default.

  Attributes:
    num_classes: outputs of the Dense head (1000 for the ImageNet weights).
    block_config: layers per dense block; `DEPTHS[d][0]` for DenseNet-d ((6, 12, 32, 32) is DenseNet-169).
    growth_rate: channels each dense layer adds (48 for DenseNet-161, else 32).
    num_init_features: stem channels (96 for DenseNet-161, else 64).
    bn_size: bottleneck width factor of the dense layers' 1x1 convs.
    compression: transition channel factor (0.5; channels are floor(C * compression)).
    epsilon: BN epsilon: 1e-5 for torchvision weights, 1.001e-5 for keras.applications weights.
    dtype: computation dtype (None: inferred from inputs and parameters).

  Returns from `__call__(x, *, train)` with x [B, H, W, 3]: logits [B, num_classes] and features 'stem'
  [B, H/4, W/4, num_init_features] (after the max pooling), 'denseblock1'..'denseblock4' (each block's output),
  'transition1'..'transition3', 'final' (after the final BN-ReLU) and 'pool' [B, C] (C = 1664 for DenseNet-169),
  the vector the head reads.

  Example:
    >>> model = densenet169(num_classes=10)
    >>> x = jnp.zeros((1, 32, 32, 3))
    >>> variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)  # shapes only
    >>> logits, feats = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    >>> logits.shape, feats['pool'].shape, feats['denseblock1'].shape
    ((1, 10), (1, 1664), (1, 8, 8, 256))
    >>> variables['params']['denseblock1']['layer0']['conv1']['kernel'].shape
    (1, 1, 64, 128)
  """
  num_classes: int = 1000
  block_config: tuple[int, ...] = DEPTHS[169][0]
  growth_rate: int = 32
  num_init_features: int = 64
  bn_size: int = 4
  compression: float = 0.5
  epsilon: float = 1e-5
  dtype: Any = None

  def __post_init__(self):
    blocks = self.block_config
    if (not isinstance(blocks, (tuple, list)) or not blocks
        or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in blocks)):
      raise ConfigError(f'DenseNet block_config must be a non-empty sequence of positive layer counts, got '
                        f'block_config={blocks!r}; e.g. {DEPTHS[169][0]} (DenseNet-169).')
    for name in ('num_classes', 'growth_rate', 'num_init_features', 'bn_size'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f'DenseNet {name} must be a positive integer, got {name}={value!r}.')
    if not 0 < self.compression <= 1:
      raise ConfigError(f'DenseNet compression must be in (0, 1], got compression={self.compression!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if x.ndim != 4:
      raise ValueError(f'DenseNet expects NHWC images [B, H, W, C], got shape {x.shape}.')
    features = {}
    y = Stem(self.num_init_features, self.epsilon, self.dtype, name='stem')(x, train=train)
    features['stem'] = y
    channels = self.num_init_features
    for b, num_layers in enumerate(self.block_config, start=1):
      y = DenseBlock(num_layers, self.growth_rate, self.bn_size, self.epsilon, self.dtype,
                     name=f'denseblock{b}')(y, train=train)
      features[f'denseblock{b}'] = y
      channels += num_layers * self.growth_rate
      if b < len(self.block_config):
        channels = int(channels * self.compression)
        y = Transition(channels, self.epsilon, self.dtype, name=f'transition{b}')(y, train=train)
        features[f'transition{b}'] = y
    y = nn.relu(BatchNorm(epsilon=self.epsilon, dtype=self.dtype, name='final_bn')(y, use_running_average=not train))
    features['final'] = y
    pooled = jnp.mean(y, axis=(1, 2))
    features['pool'] = pooled
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=head_kernel_init, bias_init=nn.initializers.zeros,
                      name='head')(pooled)
    return logits, features


def densenet(depth: int = 169, *, num_classes: int = 1000, weights: str = 'torchvision', **kw: Any) -> DenseNet:
  """DenseNet-`depth` (121, 161, 169 or 201) with the BN epsilon of `weights` ('torchvision' or 'keras')."""
  if depth not in DEPTHS:
    raise ConfigError(f'DenseNet depth must be one of {sorted(DEPTHS)}, got depth={depth!r}.')
  if weights not in ('torchvision', 'keras'):
    raise ConfigError(f"DenseNet weights must be 'torchvision' or 'keras' (sets the BN epsilon), got "
                      f'weights={weights!r}.')
  blocks, growth, init = DEPTHS[depth]
  settings = dict(KERAS if weights == 'keras' else TORCHVISION)
  settings.update(kw)
  return DenseNet(num_classes=num_classes, block_config=blocks, growth_rate=growth, num_init_features=init,
                  **settings)


def densenet121(**kw: Any) -> DenseNet:
  """DenseNet-121 (keyword arguments as `densenet`)."""
  return densenet(121, **kw)


def densenet161(**kw: Any) -> DenseNet:
  """DenseNet-161 (keyword arguments as `densenet`)."""
  return densenet(161, **kw)


def densenet169(**kw: Any) -> DenseNet:
  """DenseNet-169 (keyword arguments as `densenet`): 14,149,480 parameters with the 1000-way head."""
  return densenet(169, **kw)


def densenet201(**kw: Any) -> DenseNet:
  """DenseNet-201 (keyword arguments as `densenet`)."""
  return densenet(201, **kw)
