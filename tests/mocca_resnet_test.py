"""MOCCA's MVTec network: shapes, parameter counts and numerics against a PyTorch twin, selectors, weight transfer.

The twin below is written from the published architecture (paper + the authors' `models/mvtec_model.py` and
`models/mvtec_base_model.py`, as summarised in ../shared/spec/reference_implementations.md section 4.3) in NCHW
PyTorch, independently of the flax code; jax parameters are copied into it and every output compared.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

from jaxad.models import count_params, get_model, mocca_resnet

REP = 64


# ---------------------------------------------------------------------------------------------------------------
# PyTorch twin (NCHW), default BatchNorm (affine, eps 1e-5, momentum 0.1), LeakyReLU(0.01).

class TRes(tnn.Module):

  def __init__(self, c):
    super().__init__()
    self.conv1, self.bn1 = tnn.Conv2d(c, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c)
    self.conv2, self.bn2 = tnn.Conv2d(c, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c)

  def forward(self, x):
    h = tnn.functional.leaky_relu(self.bn1(self.conv1(x)))
    return tnn.functional.leaky_relu(self.bn2(self.conv2(h)) + x)


class TDown(tnn.Module):

  def __init__(self, i, o):
    super().__init__()
    self.conv1a, self.bn1a = tnn.Conv2d(i, o, 3, stride=2, padding=1, bias=False), tnn.BatchNorm2d(o)
    self.conv1b, self.bn1b = tnn.Conv2d(o, o, 3, padding=1, bias=False), tnn.BatchNorm2d(o)
    self.conv2a, self.bn2a = tnn.Conv2d(i, o, 1, stride=2, bias=False), tnn.BatchNorm2d(o)

  def forward(self, x):
    h = self.bn1b(self.conv1b(tnn.functional.leaky_relu(self.bn1a(self.conv1a(x)))))
    return tnn.functional.leaky_relu(h + self.bn2a(self.conv2a(x)))


class TUp(TDown):

  def __init__(self, i, o):
    super().__init__(i, o)
    self.conv1a = tnn.ConvTranspose2d(i, o, 5, stride=2, padding=2, output_padding=1, bias=False)
    self.conv2a = tnn.ConvTranspose2d(i, o, 1, stride=2, output_padding=1, bias=False)


class TEncoder(tnn.Module):

  def __init__(self, size, rep=REP):
    super().__init__()
    self.conv = tnn.Conv2d(3, 32, 3, bias=False)
    self.res = TRes(32)
    self.down1, self.down2, self.down3 = TDown(32, 64), TDown(64, 128), TDown(128, 256)
    self.fc1, self.bn, self.fc2 = tnn.Linear(256 * (size // 8)**2, 256), tnn.BatchNorm1d(256), tnn.Linear(256, rep)

  def forward(self, x):
    o1 = self.conv(x)
    o2 = self.res(tnn.functional.leaky_relu(o1))
    o3 = self.down1(o2)
    o4 = self.down2(o3)
    o5 = self.down3(o4)
    o6 = tnn.functional.leaky_relu(self.bn(self.fc1(o5.flatten(1))))
    o7 = self.fc2(o6)
    return [o1, o2, o3, o4, o5, o6, o7, torch.sigmoid(o7)]


class TDecoder(tnn.Module):

  def __init__(self, size, rep=REP):
    super().__init__()
    self.s = size // 8
    self.fc1, self.bn1 = tnn.Linear(rep, 256), tnn.BatchNorm1d(256)
    self.fc2, self.bn2 = tnn.Linear(256, 256 * self.s**2), tnn.BatchNorm1d(256 * self.s**2)
    self.up1, self.up2, self.up3 = TUp(256, 128), TUp(128, 64), TUp(64, 32)
    self.res = TRes(32)
    self.out = tnn.Conv2d(32, 3, 1, bias=False)  # no output activation in the authors' decoder

  def forward(self, z):
    h = tnn.functional.leaky_relu(self.bn1(self.fc1(z)))
    h = tnn.functional.leaky_relu(self.bn2(self.fc2(h))).view(len(z), 256, self.s, self.s)
    return self.out(self.res(self.up3(self.up2(self.up1(h)))))


class TAE(tnn.Module):

  def __init__(self, size):
    super().__init__()
    self.encoder, self.decoder = TEncoder(size), TDecoder(size)

  def forward(self, x):
    feats = self.encoder(x)
    return self.decoder(feats[-1]), feats


class TSelector(tnn.Module):
  """Paper order for maps: 1x1 conv (C->1, bias), adaptive max pool 8x8, FC 64->256, BN1d, ReLU, FC 256->128."""

  def __init__(self, channels=None, dim=None):
    super().__init__()
    self.conv = tnn.Conv2d(channels, 1, 1) if channels else None
    self.fc1, self.bn, self.fc2 = tnn.Linear(64 if channels else dim, 256), tnn.BatchNorm1d(256), tnn.Linear(256, 128)

  def forward(self, x):
    if self.conv is not None:
      x = tnn.functional.adaptive_max_pool2d(self.conv(x), 8).flatten(1)
    return self.fc2(torch.relu(self.bn(self.fc1(x))))


def torch_count(m):
  return sum(p.numel() for p in m.parameters())


# Channel / width of each candidate layer (for the twin selectors) and its map size at input s.
WIDTHS = {"conv": 32, "res": 32, "down1": 64, "down2": 128, "down3": 256, "fc1": 256, "fc2": REP, "code": REP}
MAPS = {64: (62, 62, 31, 16, 8), 128: (126, 126, 63, 32, 16)}


def _t(a):
  return torch.from_numpy(np.array(a, dtype=np.float32))


def load_into_torch(tmod, params, stats):
  """Copy flax params/batch_stats into a twin whose submodule names equal the flax names (HWIO -> OIHW etc.)."""
  for name, sub in tmod.named_modules():
    if not name or not isinstance(sub, (tnn.Conv2d, tnn.ConvTranspose2d, tnn.Linear, tnn.BatchNorm1d,
                                        tnn.BatchNorm2d)):
      continue
    p, s = params, stats
    for part in name.split("."):
      p, s = p[part], (s or {}).get(part)
    with torch.no_grad():
      if isinstance(sub, tnn.ConvTranspose2d):  # flax's ConvTranspose does not flip the kernel; PyTorch's does
        sub.weight.copy_(_t(np.asarray(p["kernel"])[::-1, ::-1].transpose(2, 3, 0, 1)))
      elif isinstance(sub, tnn.Conv2d):
        sub.weight.copy_(_t(np.asarray(p["kernel"]).transpose(3, 2, 0, 1)))
      elif isinstance(sub, tnn.Linear):
        sub.weight.copy_(_t(np.asarray(p["kernel"]).T))
      else:
        sub.weight.copy_(_t(p["scale"]))
        sub.running_mean.copy_(_t(s["mean"]))
        sub.running_var.copy_(_t(s["var"]))
      if sub.bias is not None:
        sub.bias.copy_(_t(p["bias"]))


def chw_perm(size):
  """perm[t] = flax (H, W, C) flat index of PyTorch's (C, H, W) flat index t, for a [size, size, 256] map."""
  return np.arange(size * size * 256).reshape(size, size, 256).transpose(2, 0, 1).ravel()


