"""Tests for benchmarks/peers/resnet26_torch.py, the PyTorch twin of jaxad's ResNet26 ADIB / ADRA steps.

On weights copied from jaxad (random weights, BN affine parameters and statistics): the twin's forward equals
jaxad's in eval and train mode, with and without adapters, BN statistic updates included (float32, 1e-4); jaxad's
jitted training step, built from the configs as benchmarks/transfer_throughput.py builds it, and the twin's give the
same losses, updated parameters and BN statistics over two float64 steps (ADIB and ADRA, 1e-9) and one float32
ADIB step (1e-4), and ADRA's frozen kernels get no gradient in torch; the twin's crop + flip equals jaxad's; its
recipe constants are the configs'; `make_transfer_step` runs for both methods in both memory formats;
`forward_flops` equals torch's flop counter, a hand count, and XLA's cost analysis of jaxad's forward once XLA's
convention (no padded taps, elementwise ops included) is accounted for.
"""

import os
import sys

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers import REPO, config_file
from jaxad import optim, parallel, train
from jaxad.config import load_config
from jaxad.data import augment as augment_lib, black_pixel
from jaxad.methods import get_method, transfer
from jaxad.methods.base import DataSpec, TrainPhase
from jaxad.models.resnet26 import ResNet26

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from peers import resnet26_torch as twin  # pylint: disable=g-import-not-at-top,g-bad-import-order
from step_timing import fit_phase  # pylint: disable=g-import-not-at-top,g-bad-import-order

TOL = 1e-4
CONFIGS = {"adib": "adib_cifar10.py", "adra": "adra_cifar10.py"}


def _nchw(x) -> np.ndarray:
  return np.asarray(x).transpose(0, 3, 1, 2)


def _close(name: str, got, want, tol: float = TOL):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (name, got.shape, want.shape)
  # Relative to the tensor's scale: eval mode with random running statistics lets activations grow to ~1e4, where
  # float32 rounding alone leaves ~1e-3 absolute differences between two correct implementations.
  err = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want))) if want.size else 0.0
  assert err < tol, f"{name}: max difference {err:.2e} of the tensor's scale >= {tol}"


def _torch_state(model) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _compare_variables(what: str, model, variables, tol: float = TOL):
  """Every jaxad param / batch stat equals the twin's tensor of the same name (kernels transposed back)."""
  state = _torch_state(model)
  for name, value in traverse_util.flatten_dict({k: variables[k] for k in ("params", "batch_stats")}, sep="/").items():
    t = state[twin.torch_name(name)]
    t = t.transpose(2, 3, 1, 0) if t.ndim == 4 else t.T if t.ndim == 2 else t
    _close(f"{what} {name}", t, value, tol)


