"""PyTorch twin of the Deep SVDD / MOCCA CIFAR-10 LeNet: the autoencoder and encoder training steps.

Written in plain torch from the published architecture (Ruff et al. 2018; reference_implementations.md sections 3.1
and 4.1), not from any published code. Encoder: three blocks of a bias-free 5x5 conv (pad 2; 3 -> 32 -> 64 -> 128),
BatchNorm2d(eps 1e-4, affine=False), leaky ReLU (slope 0.01) and 2x2 max pooling; the 128 x 4 x 4 maps flattened
in (C, H, W) order; a bias-free Linear(2048 -> 128). Autoencoder: the encoder, BatchNorm1d(128, eps 1e-4,
affine=False) (MOCCA's copy has a second one), the code viewed as (8, 4, 4), leaky ReLU, then three blocks of a
bias-free ConvTranspose2d(k 5, pad 2, stride 1) -> BatchNorm2d -> leaky ReLU -> nearest x2 `F.interpolate`
(8 -> 128, 128 -> 64, 64 -> 32 channels; 4 -> 8 -> 16 -> 32 px), a last ConvTranspose2d(32 -> 3) and a sigmoid.
Convolutions are Xavier-uniform with the leaky-ReLU gain as in the authors' autoencoder; the Linear keeps
PyTorch's default. Module names equal `jaxad.models.lenet`'s, so `load_jaxad_params` is a name-by-name copy.

Training steps as the recipe (Deep SVDD's CIFAR-10 command): Adam lr 1e-4 with PyTorch's coupled weight decay
0.5e-6, the autoencoder on the batch mean of the per-image sum of squared errors, the encoder on the batch mean of
||z - c||^2 to a fixed center c (the one-class, hard-boundary objective).

Images are NCHW float32 (torch's layout); `channels_last` converts the model and the batch to torch's NHWC memory
format.

References:
  Ruff et al. Deep One-Class Classification. ICML 2018.
  Massoli et al. MOCCA: Multilayer One-Class Classification for Anomaly Detection. IEEE TNNLS 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

SLOPE = 0.01  # F.leaky_relu's default, used by both papers' code
EPS = 1e-4  # the BatchNorm eps of both papers' LeNets
CHANNELS = (32, 64, 128)
DECODER = (128, 64, 32)
LR, WEIGHT_DECAY = 1e-4, 0.5e-6  # Deep SVDD's CIFAR-10 recipe, both phases


def _bn2d(c: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(c, eps=EPS, affine=False)


def _xavier_lrelu_(w: torch.Tensor) -> None:
  nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("leaky_relu", SLOPE))


class LeNetEncoder(nn.Module):
  """`forward(x [B, 3, 32, 32]) -> code [B, rep_dim]` (520,544 parameters at rep_dim 128)."""

  def __init__(self, rep_dim: int = 128):
    super().__init__()
    cin = 3
    for i, c in enumerate(CHANNELS, start=1):
      setattr(self, f"conv{i}", nn.Conv2d(cin, c, 5, padding=2, bias=False))
      setattr(self, f"bn{i}", _bn2d(c))
      _xavier_lrelu_(getattr(self, f"conv{i}").weight)
      cin = c
    self.fc1 = nn.Linear(cin * 4 * 4, rep_dim, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for i in range(1, len(CHANNELS) + 1):
      x = F.max_pool2d(F.leaky_relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)), SLOPE), 2)
    return self.fc1(x.flatten(1))  # (C, H, W) order, whatever the memory format


class LeNetAE(nn.Module):
  """`forward(x [B, 3, 32, 32]) -> (x_hat [B, 3, 32, 32], code [B, rep_dim])` (+284,000 decoder parameters).

  `variant='mocca'` adds MOCCA's second non-affine BatchNorm1d at the start of the decoder.
  """

  def __init__(self, rep_dim: int = 128, variant: str = "dsvdd"):
    super().__init__()
    if variant not in ("dsvdd", "mocca"):
      raise ValueError(f"variant must be 'dsvdd' or 'mocca', got {variant!r}")
    self.rep_dim = rep_dim
    self.encoder = LeNetEncoder(rep_dim)
    self.bn_code = nn.BatchNorm1d(rep_dim, eps=EPS, affine=False)
    self.bn_decoder_in = nn.BatchNorm1d(rep_dim, eps=EPS, affine=False) if variant == "mocca" else None
    cin = rep_dim // 16
    for i, c in enumerate(DECODER, start=1):
      setattr(self, f"deconv{i}", nn.ConvTranspose2d(cin, c, 5, padding=2, bias=False))
      setattr(self, f"bn_deconv{i}", _bn2d(c))
      cin = c
    self.deconv4 = nn.ConvTranspose2d(cin, 3, 5, padding=2, bias=False)
    for i in range(1, len(DECODER) + 2):
      _xavier_lrelu_(getattr(self, f"deconv{i}").weight)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    code = self.encoder(x)
    h = self.bn_code(code)
    if self.bn_decoder_in is not None:
      h = self.bn_decoder_in(h)
    h = F.leaky_relu(h.view(h.shape[0], self.rep_dim // 16, 4, 4), SLOPE)
    if x.is_contiguous(memory_format=torch.channels_last):
      h = h.contiguous(memory_format=torch.channels_last)  # the view above is NCHW-contiguous
    for i in range(1, len(DECODER) + 1):
      h = getattr(self, f"deconv{i}")(h)
      h = F.interpolate(F.leaky_relu(getattr(self, f"bn_deconv{i}")(h), SLOPE), scale_factor=2)
    return torch.sigmoid(self.deconv4(h)), code


def forward_flops(kind: str, rep_dim: int = 128) -> int:
  """FLOPs (2 per multiply-add of the convs, deconvs and the Linear) of one 32x32 image's forward.

  BN, activations, pooling and upsampling are left out. 'encoder': 57,868,288; 'ae': that plus the decoder's
  58,163,200.
  """
  macs, side, cin = 0, 32, 3
  for c in CHANNELS:
    macs += side * side * 25 * cin * c
    side, cin = side // 2, c
  macs += cin * side * side * rep_dim
  if kind == "ae":
    side, cin = 4, rep_dim // 16
    for c in (*DECODER, 3):
      macs += side * side * 25 * cin * c
      side, cin = side * 2, c
  elif kind != "encoder":
    raise ValueError(f"kind must be 'ae' or 'encoder', got {kind!r}")
  return 2 * macs


# ---------------------------------------------------------------------------------------------------------------
# jaxad variables -> the twin.


def _conv(k: np.ndarray) -> np.ndarray:
  """flax Conv kernel [kh, kw, in, out] -> torch Conv2d weight [out, in, kh, kw]."""
  return k.transpose(3, 2, 0, 1)


def _deconv(k: np.ndarray) -> np.ndarray:
  """flax ConvTranspose kernel [kh, kw, in, out] -> torch ConvTranspose2d weight [in, out, kh, kw].

  flax's stride-1 ConvTranspose (transpose_kernel=False) correlates its padded input with the kernel as stored;
  torch's ConvTranspose2d equals a correlation with the spatially flipped kernel, hence the flip.
  """
  return k[::-1, ::-1].transpose(2, 3, 0, 1)


def _dense(k: np.ndarray, channels: int) -> np.ndarray:
  """flax Dense kernel [H * W * C, out] over an (H, W, C)-flattened input -> torch Linear weight [out, C * H * W]."""
  side = math.isqrt(k.shape[0] // channels)
  return k.reshape(side, side, channels, -1).transpose(3, 2, 0, 1).reshape(k.shape[1], -1)


def load_jaxad_params(module: nn.Module, variables: Mapping[str, Any]) -> None:
  """Copies `jaxad.models.lenet` variables into the twin, in place.

  Args:
    module: a `LeNetEncoder` (variables of `lenet.LeNetEncoder`) or a `LeNetAE` (of `lenet.LeNetCifarAE`).
    variables: {'params': ..., 'batch_stats': ...} as jaxad's `init` / train state holds them (any array type).
  """
  params, stats = variables["params"], variables.get("batch_stats", {})
  state = {}

  def encoder(prefix: str, p, s):
    for i in range(1, len(CHANNELS) + 1):
      state[f"{prefix}conv{i}.weight"] = _conv(np.asarray(p[f"conv{i}"]["kernel"]))
      state[f"{prefix}bn{i}.running_mean"] = np.asarray(s[f"bn{i}"]["mean"])
      state[f"{prefix}bn{i}.running_var"] = np.asarray(s[f"bn{i}"]["var"])
    state[f"{prefix}fc1.weight"] = _dense(np.asarray(p["fc1"]["kernel"]), CHANNELS[-1])

  if isinstance(module, LeNetAE):
    encoder("encoder.", params["encoder"], stats["encoder"])
    for name in ("bn_code", "bn_decoder_in", *(f"bn_deconv{i}" for i in range(1, len(DECODER) + 1))):
      if getattr(module, name) is not None:
        state[f"{name}.running_mean"] = np.asarray(stats[name]["mean"])
        state[f"{name}.running_var"] = np.asarray(stats[name]["var"])
    for i in range(1, len(DECODER) + 2):
      state[f"deconv{i}.weight"] = _deconv(np.asarray(params[f"deconv{i}"]["kernel"]))
  elif isinstance(module, LeNetEncoder):
    encoder("", params, stats)
  else:
    raise TypeError(f"module must be a LeNetEncoder or LeNetAE twin, got {type(module).__name__}")
  own = module.state_dict()
  missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
  if missing:
    raise ValueError(f"jaxad variables lack {missing}")
  with torch.no_grad():
    for k, v in state.items():
      own[k].copy_(torch.from_numpy(np.array(v, np.float32)))  # a writable copy


# ---------------------------------------------------------------------------------------------------------------
# Training steps.


def center_of(encoder: LeNetEncoder, x: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
  """The mean code over `x` in eval mode with Deep SVDD's guard: |c_i| < eps becomes +-eps (exact zeros stay)."""
  was_training = encoder.training
  encoder.eval()
  with torch.no_grad():
    c = encoder(x).mean(0)
  encoder.train(was_training)
  c[(c.abs() < eps) & (c < 0)] = -eps
  c[(c.abs() < eps) & (c > 0)] = eps
  return c


