"""The PyTorch twins of benchmarks/peers against jaxad, and a smoke run of benchmarks/peers_benchmark.py.

The twins are only worth timing if they compute what jaxad computes: the LeNet autoencoder and encoder give the
same outputs on copied weights (train and eval mode, NCHW and channels_last), one to three training steps of the
real configs' jitted step (configs/dsvdd_cifar10.py: Adam 1e-4, coupled weight decay) give the same losses,
gradient norms and parameters as torch.optim.Adam(weight_decay=...), and the twin's per-image GCN + min-max equals
jaxad's preprocessing.
"""

import json
import os
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from helpers import REPO  # pylint: disable=g-bad-import-order
from jaxad import optim, train
from jaxad.config import load_config
from jaxad.data.transforms import CIFAR10_GCN_L1_MINMAX, Preprocess
from jaxad.methods import get_method
from jaxad.methods.base import DataSpec, Output
from jaxad.models import lenet

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from peers import dsvdd_trainer_torch, lenet_torch, measure  # pylint: disable=g-import-not-at-top,wrong-import-position

B = 16


def _images(n=B, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, 32, 32, 3)).astype(np.float32)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _close(actual, desired, tol=1e-4):
  """Equal to `tol` relative to the largest |desired| (an absolute floor for values near zero)."""
  desired = np.asarray(desired)
  np.testing.assert_allclose(np.asarray(actual), desired, rtol=tol, atol=tol * max(1.0, np.abs(desired).max()))


