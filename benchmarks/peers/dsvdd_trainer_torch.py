"""PyTorch twin of Deep SVDD's end-to-end training loop on one CIFAR-10 class, timed per epoch.

Written from the published recipe (Ruff et al. 2018; reference_implementations.md section 3.1), not from any
published code, with the structure the authors' PyTorch trainers have:

* data: a `torch.utils.data.Dataset` over the class's uint8 [N, 32, 32, 3] images whose `__getitem__` transforms one
  image at a time (to a [0, 1] float CHW tensor, global contrast normalisation with the L1 scale: subtract the
  image's mean over its 3072 values, divide by their mean absolute deviation; then min-max scaling with the normal
  class's published (min, max)), batched by a `DataLoader` (batch 200, shuffled, `num_workers=0`). The authors'
  dataset also round-trips each image through a PIL Image (torchvision's CIFAR10); this twin skips that, which can
  only make its epochs faster.
* autoencoder epoch: Adam (lr 1e-4, coupled weight decay 0.5e-6), the batch mean of the per-image sum of squared
  errors, `loss.item()` accumulated per batch.
* center: the encoder starts from the autoencoder's encoder weights; c is the mean code over the training loader in
  eval mode without gradients, |c_i| < 0.1 moved to +-0.1 (exact zeros stay).
* encoder epoch: a fresh Adam with the same settings, the batch mean of ||z - c||^2 (one-class / hard boundary).

Learning-rate milestones are not stepped: at one epoch per phase they change nothing.

References:
  Ruff et al. Deep One-Class Classification. ICML 2018.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from peers import lenet_torch  # benchmarks/peers (benchmarks/ on sys.path)


class OneClassCifar(Dataset):
  """`ds[i] -> (image [3, 32, 32] float32, i)`: one uint8 image per item, transformed on the fly."""

  def __init__(self, images: np.ndarray, minmax: tuple[float, float]):
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    self.images = images
    self.lo, self.hi = (float(v) for v in minmax)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i: int):
    x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div_(255.0)  # ToTensor
    x = x - x.mean()
    x = x / x.abs().mean()  # GCN, L1 scale
    return (x - self.lo) / (self.hi - self.lo), i  # min-max with the class's (min, max)


def epoch_times(images: np.ndarray, minmax: tuple[float, float], *, batch_size: int = 200,
                lr: float = lenet_torch.LR, weight_decay: float = lenet_torch.WEIGHT_DECAY, ae_epochs: int = 1,
                epochs: int = 1, seed: int = 0) -> dict:
  """Trains the autoencoder, fits the center and trains the encoder as the authors' loop does; times each part.

  Args:
    images: uint8 [N, 32, 32, 3], the normal class's training images.
    minmax: the class's (min, max) of GCN-L1 images (Deep SVDD's published table).
    batch_size, lr, weight_decay: the recipe's 200, 1e-4, 0.5e-6.
    ae_epochs, epochs: epochs of the two phases.
    seed: torch's seed (weights, shuffling).

  Returns:
    {'ae_epoch_s': [seconds per autoencoder epoch], 'center_s': seconds for c, 'encoder_epoch_s': [...],
     'ae_loss': last AE epoch's mean batch loss, 'loss': last encoder epoch's, 'images': N}.
  """
  torch.manual_seed(seed)
  loader = DataLoader(OneClassCifar(images, minmax), batch_size=batch_size, shuffle=True, num_workers=0)
  ae = lenet_torch.LeNetAE()
  out = {"ae_epoch_s": [], "encoder_epoch_s": [], "images": len(images)}

  opt = torch.optim.Adam(ae.parameters(), lr=lr, weight_decay=weight_decay)
  ae.train()
  for _ in range(ae_epochs):
    seconds, out["ae_loss"] = _epoch(loader, opt, lambda x: torch.sum((ae(x)[0] - x) ** 2, dim=(1, 2, 3)).mean())
    out["ae_epoch_s"].append(seconds)

  t0 = time.perf_counter()
  net = lenet_torch.LeNetEncoder()
  net.load_state_dict(ae.encoder.state_dict())
  net.eval()
  with torch.no_grad():
    c = sum(net(x).sum(0) for x, _ in loader) / len(images)
  c[(c.abs() < 0.1) & (c < 0)] = -0.1
  c[(c.abs() < 0.1) & (c > 0)] = 0.1
  out["center_s"] = time.perf_counter() - t0

  opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
  net.train()
  for _ in range(epochs):
    seconds, out["loss"] = _epoch(loader, opt, lambda x: torch.sum((net(x) - c) ** 2, dim=1).mean())
    out["encoder_epoch_s"].append(seconds)
  return out


def _epoch(loader, opt, batch_loss) -> tuple[float, float]:
  """One epoch of the authors' loop (zero_grad, forward, backward, step per batch): (seconds, mean batch loss)."""
  t0, total, n = time.perf_counter(), 0.0, 0
  for x, _ in loader:
    opt.zero_grad()
    loss = batch_loss(x)
    loss.backward()
    opt.step()
    total, n = total + loss.item(), n + 1
  return time.perf_counter() - t0, total / max(n, 1)
