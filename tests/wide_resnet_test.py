"""Tests for jaxad.models.wide_resnet: parameter counts by formula, parity with a PyTorch twin, train mode, init.

The PyTorch twin is a pre-activation WRN written here in plain torch.nn from the layout in
shared/spec/reference_implementations.md section 5.1 (no torchvision); the Flax weights are copied into it.
"""

from __future__ import annotations

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.errors import ConfigError
from jaxad.models import count_params, get_model, wide_resnet
from jaxad.models.wide_resnet import WideResNet

try:
  import torch
except ImportError:  # the parity test fails (not skips) below
  torch = None

TOL = 2e-5


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def _abstract_init(model, size=32, batch=2):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((batch, size, size, 3)), train=False))


def _count_by_hand(depth, width, heads):
  """Bias-free 3x3 convs, 1x1 projection shortcuts where the shape changes, BN (scale, bias), Dense heads."""
  n = (depth - 4) // 6
  total = 3 * 3 * 3 * 16  # stem
  cin = 16
  for cout, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
    for i in range(n):
      total += 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout
      if i == 0 and (cin != cout or stride != 1):
        total += cin * cout
      cin = cout
  return total + 2 * cin + sum(cin * k + k for k in heads)


# ---------------------------------------------------------------------------------------------------------------
# Structure.


def test_param_counts():
  params = _abstract_init(get_model("wide_resnet")(depth=16, width=4))["params"]
  total = count_params(params)
  assert total == _count_by_hand(16, 4, [10]) == 2_748_890
  assert abs(total - 2.75e6) < 0.01e6  # spec: 2.75M in total with a 10-way FC
  conv = sum(v.size for k, v in _flat(params).items() if k.endswith("kernel") and not k.startswith("head"))
  assert conv == 2_742_704 and abs(conv - 2.74e6) < 0.01e6  # spec: ~2.74M conv params
  assert count_params(params["head_logits"]) == 256 * 10 + 10

  for depth, width, heads in ((10, 4, (("transform", 72),)), (40, 2, (("logits", 10), ("rot", 4), ("x", 3)))):
    params = _abstract_init(WideResNet(depth=depth, width=width, heads=heads))["params"]
    assert count_params(params) == _count_by_hand(depth, width, [k for _, k in heads])
  # Fixed values, so a wrong formula cannot hide a wrong model: GeoTrans' WRN-10-4 (72-way) and WRN-40-2 (10-way).
  assert _count_by_hand(10, 4, [72]) == 1_198_810 + 256 * 62 + 62
  assert count_params(_abstract_init(WideResNet(depth=40, width=2))["params"]) == 2_243_546


def test_names_shapes_and_registry():
  model = wide_resnet.wrn(16, 4, {"rot": 4, "trans": 3})
  assert model.heads == (("rot", 4), ("trans", 3)) and get_model("wide_resnet") is WideResNet
  variables = _abstract_init(model)
  names = set(_flat(variables["params"]))
  for name in ("stem_conv/kernel", "block1_0/shortcut/kernel", "block2_0/shortcut/kernel", "block3_1/conv2/kernel",
               "block3_1/bn1/scale", "final_bn/bias", "head_rot/kernel", "head_trans/bias"):
    assert name in names
  assert not any("shortcut" in n for n in names if "_1/" in n)  # identity shortcuts after each stage's first block
  assert set(_flat(variables["batch_stats"])) == {n.replace("scale", "mean") for n in names if n.endswith("scale")} | {
      n.replace("scale", "var") for n in names if n.endswith("scale")}

  x = jnp.zeros((2, 32, 32, 3))
  for train in (False, True):
    (logits, feats), _ = jax.eval_shape(
        lambda v, x, t=train: model.apply(v, x, train=t, mutable=["batch_stats"]), variables, x)
    assert {k: v.shape for k, v in logits.items()} == {"rot": (2, 4), "trans": (2, 3)}
    assert list(logits) == ["rot", "trans"]
    assert {k: v.shape for k, v in feats.items()} == {
        "stem": (2, 32, 32, 16), "block1": (2, 32, 32, 64), "block2": (2, 16, 16, 128), "block3": (2, 8, 8, 256),
        "pool": (2, 256)}


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=15), "depth=15"),
    (dict(depth=4), "depth=4"),
    (dict(width=0), "width=0"),
    (dict(heads=()), "heads"),
    (dict(heads=(("rot", 0),)), "rot"),
    (dict(dropout=1.0), "dropout=1.0"),
    (dict(conv_init="he"), "fan_in"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ConfigError, match=match) as info:
    WideResNet(**kwargs)
  assert isinstance(info.value, ValueError)
  with pytest.raises(ValueError, match="NHWC"):
    WideResNet(depth=10, width=1).init(jax.random.key(0), jnp.zeros((8, 8, 3)))


