"""VGG-F and VGG-M (Chatfield et al. 2014) as MatConvNet's `imagenet-vgg-{f,m}.mat` define them: Andrews' backbones.

Andrews et al. (2016) take P5, FC6, FC7 and FC8 from these ImageNet nets as anomaly-detection features. The nets
are known from MatConvNet's SimpleNN files, so this module rebuilds exactly the layer list in those files (and
`third_party_weights/convert_matconvnet.py` refuses a file that differs from it). Images are NHWC, RGB, 224x224,
in the **0-255 range with the mean image subtracted** (MatConvNet's convention; `preprocess` does it with the mean
read from the file). Layers, as vl_simplenn runs them:

  VGG-F: conv1 11x11 3->64 stride 4, ReLU, LRN, max-pool 3x3 s2 pad [0 1 0 1];
         conv2 5x5 ->256 pad 2, ReLU, LRN, pool 3x3 s2; conv3..5 3x3 ->256 pad 1, ReLU; pool5 3x3 s2 -> [6, 6, 256];
  VGG-M: conv1 7x7 3->96 stride 2, ReLU, LRN, pool 3x3 s2; conv2 5x5 ->256 stride 2 pad 1, ReLU, LRN,
         pool 3x3 s2 pad [0 1 0 1]; conv3..5 3x3 ->512 pad 1, ReLU; pool5 3x3 s2 -> [6, 6, 512];
  both:  fc6 = 6x6 VALID conv ->4096, ReLU, (dropout 0.5 when training); fc7 = 1x1 conv ->4096, ReLU, (dropout);
         fc8 = 1x1 conv ->1000 logits (the file's final softmax 'prob' is left out).

Spatial sizes for a 224 input: VGG-F 54 -> 27 -> 27 -> 13 -> 13 -> 6, VGG-M 109 -> 54 -> 26 -> 13 -> 13 -> 6.
Pads are MatConvNet's [top bottom left right]; the asymmetric pool pads are how MatConvNet's Caffe importer
reproduces Caffe's ceil-mode pooling. Max pools ignore padded cells (-inf padding; the inputs are non-negative after
ReLU, so zero padding would give the same). fc6..fc8 stay convolutions so that MatConvNet's HWIO kernels
([6, 6, C, 4096], [1, 1, 4096, 4096], [1, 1, 4096, 1000]) load **without any transpose or reshape**; conv kernels are
HWIO too (MatConvNet's [height, width, in, out], rows first). Parameters: `conv1`..`conv5`, `fc6`..`fc8`, each with
`kernel` and `bias`: VGG-F 60,834,536, VGG-M 102,908,520.

LRN is MatConvNet's vl_nnnormalize: y = x / (kappa + alpha * sum_{q in Q(k)} x_q^2)^beta over a window of N channels
Q(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)] clipped to the channels, with alpha used as is (Caffe's alpha is
N times MatConvNet's). Its [N kappa alpha beta] come from the file (`VGG.lrn`). The MatConvNet-retrained
`imagenet-matconvnet-vgg-{f,m}.mat` (batch norm during training, merged into the convs when deployed) have no LRN
layers: `lrn=None`.

Features (`__call__` returns `(logits, features)`):
  'conv1'..'conv5': conv outputs before ReLU [B, H, W, C]; 'P1', 'P2', 'P5': pool outputs, P5 [B, 6, 6, C] (not
  flattened; P5.reshape(B, -1) is Andrews' 9216-d VGG-F / 18432-d VGG-M vector, in H, W, C order where MATLAB's
  x(:) would be H-fastest: the same numbers, permuted, which leaves norms and linear OC-SVMs unchanged);
  'FC6', 'FC7': [B, 4096] **before** ReLU; 'FC6_relu', 'FC7_relu': after it; 'FC8': the logits [B, num_classes].
FC6/FC7 before ReLU: the paper lists P5, FC6, FC7 and FC8 as "layers" and MatConvNet's SimpleNN keeps fc6 and relu6 as
separate layers whose outputs are read by layer (vl_simplenn's res(i+1).x is layer i's output). FC8, in the same
list, can only be the fc8 layer's raw output (there is no ReLU after it) and P5 is pool5's, so reading fc6/fc7 the
same way gives the pre-ReLU values. The paper does not say so explicitly; the post-ReLU vectors are there too.

Converted weights: `load_converted(directory)` returns the model (arch, LRN parameters and classes read from the
directory), its variables and the matching `preprocess` function.

References:
  Chatfield, Simonyan, Vedaldi, Zisserman. Return of the Devil in the Details: Delving Deep into Convolutional
    Nets. BMVC 2014.
  Vedaldi, Lenc. MatConvNet: Convolutional Neural Networks for MATLAB. ACM MM 2015 (vl_nnnormalize, vl_nnpool,
    vl_simplenn; the models at http://www.vlfeat.org/matconvnet/pretrained/).
  Andrews, Tanay, Morton, Griffin. Transfer Representation-Learning for Anomaly Detection. ICML 2016 workshop
    (Table 2, Section 4.1).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxad.errors import ConfigError, DataError

IMAGE_SIZE = (224, 224)
P5_SIZE = 6  # pool5 output is 6x6 for 224x224 inputs; fc6 is a 6x6 VALID conv over it
FC_WIDTH = 4096
# vl_simplenn_tidy's default LRN [N kappa alpha beta] (MatConvNet's cnn_imagenet_init); converted files set their own.
DEFAULT_LRN = (5.0, 1.0, 1e-4 / 5, 0.75)
CONVERT_HINT = ("Make it with: python third_party_weights/convert_matconvnet.py --input imagenet-vgg-f.mat "
                "--output DIR (see third_party_weights/README.md).")


@dataclasses.dataclass(frozen=True)
class Arch:
  """One of the two nets: per conv (out channels, square kernel, stride, pad [top bottom left right]) and the pads
  of the 3x3 stride-2 max pools after conv1, conv2 and conv5 (keyed by that conv's number)."""
  convs: tuple[tuple[int, int, int, tuple[int, int, int, int]], ...]
  pool_pads: dict[int, tuple[int, int, int, int]]


ARCHS = {
    "vgg_f": Arch(convs=((64, 11, 4, (0, 0, 0, 0)), (256, 5, 1, (2, 2, 2, 2)), (256, 3, 1, (1, 1, 1, 1)),
                         (256, 3, 1, (1, 1, 1, 1)), (256, 3, 1, (1, 1, 1, 1))),
                  pool_pads={1: (0, 1, 0, 1), 2: (0, 0, 0, 0), 5: (0, 0, 0, 0)}),
    "vgg_m": Arch(convs=((96, 7, 2, (0, 0, 0, 0)), (256, 5, 2, (1, 1, 1, 1)), (512, 3, 1, (1, 1, 1, 1)),
                         (512, 3, 1, (1, 1, 1, 1)), (512, 3, 1, (1, 1, 1, 1))),
                  pool_pads={1: (0, 0, 0, 0), 2: (0, 1, 0, 1), 5: (0, 0, 0, 0)}),
}
POOL = (3, 3)
POOL_STRIDE = (2, 2)
LRN_AFTER = (1, 2)  # LRN follows the ReLU of conv1 and conv2

conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # He; only used when training from scratch


def _arch(arch: str) -> Arch:
  if arch not in ARCHS:
    raise ConfigError(f"VGG arch={arch!r} is unknown; valid: {sorted(ARCHS)}.")
  return ARCHS[arch]


def _check_lrn(lrn) -> tuple[tuple[float, float, float, float], ...] | None:
  """`lrn` as two 4-tuples of floats, or None; a ConfigError naming the value otherwise."""
  if lrn is None:
    return None
  try:
    rows = tuple(tuple(float(v) for v in row) for row in lrn)
  except TypeError:
    rows = ()
  ok = len(rows) == len(LRN_AFTER) and all(len(r) == 4 for r in rows)
  ok = ok and all(r[0] >= 1 and float(r[0]).is_integer() and all(math.isfinite(v) for v in r) for r in rows)
  if not ok:
    raise ConfigError(f"VGG lrn={lrn!r} must be None (no LRN layers) or two [N kappa alpha beta] rows (norm1, norm2) "
                      "with an integer window N >= 1, e.g. (DEFAULT_LRN, DEFAULT_LRN).")
  return rows


class LRN(nn.Module):
  """MatConvNet's local response normalisation across channels (vl_nnnormalize), no parameters.

  y_k = x_k / (kappa + alpha * sum_{q=k-floor((N-1)/2)}^{k+ceil((N-1)/2)} x_q^2)^beta, channels outside [0, C) skipped.

  Attributes:
    size: N, the window (channels).
    kappa: the additive constant.
    alpha: the scale of the window's sum of squares, NOT divided by N (Caffe's alpha = N * this alpha).
    beta: the exponent.

  Input/output: [..., C] (channels last), same shape.
  """
  size: int = 5
  kappa: float = 1.0
  alpha: float = 1e-4 / 5
  beta: float = 0.75

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n = int(self.size)
    if n < 1 or n != self.size:
      raise ConfigError(f"LRN size={self.size!r} must be a positive integer (the window N of [N kappa alpha beta]).")
    before = (n - 1) // 2  # floor((N-1)/2) channels below k, ceil((N-1)/2) above (they differ for even N)
    after = n - 1 - before
    window = (1,) * (x.ndim - 1) + (n,)
    padding = [(0, 0)] * (x.ndim - 1) + [(before, after)]
    sq = jnp.square(x)
    total = jax.lax.reduce_window(sq, jnp.array(0, sq.dtype), jax.lax.add, window, (1,) * x.ndim, padding)
    return x * jnp.power(self.kappa + self.alpha * total, -self.beta)


class VGG(nn.Module):
  """VGG-F or VGG-M as in MatConvNet's SimpleNN files, returning `(logits, features)`; see the module docstring.

  Attributes:
    arch: 'vgg_f' or 'vgg_m'.
    num_classes: outputs of fc8 (1000 for the ImageNet files).
    lrn: [N kappa alpha beta] of norm1 and norm2 (two 4-tuples, from the file), or None for nets without LRN (the
      MatConvNet-retrained `imagenet-matconvnet-*` files).
    dropout_rate: dropout after relu6 and relu7 when `train=True` (needs a 'dropout' rng); 0 disables it.
    dtype: computation dtype (None: from inputs and parameters).

  `__call__(x, *, train)`: x [B, 224, 224, 3] RGB, 0-255 minus the mean image. Returns logits [B, num_classes] and
  features 'conv1'..'conv5', 'P1', 'P2', 'P5' [B, 6, 6, C], 'FC6', 'FC7' (pre-ReLU), 'FC6_relu', 'FC7_relu' [B, 4096],
  'FC8' (= logits).

  Example:
    >>> model = VGG(arch='vgg_f', lrn=(DEFAULT_LRN, DEFAULT_LRN))
    >>> x = jnp.zeros((1, 224, 224, 3))
    >>> variables = model.init(jax.random.key(0), x, train=False)
    >>> logits, feats = model.apply(variables, x, train=False)
    >>> logits.shape, feats['P5'].shape, feats['FC7'].shape
    ((1, 1000), (1, 6, 6, 256), (1, 4096))
  """
  arch: str = "vgg_f"
  num_classes: int = 1000
  lrn: tuple[tuple[float, float, float, float], ...] | None = (DEFAULT_LRN, DEFAULT_LRN)
  dropout_rate: float = 0.5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    cfg = _arch(self.arch)
    lrn = _check_lrn(self.lrn)
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"VGG expects RGB images [B, 224, 224, 3], got shape {x.shape}; replicate grey images to 3 "
                       "channels and resize them (vgg.preprocess does both).")
    features = {}
    y = x
    for i, (out, k, stride, pad) in enumerate(cfg.convs, start=1):
      y = nn.Conv(out, (k, k), (stride, stride), padding=((pad[0], pad[1]), (pad[2], pad[3])), kernel_init=conv_init,
                  dtype=self.dtype, name=f"conv{i}")(y)
      features[f"conv{i}"] = y
      y = nn.relu(y)
      if lrn is not None and i in LRN_AFTER:
        n, kappa, alpha, beta = lrn[LRN_AFTER.index(i)]
        y = LRN(int(n), kappa, alpha, beta, name=f"norm{i}")(y)
      if i in cfg.pool_pads:
        p = cfg.pool_pads[i]
        y = nn.max_pool(y, POOL, POOL_STRIDE, padding=((p[0], p[1]), (p[2], p[3])))
        features[f"P{i}"] = y
    if y.shape[1:3] != (P5_SIZE, P5_SIZE):
      raise ValueError(f"VGG ({self.arch}) needs 224x224 inputs so that P5 is 6x6 for the 6x6 fc6; input "
                       f"{x.shape[1:3]} gives P5 {y.shape[1:3]}. Resize the images (vgg.preprocess does).")
    for name, width, kernel in (("fc6", FC_WIDTH, P5_SIZE), ("fc7", FC_WIDTH, 1), ("fc8", self.num_classes, 1)):
      y = nn.Conv(width, (kernel, kernel), padding="VALID", kernel_init=conv_init, dtype=self.dtype, name=name)(y)
      key = name.upper()
      features[key] = y[:, 0, 0, :]
      if name != "fc8":
        y = nn.relu(y)
        features[f"{key}_relu"] = y[:, 0, 0, :]
        if self.dropout_rate:
          y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    logits = features["FC8"]
    return logits, features


