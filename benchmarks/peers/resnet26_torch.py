"""PyTorch twin of jaxad's TransferAD ResNet26 and of its ADIB / ADRA training steps (Deecke et al. 2021).

Written in plain torch (no torchvision) from the architecture and recipe as jaxad documents them
(`jaxad.models.resnet26`, `jaxad.methods.transfer`, configs/adib_cifar10.py, configs/adra_cifar10.py,
configs/common.py), not from any published code. benchmarks/peers_benchmark.py measures it beside jaxad's step;
tests/peers_resnet26_test.py checks it against jaxad on copied weights.

Network (TransferAD layout, NCHW): 3x3 stem 3 -> 64, BN, ReLU; three stages of 4 post-activation BasicBlocks with
64 / 128 / 256 channels and first-block strides 1 / 2 / 2; BN-ReLU; global average pooling; Linear(256 -> 1). A
block is relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); where the shape changes the shortcut is 2x2 average
pooling followed by zero channels appended after the input's own (parameter-free). All convs are bias-free.
`adapters=True` adds the parallel residual adapters of ADRA: a bias-free 1x1 conv with the 3x3 conv's stride beside
every 3x3 conv (stem included), summed before the BN. Module names follow jaxad's parameter names, with '.' for '/':
`stem.conv`, `stem.adapter`, `stem.bn`, `layer2_0.conv1`, `layer2_0.adapter1`, `layer2_0.bn1`, ..., `end_bn`, `head`.

Batch norm is torch's `nn.BatchNorm2d` (eps 1e-5, momentum 0.1): jaxad's custom `layers.BatchNorm` exists to
reproduce exactly this rule (normalise with the biased batch variance, update `running_var` with the unbiased one),
so the stock module is the twin of it.

Training step (the configs' recipe): a fixed batch of `normal` images labelled 0 and `oe` images labelled 1;
RandomCrop(pad 4, black fill of the CIFAR standardisation) + horizontal flip per image on the device, as jaxad's
jitted step does; the network in train mode (BN batch statistics, running statistics updated); loss =
BCE-with-logits averaged over the batch; ADIB adds alpha * ||theta - theta_0||_2 (unsquared, alpha = 1e-2) over the
concatenated 3x3 conv kernels (stem + 24 block convs; not BN, head or adapters), theta_0 being the weights the step
starts from (the "pretrained" weights); ADRA adds no regulariser and trains only the parameters whose jaxad name
matches `adapter|bn|head` (1x1 adapters, BN affine parameters, head: 655,425 of 6,481,665), the frozen 3x3 kernels
having `requires_grad=False` so autograd skips their weight gradients (jaxad's `stop_gradient`). Optimiser: SGD lr
0.1, momentum 0.9 (not Nesterov), PyTorch's coupled weight decay 1e-4 (optax `add_decayed_weights` before `sgd`
in jaxad) on every trained parameter, lr x0.1 after epochs 60 and 80 (79 steps per epoch, as
benchmarks/transfer_throughput.py resolves jaxad's schedule).

References:
  Deecke, Ruff, Vandermeulen, Bilen. Transfer-Based Semantic Anomaly Detection. ICML 2021.
  Rebuffi, Bilen, Vedaldi. Learning multiple visual domains with residual adapters. NeurIPS 2017.
  Li, Grandvalet, Davoine. Explicit Inductive Bias for Transfer Learning with Convolutional Networks. ICML 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import math
import re

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

STEM_WIDTH = 64
WIDTHS, STRIDES, BLOCKS_PER_STAGE = (64, 128, 256), (1, 2, 2), 4
METHODS = ("adib", "adra")
# The recipe of configs/common.py `transfer_base()` and configs/adib_cifar10.py / adra_cifar10.py.
LR, MOMENTUM, WEIGHT_DECAY, ALPHA = 0.1, 0.9, 1e-4, 1e-2
MILESTONES, LR_DECAY, STEPS_PER_EPOCH = (60, 80), 0.1, 79
ADRA_TRAINABLE = (("adapter|bn|head", True), (".*", False))  # first match on jaxad's '/'-joined names decides
CROP_PAD = 4
# A black pixel after CIFAR standardisation, (0 - mean) / std: what RandomCrop's zero padding becomes.
CIFAR_MEAN, CIFAR_STD = (0.491373, 0.482353, 0.446667), (0.247059, 0.243529, 0.261569)
BLACK = tuple(-m / s for m, s in zip(CIFAR_MEAN, CIFAR_STD))
_CONV3X3 = re.compile(r"(^|\.)conv\d*\.weight$")


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class Stem(nn.Module):
  """relu(bn(conv(x) [+ adapter(x)])): 3x3 conv 3 -> width, stride 1."""

  def __init__(self, width: int, adapters: bool):
    super().__init__()
    self.conv = _conv(3, width, 3, 1)
    self.adapter = _conv(3, width, 1, 1) if adapters else None
    self.bn = nn.BatchNorm2d(width)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.conv(x)
    if self.adapter is not None:
      y = y + self.adapter(x)
    return F.relu(self.bn(y))


class BasicBlock(nn.Module):
  """Post-activation block with parallel adapters; parameter-free avg-pool + zero-channel shortcut."""

  def __init__(self, cin: int, cout: int, stride: int, adapters: bool):
    super().__init__()
    if cout < cin:
      raise ValueError(f"BasicBlock cannot shrink channels ({cin} -> {cout}).")
    self.stride, self.extra = stride, cout - cin
    self.conv1 = _conv(cin, cout, 3, stride)
    self.adapter1 = _conv(cin, cout, 1, stride) if adapters else None
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = _conv(cout, cout, 3, 1)
    self.adapter2 = _conv(cout, cout, 1, 1) if adapters else None
    self.bn2 = nn.BatchNorm2d(cout)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.conv1(x)
    if self.adapter1 is not None:
      y = y + self.adapter1(x)
    y = F.relu(self.bn1(y))
    h = self.conv2(y)
    if self.adapter2 is not None:
      h = h + self.adapter2(y)
    h = self.bn2(h)
    shortcut = x
    if self.stride != 1:
      shortcut = F.avg_pool2d(shortcut, self.stride, self.stride)
    if self.extra:
      shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))  # zeros after the input's own channels
    return F.relu(h + shortcut)


class ResNet26(nn.Module):
  """The TransferAD ResNet26; `forward(x [B, 3, H, W]) -> (logits [B, num_classes], features)`.

  `features` holds (as jaxad's, but NCHW) 'stem' [B, 64, H, W], 'layer1', 'layer2', 'layer3' (each stage's last
  block), 'end' (after the final BN-ReLU) and 'pooled' [B, 256]. Init as jaxad's (and the reference code's): every
  conv, adapters included, normal(0, sqrt(2 / (k * k * out))); BN 1 / 0; the head keeps torch's Linear default.

  Args:
    num_classes: outputs of the head (1 for anomaly detection).
    adapters: add the 1x1 residual adapters of ADRA beside every 3x3 conv.
  """

  def __init__(self, num_classes: int = 1, adapters: bool = False):
    super().__init__()
    self.adapters = adapters
    self.stem = Stem(STEM_WIDTH, adapters)
    self.block_names, cin = [], STEM_WIDTH
    for stage, (width, stride) in enumerate(zip(WIDTHS, STRIDES), start=1):
      for i in range(BLOCKS_PER_STAGE):
        name = f"layer{stage}_{i}"  # jaxad's module name
        self.add_module(name, BasicBlock(cin, width, stride if i == 0 else 1, adapters))
        self.block_names.append(name)
        cin = width
    self.end_bn = nn.BatchNorm2d(cin)
    self.head = nn.Linear(cin, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):  # He fan-out: std sqrt(2 / (k * k * out))
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    features = {}
    y = features["stem"] = self.stem(x)
    for name in self.block_names:
      y = getattr(self, name)(y)
      if name.endswith(f"_{BLOCKS_PER_STAGE - 1}"):
        features[name.split("_")[0]] = y
    y = features["end"] = F.relu(self.end_bn(y))
    pooled = features["pooled"] = y.mean(dim=(2, 3))
    return self.head(pooled), features


# ---------------------------------------------------------------------------------------------------------------
# Weights from jaxad.


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
  out = {}
  for k, v in tree.items():
    name = f"{prefix}/{k}" if prefix else str(k)
    out.update(_flatten(v, name) if isinstance(v, Mapping) else {name: v})
  return out


_LEAF = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
         ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def torch_name(jaxad_name: str) -> str:
  """'params/layer2_0/conv1/kernel' -> 'layer2_0.conv1.weight'; 'batch_stats/end_bn/var' -> 'end_bn.running_var'."""
  collection, *path, leaf = jaxad_name.split("/")
  if (collection, leaf) not in _LEAF:
    raise ValueError(f"No torch counterpart for jaxad variable {jaxad_name!r}.")
  return ".".join(path + [_LEAF[(collection, leaf)]])


def load_jaxad_variables(model: ResNet26, variables: Mapping) -> ResNet26:
  """Copies jaxad's `{'params', 'batch_stats'}` of `jaxad.models.resnet26.ResNet26` into `model`, in place.

  Conv kernels go HWIO -> OIHW (transpose(3, 2, 0, 1)), the Dense kernel [in, out] -> Linear weight [out, in]; BN
  scale/bias/mean/var -> weight/bias/running_mean/running_var. Every tensor of the model must be covered (BN's
  `num_batches_tracked` aside) and no jaxad variable may be left over; shapes must match.

  Returns:
    `model`.
  """
  flat = _flatten({k: variables[k] for k in ("params", "batch_stats") if k in variables})
  state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
  mapped = {torch_name(name): np.asarray(value) for name, value in flat.items()}
  if set(mapped) != set(state):
    raise ValueError(f"jaxad variables and the torch model differ: only in jaxad {sorted(set(mapped) - set(state))}, "
                     f"only in torch {sorted(set(state) - set(mapped))}.")
  with torch.no_grad():
    for name, value in mapped.items():
      if value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)
      elif value.ndim == 2:
        value = value.T
      target = state[name]
      if tuple(value.shape) != tuple(target.shape):
        raise ValueError(f"{name}: jaxad shape {value.shape} (after transposing) != torch shape {tuple(target.shape)}.")
      target.copy_(torch.from_numpy(np.array(value, np.float32)))  # a writable copy
  return model


# ---------------------------------------------------------------------------------------------------------------
# The training step.


def jaxad_style_name(torch_param_name: str) -> str:
  """'layer2_0.bn1.weight' -> 'layer2_0/bn1/weight': the name the trainable regexes are matched against."""
  return torch_param_name.replace(".", "/")


def conv3x3_weights(model: ResNet26) -> list[torch.Tensor]:
  """The 25 3x3 conv kernels (stem + 24 block convs) in registration order: what L2-SP and ADRA's freezing touch."""
  return [p for name, p in model.named_parameters() if _CONV3X3.search(name)]


