"""ResNet26 of TransferAD (Deecke et al. 2021) and Rebuffi et al. (2017), with optional residual adapters.

Two layouts share one post-activation BasicBlock and the parameter-free shortcut (2x2 average pooling, then zero
channels appended) used wherever the shape changes:

* `variant='transferad'` (default; the layout of TransferAD's ImageNet-32 weights): 3x3 stem 3->64, BN, ReLU;
  stages of 4 blocks with 64/128/256 channels and strides 1/2/2; BN-ReLU; global average pooling; Dense head.
  5,834,305 parameters with `num_classes=1`.
* `variant='rebuffi'` (Rebuffi's original Decathlon net): 3x3 stem 3->32 and BN without ReLU; stages of 64/128/256
  channels, all with stride 2; BN-ReLU; global average pooling; Dense head.

`adapters=True` adds Rebuffi's *parallel* residual adapters as used by ADRA: a bias-free 1x1 conv with the stride of
the 3x3 conv beside every 3x3 conv (stem included), summed before the BN: BN(conv3x3(x) + conv1x1(x)), each
computed as one matmul (`layers.PatchConv`, same `kernel` as nn.Conv). For the TransferAD layout they add 647,360
parameters.

Parameter names make regex freezing simple: 3x3 kernels live in `.../conv*`, adapters in `.../adapter*`, batch norms
in `.../bn*` and `end_bn`, the classifier in `head`; e.g. `stem/conv/kernel`, `layer2_0/adapter1/kernel`,
`layer3_3/bn2/scale`, `end_bn/bias`, `head/kernel`. ADRA trains `adapter|bn|head`.

Initialisation follows the reference code: every conv (3x3 and 1x1) is normal(0, sqrt(2 / (k*k*out))) (He fan-out),
BN scale 1 and bias 0, and the head keeps PyTorch's Linear default U(-1/sqrt(256), 1/sqrt(256)) for kernel and bias.

For accelerators: `dtype=jnp.bfloat16` (`config.model.dtype='bfloat16'`) runs convs, the head and activations in
bfloat16 on float32 parameters, with BatchNorm statistics in float32 and logits and features cast back to float32
for the losses; `remat=True` (`config.model.remat`) wraps every BasicBlock in `nn.remat`, so the backward pass
recomputes a block's activations from its input instead of keeping them: the 96x96 step's XLA temporaries shrink
(benchmarks/remat_memory.py) for about one more forward pass of compute. Parameter names are the same either way.

References:
  Deecke, Ruff, Vandermeulen, Bilen. Transfer-Based Semantic Anomaly Detection. ICML 2021.
  Rebuffi, Bilen, Vedaldi. Learning multiple visual domains with residual adapters. NeurIPS 2017.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.models.layers import BatchNorm, torch_conv
from jaxad.models.lenet import float32_outputs, torch_bias

# He fan-out normal: for an HWIO kernel jax's fan_out is k*k*out, so the std is sqrt(2 / (k*k*out)).
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# PyTorch's nn.Linear default for the kernel: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
head_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')

ADAPTER_INITS = {'he': conv_init, 'zeros': nn.initializers.zeros}

# variant -> (stem width, ReLU after the stem BN, stage widths, first-block strides of the stages)
VARIANTS = {
    'transferad': (64, True, (64, 128, 256), (1, 2, 2)),
    'rebuffi': (32, False, (64, 128, 256), (2, 2, 2)),
}
BLOCKS_PER_STAGE = 4


def _conv_adapter(x, features: int, stride: int, *, adapters: bool, adapter_init: str, dtype: Any, suffix: str):
  """conv{suffix}(x) [+ adapter{suffix}(x)], created in the calling module (names stay e.g. `layer1_0/conv1`)."""
  # layers.torch_conv: nn.Conv's parameters, faster gradients on XLA:CPU (issue #12, benchmarks/conv_layers.py); the
  # 1x1 adapters' weight gradient is the one ADRA trains.
  y = torch_conv(features, 3, stride, kernel_init=conv_init, dtype=dtype, name=f'conv{suffix}')(x)
  if adapters:
    y = y + torch_conv(features, 1, stride, kernel_init=ADAPTER_INITS[adapter_init], dtype=dtype,
                       name=f'adapter{suffix}')(x)
  return y


class Stem(nn.Module):
  """3x3 conv (+ 1x1 adapter) -> BN [-> ReLU]."""
  features: int
  relu: bool
  adapters: bool = False
  adapter_init: str = 'he'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = _conv_adapter(x, self.features, 1, adapters=self.adapters, adapter_init=self.adapter_init, dtype=self.dtype,
                      suffix='')
    y = BatchNorm(dtype=self.dtype, name='bn')(y, use_running_average=not train)
    return nn.relu(y) if self.relu else y


class BasicBlock(nn.Module):
  """Post-activation block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), adapters beside both convs.

  The shortcut is the identity, or, when the shape changes, 2x2 average pooling (if strided) followed by zero
  channels appended after the input's own channels: parameter-free, as in the reference code.
  """
  features: int
  stride: int = 1
  adapters: bool = False
  adapter_init: str = 'he'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    # `train` may be positional: nn.remat can mark only positional arguments static (it picks the BN mode).
    kw = dict(adapters=self.adapters, adapter_init=self.adapter_init, dtype=self.dtype)
    y = _conv_adapter(x, self.features, self.stride, suffix='1', **kw)
    y = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(y, use_running_average=not train))
    y = _conv_adapter(y, self.features, 1, suffix='2', **kw)
    y = BatchNorm(dtype=self.dtype, name='bn2')(y, use_running_average=not train)

    shortcut = x
    if self.stride != 1:
      shortcut = nn.avg_pool(shortcut, (self.stride, self.stride), (self.stride, self.stride), padding='VALID')
    extra = self.features - x.shape[-1]
    if extra < 0:
      raise ValueError(f'BasicBlock cannot shrink channels ({x.shape[-1]} -> {self.features}).')
    if extra:
      shortcut = jnp.pad(shortcut, [(0, 0)] * (x.ndim - 1) + [(0, extra)])
    return nn.relu(y + shortcut.astype(y.dtype))


class ResNet26(nn.Module):
  """ResNet26 (TransferAD or Rebuffi layout) returning `(logits, features)`.

  Input NHWC images of any size that survives the strides (32x32 and 96x96 are the paper's); global average
  pooling makes the head size-independent.

  Attributes:
    num_classes: outputs of the Dense head (1 for anomaly detection).
    variant: 'transferad' (default) or 'rebuffi', see the module docstring.
    adapters: add parallel 1x1 residual adapters beside every 3x3 conv (ADRA).
    adapter_init: 'he' (He fan-out normal, as the reference code) or 'zeros' (the net starts as without adapters).
    dtype: computation dtype (None: inferred from inputs and parameters). Parameters and BatchNorm statistics stay
      float32 and the outputs are cast to float32 whatever it is.
    remat: rematerialise each BasicBlock in the backward pass (`nn.remat`): less activation memory, same values.

  Returns from `__call__(x, *, train)`: logits [B, num_classes] and a dict of features: 'stem' [B, H, W, C0],
  'layer1', 'layer2', 'layer3' (each the output of the stage's last block), 'end' (after the final BN-ReLU) and
  'pooled' [B, 256] (the penultimate vector fed to the head), all float32 (bfloat16 ones are cast).

  Example:
    >>> model = ResNet26(num_classes=1)
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> sorted(variables)
    ['batch_stats', 'params']
    >>> logits, feats = model.apply(variables, x, train=False)
    >>> logits.shape, feats['layer3'].shape, feats['pooled'].shape
    ((2, 1), (2, 8, 8, 256), (2, 256))
    >>> (logits, _), updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  """
  num_classes: int = 1
  variant: str = 'transferad'
  adapters: bool = False
  adapter_init: str = 'he'
  dtype: Any = None
  remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.variant not in VARIANTS:
      raise ValueError(f'Unknown ResNet26 variant {self.variant!r}; valid: {sorted(VARIANTS)}.')
    if self.adapter_init not in ADAPTER_INITS:
      raise ValueError(f'Unknown adapter_init {self.adapter_init!r}; valid: {sorted(ADAPTER_INITS)}.')
    if x.ndim != 4:
      raise ValueError(f'ResNet26 expects NHWC images [B, H, W, C], got shape {x.shape}.')
    stem_width, stem_relu, widths, strides = VARIANTS[self.variant]
    kw = dict(adapters=self.adapters, adapter_init=self.adapter_init, dtype=self.dtype)

    # static_argnums counts `self`: argument 2 is `train`, a Python bool that picks the BN mode.
    block = nn.remat(BasicBlock, static_argnums=(2,)) if self.remat else BasicBlock
    features = {}
    y = Stem(stem_width, stem_relu, name='stem', **kw)(x, train=train)
    features['stem'] = y
    for stage, (width, stride) in enumerate(zip(widths, strides), start=1):
      for i in range(BLOCKS_PER_STAGE):
        y = block(width, stride if i == 0 else 1, name=f'layer{stage}_{i}', **kw)(y, train)
      features[f'layer{stage}'] = y
    y = nn.relu(BatchNorm(dtype=self.dtype, name='end_bn')(y, use_running_average=not train))
    features['end'] = y
    pooled = jnp.mean(y, axis=(1, 2))
    features['pooled'] = pooled
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=head_kernel_init,
                      bias_init=torch_bias(pooled.shape[-1]), name='head')(pooled)
    return float32_outputs((logits, features))
