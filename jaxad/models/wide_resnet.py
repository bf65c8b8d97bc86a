"""Pre-activation Wide ResNet (WRN-depth-width) with one Dense head per self-supervised task.

The backbone of the transformation-prediction detectors: Hendrycks et al.'s multi-head rotation/translation nets
(WRN-16-4 one-class, WRN-40-2 multiclass), GeoTrans (WRN-10-4, one 72-way head) and Jezequel et al. (several
heads with dropout 0.3 each). Layout as in Zagoruyko & Komodakis' and Hendrycks' PyTorch WRN
(../shared/spec/reference_implementations.md sections 5.1 and 5.2), images NHWC:

* stem: 3x3 conv 3 -> 16;
* three stages of n = (depth - 4) / 6 pre-activation BasicBlocks with 16w, 32w, 64w channels and strides 1, 2, 2.
  A block is BN-ReLU-conv3x3(stride)-BN-ReLU-[dropout]-conv3x3 plus a shortcut: the identity on the raw input, or,
  when the shape changes, a 1x1 stride-s conv applied to the *pre-activated* input (the first BN-ReLU's output),
  as in the reference code (so that block's first BN-ReLU is shared by both branches);
* BN-ReLU, global average pooling -> 64w features, then one Dense per head (with optional dropout before it).

Every conv is bias-free. With one 10-way head WRN-16-4 has 2,748,890 parameters (2,742,704 conv weights), WRN-10-4
1,198,810 and WRN-40-2 2,243,546; BN running statistics are in `batch_stats`, not `params`.

Parameter names keep regex freezing and L2-SP simple: 3x3 kernels are `stem_conv` and `block{s}_{i}/conv{1,2}`,
the 1x1 projections `block{s}_{i}/shortcut`, batch norms `block{s}_{i}/bn{1,2}` and `final_bn`, heads
`head_<task>`; e.g. `block2_0/shortcut/kernel`, `final_bn/scale`, `head_rot/kernel`.

Initialisation: convs normal(0, sqrt(2 / (k*k*out))) (`conv_init='fan_out'`, the PyTorch WRN) or Keras' he_normal,
a truncated normal with std sqrt(2 / (k*k*in)) (`'fan_in'`, GeoTrans); BN scale 1, bias 0; head kernels PyTorch
nn.Linear's default U(+-1/sqrt(64w)) and zero biases (Hendrycks' WRN zeroes the Linear bias). BatchNorm is
`layers.BatchNorm`, which updates the running variance with PyTorch's unbiased rule, so converted PyTorch weights
and reference training runs behave the same.

For accelerators, as ResNet26: `dtype=jnp.bfloat16` computes in bfloat16 on float32 parameters (BatchNorm statistics
float32, logits and features cast back to float32); `remat=True` wraps every BasicBlock in `nn.remat` (activations
recomputed in the backward pass instead of stored; same parameter names and values).

References:
  Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016.
  Hendrycks, Mazeika, Kadavath, Song. Using Self-Supervised Learning Can Improve Model Robustness and Uncertainty.
    NeurIPS 2019.
  Golan, El-Yaniv. Deep Anomaly Detection Using Geometric Transformations. NeurIPS 2018.
  Jezequel, Vu, Beaudet, Histace. Anomaly detection via self-supervised learning with multiple heads (the jaxad
    paper set, ../papers/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.errors import ConfigError
from jaxad.models.lenet import float32_outputs
from jaxad.models.layers import BatchNorm, torch_conv

# 'fan_out': the PyTorch WRN's normal(0, sqrt(2 / (k*k*out))); for an HWIO kernel jax's fan_out is k*k*out.
# 'fan_in': Keras he_normal, a normal truncated at 2 std and rescaled so its std is sqrt(2 / (k*k*in)).
CONV_INITS = {
    "fan_out": nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    "fan_in": nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
}
# PyTorch's nn.Linear default for the kernel: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
head_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

STEM_WIDTH = 16
STAGE_STRIDES = (1, 2, 2)


def blocks_per_stage(depth: int) -> int:
  """n = (depth - 4) / 6 BasicBlocks per stage; raises ConfigError (a ValueError) unless it is an integer >= 1."""
  if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 10 or (depth - 4) % 6:
    raise ConfigError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got depth={depth!r}.")
  return (int(depth) - 4) // 6


def _head_pairs(heads) -> tuple[tuple[str, int], ...]:
  """Validated ((task, outputs), ...) from pairs or a mapping, in the given order."""
  pairs = tuple(heads.items()) if isinstance(heads, Mapping) else tuple(tuple(h) for h in heads)
  if not pairs:
    raise ConfigError("WideResNet needs at least one head, got heads=(); e.g. heads=(('logits', 10),).")
  names = [p[0] for p in pairs]
  for pair in pairs:
    if (len(pair) != 2 or not isinstance(pair[0], str) or not pair[0] or "/" in pair[0]
        or isinstance(pair[1], bool) or not isinstance(pair[1], numbers.Integral) or pair[1] < 1):
      raise ConfigError(f"Each WideResNet head must be (task name without '/', outputs >= 1), got {pair!r} in "
                        f"heads={heads!r}.")
  if len(set(names)) != len(names):
    raise ConfigError(f"WideResNet head names must be unique, got heads={heads!r}.")
  return pairs


class BasicBlock(nn.Module):
  """Pre-activation block: conv2(drop(relu(bn2(conv1(relu(bn1(x))))))) + shortcut.

  The shortcut is `x` itself when the shape is unchanged, else the bias-free 1x1 stride-s conv of relu(bn1(x)).
  """
  features: int
  stride: int = 1
  dropout: float = 0.0
  conv_init: Any = CONV_INITS["fan_out"]
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # `train` stays positional: nn.remat can mark only positional arguments static (it picks the BN mode).
    bn = lambda name: BatchNorm(self.bn_momentum, self.bn_epsilon, dtype=self.dtype, name=name)
    pre = nn.relu(bn("bn1")(x, use_running_average=not train))
    y = torch_conv(self.features, 3, self.stride, kernel_init=self.conv_init, dtype=self.dtype, name="conv1")(pre)
    y = nn.relu(bn("bn2")(y, use_running_average=not train))
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    y = torch_conv(self.features, 3, 1, kernel_init=self.conv_init, dtype=self.dtype, name="conv2")(y)
    if self.stride == 1 and x.shape[-1] == self.features:
      shortcut = x
    else:
      shortcut = torch_conv(self.features, 1, self.stride, kernel_init=self.conv_init, dtype=self.dtype,
                            name="shortcut")(pre)
    return y + shortcut.astype(y.dtype)


class WideResNet(nn.Module):
  """Pre-activation WRN-depth-width with named Dense heads, returning `(logits_by_head, features)`.

  Input NHWC images [B, H, W, C] of any size that survives two stride-2 stages; global average pooling makes the
  heads size-independent (the reference's avg_pool(8) is the same thing at 32x32).

  Attributes:
    depth: 6n + 4 (n blocks per stage): 10, 16, 22, 28, 40, ...
    width: widening factor w; the stages have 16w, 32w, 64w channels.
    heads: ((task, outputs), ...): one Dense head per task on the pooled 64w-d features. A mapping also works.
    dropout: rate between a block's two convs (WRN's dropRate; Hendrycks' multiclass OOD net uses 0.3).
    head_dropout: rate on the pooled features before each head, an independent mask per head (Jezequel et al.: 0.3).
    conv_init: 'fan_out' (PyTorch WRN, default) or 'fan_in' (Keras he_normal, GeoTrans); see the module docstring.
    bn_momentum: flax convention, new = momentum * old + (1 - momentum) * batch: 0.9 is PyTorch's momentum 0.1
      and GeoTrans' Keras momentum 0.9.
    bn_epsilon: BN variance epsilon (1e-5 in both reference codes).
    dtype: computation dtype (None: inferred from inputs and parameters). Parameters and BatchNorm statistics stay
      float32 and the outputs are cast to float32 whatever it is.
    remat: rematerialise each BasicBlock in the backward pass (`nn.remat`): less activation memory, same values.

  Returns from `__call__(x, train)` (float32; bfloat16 ones are cast):
    logits: {task: [B, outputs]} in the order of `heads`.
    features: 'stem' [B, H, W, 16], 'block1' [B, H, W, 16w], 'block2' [B, H/2, W/2, 32w], 'block3'
      [B, H/4, W/4, 64w] (stage outputs, before the final BN-ReLU) and 'pool' [B, 64w] (what the heads see, before
      head dropout).

  Dropout draws from the 'dropout' rng, needed only when `train` and a rate is > 0.

  Example:
    >>> model = WideResNet(depth=16, width=4, heads=(('rot', 4), ('trans', 3)))
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> logits, feats = model.apply(variables, x, train=False)
    >>> logits['rot'].shape, logits['trans'].shape, feats['pool'].shape
    ((2, 4), (2, 3), (2, 256))
    >>> (logits, _), updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  """
  depth: int = 16
  width: int = 4
  heads: tuple[tuple[str, int], ...] = (("logits", 10),)
  dropout: float = 0.0
  head_dropout: float = 0.0
  conv_init: str = "fan_out"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = None
  remat: bool = False

  def __post_init__(self):
    # Validate at construction, so a bad config fails before any tracing.
    blocks_per_stage(self.depth)
    if isinstance(self.width, bool) or not isinstance(self.width, numbers.Integral) or self.width < 1:
      raise ConfigError(f"WideResNet width must be an integer >= 1, got width={self.width!r}.")
    _head_pairs(self.heads)
    for name in ("dropout", "head_dropout"):
      rate = getattr(self, name)
      if not 0.0 <= rate < 1.0:
        raise ConfigError(f"WideResNet {name} must be in [0, 1), got {name}={rate!r}.")
    if self.conv_init not in CONV_INITS:
      raise ConfigError(f"Unknown WideResNet conv_init={self.conv_init!r}; valid: {sorted(CONV_INITS)}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    if x.ndim != 4:
      raise ValueError(f"WideResNet expects NHWC images [B, H, W, C], got x.shape={x.shape}.")
    n = blocks_per_stage(self.depth)
    init = CONV_INITS[self.conv_init]
    widths = (16 * int(self.width), 32 * int(self.width), 64 * int(self.width))

    # static_argnums counts `self`: argument 2 is `train`, a Python bool that picks the BN and dropout modes.
    block = nn.remat(BasicBlock, static_argnums=(2,)) if self.remat else BasicBlock
    features = {}
    y = torch_conv(STEM_WIDTH, 3, 1, kernel_init=init, dtype=self.dtype, name="stem_conv")(x)
    features["stem"] = y
    for stage, (features_out, stride) in enumerate(zip(widths, STAGE_STRIDES), start=1):
      for i in range(n):
        y = block(features_out, stride if i == 0 else 1, self.dropout, init, self.bn_momentum, self.bn_epsilon,
                  self.dtype, name=f"block{stage}_{i}")(y, train)
      features[f"block{stage}"] = y
    y = nn.relu(BatchNorm(self.bn_momentum, self.bn_epsilon, dtype=self.dtype, name="final_bn")(
        y, use_running_average=not train))
    pooled = jnp.mean(y, axis=(1, 2))
    features["pool"] = pooled

    logits = {}
    for task, outputs in _head_pairs(self.heads):
      h = pooled
      if self.head_dropout > 0:
        h = nn.Dropout(self.head_dropout, deterministic=not train, name=f"head_dropout_{task}")(h)
      logits[task] = nn.Dense(int(outputs), dtype=self.dtype, kernel_init=head_kernel_init,
                              bias_init=nn.initializers.zeros, name=f"head_{task}")(h)
    return float32_outputs((logits, features))


def wrn(depth: int = 16, width: int = 4, heads: Sequence[tuple[str, int]] | Mapping[str, int] = (("logits", 10),),
        **kwargs) -> WideResNet:
  """WideResNet(depth, width, heads, **kwargs); `heads` may be a mapping {task: outputs} (kept in its order).

  E.g. `wrn(16, 4, {'rot': 4, 'x_trans': 3, 'y_trans': 3})` (Hendrycks' heads on the one-class WRN-16-4) or
  `wrn(10, 4, {'transform': 72}, conv_init='fan_in')` (GeoTrans).
  """
  return WideResNet(depth=depth, width=width, heads=_head_pairs(heads), **kwargs)