def _random_variables(model, shape, rng) -> dict:
  """jaxad variables of `model` drawn in NumPy (no init to compile): He fan-out kernels, non-trivial BN affine
  parameters and running statistics (so that eval mode is not the identity normalisation)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  flat = {}
  for name, leaf in traverse_util.flatten_dict({k: shapes[k] for k in ("params", "batch_stats")}, sep="/").items():
    kind = name.rsplit("/", 1)[1]
    if kind == "kernel":
      std = np.sqrt(2.0 / (np.prod(leaf.shape[:-2], dtype=int) * leaf.shape[-1])) if len(leaf.shape) == 4 else 0.06
      value = rng.normal(0.0, std, leaf.shape)
    elif kind in ("scale", "var"):
      value = rng.uniform(0.5, 2.0, leaf.shape)
    else:  # bias, mean
      value = rng.normal(0.0, 0.3, leaf.shape)
    flat[name] = value.astype(np.float32)
  return traverse_util.unflatten_dict(flat, sep="/")


@pytest.mark.parametrize("adapters", [False, True])
def test_forward_matches_jaxad(adapters):
  rng = np.random.default_rng(0)
  model = ResNet26(num_classes=1, adapters=adapters)
  x = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
  variables = _random_variables(model, x.shape, rng)

  @jax.jit
  def both(v, x):
    eval_out = model.apply(v, x, train=False)
    train_out, mutated = model.apply(v, x, train=True, mutable=["batch_stats"])
    return eval_out, train_out, mutated["batch_stats"]

  (eval_logits, eval_feats), (train_logits, train_feats), new_stats = both(variables, x)
  net = twin.load_jaxad_variables(twin.ResNet26(num_classes=1, adapters=adapters), variables)
  _compare_variables("loaded", net, variables)
  xt = torch.from_numpy(_nchw(x).copy())
  with torch.no_grad():
    logits, feats = net.eval()(xt)
    _close("eval logits", logits, eval_logits)
    for k, v in eval_feats.items():
      _close(f"eval {k}", feats[k], _nchw(v) if v.ndim == 4 else v)
    logits, feats = net.train()(xt)
  _close("train logits", logits, train_logits)
  for k, v in train_feats.items():
    _close(f"train {k}", feats[k], _nchw(v) if v.ndim == 4 else v)
  _compare_variables("after a train-mode forward", net, {"params": variables["params"], "batch_stats": new_stats})


def _jaxad_step(method: str, normal: int, oe: int, x: np.ndarray):
  """jaxad's step as the benchmarks build it: config -> method -> fit phases -> init_state -> make_train_step."""
  config = load_config(config_file(CONFIGS[method]))
  config.augment = False  # the crop + flip draws differ between frameworks; test_crop_flip compares the transform
  config.train.batch_size, config.oe.per_batch = normal + oe, oe
  built = get_method(config.method)(config, DataSpec(x.shape[1:]))
  (index, phase), = [(i, p) for i, p in enumerate(built.phases) if isinstance(p, TrainPhase)]
  mesh = parallel.make_mesh()
  outputs = {}
  for i, p in enumerate(built.phases[:index]):
    outputs[p.name] = fit_phase(config, built, i, outputs, x, mesh, batch_size=normal + oe)
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=twin.STEPS_PER_EPOCH)
  state = train.init_state(phase, jax.random.key(0), {"image": x}, outputs, tx)
  return config, state, train.make_train_step(phase, twin.STEPS_PER_EPOCH, jax.random.key(1))


