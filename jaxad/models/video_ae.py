"""MOCCA's 3-D convolutional autoencoder for ShanghaiTech video clips, with LSTM "selectors" (Massoli et al.).

The paper (sections III, IV-C, IV-D) gives only the outline: clips of 16 frames of 256x512, "a residual-like
structure that comprises five residual blocks followed by two fully connected layers", trained end to end
(reconstruction + multi-layer one-class objective in one step), with LSTM cells in place of the image "selectors" "to
exploit the time correlation among the frames within a given input clip". The layout comes from the authors' code
(fvmassoli/mocca-anomaly-detection, `models/shanghaitech_model.py`, `models/shanghaitech_base_model.py`), adapted
from LSA's video autoencoder (Abati et al. 2019; its docstrings still speak of UCSD Ped2 and CPD estimates). Clips
are [B, T, H, W, C] float32 in [0, 1] (frames / 255 after background removal; the code uses T=16, H=256, W=512, C=3).

Encoder (`VideoEncoder`); `LAYERS` are its candidate layers, in the order of the code's `idx_list_enc` (0..6):
  block1..block5  residual DownsampleBlocks, widths 8, 16, 32, 64, 64; space is halved in every block, time in
                  blocks 3 and 5 (strides (1,2,2), (1,2,2), (2,2,2), (1,2,2), (2,2,2)). At 16x256x512:
                  [B,16,128,256,8], [B,16,64,128,16], [B,8,32,64,32], [B,8,16,32,64], [B,4,8,16,64].
  fc1             time-shared Dense(512) on each time step's flattened block5 map, then tanh: [B, T/4, 512]
  code            time-shared Dense(rep_dim), then sigmoid: [B, T/4, rep_dim]; one code per group of 4 frames.
DownsampleBlock(i->o, stride s): lrelu(BN(conv3(lrelu(BN(conv3/s(x))))) + BN(conv1x1/s(x))). Both 3x3x3 convs are
the code's `MaskedConv3d`: their taps on the next frame are zeroed, so they are causal in time. We store only the
two live taps, as (2, 3, 3) kernels padded (1, 0) in time: the same function and the code's effective parameters.

Decoder (the code's; the paper does not describe it): time-shared Dense(512) -> tanh -> Dense(64 * H/32 * W/32) ->
lrelu -> reshape to [B, T/4, H/32, W/32, 64] -> UpsampleBlocks 64->64 (2,2,2), ->32 (1,2,2), ->16 (2,2,2), ->8
(1,2,2), ->8 (1,2,2) -> 1x1x1 conv (with bias) to C. UpsampleBlock(i->o, s): lrelu(BN(conv3(lrelu(BN(convT5/s(x)))))
+ BN(convT5/s(x))), both transposed convs 5x5x5 with PyTorch padding 2 and output_padding s - 1 (exact doubling).
`ae_variant` picks between:
  'mocca'   the released code exactly: **no output activation** (reconstructions are unbounded while clips lie in
            [0, 1]), and its reshape of the Dense output: it transposes [B, T', D] to [B, D, T'] and views that
            memory as [B, 64, T', H/32, W/32], so the T' code steps land interleaved along the width axis instead of
            on their own time step (`_authors_unflatten`). Kept so the released models can be reproduced.
  'mirror'  a strict mirror: time step t of the Dense output becomes time step t of the deepest map, and a sigmoid
            puts the reconstruction in the clips' [0, 1] range. Same parameters.

LSTM selectors (`VideoAE(layers=..., lstm_dim=...)`): for each chosen layer, block maps are averaged over space (the
code's `avg_pool3d` over (H, W)) and fc1 / code are used as they are, giving a [B, T', D] sequence; a one-layer,
unidirectional LSTM (the code's defaults: `hidden_size` 100, `num_layers` 1, no dropout, `bidirectional` False)
runs over its T' steps. The code keeps only the last step, `o[:, -1]` ([B, lstm_dim]): one feature, centre and
score per clip, and a frame's score is the mean over the 16 sliding-window clips that contain it
(`datasets/shanghaitech_test.py`). Here each step's output is repeated T/T' times along time so every layer yields
per-frame features [B, T, lstm_dim] (frame t takes the step that covers it); `[:, -1]` is exactly the code's clip
feature. The cell is `TorchLSTMCell`: PyTorch's LSTM layout (gates i, f, g, o; separate input and hidden biases;
all U(+-1/sqrt(hidden)) at init), so parameter counts and weights match the reference one to one.

Differences from the released code, all deliberate:
* Paper over code: the README's command (`-ee -tt -zl 1024 -ll -use`) also puts the MVTec-style `Selector` (conv,
  BN, ReLU, conv, BN, ReLU, 1x1 conv, time-shared Dense(256), BN1d over *time*, ReLU, Dense(C)) in front of each conv
  LSTM; the paper says the LSTMs *replace* the selectors, so we feed the LSTMs the pooled maps (the code's
  `use_selectors=False` path). The code also builds all five selectors even when unused (130.7 M parameters,
  hard-coded to 256x512) and all seven LSTMs; we build only the LSTMs of `layers`.
* Per-frame LSTM features (above) instead of the last step only; the last frame's equals the code's.
* Flatten order (H, W, C) where PyTorch's is (C, H, W) (encoder fc1 input; decoder fc2 output in 'mirror'): a
  permutation of learned weights. The 'mocca' decoder keeps the code's (C, T', H, W) memory order literally.
* Masked taps are not stored (see above); the output conv has C channels (the code hard-codes 3).

Settings from the code: BN is PyTorch's affine default (eps 1e-5, momentum 0.1 = flax 0.9, unbiased running
variance: `layers.BatchNorm`); leaky ReLU slope 0.01; convs in blocks are bias-free, the Dense layers and the output
conv have biases; every layer keeps PyTorch's default init (kernels and biases U(+-1/sqrt(fan_in)), fan_in of a
masked conv over all 3 time taps, of a transposed conv over its output channels). Code size: CLI default 2048, the
README's command 1024.

Mixed precision: `dtype` (None: float32; `config.model.dtype='bfloat16'` gives bfloat16) is the compute dtype of
the convs, Dense layers and activations; parameters stay float32, BatchNorm reduces its statistics in float32, the
small LSTM selectors run in float32 (their float32 weights promote the pooled inputs), and the reconstruction and
features are returned in float32 (`lenet.float32_outputs`).

Parameters at 16x256x512x3, widths (8, 16, 32, 64, 64), fc 512: encoder 5,022,232 (rep_dim 1024) / 5,547,544
(2048), of which fc1 is 4,194,816; decoder 6,588,699 / 7,112,987; an LSTM with lstm_dim 100 on block1/2/3/4/5/fc1/code
has 44,000 / 47,200 / 53,600 / 66,400 / 66,400 / 245,600 / 450,400 (code 1024) or 860,000 (code 2048): 12,584,531 /
14,043,731 with all seven, equal to the code's model less its masked taps (147,096) and its unused selectors
(130,706,288). One forward of the autoencoder costs about 49 GFLOPs per clip (XLA's count; 5.3 in the encoder).

References:
  Massoli, Falchi, Kantarci, Akti, Ekenel, Amato. MOCCA: Multilayer One-Class Classification for Anomaly
  Detection. IEEE TNNLS 2021 (arXiv:2012.12111).
  Abati, Porrello, Calderara, Cucchiara. Latent Space Autoregression for Novelty Detection. CVPR 2019.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxad.models.lenet import float32_outputs, torch_bias, torch_default, torch_default_transpose
from jaxad.models.layers import BatchNorm, PhaseConvTranspose

LAYERS = ("block1", "block2", "block3", "block4", "block5", "fc1", "code")
WIDTHS = (8, 16, 32, 64, 64)
TIME_STRIDES = (1, 1, 2, 1, 2)  # space is halved in every block
AE_VARIANTS = ("mocca", "mirror")
_SLOPE = 0.01

# PyTorch initialises a MaskedConv3d as the full 3x3x3 conv, U(+-1/sqrt(3*3*3*C_in)); our kernel keeps 2 of the 3
# time taps, so its fan_in is 2*3*3*C_in and the variance scale is (1/3) * 2/3 for the same bound.
_causal_init = nn.initializers.variance_scaling(2.0 / 9.0, "fan_in", "uniform")


def _lrelu(x):
  return nn.leaky_relu(x, _SLOPE)


def _bn(train: bool, name: str, dtype: Any = None):
  return lambda x: BatchNorm(momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)(x, use_running_average=not train)


def _dense(features: int, fan_in: int, name: str, dtype: Any = None) -> nn.Dense:
  return nn.Dense(features, kernel_init=torch_default, bias_init=torch_bias(fan_in), dtype=dtype, name=name)


def _causal_conv(features: int, stride: tuple[int, int, int], name: str, dtype: Any = None) -> nn.Conv:
  # PyTorch: Conv3d(k=3, padding=1) with the t+1 taps masked, so output t sees inputs s*t-1 and s*t.
  return nn.Conv(features, (2, 3, 3), stride, padding=((1, 0), (1, 1), (1, 1)), use_bias=False,
                 kernel_init=_causal_init, dtype=dtype, name=name)


def _conv_transpose5(features: int, stride: tuple[int, int, int], name: str,
                     dtype: Any = None) -> PhaseConvTranspose:
  # PyTorch ConvTranspose3d(k=5, padding=2, output_padding=s-1) is flax padding (k-1-p, k-1-p+output_padding) on
  # the dilated input; the kernel is PyTorch's flipped in space-time (a converter must flip it). PhaseConvTranspose:
  # nn.ConvTranspose's parameter and function without XLA:CPU's slow dilated convolutions.
  return PhaseConvTranspose(features, (5, 5, 5), stride, padding=tuple((2, 2 + s - 1) for s in stride),
                            kernel_init=torch_default_transpose, dtype=dtype, name=name)


class DownBlock(nn.Module):
  """lrelu(BN(causal conv3(lrelu(BN(causal conv3/s(x))))) + BN(conv1x1/s(x))): [B,T,H,W,C] -> [B,T/st,H/2,W/2,o]."""
  features: int
  time_stride: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    s, dt = (self.time_stride, 2, 2), self.dtype
    h = _lrelu(_bn(train, "bn1a", dt)(_causal_conv(self.features, s, "conv1a", dt)(x)))
    h = _bn(train, "bn1b", dt)(_causal_conv(self.features, (1, 1, 1), "conv1b", dt)(h))
    shortcut = nn.Conv(self.features, (1, 1, 1), s, padding="VALID", use_bias=False, kernel_init=torch_default,
                       dtype=dt, name="conv2a")(x)
    return _lrelu(h + _bn(train, "bn2a", dt)(shortcut))


class UpBlock(nn.Module):
  """lrelu(BN(conv3(lrelu(BN(convT5/s(x))))) + BN(convT5/s(x))): [B,T,H,W,C] -> [B,T*st,2H,2W,o]."""
  features: int
  time_stride: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    s, dt = (self.time_stride, 2, 2), self.dtype
    h = _lrelu(_bn(train, "bn1a", dt)(_conv_transpose5(self.features, s, "conv1a", dt)(x)))
    h = nn.Conv(self.features, (3, 3, 3), padding=1, use_bias=False, kernel_init=torch_default, dtype=dt,
                name="conv1b")(h)
    h = _bn(train, "bn1b", dt)(h)
    return _lrelu(h + _bn(train, "bn2a", dt)(_conv_transpose5(self.features, s, "conv2a", dt)(x)))


def _check_clip(x, widths):
  if x.ndim != 5:
    raise ValueError(f"clips must be [B, T, H, W, C], got shape {x.shape}")
  _, t, h, w, _ = x.shape
  if t % 4 or h % 32 or w % 32:
    raise ValueError(f"T must be a multiple of 4 and H, W multiples of 32 (two time and five space halvings), "
                     f"got T={t}, H={h}, W={w}")
  if len(widths) != len(TIME_STRIDES):
    raise ValueError(f"widths needs {len(TIME_STRIDES)} entries (one per residual block), got {widths}")


class VideoEncoder(nn.Module):
  """Five causal residual blocks, then two time-shared Dense layers: [B, T, H, W, C] -> code [B, T/4, rep_dim].

  Returns `(code, features)` with the `LAYERS` 'block1'..'block5' ([B, T', H', W', C'] after each block's
  activation), 'fc1' (after tanh) and 'code' (after sigmoid) ([B, T/4, D]); shapes in the module docstring.
  `dtype`: compute dtype (None: float32); the code and features are returned in float32.
  """
  rep_dim: int = 1024
  widths: tuple[int, ...] = WIDTHS
  fc_dim: int = 512
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    _check_clip(x, self.widths)
    dt = self.dtype
    features = {}
    for i, (width, stride) in enumerate(zip(self.widths, TIME_STRIDES), start=1):
      x = DownBlock(width, stride, dt, name=f"block{i}")(x, train=train)
      features[f"block{i}"] = x
    b, t, h, w, c = x.shape
    x = jnp.tanh(_dense(self.fc_dim, h * w * c, "fc1", dt)(x.reshape(b, t, h * w * c)))
    features["fc1"] = x
    code = nn.sigmoid(_dense(self.rep_dim, self.fc_dim, "fc2", dt)(x))
    features["code"] = code
    return float32_outputs((code, features))


class TorchLSTMCell(nn.RNNCellBase):
  """torch.nn.LSTM's cell: z = x W_ih + b_ih + h W_hh + b_hh split into gates (i, f, g, o); carry (c, h).

  Params `kernel_ih` [in, 4H], `kernel_hh` [H, 4H], `bias_ih`, `bias_hh` [4H] are PyTorch's `weight_ih_l0.T` etc.
  (flax's LSTM cells have a single bias, 4H fewer parameters, and other inits).
  """
  features: int

  @nn.compact
  def __call__(self, carry, x):
    c, h = carry
    n = self.features
    init = torch_bias(n)  # PyTorch: every LSTM weight and bias ~ U(+-1/sqrt(hidden_size))
    z = (x @ self.param("kernel_ih", init, (x.shape[-1], 4 * n)) + self.param("bias_ih", init, (4 * n,))
         + h @ self.param("kernel_hh", init, (n, 4 * n)) + self.param("bias_hh", init, (4 * n,)))
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
    h = nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    del rng  # zero initial state, as PyTorch's default
    shape = tuple(input_shape[:-1]) + (self.features,)
    return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)

  @property
  def num_feature_axes(self) -> int:
    return 1


def _authors_unflatten(y, shape):
  """The code's decoder reshape: [B, T', D] -> transpose [B, D, T'] -> view [B, C, T', H, W] -> NTHWC."""
  b, t, h, w, c = shape
  return y.transpose(0, 2, 1).reshape(b, c, t, h, w).transpose(0, 2, 3, 4, 1)


def _check_layers(layers) -> tuple[str, ...]:
  layers = tuple(layers)
  bad = [name for name in layers if name not in LAYERS]
  if bad or len(set(layers)) != len(layers):
    raise ValueError(f"layers must be distinct names from {LAYERS}, got {layers}")
  return layers


class VideoAE(nn.Module):
  """Encoder + decoder + one LSTM per chosen layer; `(reconstruction [B,T,H,W,C], features)` in one forward.

  `features` holds the encoder's `LAYERS` maps and, for each name in `layers`, 'lstm_<name>': per-frame LSTM
  outputs [B, T, lstm_dim] (`[:, -1]` is the code's per-clip feature). `params['encoder']` is exactly a
  `VideoEncoder`'s params; the LSTMs live at `params['lstm_<name>']`, the decoder at `params['dec_*']`.
  `dtype`: compute dtype of the encoder and decoder (None: float32); everything returned is float32.
  """
  rep_dim: int = 1024
  ae_variant: str = "mocca"
  layers: tuple[str, ...] = ()
  lstm_dim: int = 100
  widths: tuple[int, ...] = WIDTHS
  fc_dim: int = 512
  dtype: Any = None

  def __post_init__(self):
    _check_layers(self.layers)
    if self.ae_variant not in AE_VARIANTS:
      raise ValueError(f"ae_variant must be one of {AE_VARIANTS}, got {self.ae_variant!r}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    dt = self.dtype
    code, features = VideoEncoder(self.rep_dim, self.widths, self.fc_dim, dt, name="encoder")(x, train=train)
    frames = x.shape[1]
    for name in self.layers:
      seq = features[name]
      if seq.ndim == 5:
        seq = seq.mean(axis=(2, 3))  # [B, T', C]: the code's avg_pool3d over (H, W)
      # Naming the cell (not the RNN wrapper) puts its weights at params["lstm_<name>"], flat.
      out = nn.RNN(TorchLSTMCell(self.lstm_dim, name=f"lstm_{name}"))(seq)
      features[f"lstm_{name}"] = jnp.repeat(out, frames // out.shape[1], axis=1)

    deepest = features["block5"].shape
    b, t, h, w, c = deepest
    y = jnp.tanh(_dense(self.fc_dim, self.rep_dim, "dec_fc1", dt)(code))
    y = _lrelu(_dense(h * w * c, self.fc_dim, "dec_fc2", dt)(y))
    y = _authors_unflatten(y, deepest) if self.ae_variant == "mocca" else y.reshape(deepest)
    outs = tuple(reversed(self.widths[:-1])) + (self.widths[0],)
    for i, (width, stride) in enumerate(zip(outs, reversed(TIME_STRIDES)), start=1):
      y = UpBlock(width, stride, dt, name=f"dec_block{i}")(y, train=train)
    y = nn.Conv(x.shape[-1], (1, 1, 1), kernel_init=torch_default, bias_init=torch_bias(self.widths[0]), dtype=dt,
                name="dec_out")(y)
    if self.ae_variant == "mirror":
      y = nn.sigmoid(y)
    return float32_outputs((y, features))


def mocca_video(rep_dim: int = 1024, ae_variant: str = "mocca", layers=("code",), lstm_dim: int = 100,
                widths: tuple[int, ...] = WIDTHS, fc_dim: int = 512, dtype: Any = None) -> VideoAE:
  """MOCCA's ShanghaiTech network: one `VideoAE` (reconstruction and LSTM features in one forward).

  The video method trains end to end (reconstruction + one-class loss in each step, centres from the untrained net),
  so no separate encoder-only module is returned; `params['encoder']` is a `VideoEncoder`'s params if one is needed.
  Defaults: the README's code size 1024 (the CLI default is 2048), the code's default layer (index 6, the code) and
  LSTM size 100. Small `widths` / `fc_dim` give test and runlocal networks (e.g. 8 frames of 32x64). `dtype`: the
  compute dtype (None: float32).
  """
  return VideoAE(rep_dim, ae_variant, _check_layers(layers), lstm_dim, tuple(widths), fc_dim, dtype)