# ---------------------------------------------------------------------------------------------------------------
# Initialisation.


def test_conv_and_head_init_statistics():
  x = jnp.zeros((1, 8, 8, 3))
  stds = {}
  for conv_init in ("fan_out", "fan_in"):
    p = _flat(jax.jit(WideResNet(16, 4, conv_init=conv_init).init)(jax.random.key(1), x)["params"])
    w = np.asarray(p["block3_0/conv1/kernel"])  # 3x3, 128 -> 256: the two fans differ by a factor 2
    assert w.shape == (3, 3, 128, 256)
    stds[conv_init] = w.std()
    fan = 9 * (256 if conv_init == "fan_out" else 128)
    np.testing.assert_allclose(w.std(), np.sqrt(2 / fan), rtol=0.03)
    np.testing.assert_allclose(w.mean(), 0.0, atol=0.01 * np.sqrt(2 / fan))
    if conv_init == "fan_in":  # Keras he_normal is truncated at 2 std of the underlying normal (0.88 scaling)
      assert np.abs(w).max() <= 2 * np.sqrt(2 / fan) / 0.87962566 + 1e-6
    else:  # a plain normal: 295k draws reach beyond 4 std
      assert np.abs(w).max() > 4 * np.sqrt(2 / fan)
    s = np.asarray(p["block1_0/shortcut/kernel"])  # 1x1, 16 -> 64
    np.testing.assert_allclose(s.std(), np.sqrt(2 / (64 if conv_init == "fan_out" else 16)), rtol=0.15)
    k = np.asarray(p["head_logits/kernel"])  # PyTorch Linear default U(+-1/16); its std is 1/(16 sqrt(3))
    assert np.abs(k).max() <= 1 / 16 and k.std() > 0.8 / (16 * np.sqrt(3))
    np.testing.assert_array_equal(p["head_logits/bias"], 0.0)
    np.testing.assert_array_equal(p["block2_1/bn2/scale"], 1.0)
    np.testing.assert_array_equal(p["final_bn/bias"], 0.0)
  np.testing.assert_allclose(stds["fan_in"] / stds["fan_out"], np.sqrt(2), rtol=0.03)


# ---------------------------------------------------------------------------------------------------------------
# Train mode and dropout.


def _logits_and_pool(model, variables, x, seed):
  (logits, feats), _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.key(seed)})
  return np.concatenate([np.asarray(v) for v in logits.values()], -1), np.asarray(feats["pool"])