def _to(dtype):
  return lambda a: a.astype(dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else a


# float64 checks the mathematics tightly over two steps (the second sees momentum and, for ADIB, theta != theta_0,
# i.e. a non-zero L2-SP pull). float32 is what the benchmark runs, one step: there a ReLU input within rounding of 0
# may take the other side in either framework, which moves single weight gradients by up to ~1% (measured against a
# float64 run: torch's float32 and jaxad's float32 are equally far from it), so 1e-4 of the tensor's scale.
# ADRA runs in float64 only, to keep the file fast: its float32 path differs from ADIB's only by the adapters, whose
# float32 forward the forward test checks.
@pytest.mark.parametrize("method,dtype,steps,tol", [("adib", "float64", 2, 1e-9), ("adib", "float32", 1, TOL),
                                                    ("adra", "float64", 2, 1e-9)])
def test_train_steps_match_jaxad(method, dtype, steps, tol):
  normal, oe = 4, 4
  x = np.random.default_rng(2).normal(size=(normal + oe, 8, 8, 3)).astype(np.float32)
  labels = np.repeat(np.int32([0, 1]), [normal, oe])
  config, state, step_fn = _jaxad_step(method, normal, oe, x)

  net = twin.load_jaxad_variables(twin.ResNet26(num_classes=1, adapters=method == "adra"),
                                  {"params": state.params, "batch_stats": state.batch_stats})
  net = net.to(getattr(torch, dtype)).train()
  n_trainable = twin.set_trainable(net, method)
  theta0 = [p.detach().clone() for p in twin.conv3x3_weights(net)] if method == "adib" else None
  opt, sched = twin.make_optimizer(net)
  xt = torch.from_numpy(_nchw(x).astype(dtype))
  yt = torch.from_numpy(labels.astype(dtype))
  before = _torch_state(net)

  with jax.enable_x64(dtype == "float64"):
    state = jax.tree.map(_to(dtype), state)  # params, BN statistics, theta_0, momentum, loss sums
    step = jax.jit(step_fn)
    batch = {"image": jnp.asarray(x.astype(dtype)), "label": jnp.asarray(labels)}
    for s in range(steps):
      state, metrics = step(state, batch)
      loss = twin.train_step(net, opt, sched, xt, yt, theta0)
      _close(f"{method} {dtype} loss at step {s}", loss, metrics["loss"], tol=min(tol, 1e-5))
    assert state.params["head"]["kernel"].dtype == dtype
    if method == "adib":
      assert (float(metrics["l2_sp"]) > 0) == (steps > 1)
    _compare_variables(f"{method} {dtype} after {steps} steps", net,
                       {"params": state.params, "batch_stats": state.batch_stats}, tol=tol)

  after = _torch_state(net)
  rules = optim.trainable_rules(config.train)
  mask = traverse_util.flatten_dict(optim.trainable_mask(state.params, rules), sep="/") if rules else {}
  mask = {twin.torch_name(f"params/{name}"): t for name, t in mask.items()}
  for name, p in net.named_parameters():
    jaxad_trains = mask.get(name, True)
    assert p.requires_grad == jaxad_trains, name
    if not jaxad_trains:  # frozen: no weight gradient computed, never updated
      assert p.grad is None, name
      np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    else:
      assert np.abs(after[name] - before[name]).max() > 0, name
  assert n_trainable == (655_425 if method == "adra" else 5_834_305)


def test_recipe_and_l2_sp_set_are_the_configs():
  for method, file in CONFIGS.items():
    c = load_config(config_file(file))
    assert (c.train.optimizer, c.train.lr, c.train.weight_decay) == ("sgd", twin.LR, twin.WEIGHT_DECAY)
    assert dict(c.train.optimizer_kwargs) == {"momentum": twin.MOMENTUM, "nesterov": False}
    assert (c.train.schedule, tuple(c.train.schedule_kwargs.milestones)) == ("step", twin.MILESTONES)
    assert c.train.schedule_kwargs.decay == twin.LR_DECAY
    assert (c.train.batch_size, c.oe.per_batch, c.augment) == (128, 64, True)  # the step's defaults: 64 + 64
    assert tuple(map(tuple, c.train.trainable)) == (twin.ADRA_TRAINABLE if method == "adra" else ())
    if method == "adib":
      assert (c.objective.regularizer, c.objective.alpha, c.objective.squared) == ("l2_sp", twin.ALPHA, False)
    else:
      assert c.objective.regularizer == "none" and c.model.adapters
  np.testing.assert_allclose(twin.BLACK, black_pixel(load_config(config_file("adib_cifar10.py")).data, 3), rtol=1e-5)
  # L2-SP covers exactly jaxad's 3x3 kernels.
  variables = jax.eval_shape(lambda: ResNet26(adapters=True).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)),
                                                                   train=False))
  names = [twin.torch_name("params/" + n) for n in traverse_util.flatten_dict(variables["params"], sep="/")
           if transfer.is_conv3x3(n)]
  net = twin.ResNet26(adapters=True)
  ids = {id(p): n for n, p in net.named_parameters()}
  # (The order of the concatenation does not change the norm; jaxad's flattening sorts names.)
  assert sorted(ids[id(p)] for p in twin.conv3x3_weights(net)) == sorted(names) and len(names) == 25