def _trained_stats(model, variables, x, calls=10):
  """Running statistics after `calls` train-mode passes (momentum 0.9): realistic values for the eval-mode check."""
  fwd = jax.jit(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"])
  for _ in range(calls):
    variables = {**variables, "batch_stats": fwd(variables)}
  return variables


def test_forward_flops_by_hand():
  encoder = 2 * (32 * 32 * 25 * 3 * 32 + 16 * 16 * 25 * 32 * 64 + 8 * 8 * 25 * 64 * 128 + 128 * 4 * 4 * 128)
  decoder = 2 * (4 * 4 * 25 * 8 * 128 + 8 * 8 * 25 * 128 * 64 + 16 * 16 * 25 * 64 * 32 + 32 * 32 * 25 * 32 * 3)
  assert lenet_torch.forward_flops("encoder") == encoder == 57_868_288
  assert lenet_torch.forward_flops("ae") == encoder + decoder
  with pytest.raises(ValueError):
    lenet_torch.forward_flops("decoder")


@pytest.mark.parametrize("variant", ["dsvdd", "mocca"])
def test_autoencoder_forward_equals_jaxad(variant):
  ae, _ = lenet.lenet_cifar10(ae_variant=variant)
  x = _images()
  v = _trained_stats(ae, ae.init(jax.random.key(0), x, train=False), x)
  twin = lenet_torch.LeNetAE(variant=variant)
  assert sum(p.numel() for p in twin.parameters()) == 520_544 + 284_000
  lenet_torch.load_jaxad_params(twin, v)
  for train_mode in (False, True):
    x_hat, feats = ae.apply(v, x, train=train_mode, mutable=["batch_stats"])[0] if train_mode else ae.apply(
        v, x, train=False)
    twin.train(train_mode)
    for fmt in (torch.contiguous_format, torch.channels_last):
      twin.to(memory_format=fmt)
      with torch.no_grad():
        t_hat, t_code = twin(_nchw(x).contiguous(memory_format=fmt))
      _close(_nhwc(t_hat), x_hat)
      _close(t_code.numpy(), feats["code"])


def test_encoder_forward_equals_jaxad():
  _, encoder = lenet.lenet_cifar10()
  x = _images(seed=1)
  v = _trained_stats(encoder, encoder.init(jax.random.key(2), x, train=False), x)
  twin = lenet_torch.LeNetEncoder()
  assert sum(p.numel() for p in twin.parameters()) == 520_544
  lenet_torch.load_jaxad_params(twin, v)
  for train_mode in (False, True):
    code, _ = encoder.apply(v, x, train=train_mode, mutable=["batch_stats"])[0] if train_mode else encoder.apply(
        v, x, train=False)
    twin.train(train_mode)
    with torch.no_grad():
      _close(twin(_nchw(x)).numpy(), code)


def test_running_statistics_equal_torch():
  """After three training-mode calls and a fourth, every running mean and variance equals torch's BatchNorm's:
  jaxad's LeNets update the running variance with the unbiased batch variance (n / (n - 1)), as PyTorch does.

  At B = 16 the code layer's BN1d has n = 16, where the biased rule would be 6% off."""
  ae, _ = lenet.lenet_cifar10()
  x = _images(seed=2)
  v = _trained_stats(ae, ae.init(jax.random.key(3), x, train=False), x, calls=3)
  twin = lenet_torch.LeNetAE()
  lenet_torch.load_jaxad_params(twin, v)
  new = ae.apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"]
  twin.train()
  with torch.no_grad():
    twin(_nchw(x))
  sd = twin.state_dict()
  for name in ("encoder.bn1", "encoder.bn2", "encoder.bn3", "bn_code", "bn_deconv1", "bn_deconv2", "bn_deconv3"):
    ours = new["encoder"][name.split(".")[1]] if name.startswith("encoder.") else new[name]
    _close(sd[f"{name}.running_mean"].numpy(), ours["mean"], 1e-5)
    _close(sd[f"{name}.running_var"].numpy(), ours["var"], 1e-5)


def _dsvdd_phase(kind: str, weight_decay: float, x):
  """(phase, its TrainState as the trainer initialises it) of configs/dsvdd_cifar10.py: 'pretrain' or 'train'."""
  config = load_config(os.path.join(REPO, "configs", "dsvdd_cifar10.py"))
  config.pretrain.weight_decay = config.train.weight_decay = weight_decay
  pretrain, _, encoder = get_method("dsvdd")(config, DataSpec((32, 32, 3))).phases
  start = pretrain.init(jax.random.key(0), {"image": x}, {})
  if kind == "ae":
    phase, previous = pretrain, {}
  else:  # the encoder phase starts from the center Output: the AE's encoder and a fixed center
    enc = {"params": start.variables["params"]["encoder"], "batch_stats": start.variables["batch_stats"]["encoder"]}
    center = jnp.asarray(np.random.default_rng(5).normal(size=128).astype(np.float32))
    phase, previous = encoder, {"center": Output(enc, {"centers": {"code": center}})}
  tx = optim.make_optimizer(phase.optim, steps_per_epoch=25)
  return phase, train.init_state(phase, jax.random.key(1), {"image": x}, previous, tx)


def _lr_units(twin, variables, lr):
  """|twin's weights - jaxad's| / lr, all weights flattened (each Adam step moves a weight by about lr)."""
  other = type(twin)()
  lenet_torch.load_jaxad_params(other, variables)
  return np.concatenate([((p - q).abs() / lr).detach().numpy().ravel()
                         for p, q in zip(twin.parameters(), other.parameters())])


# 0.5e-6 is the recipe's decay; at 50 the coupled decay (g + wd * p inside Adam's moments) is as large as the
# gradients and decides the sign of many first updates, where decoupled (AdamW) decay would not.
@pytest.mark.parametrize("kind,weight_decay", [("ae", 0.5e-6), ("encoder", 0.5e-6), ("encoder", 50.0)])
def test_training_steps_equal_jaxad(kind, weight_decay):
  x = _images(seed=3)
  phase, state = _dsvdd_phase(kind, weight_decay, x)
  assert phase.optim.optimizer == "adam" and phase.optim.lr == lenet_torch.LR
  lr = phase.optim.lr
  twin = lenet_torch.LeNetAE() if kind == "ae" else lenet_torch.LeNetEncoder()
  lenet_torch.load_jaxad_params(twin, state.variables)
  # The twin computes in float64, the exact reference: PyTorch's own float32 gradient of the AE's first step is 1.6e-3
  # (relative L2) from its float64 one, jaxad's 4.6e-6, so a float32 twin would measure PyTorch's rounding.
  twin.double()
  center = torch.from_numpy(np.array(state.extra["centers"]["code"], np.float64)) if kind == "encoder" else None
  step = jax.jit(train.make_train_step(phase, 25, jax.random.key(2)))
  twin_step = lenet_torch.train_step(twin, kind, center=center, lr=lr, weight_decay=weight_decay)
  for i in range(3):
    state, metrics = step(state, {"image": x})
    loss = twin_step(_nchw(x).double())
    assert abs(float(metrics["loss"]) - loss) <= 1e-4 * loss, (i, float(metrics["loss"]), loss)
    if i == 0:
      # After the step, .grad holds its gradient (before the decay), as jaxad's grad_norm.
      norm = float(torch.sqrt(sum((p.grad ** 2).sum() for p in twin.parameters())))
      assert abs(float(metrics["grad_norm"]) - norm) <= 1e-4 * norm
      # Adam's first update is lr * (g + wd p) / |g + wd p| per weight: the same sign everywhere but where the sum
      # is at float32 noise level (a weight or two in 10^6).
      assert np.mean(_lr_units(twin, state.variables, lr) > 0.5) < 1e-5
  # Later updates divide by sqrt(v), which amplifies float32 rounding where a gradient is small: most weights still
  # agree to 1/100 of a step (Adam's arithmetic itself: test_adam_equals_torch). Measured after 3 AE steps: jaxad
  # median 0.005 and 0.11% of weights over 1/4 step from the float64 twin; PyTorch's float32 twin 0.013 and 0.61%.
  diff = _lr_units(twin, state.variables, lr)
  assert np.median(diff) < 0.01 and np.mean(diff > 0.25) < 2e-3, (np.median(diff), np.mean(diff > 0.25))


@pytest.mark.parametrize("weight_decay", [0.5e-6, 50.0])
def test_adam_equals_torch(weight_decay):
  """jaxad's optimizer of the recipe (`optim.make_optimizer`: coupled decay, then optax.adam) on the same gradients
  as torch.optim.Adam(weight_decay=...): equal weights after 5 steps."""
  config = load_config(os.path.join(REPO, "configs", "dsvdd_cifar10.py"))
  config.pretrain.weight_decay = weight_decay
  tx = optim.make_optimizer(config.pretrain, steps_per_epoch=25)
  rng = np.random.default_rng(6)
  p0 = rng.normal(scale=0.05, size=(1000,)).astype(np.float32)
  grads = rng.normal(size=(5, 1000)).astype(np.float32) * rng.uniform(1e-3, 1, size=(1, 1000)).astype(np.float32)
  w = torch.nn.Parameter(torch.from_numpy(p0.copy()))
  adam = torch.optim.Adam([w], lr=config.pretrain.lr, weight_decay=weight_decay)
  for g in grads:
    w.grad = torch.from_numpy(g.copy())
    adam.step()
  ours = _optax_steps(tx, p0, grads)
  np.testing.assert_allclose(ours, w.detach().numpy(), rtol=0, atol=1e-3 * config.pretrain.lr)
  if weight_decay > 1:  # decoupled decay (AdamW) ends far from torch's Adam: the comparison can tell them apart
    adamw = _optax_steps(optax.adamw(config.pretrain.lr, weight_decay=weight_decay), p0, grads)
    assert np.abs(adamw - w.detach().numpy()).max() > 100 * 1e-3 * config.pretrain.lr


def _optax_steps(tx, p0, grads):
  params = {"w": jnp.asarray(p0)}
  opt_state = tx.init(params)
  for g in grads:
    updates, opt_state = tx.update({"w": jnp.asarray(g)}, opt_state, params)
    params = optax.apply_updates(params, updates)
  return np.asarray(params["w"])


def test_twin_preprocessing_equals_jaxad():
  images = np.random.default_rng(4).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
  lo, hi = CIFAR10_GCN_L1_MINMAX[3]
  ds = dsvdd_trainer_torch.OneClassCifar(images, (lo, hi))
  ours = Preprocess("gcn_l1_minmax", lo=lo, hi=hi)(images)
  twin = np.stack([_nhwc(ds[i][0][None])[0] for i in range(len(ds))])
  np.testing.assert_allclose(twin, ours, atol=1e-5)


def test_lenet_step_runs_and_trains():
  step = lenet_torch.make_lenet_step("ae", batch_size=4, channels_last=True, seed=1)
  step()  # a full step in NHWC memory format; the parity tests above cover what it computes


def test_rounds_are_timed_without_the_heap_sampler(monkeypatch):
  """The heap sampler's mallinfo2() calls take malloc's arena locks and slowed the steps they watched to 0.45-0.78x:
  each variant's heap comes from one untimed call under it, and no timed call runs while it polls."""
  sampling, calls = [], {"a": [], "b": []}

  class Recording(measure.HeapSampler):
    def __enter__(self):
      sampling.append(True)
      return super().__enter__()

    def __exit__(self, *exc):
      sampling.pop()
      return super().__exit__(*exc)

  def variant(name):
    def run(n):
      calls[name].append(bool(sampling))
      buffer = np.ones(n * 2**18)  # n * 2 MiB, live for several of the sampler's 5 ms polls
      time.sleep(0.05)
      return float(buffer[0])
    return run

  monkeypatch.setattr(measure, "HeapSampler", Recording)
  log = measure.rounds_of({"a": variant("a"), "b": variant("b")}, rounds=3, n=4, per_call=1)
  assert calls == {"a": [True, False, False, False], "b": [True, False, False, False]}
  for v in log.values():
    assert len(v["seconds"]) == len(v["others_cores"]) == 3 and len(v["step_heap_mib"]) == 1
    assert v["step_heap_mib"][0] == pytest.approx(8, abs=1)  # the call's 8 MiB buffer, seen by the untimed call


def test_quick_benchmark(tmp_path):
  out = tmp_path / "peers.json"
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, "benchmarks/peers_benchmark.py", "--quick", "--workloads=lenet_encoder",
                         f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  wall = time.perf_counter() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # CPU seconds, not wall time: the smoke run's budget must not depend on what else shares the cores.
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  assert cpu < 60, (cpu, wall)
  results = json.loads(out.read_text())
  w = results["workloads"]["lenet_encoder"]
  assert set(w["variants"]) == {"jaxad", "torch_eager", "torch_channels_last"}
  assert w["flops_per_image"] == {"forward": 57_868_288, "train": 3 * 57_868_288}
  rates = {k: v["img_per_s"] for k, v in w["variants"].items()}
  assert all(r > 0 for r in rates.values()) and w["best_peer"] == max(("torch_eager", "torch_channels_last"),
                                                                      key=rates.get)
  assert w["jaxad_over_best_peer"] == pytest.approx(rates["jaxad"] / rates[w["best_peer"]])
  for v in w["variants"].values():
    assert len(v["load1_before_rounds"]) == len(v["others_cores_rounds"]) == len(v["img_per_s_rounds"]) == 1
    assert v["pct_of_matmul_peak"] == pytest.approx(100 * v["gflops_per_s"]
                                                    / results["machine"]["matmul_peak_gflops"]["best"])
  table = (tmp_path / "peers.md").read_text()
  assert "| lenet_encoder | jaxad |" in table and "PyTorch channels_last" in table