def test_train_mode_batch_stats_and_dropout():
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  heads = (("a", 3), ("b", 2))
  plain = WideResNet(10, 1, heads)
  variables = plain.init(jax.random.key(1), x)
  (_, _), updates = plain.apply(variables, x, train=True, mutable=["batch_stats"])  # no rng needed without dropout
  before, after = _flat(variables["batch_stats"]), _flat(updates["batch_stats"])
  assert set(before) == set(after) and len(after) == 2 * (2 * 3 + 1)
  for name in after:
    assert not np.allclose(before[name], after[name]), name
  # Eval mode leaves the statistics alone and differs from train mode (running vs batch statistics).
  (eval_logits, _), eval_updates = plain.apply(variables, x, train=False, mutable=["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, eval_updates["batch_stats"], variables["batch_stats"])
  assert not np.allclose(eval_logits["a"], _logits_and_pool(plain, variables, x, 0)[0][:, :3])

  # Rate 0: identical under different rngs.
  for a, b in zip(_logits_and_pool(plain, variables, x, 0), _logits_and_pool(plain, variables, x, 1)):
    np.testing.assert_array_equal(a, b)
  # Block dropout (same variables: dropout has no parameters): rng-dependent features, reproducible per rng.
  block = WideResNet(10, 1, heads, dropout=0.3)
  l0, p0 = _logits_and_pool(block, variables, x, 0)
  l1, p1 = _logits_and_pool(block, variables, x, 1)
  assert not np.allclose(p0, p1) and not np.allclose(l0, l1)
  np.testing.assert_array_equal(p0, _logits_and_pool(block, variables, x, 0)[1])
  np.testing.assert_array_equal(block.apply(variables, x, train=False)[1]["pool"],
                                plain.apply(variables, x, train=False)[1]["pool"])  # off in eval mode
  # Head dropout: pooled features untouched, logits rng-dependent.
  head = WideResNet(10, 1, heads, head_dropout=0.3)
  l0, p0 = _logits_and_pool(head, variables, x, 0)
  l1, p1 = _logits_and_pool(head, variables, x, 1)
  np.testing.assert_array_equal(p0, p1)
  assert not np.allclose(l0, l1)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch twin.


def _torch_wrn(depth, width, heads):
  """Pre-activation WRN in plain torch.nn with the Flax module's names (so that weights copy by name)."""
  nn, F = torch.nn, torch.nn.functional

  class Block(nn.Module):

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.bn1 = nn.BatchNorm2d(cin)
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.equal = cin == cout and stride == 1
      self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
      pre = F.relu(self.bn1(x))
      h = self.conv2(F.relu(self.bn2(self.conv1(pre))))
      return h + (x if self.equal else self.shortcut(pre))  # the projection sees the pre-activated input

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.stem_conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
      n, cin = (depth - 4) // 6, 16
      self.stages = []
      for s, (cout, stride) in enumerate(((16 * width, 1), (32 * width, 2), (64 * width, 2)), start=1):
        names = []
        for i in range(n):
          setattr(self, f"block{s}_{i}", Block(cin, cout, stride if i == 0 else 1))
          names.append(f"block{s}_{i}")
          cin = cout
        self.stages.append(names)
      self.final_bn = nn.BatchNorm2d(cin)
      for task, k in heads:
        setattr(self, f"head_{task}", nn.Linear(cin, k))

    def forward(self, x):
      h = self.stem_conv(x)
      feats = {}
      for s, names in enumerate(self.stages, start=1):
        for name in names:
          h = getattr(self, name)(h)
        feats[f"block{s}"] = h.permute(0, 2, 3, 1)
      pooled = F.relu(self.final_bn(h)).mean(dim=(2, 3))
      feats["pool"] = pooled
      return {task: getattr(self, f"head_{task}")(pooled) for task, _ in heads}, feats

  return Net()


def _copy_into_torch(net, variables):
  """Flax params/batch_stats -> the twin's tensors (HWIO -> OIHW, [in, out] -> [out, in]); every tensor filled."""
  targets = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
  rename = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
  filled = set()
  with torch.no_grad():
    for collection in ("params", "batch_stats"):
      for name, value in _flat(variables[collection]).items():
        *path, leaf = name.split("/")
        key = ".".join(path + [rename[leaf]])
        value = np.asarray(value)
        if value.ndim == 4:
          value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 2:
          value = value.T
        assert tuple(targets[key].shape) == value.shape, key
        targets[key].copy_(torch.from_numpy(np.array(value, np.float32)))
        filled.add(key)
  assert filled == set(targets)  # same structure: nothing missing on either side


def _randomise(variables, seed):
  """Non-default BN affine parameters and running statistics (positive variances), non-zero head biases."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, v in _flat(variables).items():
    shape = v.shape
    if name.endswith(("/scale", "/var")):
      v = 0.5 + rng.uniform(size=shape)
    elif name.endswith("/mean") or (name.endswith("/bias")):
      v = 0.2 * rng.normal(size=shape)
    out[name] = jnp.asarray(v, jnp.float32)
  return traverse_util.unflatten_dict(out, sep="/")


def _assert_close(actual, expected, what):
  expected = np.asarray(expected)
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=TOL, atol=TOL * scale, err_msg=what)


def test_parity_with_pytorch_twin_eval_and_train():
  if torch is None:
    pytest.fail("PyTorch is required for the WideResNet parity test: pip install torch==2.13.0")
  heads = (("rot", 4), ("trans", 3))
  model = WideResNet(depth=16, width=2, heads=heads)
  x = np.random.default_rng(5).normal(size=(2, 32, 32, 3)).astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  variables = _randomise(model.init(jax.random.key(3), x), seed=4)
  net = _torch_wrn(16, 2, heads)
  _copy_into_torch(net, variables)

  net.eval()
  with torch.no_grad():
    logits_t, feats_t = net(xt)
  logits, feats = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  for task, _ in heads:
    _assert_close(logits[task], logits_t[task].numpy(), f"eval logits {task}")
  for name in ("block1", "block2", "block3", "pool"):
    _assert_close(feats[name], feats_t[name].numpy(), f"eval {name}")

  # Train mode: batch statistics in the forward pass and PyTorch's running-stat update (momentum 0.1, unbiased var).
  net.train()
  with torch.no_grad():
    logits_t, feats_t = net(xt)
  (logits, feats), updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, x)
  for task, _ in heads:
    _assert_close(logits[task], logits_t[task].numpy(), f"train logits {task}")
  _assert_close(feats["pool"], feats_t["pool"].numpy(), "train pool")
  state = net.state_dict()
  before = _flat(variables["batch_stats"])
  for name, value in _flat(updates["batch_stats"]).items():
    *path, leaf = name.split("/")
    expected = state[".".join(path + ["running_" + leaf])].numpy()
    assert not np.allclose(expected, before[name]), name  # the statistics did move
    _assert_close(value, expected, f"running stat {name}")