def vgg_f(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-F (`VGG(arch='vgg_f', ...)`)."""
  return VGG(arch="vgg_f", num_classes=num_classes, **kwargs)


def vgg_m(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-M (`VGG(arch='vgg_m', ...)`)."""
  return VGG(arch="vgg_m", num_classes=num_classes, **kwargs)


# --- MatConvNet layer list ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MatLayer:
  """One layer of a MatConvNet SimpleNN net as jaxad expects to find it in the .mat file.

  Attributes:
    name: MatConvNet's layer name ('conv1', 'relu1', 'norm1', 'pool1', ..., 'fc8', 'prob').
    type: 'conv', 'relu', 'lrn' (MatConvNet's 'normalize' or 'lrn'), 'pool' or 'softmax'.
    weights: for 'conv', the shapes of the filters [h, w, in, out] and of the biases [out]; else None.
    stride: (vertical, horizontal) for 'conv' and 'pool'.
    pad: (top, bottom, left, right) for 'conv' and 'pool'.
    pool: the pool window (h, w) for 'pool'.
    method: 'max' for 'pool'.
  """
  name: str
  type: str
  weights: tuple[tuple[int, ...], tuple[int, ...]] | None = None
  stride: tuple[int, int] | None = None
  pad: tuple[int, int, int, int] | None = None
  pool: tuple[int, int] | None = None
  method: str | None = None


def matconvnet_layers(arch: str, *, lrn: bool = True, num_classes: int = 1000) -> list[MatLayer]:
  """The layer list (dropout removed, final softmax included) of `imagenet-vgg-{f,m}.mat` for `arch`.

  Args:
    arch: 'vgg_f' or 'vgg_m'.
    lrn: with the norm1/norm2 layers (Chatfield's imported nets) or without (`imagenet-matconvnet-*`).
    num_classes: outputs of fc8.
  """
  cfg = _arch(arch)
  layers, channels = [], 3
  for i, (out, k, stride, pad) in enumerate(cfg.convs, start=1):
    layers.append(MatLayer(f"conv{i}", "conv", ((k, k, channels, out), (out,)), (stride, stride), pad))
    layers.append(MatLayer(f"relu{i}", "relu"))
    if lrn and i in LRN_AFTER:
      layers.append(MatLayer(f"norm{i}", "lrn"))
    if i in cfg.pool_pads:
      layers.append(MatLayer(f"pool{i}", "pool", stride=POOL_STRIDE, pad=cfg.pool_pads[i], pool=POOL, method="max"))
    channels = out
  for name, width, kernel in (("fc6", FC_WIDTH, P5_SIZE), ("fc7", FC_WIDTH, 1), ("fc8", num_classes, 1)):
    layers.append(MatLayer(name, "conv", ((kernel, kernel, channels, width), (width,)), (1, 1), (0, 0, 0, 0)))
    if name != "fc8":
      layers.append(MatLayer(f"relu{name[2:]}", "relu"))
    channels = width
  layers.append(MatLayer("prob", "softmax"))
  return layers


def arch_of(params) -> str:
  """'vgg_f' or 'vgg_m', told by the conv1 kernel shape of `params` (nested dict with params['conv1']['kernel'])."""
  try:
    shape = tuple(np.shape(params["conv1"]["kernel"]))
  except (KeyError, TypeError):
    shape = None
  for name, cfg in ARCHS.items():
    out, k = cfg.convs[0][:2]
    if shape == (k, k, 3, out):
      return name
  known = ", ".join(f"{n}: {(c.convs[0][1], c.convs[0][1], 3, c.convs[0][0])}" for n, c in ARCHS.items())
  raise DataError(f"conv1/kernel has shape {shape}, which is neither VGG-F's nor VGG-M's ({known}).")


def abstract_variables(model: VGG) -> dict:
  """The model's variables as read-only zero arrays of the right shapes and dtypes (no initialisation is run).

  Used as the `initialised` side of `weights.merge_params`, which only needs shapes and dtypes when every leaf is
  loaded; each leaf is a broadcast view of one zero, so a 100M-parameter net costs no memory here.
  """
  x = jax.ShapeDtypeStruct((1, *IMAGE_SIZE, 3), jnp.float32)
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  shapes = {k: dict(v) for k, v in shapes.items()}
  return jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)