def set_trainable(model: ResNet26, method: str) -> int:
  """ADRA: `requires_grad` from `ADRA_TRAINABLE` (first matching regex decides); ADIB: everything trains.

  Returns:
    The number of trainable parameters.
  """
  _check_method(method)
  for name, p in model.named_parameters():
    trainable = True
    if method == "adra":
      trainable = next(t for pattern, t in ADRA_TRAINABLE if re.search(pattern, jaxad_style_name(name)))
    p.requires_grad_(trainable)
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_optimizer(model: ResNet26, steps_per_epoch: int = STEPS_PER_EPOCH):
  """SGD(lr 0.1, momentum 0.9, coupled weight decay 1e-4) over the trainable parameters, and the per-step schedule
  (lr x0.1 at epochs 60 and 80, i.e. at steps 60 * steps_per_epoch and 80 * steps_per_epoch).

  Returns:
    (optimizer, scheduler); call `scheduler.step()` after every optimizer step.
  """
  params = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, nesterov=False, weight_decay=WEIGHT_DECAY)
  sched = torch.optim.lr_scheduler.MultiStepLR(opt, [m * steps_per_epoch for m in MILESTONES], gamma=LR_DECAY)
  return opt, sched


def transfer_loss(model: ResNet26, images: torch.Tensor, labels: torch.Tensor, theta0: list[torch.Tensor] | None,
                  *, alpha: float = ALPHA) -> torch.Tensor:
  """mean BCE-with-logits(logit, label) [+ alpha * ||concat(3x3 kernels) - concat(theta0)||_2 when theta0 is given].

  Args:
    model: the network (its mode decides BN's behaviour).
    images: [B, 3, H, W].
    labels: float [B], 0 = normal, 1 = OE.
    theta0: ADIB's starting 3x3 kernels (`conv3x3_weights` order, detached), or None (ADRA: no L2-SP).
    alpha: L2-SP weight.

  Returns:
    [] the loss.
  """
  logits, _ = model(images)
  loss = F.binary_cross_entropy_with_logits(logits[:, 0], labels)
  if theta0 is not None:
    # vector_norm's backward is 0 (not NaN) at theta == theta0, as jaxad's double-where l2_sp.
    diff = torch.cat([(p - p0).reshape(-1) for p, p0 in zip(conv3x3_weights(model), theta0)])
    loss = loss + alpha * torch.linalg.vector_norm(diff)
  return loss