def test_crop_flip_matches_jaxad():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(6, 12, 10, 3)).astype(np.float32)
  offsets = rng.integers(0, 9, size=(6, 2)).astype(np.int32)
  flips = np.array([True, False, True, True, False, False])
  want = augment_lib.crop_flip_with(jnp.asarray(x), jnp.asarray(offsets), jnp.asarray(flips), pad=4,
                                    fill=np.asarray(twin.BLACK, np.float32))
  xt = torch.from_numpy(_nchw(x).copy())
  for fmt in (torch.contiguous_format, torch.channels_last):
    got = twin.crop_flip_with(xt.contiguous(memory_format=fmt), torch.from_numpy(offsets).long(),
                              torch.from_numpy(flips))
    assert got.is_contiguous(memory_format=fmt)
    np.testing.assert_array_equal(got.numpy(), _nchw(want))


@pytest.mark.parametrize("method", ["adib", "adra"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_make_transfer_step_runs(method, channels_last):
  step = twin.make_transfer_step(method, normal=2, oe=2, size=32, channels_last=channels_last)
  head = step.model.head.weight.detach().clone()
  frozen = step.model.layer3_3.conv2.weight.detach().clone()
  assert step() is None
  assert (step.theta0 is None) == (method == "adra")
  assert step.model.training and step.model.stem.conv.weight.is_contiguous(
      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
  assert all(torch.isfinite(p).all() for p in step.model.parameters())
  assert not torch.equal(step.model.head.weight, head)
  assert torch.equal(step.model.layer3_3.conv2.weight, frozen) == (method == "adra")
  with pytest.raises(ValueError, match="Unknown method"):
    twin.make_transfer_step("hsc", channels_last=False)


@pytest.mark.parametrize("method", ["adib", "adra"])
def test_forward_flops(method):
  adapters = method == "adra"
  net = twin.ResNet26(adapters=adapters)
  for size in (32, 96):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
      net.eval()(torch.zeros(1, 3, size, size))
    assert twin.forward_flops(size, method) == counter.get_total_flops(), size
  # Hand count at 32x32: stem 32^2*27*64, layer1 8 convs 32^2*64*64*9, layers 2/3 each 7 convs of 37,748,736 MACs
  # plus a strided first conv of 18,874,368, head 256 (adapters: 1 MAC for every 9 of the 3x3 convs).
  macs3x3 = 32 ** 2 * 27 * 64 + 8 * 32 ** 2 * 64 * 64 * 9 + 2 * (7 * 37_748_736 + 18_874_368)
  assert twin.forward_flops(32, method) == 2 * (macs3x3 * (10 if adapters else 9) // 9 + 256)
  # XLA's cost analysis counts only the taps that fall inside the image (not the zero padding) and adds BN, ReLU,
  # the shortcuts and pooling: against the same count without padded taps it is a fraction of a percent higher.
  model = ResNet26(num_classes=1, adapters=adapters)
  x = jnp.zeros((1, 32, 32, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  cost = jax.jit(lambda v, x: model.apply(v, x, train=False)[0]).lower(variables, x).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  ratio = float(cost["flops"]) / (2 * _unpadded_macs(32, adapters))
  assert 1.0 <= ratio < 1.01, ratio


def _unpadded_macs(size: int, adapters: bool) -> int:
  """Multiply-adds of the forward counting only kernel taps inside the image (XLA's convention)."""

  def taps(n: int, stride: int) -> int:  # sum over output positions of the 3x3 taps in [0, n), one dimension
    return sum(0 <= o * stride - 1 + t < n for o in range((n - 1) // stride + 1) for t in range(3))

  convs, n, cin = [(3, 64, 1, size)], size, 64
  for width, stride in ((64, 1), (128, 2), (256, 2)):
    for i in range(4):
      s = stride if i == 0 else 1
      convs.append((cin, width, s, n))
      n = (n - 1) // s + 1
      convs.append((width, width, 1, n))
      cin = width
  macs = 256
  for ci, co, s, n_in in convs:
    m = (n_in - 1) // s + 1
    macs += ci * co * (taps(n_in, s) ** 2 + (m * m if adapters else 0))
  return macs
