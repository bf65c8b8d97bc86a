"""Bottleneck ResNet v1 / v1.5 (50/101/152) for ImageNet, loadable from keras.applications and torchvision weights.

Minhas & Zelek fine-tune an ImageNet ResNet-152 (keras.applications) for anomaly detection; jaxad converts either
the Keras or the torchvision weights (third_party_weights/convert_keras.py, convert_torch_imagenet.py). Layout (He et
al.), images NHWC, 224x224 for the ImageNet weights (any size >= 32 runs: the head follows global average pooling):

* stem: 7x7 stride-2 conv (pad 3) 3 -> 64, BN, ReLU, 3x3 stride-2 max pooling (pad 1);
* four stages of `stage_sizes` bottleneck blocks with widths 64/128/256/512 (outputs 4x: 256/512/1024/2048); the
  first block of stages 2-4 has stride 2. A block is conv1x1-BN-ReLU - conv3x3(pad 1)-BN-ReLU - conv1x1(4w)-BN, plus
  the shortcut (the identity, or in each stage's first block a strided conv1x1(4w)-BN projection), then ReLU;
* global average pooling (`pool`, 2048 channels), Dense head.

The two weight sources differ in three places, each an attribute (`KERAS` and `TORCHVISION` hold the settings):

* `stride_in_1x1`: Keras (the original v1 of the paper and of Caffe) puts a block's stride on its first 1x1 conv;
  torchvision ("v1.5") puts it on the 3x3 conv.
* `conv_bias`: every Keras conv has a bias (redundant before BN, but in the weights); torchvision's convs have none.
* `epsilon`: BN epsilon 1.001e-5 (Keras) or 1e-5 (torchvision).

Keras pads with zeros before its stem max pooling where torchvision pads with -inf; after the ReLU both give the
same result. Keras' `predictions` layer applies a softmax; jaxad's head returns logits. ResNet-152 has 60,192,808
parameters in the torchvision layout and 60,268,520 with Keras' conv biases (60,419,944 in Keras' `count_params()`,
which adds the 151,424 BN running statistics that jaxad keeps in `batch_stats`).

Parameter names (stable; regex freezing uses them): `stem/conv`, `stem/bn`, `stage{s}/block{i}/{conv1,bn1,conv2,bn2,
conv3,bn3,proj_conv,proj_bn}` (s from 1, i from 0), `head`; e.g. 'stage3/block35/conv2/kernel'.

BatchNorm is `layers.BatchNorm` (PyTorch's unbiased running-variance update when fine-tuning). Initialisation as
torchvision: convs He normal (fan-out), BN 1/0, head kernel U(+-1/sqrt(fan_in)), biases 0.

References:
  He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
  Goyal et al. Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. 2017 (the stride-on-3x3 variant).
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

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
KERAS = {'stride_in_1x1': True, 'conv_bias': True, 'epsilon': 1.001e-5}
TORCHVISION = {'stride_in_1x1': False, 'conv_bias': False, 'epsilon': 1e-5}

conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')  # torchvision's kaiming_normal_(fan_out)
head_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')  # nn.Linear's default


class Bottleneck(nn.Module):
  """conv1x1-BN-ReLU, conv3x3-BN-ReLU, conv1x1(4w)-BN, + shortcut, ReLU; the stride on the 1x1 or on the 3x3."""
  width: int
  stride: int = 1
  projection: bool = False
  stride_in_1x1: bool = False
  conv_bias: bool = False
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    s = (self.stride, self.stride)
    conv = lambda f, k, stride, name: nn.Conv(
        f, (k, k), stride, padding=((k // 2, k // 2),) * 2, use_bias=self.conv_bias, kernel_init=conv_init,
        dtype=self.dtype, name=name)
    bn = lambda name: BatchNorm(epsilon=self.epsilon, dtype=self.dtype, name=name)
    y = conv(self.width, 1, s if self.stride_in_1x1 else (1, 1), 'conv1')(x)
    y = nn.relu(bn('bn1')(y, use_running_average=not train))
    y = conv(self.width, 3, (1, 1) if self.stride_in_1x1 else s, 'conv2')(y)
    y = nn.relu(bn('bn2')(y, use_running_average=not train))
    y = conv(self.width * EXPANSION, 1, (1, 1), 'conv3')(y)
    y = bn('bn3')(y, use_running_average=not train)
    shortcut = x
    if self.projection:
      shortcut = conv(self.width * EXPANSION, 1, s, 'proj_conv')(x)
      shortcut = bn('proj_bn')(shortcut, use_running_average=not train)
    return nn.relu(y + shortcut.astype(y.dtype))


class Stem(nn.Module):
  """7x7 stride-2 conv (pad 3), BN, ReLU, 3x3 stride-2 max pooling (pad 1)."""
  conv_bias: bool = False
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = nn.Conv(WIDTHS[0], (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=self.conv_bias, kernel_init=conv_init,
                dtype=self.dtype, name='conv')(x)
    y = nn.relu(BatchNorm(epsilon=self.epsilon, dtype=self.dtype, name='bn')(y, use_running_average=not train))
    # nn.max_pool pads with -inf (as torchvision); Keras pads the ReLU output with zeros, the same after a ReLU.
    return nn.max_pool(y, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class Stage(nn.Module):
  """`num_blocks` Bottlenecks `block0`, `block1`, ...; the first projects the shortcut and has the stage's stride."""
  num_blocks: int
  width: int
  stride: int = 1
  stride_in_1x1: bool = False
  conv_bias: bool = False
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i in range(self.num_blocks):
      x = Bottleneck(self.width, self.stride if i == 0 else 1, projection=i == 0, stride_in_1x1=self.stride_in_1x1,
                     conv_bias=self.conv_bias, epsilon=self.epsilon, dtype=self.dtype, name=f'block{i}')(x, train=train)
    return x