def train_step(model: ResNet26, opt, sched, images: torch.Tensor, labels: torch.Tensor,
               theta0: list[torch.Tensor] | None) -> torch.Tensor:
  """One SGD step on `transfer_loss`; returns the (detached) loss of the step."""
  opt.zero_grad(set_to_none=True)
  loss = transfer_loss(model, images, labels, theta0)
  loss.backward()
  opt.step()
  sched.step()
  return loss.detach()


def crop_flip_with(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, *, pad: int = CROP_PAD,
                   fill=BLACK) -> torch.Tensor:
  """Pads every side by `pad` with `fill`, crops [H, W] at `offsets` (top, left), then mirrors where `flips`.

  Args:
    images: [B, C, H, W].
    offsets: int64 [B, 2] crop corners in the padded image, in [0, 2 * pad].
    flips: bool [B]; True mirrors left-right (after the crop).
    pad: padding on every side.
    fill: [C] padding value per channel.

  Returns:
    [B, C, H, W] in the memory format of `images`.
  """
  b, c, h, w = images.shape
  fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(1, c, 1, 1)
  padded = fill.expand(b, c, h + 2 * pad, w + 2 * pad).clone()
  padded[:, :, pad:pad + h, pad:pad + w] = images
  rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # [B, H]
  cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # [B, W]
  bi = torch.arange(b, device=images.device)[:, None, None]
  crops = padded[bi, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # advanced dims first: [B, H, W, C]
  out = torch.where(flips[:, None, None, None], crops.flip(3), crops)
  channels_last = c > 1 and images.is_contiguous(memory_format=torch.channels_last)
  return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; valid: {list(METHODS)}.")


def make_transfer_step(method: str, *, normal: int = 64, oe: int = 64, size: int = 32, channels_last: bool,
                       seed: int = 0) -> Callable[[], None]:
  """One full ADIB or ADRA training step on a fixed random batch, as a no-argument callable.

  The model is built (random init standing in for the source weights; theta_0 = its 3x3 kernels), frozen per the
  method, and put on torch's default device (`torch.set_default_device` beforehand picks a GPU) in NCHW or, with
  `channels_last`, torch's NHWC memory format. Every call draws a crop + flip per image, runs forward and backward
  in train mode, and applies the SGD update: the configs' step end to end. Nothing is synchronised: on a GPU call
  `torch.cuda.synchronize()` before reading a clock.

  Args:
    method: 'adib' (BCE + alpha * L2-SP, everything trains) or 'adra' (adapters, BCE, only adapter|bn|head train).
    normal: normal images (label 0) per step.
    oe: outlier-exposure images (label 1) per step.
    size: image side.
    channels_last: torch.channels_last memory format for the model and the batch.
    seed: seeds the weights, the batch and the augmentation draws.

  Returns:
    `step()`; it also carries `step.model`, `step.optimizer` and `step.theta0` (None for ADRA) for inspection.
  """
  _check_method(method)
  device = torch.get_default_device()
  torch.manual_seed(seed)
  model = ResNet26(num_classes=1, adapters=method == "adra").to(device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  model.train()
  set_trainable(model, method)
  theta0 = [p.detach().clone() for p in conv3x3_weights(model)] if method == "adib" else None
  opt, sched = make_optimizer(model)
  gen = torch.Generator(device=device).manual_seed(seed)
  b = normal + oe
  images = torch.randn(b, 3, size, size, generator=gen, device=device)
  if channels_last:
    images = images.contiguous(memory_format=torch.channels_last)
  labels = torch.cat([torch.zeros(normal, device=device), torch.ones(oe, device=device)])

  def step() -> None:
    offsets = torch.randint(0, 2 * CROP_PAD + 1, (b, 2), generator=gen, device=device)
    flips = torch.rand(b, generator=gen, device=device) < 0.5
    train_step(model, opt, sched, crop_flip_with(images, offsets, flips), labels, theta0)

  step.model, step.optimizer, step.theta0 = model, opt, theta0
  return step


# ---------------------------------------------------------------------------------------------------------------
# FLOPs.


def forward_flops(size: int, method: str = "adib") -> int:
  """FLOPs of one forward of one size x size image: 2 per multiply-add of every conv and dense layer.

  BN, ReLU, the shortcuts and pooling are left out; 'adra' counts the 1x1 adapters as well.
  """
  _check_method(method)
  adapters = method == "adra"
  macs, side = 0, size

  def conv(cin: int, cout: int, stride: int, side_in: int) -> tuple[int, int]:
    out = (side_in - 1) // stride + 1  # 3x3 with padding 1 and 1x1 without padding agree
    return out * out * cin * cout * (9 + (1 if adapters else 0)), out

  m, side = conv(3, STEM_WIDTH, 1, side)
  macs += m
  cin = STEM_WIDTH
  for width, stride in zip(WIDTHS, STRIDES):
    for i in range(BLOCKS_PER_STAGE):
      m1, side = conv(cin, width, stride if i == 0 else 1, side)
      m2, side = conv(width, width, 1, side)
      macs += m1 + m2
      cin = width
  macs += cin * 1  # the AD head
  return 2 * macs