def load_encoder(tenc, params, stats, size):
  load_into_torch(tenc, params, stats)
  with torch.no_grad():  # the flattened conv map enters fc1 in (H, W, C) order in flax, (C, H, W) in PyTorch
    tenc.fc1.weight.copy_(_t(np.asarray(params["fc1"]["kernel"]).T[:, chw_perm(size // 8)]))


def load_decoder(tdec, params, stats, size):
  load_into_torch(tdec, params, stats)
  perm = chw_perm(size // 8)  # fc2's units are viewed as (C, H, W) in PyTorch, (H, W, C) in flax
  with torch.no_grad():
    tdec.fc2.weight.copy_(_t(np.asarray(params["fc2"]["kernel"]).T[perm]))
    tdec.fc2.bias.copy_(_t(np.asarray(params["fc2"]["bias"])[perm]))
    for t_attr, f_key in (("weight", "scale"), ("bias", "bias")):
      getattr(tdec.bn2, t_attr).copy_(_t(np.asarray(params["bn2"][f_key])[perm]))
    tdec.bn2.running_mean.copy_(_t(np.asarray(stats["bn2"]["mean"])[perm]))
    tdec.bn2.running_var.copy_(_t(np.asarray(stats["bn2"]["var"])[perm]))


def randomize(variables, seed):
  """Random BN affine params and random positive running statistics (init leaves scale 1, bias 0, mean 0, var 1)."""
  rng = np.random.default_rng(seed)

  def walk(d, stats):
    out = {}
    for k, v in d.items():
      if isinstance(v, dict):
        out[k] = walk(v, stats)
      elif stats:  # mean / var
        out[k] = rng.normal(0, 0.2, v.shape) if k == "mean" else rng.uniform(0.5, 2.0, v.shape)
      elif "scale" in d:  # a BN's params
        out[k] = rng.uniform(0.5, 1.5, v.shape) if k == "scale" else rng.normal(0, 0.2, v.shape)
      else:
        out[k] = np.asarray(v)
      if not isinstance(out[k], dict):
        out[k] = jnp.asarray(out[k], jnp.float32)
    return out

  return {"params": walk(variables["params"], False), "batch_stats": walk(variables["batch_stats"], True)}


def nhwc(t):
  t = t.detach().numpy()
  return t.transpose(0, 2, 3, 1) if t.ndim == 4 else t


def close(a, b, tol=1e-4):
  # 1e-4 relative to the feature's scale (absolute 1e-4 for features of magnitude <= 1).
  a, b = np.asarray(a), np.asarray(b)
  assert a.shape == b.shape
  np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 128])
def test_shapes_and_parameter_counts_match_the_twin(size):
  ae, encoder = mocca_resnet.mocca_mvtec(layers=mocca_resnet.LAYERS, selector="mlp")
  x = jnp.zeros((2, size, size, 3))
  v = jax.eval_shape(lambda: ae.init(jax.random.key(0), x, train=False))
  x_hat, feats = jax.eval_shape(lambda v: ae.apply(v, x, train=False), v)
  assert x_hat.shape == x.shape
  m = MAPS[size]
  assert {k: f.shape for k, f in feats.items()} == {
      "conv": (2, m[0], m[0], 32), "res": (2, m[1], m[1], 32), "down1": (2, m[2], m[2], 64),
      "down2": (2, m[3], m[3], 128), "down3": (2, m[4], m[4], 256), "fc1": (2, 256), "fc2": (2, REP),
      "code": (2, REP)}
  tae = TAE(size)
  assert set(v["params"]) == {"encoder", "decoder"}
  assert count_params(v["params"]["encoder"]) == torch_count(tae.encoder)
  assert count_params(v["params"]["decoder"]) == torch_count(tae.decoder)
  # Independent arithmetic: the hard-coded totals quoted in the module docstring.
  assert count_params(v["params"]["encoder"]) == {64: 5_437_856, 128: 18_020_768}[size]
  assert count_params(v["params"]["decoder"]) == {64: 5_592_352, 128: 18_322_720}[size]
  ve = jax.eval_shape(lambda: encoder.init(jax.random.key(0), x, train=False))
  code, sel = jax.eval_shape(lambda v: encoder.apply(v, x, train=False), ve)
  assert code.shape == (2, REP) and {k: f.shape for k, f in sel.items()} == {l: (2, 128) for l in mocca_resnet.LAYERS}
  for layer in mocca_resnet.LAYERS:
    twin = TSelector(channels=WIDTHS[layer]) if feats[layer].ndim == 4 else TSelector(dim=WIDTHS[layer])
    assert count_params(ve["params"][f"selector_{layer}"]) == torch_count(twin), layer


def test_autoencoder_matches_the_twin_in_eval_and_train_mode():
  size = 64
  ae, _ = get_model("mocca_mvtec")()
  x = jax.random.uniform(jax.random.key(1), (4, size, size, 3), minval=-1.0, maxval=1.0)
  v = randomize(ae.init(jax.random.key(0), x, train=False), seed=0)
  tae = TAE(size)
  load_encoder(tae.encoder, v["params"]["encoder"], v["batch_stats"]["encoder"], size)
  load_decoder(tae.decoder, v["params"]["decoder"], v["batch_stats"]["decoder"], size)
  xt = _t(x).permute(0, 3, 1, 2)

  tae.eval()
  x_hat, feats = ae.apply(v, x, train=False)
  t_hat, t_feats = tae(xt)
  assert list(feats) == list(mocca_resnet.LAYERS)  # in the paper's order, as the twin returns them
  for (name, f), tf in zip(feats.items(), t_feats):
    close(f, nhwc(tf))
    assert float(jnp.std(f)) > 1e-2, name  # a meaningful comparison: not collapsed to constants
  close(x_hat, nhwc(t_hat))
  # No output squashing (the authors' decoder ends with a linear 1x1 conv): scaling that conv scales the output.
  scaled = jax.tree.map(lambda a: a, v)  # a copy of the nested dicts
  scaled["params"]["decoder"]["out"] = {"kernel": 8.0 * v["params"]["decoder"]["out"]["kernel"]}
  close(ae.apply(scaled, x, train=False)[0], 8.0 * x_hat)

  # Train mode: batch statistics, and PyTorch's running-stat update (unbiased variance, momentum 0.1).
  tae.train()
  (x_hat, feats), upd = ae.apply(v, x, train=True, mutable=["batch_stats"])
  t_hat, t_feats = tae(xt)
  for f, tf in zip(feats.values(), t_feats):
    close(f, nhwc(tf))
  close(x_hat, nhwc(t_hat))
  st = upd["batch_stats"]
  close(st["encoder"]["down2"]["bn1b"]["var"], tae.encoder.down2.bn1b.running_var.detach().numpy())
  close(st["encoder"]["bn"]["var"], tae.encoder.bn.running_var.detach().numpy())
  close(st["decoder"]["up1"]["bn2a"]["mean"], tae.decoder.up1.bn2a.running_mean.detach().numpy())
  close(np.asarray(st["decoder"]["bn2"]["var"])[chw_perm(size // 8)], tae.decoder.bn2.running_var.detach().numpy())


@pytest.mark.parametrize("shape", [(5, 31, 31, 64), (5, 62, 62, 32), (5, 256)], ids=["down1", "conv", "fc1"])
def test_selector_matches_the_twin(shape):
  # 31 and 62 are not multiples of 8: PyTorch's adaptive pooling uses uneven, overlapping bins there.
  sel = mocca_resnet.Selector()
  f = jax.random.normal(jax.random.key(2), shape)
  v = randomize(sel.init(jax.random.key(3), f, train=False), seed=1)
  twin = TSelector(channels=shape[-1]) if len(shape) == 4 else TSelector(dim=shape[-1])
  load_into_torch(twin, v["params"], v["batch_stats"])
  ft = _t(f).permute(0, 3, 1, 2) if len(shape) == 4 else _t(f)
  twin.eval()
  out, aux = sel.apply(v, f, train=False)
  assert out.shape == (5, 128) and aux["hidden"].shape == (5, 256)
  close(out, twin(ft).detach().numpy())
  twin.train()
  (out, _), upd = sel.apply(v, f, train=True, mutable=["batch_stats"])
  close(out, twin(ft).detach().numpy())
  close(upd["batch_stats"]["bn"]["var"], twin.bn.running_var.detach().numpy())


def test_selected_encoder_takes_the_autoencoders_encoder_weights():
  size, layers = 64, ("conv", "down3", "fc1", "code")
  ae, _ = mocca_resnet.mocca_mvtec()
  x = jax.random.uniform(jax.random.key(4), (3, size, size, 3), minval=-1.0, maxval=1.0)
  va = randomize(ae.init(jax.random.key(5), x, train=False), seed=2)
  enc_vars = {"params": va["params"]["encoder"], "batch_stats": va["batch_stats"]["encoder"]}
  _, ae_feats = ae.apply(va, x, train=False)

  _, mlp = mocca_resnet.mocca_mvtec(layers=layers, selector="mlp")
  vm = mlp.init(jax.random.key(6), x, train=False)
  assert set(vm["params"]) == {"encoder"} | {f"selector_{l}" for l in layers}
  assert set(vm["batch_stats"]) == {"encoder"} | {f"selector_{l}" for l in layers}
  for col in ("params", "batch_stats"):
    assert jax.tree.structure(vm[col]["encoder"]) == jax.tree.structure(enc_vars[col])
    assert jax.tree.map(jnp.shape, vm[col]["encoder"]) == jax.tree.map(jnp.shape, enc_vars[col])
  # Copy the pretrained encoder in, keep the freshly initialised selectors.
  vm = {col: {**vm[col], "encoder": enc_vars[col]} for col in vm}
  code, out = mlp.apply(vm, x, train=False)
  np.testing.assert_array_equal(code, ae_feats["code"])
  assert list(out) == list(layers) and all(o.shape == (3, 128) for o in out.values())
  sel_out, _ = mocca_resnet.Selector().apply(
      {c: vm[c]["selector_down3"] for c in vm}, ae_feats["down3"], train=False)
  np.testing.assert_allclose(out["down3"], sel_out, rtol=1e-6, atol=1e-6)

  _, pool = mocca_resnet.mocca_mvtec(layers=layers, selector="pool")
  vp = pool.init(jax.random.key(7), x, train=False)
  assert set(vp["params"]) == {"encoder"} and set(vp["batch_stats"]) == {"encoder"}
  code, out = pool.apply({col: {"encoder": enc_vars[col]} for col in enc_vars}, x, train=False)
  assert {k: o.shape for k, o in out.items()} == {"conv": (3, 32), "down3": (3, 256), "fc1": (3, 256),
                                                  "code": (3, REP)}
  np.testing.assert_allclose(out["conv"], np.asarray(ae_feats["conv"]).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out["fc1"], ae_feats["fc1"])
  np.testing.assert_array_equal(out["code"], code)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="down1"):  # the message lists the valid names
    mocca_resnet.mocca_mvtec(layers=("conv", "dwn1"))
  with pytest.raises(ValueError, match="fc2"):
    mocca_resnet.SelectedEncoder(layers=("sigmoid",))
  with pytest.raises(ValueError):
    mocca_resnet.SelectedEncoder(layers=())
  with pytest.raises(ValueError):
    mocca_resnet.SelectedEncoder(layers=("code", "code"))
  with pytest.raises(ValueError, match="selector"):
    mocca_resnet.mocca_mvtec(selector="lstm")
  with pytest.raises(ValueError, match="ae_variant"):
    mocca_resnet.mocca_mvtec(ae_variant="dsvdd")
  ae, _ = mocca_resnet.mocca_mvtec()
  with pytest.raises(ValueError, match="multiples of 8"):
    ae.init(jax.random.key(0), jnp.zeros((1, 60, 60, 3)), train=False)
  assert mocca_resnet.LAYERS == ("conv", "res", "down1", "down2", "down3", "fc1", "fc2", "code")
