"""MOCCA's residual autoencoder for MVTec AD (Massoli et al.), its "selector" heads, and the multi-layer encoder.

Layouts follow the authors' PyTorch code (fvmassoli/mocca-anomaly-detection, `models/mvtec_model.py` and
`models/mvtec_base_model.py`; ../shared/spec/reference_implementations.md section 4.3). Images are NHWC, 64x64
(texture patches) or 128x128 (objects), normalised to [-1, 1].

Encoder (`MoccaResEncoder`), with the paper's 8 candidate layers (`LAYERS`, in order) as its features:
  conv   3x3 conv C->32, no padding, bias-free (its raw output: the code hooks it *before* the leaky ReLU)
  res    ResidualBlock(32) applied to lrelu(conv)
  down1..down3  DownsampleBlocks 32->64->128->256
  fc1    Dense(256) -> BN1d -> lrelu (after the activation)
  fc2    Dense(rep_dim) (pre-sigmoid)
  code   sigmoid(fc2)
At 64x64 the maps are 62, 62, 31, 16, 8 pixels wide; at 128x128 126, 126, 63, 32, 16.

Blocks (all convs bias-free, each followed by an affine BN):
  ResidualBlock(c):        lrelu(BN(conv3x3(lrelu(BN(conv3x3(x))))) + x)
  DownsampleBlock(i->o):   lrelu(BN(conv3x3(lrelu(BN(conv3x3/s2(x))))) + BN(conv1x1/s2(x))), padding 1 / 0
  UpsampleBlock(i->o):     lrelu(BN(conv3x3(lrelu(BN(convT5x5/s2(x))))) + BN(convT1x1/s2(x))), each convT with
                           PyTorch padding 2 / 0 and output_padding 1, so both branches exactly double the size.

Decoder (`MoccaResDecoder`, as the code builds it; the paper does not describe it): Dense(256) -> BN1d -> lrelu ->
Dense(256 * H/8 * W/8) -> BN1d -> lrelu -> reshape to [H/8, W/8, 256] -> UpsampleBlocks 256->128->64->32 ->
ResidualBlock(32) -> bias-free 1x1 conv 32->C. **There is no output activation** in the code (no tanh, no sigmoid):
the reconstruction is unbounded while the data lie in [-1, 1]; we keep that.

Settings from the code: BN is the affine PyTorch default (eps 1e-5, momentum 0.1 = flax 0.9, with PyTorch's unbiased
running-variance update: `layers.BatchNorm`); leaky ReLU is `nn.LeakyReLU()`, slope 0.01; the two encoder Dense
layers and the decoder Dense layers have biases; no custom initialisation, so every layer keeps PyTorch's default,
reproduced here (kernels and biases U(+-1/sqrt(fan_in)), with fan_in of a transposed conv taken over its *output*
channels as PyTorch does).

Selectors (`Selector`, 128-d output): the paper: "a convolutional layer followed by a pooling operation, a batch norm
layer, and a final fully connected layer", and elsewhere "a two-layer neural network". The code, for 4-D maps:
AdaptiveMaxPool2d(8) -> Conv1x1(C->1, bias) -> flatten (64) -> Linear(64->256) -> BN1d -> ReLU -> Linear(256->128);
for vectors (fc1, fc2, code): Linear(D->256) -> BN1d -> ReLU -> Linear(256->128). The only disagreement is the order
of the conv and the pooling; **we follow the paper: 1x1 conv, then the adaptive max pooling** (same parameters).

Differences from the released code, all deliberate:
* Selector: conv before pooling (paper order), see above.
* Flatten order is (H, W, C) where PyTorch's is (C, H, W), both for the encoder's fc1 input and the decoder's fc2
  output / BN1d features: a permutation of learned weights, so only a weight converter would need to permute.
* The decoder's output convolution has as many channels as the input (the code hard-codes 3).
* `SelectedEncoder` keeps the encoder under `params['encoder']`, exactly the autoencoder's `params['encoder']`, so
  the pretrained weights really transfer (the released code's key-prefix mismatch silently skips the copy;
  reference_implementations.md section 4.4), and it only builds the selectors of the chosen layers (the code builds
  all 8 inside the encoder, the autoencoder's too).

Mixed precision: every module takes `dtype` (None: float32; `config.model.dtype='bfloat16'` gives bfloat16), the
compute dtype of its convs, Dense layers and activations; parameters stay float32, BatchNorm (`layers.BatchNorm`)
reduces its statistics in float32, and each module casts what it returns to float32 (`lenet.float32_outputs`).

Parameters (rep_dim 64): encoder 5,437,856 at 64x64 / 18,020,768 at 128x128; decoder 5,592,352 / 18,322,720; a
selector (any input size) on conv/res/down1/down2/down3/fc1/fc2/code has 50,081/50,081/50,113/50,177/50,305/99,200/
50,048/50,048.

References:
  Massoli, Falchi, Kantarci, Akti, Ekenel, Amato. MOCCA: Multilayer One-Class Classification for Anomaly
  Detection. IEEE TNNLS 2021 (arXiv:2012.12111).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.models.lenet import float32_outputs, torch_bias, torch_default, torch_default_transpose
from jaxad.models.layers import BatchNorm, PhaseConvTranspose, torch_conv

LAYERS = ("conv", "res", "down1", "down2", "down3", "fc1", "fc2", "code")
SELECTORS = ("pool", "mlp")

_SLOPE = 0.01  # torch.nn.LeakyReLU() default, used throughout the MVTec model.
_WIDTH = 32  # stem width; the downsampling blocks double it three times: 64, 128, 256.
_FC = 256  # width of the encoder's (and decoder's) hidden Dense layer: the last conv depth.


def _lrelu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, _SLOPE)


def _bn(name: str, dtype: Any = None) -> BatchNorm:
  return BatchNorm(momentum=0.9, epsilon=1e-5, dtype=dtype, name=name)


def _dense(features: int, fan_in: int, name: str, dtype: Any = None) -> nn.Dense:
  return nn.Dense(features, kernel_init=torch_default, bias_init=torch_bias(fan_in), dtype=dtype, name=name)


def _conv(features: int, kernel: int, stride: int, padding: int, name: str, dtype: Any = None) -> nn.Module:
  if padding == (kernel - 1) // 2:  # PyTorch's usual padding: the formulation fastest on XLA:CPU (layers.torch_conv)
    return torch_conv(features, kernel, stride, kernel_init=torch_default, dtype=dtype, name=name)
  # Explicit symmetric padding: flax's 'SAME' would pad a stride-2 conv asymmetrically, unlike PyTorch.
  return nn.Conv(features, (kernel, kernel), strides=stride, padding=((padding, padding), (padding, padding)),
                 use_bias=False, kernel_init=torch_default, dtype=dtype, name=name)


def _conv_transpose(features: int, kernel: int, torch_padding: int, name: str,
                    dtype: Any = None) -> PhaseConvTranspose:
  """PyTorch ConvTranspose2d(kernel, stride 2, padding p, output_padding 1, bias=False): doubles H and W.

  flax pads the stride-dilated input itself: k - 1 - p before and k - 1 - p + output_padding after. Its kernel is
  not flipped, so a PyTorch weight [in, out, kh, kw] converts as flip(kh, kw) then transpose to [kh, kw, in, out].
  `PhaseConvTranspose` is nn.ConvTranspose (same parameter and function) without XLA:CPU's slow dilated
  convolutions (`layers.conv_transpose`'s docstring).
  """
  lo = kernel - 1 - torch_padding
  return PhaseConvTranspose(features, (kernel, kernel), strides=(2, 2), padding=((lo, lo + 1), (lo, lo + 1)),
                            kernel_init=torch_default_transpose, dtype=dtype, name=name)


def _adaptive_max_pool(x: jax.Array, size: int) -> jax.Array:
  """torch.nn.AdaptiveMaxPool2d(size) on [B, H, W, C]: bin i spans [floor(i*n/size), ceil((i+1)*n/size))."""
  for axis in (1, 2):
    n = x.shape[axis]
    bins = [(i * n // size, -(-(i + 1) * n // size)) for i in range(size)]
    x = jnp.stack([jax.lax.slice_in_dim(x, lo, hi, axis=axis).max(axis=axis) for lo, hi in bins], axis=axis)
  return x


class _ResidualBlock(nn.Module):
  """lrelu(BN(conv3x3(lrelu(BN(conv3x3(x))))) + x); [B, H, W, C] -> [B, H, W, C]. Returns an array."""
  channels: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    dt = self.dtype
    h = _lrelu(_bn("bn1", dt)(_conv(self.channels, 3, 1, 1, "conv1", dt)(x), use_running_average=not train))
    h = _bn("bn2", dt)(_conv(self.channels, 3, 1, 1, "conv2", dt)(h), use_running_average=not train)
    return _lrelu(h + x.astype(h.dtype))


class _DownsampleBlock(nn.Module):
  """Stride-2 residual block with a 1x1 conv + BN shortcut; [B, H, W, Cin] -> [B, ceil(H/2), ceil(W/2), channels]."""
  channels: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    dt = self.dtype
    h = _lrelu(_bn("bn1a", dt)(_conv(self.channels, 3, 2, 1, "conv1a", dt)(x), use_running_average=not train))
    h = _bn("bn1b", dt)(_conv(self.channels, 3, 1, 1, "conv1b", dt)(h), use_running_average=not train)
    s = _bn("bn2a", dt)(_conv(self.channels, 1, 2, 0, "conv2a", dt)(x), use_running_average=not train)
    return _lrelu(h + s)


class _UpsampleBlock(nn.Module):
  """Stride-2 transposed residual block; [B, H, W, Cin] -> [B, 2H, 2W, channels]."""
  channels: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    dt = self.dtype
    h = _lrelu(_bn("bn1a", dt)(_conv_transpose(self.channels, 5, 2, "conv1a", dt)(x), use_running_average=not train))
    h = _bn("bn1b", dt)(_conv(self.channels, 3, 1, 1, "conv1b", dt)(h), use_running_average=not train)
    s = _bn("bn2a", dt)(_conv_transpose(self.channels, 1, 0, "conv2a", dt)(x), use_running_average=not train)
    return _lrelu(h + s)


class MoccaResEncoder(nn.Module):
  """MOCCA's MVTec encoder: [B, H, W, C] -> (code [B, rep_dim] in (0, 1), features of the 8 `LAYERS`).

  Features: 'conv' [B, H-2, W-2, 32] (raw stem output), 'res' [B, H-2, W-2, 32], 'down1' [B, H1, W1, 64],
  'down2' [B, H2, W2, 128], 'down3' [B, H3, W3, 256] (Hk = ceil(H(k-1) / 2), H/8 for H a multiple of 8),
  'fc1' [B, 256] (after BN and lrelu), 'fc2' [B, rep_dim] (pre-sigmoid), 'code' [B, rep_dim].
  Parameters: 5,437,856 at 64x64 and 18,020,768 at 128x128 for rep_dim 64 (fc1 grows with the input).
  `dtype`: compute dtype (None: float32); the code and features are returned in float32.
  """
  rep_dim: int = 64
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    dt = self.dtype
    features = {}
    h = _conv(_WIDTH, 3, 1, 0, "conv", dt)(x)
    features["conv"] = h
    h = _ResidualBlock(_WIDTH, dt, name="res")(_lrelu(h), train=train)
    features["res"] = h
    for i in (1, 2, 3):
      h = _DownsampleBlock(_WIDTH * 2**i, dt, name=f"down{i}")(h, train=train)
      features[f"down{i}"] = h
    h = h.reshape(h.shape[0], -1)  # (H, W, C) order; PyTorch's view is (C, H, W)
    h = _lrelu(_bn("bn", dt)(_dense(_FC, h.shape[-1], "fc1", dt)(h), use_running_average=not train))
    features["fc1"] = h
    h = _dense(self.rep_dim, _FC, "fc2", dt)(h)
    features["fc2"] = h
    code = nn.sigmoid(h)
    features["code"] = code
    return float32_outputs((code, features))


class MoccaResDecoder(nn.Module):
  """MOCCA's MVTec decoder: code [B, rep_dim] -> (reconstruction [B, H, W, channels], {}), no output activation.

  `shape` is the (H, W) of the images, multiples of 8. Parameters: 5,592,352 at 64x64 and 18,322,720 at 128x128
  for rep_dim 64 and 3 channels. `dtype`: compute dtype (None: float32); the reconstruction is returned in float32.
  """
  shape: tuple[int, int]
  channels: int = 3
  dtype: Any = None

  @nn.compact
  def __call__(self, z, *, train: bool):
    dt = self.dtype
    h8, w8 = self.shape[0] // 8, self.shape[1] // 8
    h = _lrelu(_bn("bn1", dt)(_dense(_FC, z.shape[-1], "fc1", dt)(z), use_running_average=not train))
    h = _lrelu(_bn("bn2", dt)(_dense(_FC * h8 * w8, _FC, "fc2", dt)(h), use_running_average=not train))
    h = h.reshape(h.shape[0], h8, w8, _FC)  # PyTorch views (C, H, W); this is the same layer with permuted units
    for i, ch in enumerate((_WIDTH * 4, _WIDTH * 2, _WIDTH), start=1):
      h = _UpsampleBlock(ch, dt, name=f"up{i}")(h, train=train)
    h = _ResidualBlock(_WIDTH, dt, name="res")(h, train=train)
    return float32_outputs(_conv(self.channels, 1, 1, 0, "out", dt)(h)), {}


class MoccaResAE(nn.Module):
  """Encoder (submodule 'encoder') + decoder (submodule 'decoder'): [B, H, W, C] -> (reconstruction [B, H, W, C],
  encoder features). H and W must be multiples of 8. The reconstruction is unbounded (the code has no tanh).
  `dtype`: compute dtype of both (None: float32); outputs are float32."""
  rep_dim: int = 64
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    if x.ndim != 4 or x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError(f"MoccaResAE needs [B, H, W, C] images with H and W multiples of 8, got {x.shape}.")
    code, features = MoccaResEncoder(self.rep_dim, self.dtype, name="encoder")(x, train=train)
    x_hat, _ = MoccaResDecoder(x.shape[1:3], x.shape[-1], self.dtype, name="decoder")(code, train=train)
    return x_hat, features


class Selector(nn.Module):
  """MOCCA's selector head: one layer's feature -> (vector [B, dim], {'hidden': [B, hidden]}).

  * [B, H, W, C] maps: 1x1 conv C->1 (with bias), adaptive max pooling to 8x8, flatten (64), then the MLP.
    (Paper order; the code pools before the conv, see the module docstring.)
  * [B, D] vectors: the MLP alone, as the code does.
  MLP: Dense(hidden) -> BN1d -> ReLU ('hidden') -> Dense(dim), with biases; 128 and 256 in the code.
  `dtype`: compute dtype (None: float32); outputs are float32.
  """
  dim: int = 128
  hidden: int = 256
  pool_size: int = 8
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    dt = self.dtype
    if x.ndim == 4:
      x = nn.Conv(1, (1, 1), kernel_init=torch_default, bias_init=torch_bias(x.shape[-1]), dtype=dt, name="conv")(x)
      x = _adaptive_max_pool(x, self.pool_size).reshape(x.shape[0], -1)
    elif x.ndim != 2:
      raise ValueError(f"Selector takes [B, H, W, C] maps or [B, D] vectors, got shape {x.shape}.")
    h = nn.relu(_bn("bn", dt)(_dense(self.hidden, x.shape[-1], "fc1", dt)(x), use_running_average=not train))
    return float32_outputs((_dense(self.dim, self.hidden, "fc2", dt)(h), {"hidden": h}))


def _check_layers(layers, selector: str) -> tuple[str, ...]:
  layers = tuple(layers)
  unknown = [l for l in layers if l not in LAYERS]
  if not layers or unknown or len(set(layers)) != len(layers):
    raise ValueError(f"layers must be a non-empty list of distinct names from {LAYERS}, got {list(layers)}.")
  if selector not in SELECTORS:
    raise ValueError(f"selector must be one of {SELECTORS}, got {selector!r}.")
  return layers


class SelectedEncoder(nn.Module):
  """The encoder MOCCA trains: [B, H, W, C] -> (code [B, rep_dim], {layer: [B, D_l]} for the chosen layers).

  `selector='pool'` (the code's `use_selectors=False`): maps are global-average-pooled (D_l = channels), vectors
  pass through; no parameters besides the encoder's. `selector='mlp'` (`--use-selectors`): one `Selector` named
  `selector_<layer>` per chosen layer, D_l = dim. The encoder lives under `params['encoder']`, with the same tree as
  `MoccaResAE`'s `params['encoder']`. `dtype`: compute dtype (None: float32); outputs are float32.
  """
  layers: tuple[str, ...] = ("code",)
  selector: str = "pool"
  rep_dim: int = 64
  dim: int = 128
  dtype: Any = None

  def __post_init__(self):
    _check_layers(self.layers, self.selector)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool):
    code, features = MoccaResEncoder(self.rep_dim, self.dtype, name="encoder")(x, train=train)
    out = {}
    for layer in self.layers:
      f = features[layer]
      if self.selector == "mlp":
        out[layer], _ = Selector(self.dim, dtype=self.dtype, name=f"selector_{layer}")(f, train=train)
      else:
        out[layer] = f.mean(axis=(1, 2)) if f.ndim == 4 else f
    return code, out


def mocca_mvtec(rep_dim: int = 64, ae_variant: str = "mocca", layers=("code",), selector: str = "pool",
                dim: int = 128, dtype: Any = None) -> tuple[MoccaResAE, SelectedEncoder]:
  """(autoencoder, encoder) pair; the encoder's `params['encoder']` is the autoencoder's `params['encoder']`.

  Copy `ae_params['encoder']` (and its batch_stats) into the SelectedEncoder's variables and initialise only the
  `selector_<layer>` heads. rep_dim defaults to the code's 64; the authors' default layer is the code (index 7).
  `dtype`: the compute dtype of both (None: float32).
  """
  if ae_variant != "mocca":
    raise ValueError(f"mocca_mvtec has only MOCCA's autoencoder: ae_variant must be 'mocca', got {ae_variant!r}.")
  layers = _check_layers(layers, selector)
  return MoccaResAE(rep_dim, dtype), SelectedEncoder(layers, selector, rep_dim, dim, dtype)