def train_step(model: nn.Module, kind: str, *, center: torch.Tensor | None = None, lr: float = LR,
               weight_decay: float = WEIGHT_DECAY, channels_last: bool = False) -> Callable[[torch.Tensor], float]:
  """`step(x [B, 3, 32, 32]) -> loss` (a float): forward in train mode, the phase's loss, backward, an Adam update.

  Args:
    model: a `LeNetAE` (kind 'ae') or a `LeNetEncoder` (kind 'encoder').
    kind: 'ae' (mean over the batch of sum((x_hat - x)^2)) or 'encoder' (mean of ||z - c||^2).
    center: c [rep_dim], required for 'encoder'.
    lr, weight_decay: `torch.optim.Adam`'s (coupled L2: `g + weight_decay * p` before the moments).
    channels_last: model and batch in torch's NHWC memory format.
  """
  if kind not in ("ae", "encoder"):
    raise ValueError(f"kind must be 'ae' or 'encoder', got {kind!r}")
  if kind == "encoder" and center is None:
    raise ValueError("kind='encoder' needs the center c")
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model.to(memory_format=fmt)
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

  def step(x: torch.Tensor) -> float:
    x = x.contiguous(memory_format=fmt)
    if kind == "ae":
      x_hat, _ = model(x)
      loss = torch.sum((x_hat - x) ** 2, dim=(1, 2, 3)).mean()
    else:
      loss = torch.sum((model(x) - center) ** 2, dim=1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())  # eager CPU torch is synchronous: the update is done when this returns

  return step


def make_lenet_step(kind: str, *, batch_size: int = 200, channels_last: bool, seed: int = 0) -> Callable[[], None]:
  """One full training step of the recipe on a fixed random batch of [0, 1] images: forward, loss, backward, Adam.

  Args:
    kind: 'ae' (the autoencoder pretraining step) or 'encoder' (the hypersphere step; c from the batch, as the
      authors' code takes it from the training set, in eval mode).
    batch_size: images per step (the recipe's 200).
    channels_last: torch's NHWC memory format for the model and the batch.
    seed: the weights' and the batch's seed.

  Returns:
    `step()`, which performs one step and returns when the update is done.
  """
  torch.manual_seed(seed)
  x = torch.rand(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1))
  if kind == "ae":
    model, center = LeNetAE(), None
  else:
    model = LeNetEncoder()
    center = center_of(model, x)
  step = train_step(model, kind, center=center, channels_last=channels_last)

  def run() -> None:
    step(x)

  return run