# --- Preprocessing and converted weights ----------------------------------------------------------------------------


def preprocess(images: Any, average_image: Any, *, image_size: Sequence[int] = IMAGE_SIZE) -> jax.Array:
  """Andrews' preprocessing: resize to 224x224x3, subtract the net's mean image. Works under `jax.jit`.

  Args:
    images: [B, H, W, C] in the 0-255 range (uint8 or float), C = 3 (RGB) or 1 (grey, replicated to RGB).
    average_image: the file's mean, [224, 224, 3] (a full mean image) or [1, 1, 3] / [3] (per-channel), RGB, 0-255.
    image_size: (height, width) the net takes.

  Returns:
    float32 [B, height, width, 3]: bilinearly resized (only if the size differs) minus the mean. MATLAB's imresize
    (which MatConvNet's own scripts use) interpolates slightly differently, so values differ from MATLAB's by resizing
    alone.
  """
  x = jnp.asarray(images).astype(jnp.float32)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"preprocess expects images [B, H, W, 1 or 3] in 0-255, got shape {x.shape}.")
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  h, w = (int(v) for v in image_size[:2])
  if x.shape[1:3] != (h, w):
    x = jax.image.resize(x, (x.shape[0], h, w, 3), method="bilinear")
  mean = jnp.asarray(average_image, jnp.float32)
  if mean.size == 3:
    mean = mean.reshape(1, 1, 3)
  if mean.shape not in ((1, 1, 3), (h, w, 3)):
    raise ValueError(f"preprocess: average_image has shape {mean.shape}; expected [{h}, {w}, 3] or 3 channel means.")
  return x - mean