class ResNet(nn.Module):
  """ImageNet bottleneck ResNet returning `(logits, features)`; ResNet-152 in the torchvision layout by default.

  Attributes:
    num_classes: outputs of the Dense head (1000 for the ImageNet weights).
    stage_sizes: bottleneck blocks per stage; `DEPTHS[d]` for ResNet-d ((3, 8, 36, 3) is ResNet-152).
    stride_in_1x1: put a block's stride on its first 1x1 conv (Keras, v1) instead of the 3x3 (torchvision, v1.5).
    conv_bias: give every conv a bias (Keras) or none (torchvision).
    epsilon: BN epsilon: 1e-5 for torchvision weights, 1.001e-5 for keras.applications weights.
    dtype: computation dtype (None: inferred from inputs and parameters).

  Returns from `__call__(x, *, train)` with x [B, H, W, 3]: logits [B, num_classes] and features 'stem'
  [B, H/4, W/4, 64] (after the max pooling), 'stage1'..'stage4' ([B, H/4, W/4, 256] .. [B, H/32, W/32, 2048]: each
  stage's output) and 'pool' [B, 2048], the vector the head reads.

  Example:
    >>> model = resnet152(num_classes=10)
    >>> x = jnp.zeros((1, 32, 32, 3))
    >>> shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    >>> shapes['params']['stage3']['block35']['conv2']['kernel'].shape
    (3, 3, 256, 256)
  """
  num_classes: int = 1000
  stage_sizes: tuple[int, ...] = DEPTHS[152]
  stride_in_1x1: bool = False
  conv_bias: bool = False
  epsilon: float = 1e-5
  dtype: Any = None

  def __post_init__(self):
    sizes = self.stage_sizes
    if (not isinstance(sizes, (tuple, list)) or len(sizes) != len(WIDTHS)
        or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in sizes)):
      raise ConfigError(f'ResNet stage_sizes must be {len(WIDTHS)} positive block counts, got stage_sizes={sizes!r}; '
                        f'e.g. {DEPTHS[152]} (ResNet-152).')
    if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, numbers.Integral) or self.num_classes < 1:
      raise ConfigError(f'ResNet num_classes must be a positive integer, got num_classes={self.num_classes!r}.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if x.ndim != 4:
      raise ValueError(f'ResNet expects NHWC images [B, H, W, C], got shape {x.shape}.')
    kw = dict(stride_in_1x1=self.stride_in_1x1, conv_bias=self.conv_bias, epsilon=self.epsilon, dtype=self.dtype)
    features = {}
    y = Stem(self.conv_bias, self.epsilon, self.dtype, name='stem')(x, train=train)
    features['stem'] = y
    for s, (blocks, width) in enumerate(zip(self.stage_sizes, WIDTHS), start=1):
      y = Stage(blocks, width, 1 if s == 1 else 2, name=f'stage{s}', **kw)(y, train=train)
      features[f'stage{s}'] = y
    pooled = jnp.mean(y, axis=(1, 2))
    features['pool'] = pooled
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=head_kernel_init, bias_init=nn.initializers.zeros,
                      name='head')(pooled)
    return logits, features


def resnet(depth: int = 152, *, num_classes: int = 1000, weights: str = 'torchvision', **kw: Any) -> ResNet:
  """ResNet-`depth` (50, 101 or 152) in the layout of `weights`: 'torchvision' (v1.5) or 'keras' (v1, conv biases)."""
  if depth not in DEPTHS:
    raise ConfigError(f'ResNet depth must be one of {sorted(DEPTHS)}, got depth={depth!r}.')
  if weights not in ('torchvision', 'keras'):
    raise ConfigError(f"ResNet weights must be 'torchvision' or 'keras' (sets stride_in_1x1, conv_bias, epsilon), "
                      f'got weights={weights!r}.')
  settings = dict(KERAS if weights == 'keras' else TORCHVISION)
  settings.update(kw)
  return ResNet(num_classes=num_classes, stage_sizes=DEPTHS[depth], **settings)


def resnet50(**kw: Any) -> ResNet:
  """ResNet-50 (keyword arguments as `resnet`)."""
  return resnet(50, **kw)


def resnet101(**kw: Any) -> ResNet:
  """ResNet-101 (keyword arguments as `resnet`)."""
  return resnet(101, **kw)


def resnet152(**kw: Any) -> ResNet:
  """ResNet-152 (keyword arguments as `resnet`): 60,192,808 parameters (torchvision layout, 1000-way head)."""
  return resnet(152, **kw)
