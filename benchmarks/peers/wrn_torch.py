"""PyTorch twin of Jezequel et al.'s multi-task WRN step, measured beside jaxad's in benchmarks/ssl_throughput.py.

Written in plain torch (no torchvision) from the architecture description, not from any published code: a
pre-activation Wide ResNet as Zagoruyko & Komodakis describe it and as `jaxad.models.wide_resnet` documents it
(3x3 stem 3 -> 16; three stages of (depth - 4) / 6 BasicBlocks with 16w, 32w, 64w channels and strides 1, 2, 2; a
block is BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3 plus the identity, or a 1x1 projection of the pre-activated input
where the shape changes; final BN-ReLU, global average pooling; bias-free convs), then one linear head per
self-supervised task with its own dropout on the pooled features (Jezequel et al.: 0.3).

The pretext expansion is done in torch on the batch, as jaxad does it inside its jitted step: every original image
becomes 3 x-shifts (0, +s, -s), 3 y-shifts, 4 rotations and k jigsaw permutations (13 copies with k = 3), each
task's head sees only its own copies, and the loss is the per-example sum over tasks and transforms of the
cross-entropy of the true transform (paper Eq. 7), averaged over the batch. Shifts use a reflect-101 border
(`F.pad(mode='reflect')` then a slice: out[y, x] = in[y - dy, x - dx], positive dx moves the content right), rotations
are `torch.rot90` over (H, W) counter-clockwise, and the jigsaw cuts the central g x g grid of cells into patches of
(cell - margin) px at an offset in [0, margin] per image and cell and pastes source cell perm[j] into cell j at
(margin // 2, margin // 2), zeros elsewhere. These conventions equal `jaxad.data.pretext`'s, which
benchmarks/ssl_throughput.py checks on random images before timing anything.

Images are NCHW float32 here (torch's layout; the benchmark transposes once, outside the timed step); the
`channels_last` option converts the model and the expanded batch to torch's NHWC memory format.

References:
  Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016.
  Jezequel, Vu, Beaudet, Histace. Fine-grained anomaly detection via multi-task self-supervision. AVSS 2021.
  Hendrycks, Mazeika, Kadavath, Song. Using Self-Supervised Learning Can Improve Model Robustness and Uncertainty.
    NeurIPS 2019 (the geometric heads: x/y shifts of a quarter of the side, reflect-101 border, rotations).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

TASKS = (("translate_x", 3), ("translate_y", 3), ("rotate", 4), ("jigsaw", 3))


class PreActBlock(nn.Module):
  """relu(bn1(x)) -> conv3x3(stride) -> relu(bn2) -> [dropout] -> conv3x3, plus x or a 1x1 conv of relu(bn1(x))."""

  def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(cin)
    self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
    self.dropout = dropout
    # Projection only where the shape changes; it reads the pre-activated input, so bn1/relu serve both branches.
    self.project = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if (cin != cout or stride != 1) else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    pre = F.relu(self.bn1(x))
    h = F.relu(self.bn2(self.conv1(pre)))
    if self.dropout > 0:
      h = F.dropout(h, self.dropout, self.training)
    h = self.conv2(h)
    return h + (x if self.project is None else self.project(pre))


class MultiHeadWRN(nn.Module):
  """Pre-activation WRN-depth-width with one linear head per task; `forward(x [B, 3, H, W]) -> {task: [B, K]}`.

  Args:
    depth: 6n + 4.
    width: widening factor w (stages of 16w, 32w, 64w channels).
    heads: ((task, classes), ...).
    dropout: rate between a block's two convs (0 in Jezequel et al.).
    head_dropout: rate on the pooled features before each head, an independent mask per head.
  """

  def __init__(self, depth: int = 16, width: int = 4, heads: Sequence[tuple[str, int]] = TASKS,
               dropout: float = 0.0, head_dropout: float = 0.3):
    super().__init__()
    if (depth - 4) % 6 or depth < 10:
      raise ValueError(f"MultiHeadWRN depth must be 6n + 4 with n >= 1, got depth={depth}.")
    n = (depth - 4) // 6
    self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
    blocks, cin = [], 16
    for cout, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
      for i in range(n):
        blocks.append(PreActBlock(cin, cout, stride if i == 0 else 1, dropout))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.final_bn = nn.BatchNorm2d(cin)
    self.task_names = tuple(t for t, _ in heads)
    self.heads = nn.ModuleDict({t: nn.Linear(cin, k) for t, k in heads})
    self.head_dropout = head_dropout
    for m in self.modules():  # the PyTorch WRN's init: He normal over fan-out for convs, BN 1/0, zero head biases
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
      elif isinstance(m, nn.Linear):
        nn.init.zeros_(m.bias)

  def trunk(self, x: torch.Tensor) -> torch.Tensor:
    """Pooled features [B, 64w] of images [B, 3, H, W]."""
    return F.relu(self.final_bn(self.blocks(self.stem(x)))).mean(dim=(2, 3))

  def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
    pooled = self.trunk(x)
    return {t: self.heads[t](F.dropout(pooled, self.head_dropout, self.training)) for t in self.task_names}


# ---------------------------------------------------------------------------------------------------------------
# Pretext transforms, NCHW.


def shift(images: torch.Tensor, d: int, dim: int) -> torch.Tensor:
  """out[..., i, ...] = images[..., i - d, ...] along `dim` (2 = rows/y, 3 = columns/x), reflect-101 border."""
  if d == 0:
    return images
  a = abs(d)
  pad = (a, a, 0, 0) if dim == 3 else (0, 0, a, a)
  padded = F.pad(images, pad, mode="reflect")  # torch's 'reflect' does not repeat the edge pixel: reflect-101
  n = images.shape[dim]
  start = 0 if d > 0 else 2 * a  # padded[j] = images[j - a]: out[i] = padded[i + a - d]
  return padded.narrow(dim, start, n)


def jigsaw(images: torch.Tensor, permutation: Sequence[int], offsets: torch.Tensor, *, grid: int = 3,
           margin: int = 2) -> torch.Tensor:
  """One permutation of every image: source cell permutation[j] pasted into cell j, zeros around the patches.

  Args:
    images: [B, C, H, W].
    permutation: g*g source cells, one per output cell.
    offsets: int64 [B, g*g, 2] (oy, ox) crop offset in each source cell, in [0, margin].
    grid: g.
    margin: pixels cut from each cell side in total.

  Returns:
    [B, C, H, W].
  """
  b, c, h, w = images.shape
  ch, cw = h // grid, w // grid
  top, left = (h - grid * ch) // 2, (w - grid * cw) // 2
  ph, pw, gap = ch - margin, cw - margin, margin // 2
  cells = torch.arange(grid * grid)
  rows = top + (cells // grid * ch)[None, :, None] + offsets[..., 0:1] + torch.arange(ph)  # [B, g*g, ph]
  cols = left + (cells % grid * cw)[None, :, None] + offsets[..., 1:2] + torch.arange(pw)  # [B, g*g, pw]
  bi = torch.arange(b)[:, None, None, None]
  # Advanced indices around a slice go first: [B, g*g, ph, pw, C].
  patches = images[bi, :, rows[..., :, None], cols[..., None, :]]
  out = images.new_zeros(b, c, h, w)
  for j, src in enumerate(permutation):
    r0, c0 = top + (j // grid) * ch + gap, left + (j % grid) * cw + gap
    out[:, :, r0:r0 + ph, c0:c0 + pw] = patches[:, src].permute(0, 3, 1, 2)
  return out


def expand(images: torch.Tensor, permutations: Sequence[Sequence[int]], offsets: torch.Tensor, *, shift_px: int = 8,
           grid: int = 3, margin: int = 2) -> dict[str, torch.Tensor]:
  """Every transformed copy of every image, {task: [T * B, C, H, W]} with copy j of each image labelled j.

  Tasks in `TASKS` order: x-shifts (0, +s, -s), y-shifts (0, +s, -s), rotations k = 0..3, jigsaw permutations.
  """
  shifts = (0, shift_px, -shift_px)
  return {
      "translate_x": torch.cat([shift(images, d, 3) for d in shifts]),
      "translate_y": torch.cat([shift(images, d, 2) for d in shifts]),
      "rotate": torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)]),
      "jigsaw": torch.cat([jigsaw(images, p, offsets, grid=grid, margin=margin) for p in permutations]),
  }


def multitask_loss(model: MultiHeadWRN, views: dict[str, torch.Tensor], batch: int, channels_last: bool = False):
  """Mean over the batch of the per-example sum over tasks and transforms of CE(head_task(copy j), j)."""
  x = torch.cat(list(views.values()))
  if channels_last:
    x = x.contiguous(memory_format=torch.channels_last)
  pooled = model.trunk(x)
  loss, start = 0.0, 0
  for task, v in views.items():
    rows = pooled[start:start + v.shape[0]]
    start += v.shape[0]
    logits = model.heads[task](F.dropout(rows, model.head_dropout, model.training))
    labels = torch.arange(v.shape[0] // batch).repeat_interleave(batch)
    loss = loss + F.cross_entropy(logits, labels, reduction="sum")
  return loss / batch


def make_train_step(model: MultiHeadWRN, permutations, *, lr: float = 0.1, momentum: float = 0.9,
                    weight_decay: float = 5e-4, total_steps: int = 2340, shift_px: int = 8, grid: int = 3,
                    margin: int = 2, channels_last: bool = False, seed: int = 0):
  """`step(images [B, C, H, W]) -> loss` (a float): flips, the 13-copy expansion, forward, backward, SGD update.

  SGD with Nesterov momentum and PyTorch's coupled weight decay, the learning rate annealed per step by a cosine
  over `total_steps` (jaxad's 'cosine' schedule; 15 epochs of 156 steps by default). Random horizontal flips of
  the originals and the jigsaw offsets are drawn per step, as in jaxad's step.
  """
  if channels_last:
    model.to(memory_format=torch.channels_last)
  model.train()
  opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
  sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
  gen = torch.Generator().manual_seed(seed)

  def step(images: torch.Tensor) -> float:
    b = images.shape[0]
    flips = torch.rand(b, generator=gen) < 0.5
    images = torch.where(flips[:, None, None, None], images.flip(3), images)
    offsets = torch.randint(0, margin + 1, (b, grid * grid, 2), generator=gen)
    views = expand(images, permutations, offsets, shift_px=shift_px, grid=grid, margin=margin)
    loss = multitask_loss(model, views, b, channels_last)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())  # eager CPU torch is synchronous: the update is done when this returns

  return step