def load_converted(path: str | os.PathLike) -> tuple[VGG, dict, Callable[[Any], jax.Array]]:
  """Reads a directory written by `third_party_weights/convert_matconvnet.py`.

  The directory is an Orbax checkpoint of `{'params': ..., 'meta': {'average_image', 'image_size'[, 'lrn']}}`; the
  arch is told by the conv1 kernel, the LRN parameters by `meta/lrn` ([2, 4]; absent: no LRN) and the classes by
  fc8.

  Returns:
    (model, variables, preprocess_fn): `VGG` configured as the file was; `{'params': ...}` (numpy arrays) for
    `model.apply(variables, preprocess_fn(images), train=False)`; `preprocess_fn(images [B, H, W, 1|3] 0-255)`
    returns the net's input (`preprocess` with the file's mean image and size).

  Raises:
    DataError: the directory is missing, unreadable or not a converted VGG-F/VGG-M (naming what is wrong).
  """
  from jaxad.models import weights  # pylint: disable=g-import-not-at-top

  path = os.path.abspath(os.fspath(path))
  tree = weights.load(path, hint=CONVERT_HINT, what="Converted MatConvNet weights")
  params, meta = tree.get("params"), tree.get("meta")
  if not isinstance(params, dict) or not isinstance(meta, dict) or not {"average_image", "image_size"} <= set(meta):
    raise DataError(f"{path} is not a converted VGG-F/VGG-M directory: it needs 'params' and 'meta/average_image', "
                    f"'meta/image_size' (found {sorted(tree)}; meta {sorted(meta or {})}). {CONVERT_HINT}")
  arch = arch_of(params)
  lrn = None if "lrn" not in meta else tuple(tuple(float(v) for v in row) for row in np.asarray(meta["lrn"]))
  fc8 = params.get("fc8", {}).get("bias")
  model = VGG(arch=arch, num_classes=int(np.shape(fc8)[0]) if fc8 is not None else 1000, lrn=lrn)
  variables = weights.merge_params({"params": params}, abstract_variables(model), what=f"converted weights {path}",
                                   hint=CONVERT_HINT)
  image_size = tuple(int(v) for v in np.asarray(meta["image_size"]).reshape(-1)[:2])
  average_image = np.asarray(meta["average_image"], np.float32)
  preprocess_fn = functools.partial(preprocess, average_image=average_image, image_size=image_size)
  return model, variables, preprocess_fn
