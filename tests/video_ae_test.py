"""MOCCA's ShanghaiTech video autoencoder: shapes, parameter counts and numerical parity with a PyTorch twin.

The twin below is written from the published architecture (fvmassoli/mocca-anomaly-detection,
models/shanghaitech_model.py and shanghaitech_base_model.py): masked (causal) 3x3x3 convs, PyTorch's LSTM and its
transposed convs, so the JAX layouts (2-tap causal kernels, flipped transposed kernels, time-shared Dense layers,
the decoder's transpose-then-view) are checked against independent code.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxad.models import count_params, get_model, video_ae

SMALL = dict(rep_dim=16, lstm_dim=8, widths=(4, 4, 8, 8, 8), fc_dim=32)


# ---------------------------------------------------------------------------------------------- PyTorch twin


class MaskedConv3d(torch.nn.Conv3d):
  """Conv3d whose taps on later frames are zeroed (the code's MaskedConv3d)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    mask = torch.ones_like(self.weight)
    mask[:, :, self.kernel_size[0] // 2 + 1:] = 0
    self.register_buffer("mask", mask)

  def forward(self, x):
    return self._conv_forward(x, self.weight * self.mask, self.bias)


class Down(torch.nn.Module):

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1a = MaskedConv3d(cin, cout, 3, padding=1, stride=stride, bias=False)
    self.conv1b = MaskedConv3d(cout, cout, 3, padding=1, bias=False)
    self.conv2a = torch.nn.Conv3d(cin, cout, 1, stride=stride, bias=False)
    self.bn1a, self.bn1b, self.bn2a = (torch.nn.BatchNorm3d(cout) for _ in range(3))

  def forward(self, x):
    h = self.bn1b(self.conv1b(F.leaky_relu(self.bn1a(self.conv1a(x)))))
    return F.leaky_relu(h + self.bn2a(self.conv2a(x)))


class Up(torch.nn.Module):

  def __init__(self, cin, cout, stride):
    super().__init__()
    op = tuple(s - 1 for s in stride)
    self.conv1a = torch.nn.ConvTranspose3d(cin, cout, 5, padding=2, stride=stride, output_padding=op, bias=False)
    self.conv1b = torch.nn.Conv3d(cout, cout, 3, padding=1, bias=False)
    self.conv2a = torch.nn.ConvTranspose3d(cin, cout, 5, padding=2, stride=stride, output_padding=op, bias=False)
    self.bn1a, self.bn1b, self.bn2a = (torch.nn.BatchNorm3d(cout) for _ in range(3))

  def forward(self, x):
    h = self.bn1b(self.conv1b(F.leaky_relu(self.bn1a(self.conv1a(x)))))
    return F.leaky_relu(h + self.bn2a(self.conv2a(x)))


class TwinAE(torch.nn.Module):
  """ShanghaiTech(load_lstm=True, use_selectors=False) with only the chosen LSTMs; NCTHW clips."""

  def __init__(self, shape, rep_dim, lstm_dim, widths, fc_dim, layers, mirror=False):
    super().__init__()
    c, t, h, w = shape
    self.mirror = mirror
    self.deepest = (widths[-1], t // 4, h // 32, w // 32)
    strides = [(1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 2, 2), (2, 2, 2)]
    self.blocks = torch.nn.ModuleList(Down(i, o, s) for i, o, s in zip((c,) + widths[:-1], widths, strides))
    dc, _, dh, dw = self.deepest
    self.tdl_1, self.tdl_2 = torch.nn.Linear(dc * dh * dw, fc_dim), torch.nn.Linear(fc_dim, rep_dim)
    sizes = dict(zip(video_ae.LAYERS, widths + (fc_dim, rep_dim)))
    self.lstms = torch.nn.ModuleDict({k: torch.nn.LSTM(sizes[k], lstm_dim, batch_first=True) for k in layers})
    self.dec_1, self.dec_2 = torch.nn.Linear(rep_dim, fc_dim), torch.nn.Linear(fc_dim, dc * dh * dw)
    outs = (widths[3], widths[2], widths[1], widths[0], widths[0])
    ins = (widths[4],) + outs[:-1]
    self.ups = torch.nn.ModuleList(Up(i, o, s) for i, o, s in zip(ins, outs, strides[::-1]))
    self.out = torch.nn.Conv3d(widths[0], c, 1)

  def forward(self, x):
    feats = {}
    h = x
    for i, block in enumerate(self.blocks, 1):
      h = feats[f"block{i}"] = block(h)
    b, _, t = h.shape[:3]
    h = torch.transpose(h, 1, 2).reshape(b, t, -1)
    feats["fc1"] = torch.tanh(self.tdl_1(h))
    code = feats["code"] = torch.sigmoid(self.tdl_2(feats["fc1"]))
    for k, lstm in self.lstms.items():
      seq = feats[k].mean(dim=(3, 4)).transpose(1, 2) if feats[k].ndim == 5 else feats[k]
      feats[f"lstm_{k}"] = lstm(seq)[0]
    y = F.leaky_relu(self.dec_2(torch.tanh(self.dec_1(code))))
    if self.mirror:
      dc, dt, dh, dw = self.deepest
      y = y.reshape(b, dt, dc, dh, dw).transpose(1, 2)
    else:  # the released code's transpose-then-view
      y = torch.transpose(y, 1, 2).contiguous().view(b, *self.deepest)
    for up in self.ups:
      y = up(y)
    y = self.out(y)
    return (torch.sigmoid(y) if self.mirror else y), feats


def effective_count(model):
  """Parameters that can affect the output: all, minus the masked (always zeroed) taps."""
  masked = sum(int((m.mask == 0).sum()) for m in model.modules() if isinstance(m, MaskedConv3d))
  return sum(p.numel() for p in model.parameters()) - masked


def to_np(t):
  return t.detach().numpy()


def convert(twin):
  """Twin state -> flax variables of VideoAE."""
  params, stats = {}, {}

  def bn(mod):
    return ({"scale": to_np(mod.weight), "bias": to_np(mod.bias)},
            {"mean": to_np(mod.running_mean), "var": to_np(mod.running_var)})

  def block(mod, up):
    p, s = {}, {}
    for name in ("bn1a", "bn1b", "bn2a"):
      p[name], s[name] = bn(getattr(mod, name))
    if up:  # ConvTranspose3d [I, O, k, k, k] -> flipped [k, k, k, I, O]
      for name in ("conv1a", "conv2a"):
        p[name] = {"kernel": to_np(getattr(mod, name).weight.flip(2, 3, 4).permute(2, 3, 4, 0, 1))}
      p["conv1b"] = {"kernel": to_np(mod.conv1b.weight.permute(2, 3, 4, 1, 0))}
    else:  # masked convs: keep the taps on frames t-1 and t
      for name in ("conv1a", "conv1b"):
        p[name] = {"kernel": to_np(getattr(mod, name).weight[:, :, :2].permute(2, 3, 4, 1, 0))}
      p["conv2a"] = {"kernel": to_np(mod.conv2a.weight.permute(2, 3, 4, 1, 0))}
    return p, s

  def dense(lin):
    return {"kernel": to_np(lin.weight.T), "bias": to_np(lin.bias)}

  enc_p, enc_s = {}, {}
  for i, mod in enumerate(twin.blocks, 1):
    enc_p[f"block{i}"], enc_s[f"block{i}"] = block(mod, up=False)
  dc, _, dh, dw = twin.deepest
  w = twin.tdl_1.weight  # [fc, C*H*W] -> [H*W*C, fc]
  enc_p["fc1"] = {"kernel": to_np(w.reshape(-1, dc, dh, dw).permute(2, 3, 1, 0).reshape(dh * dw * dc, -1)),
                  "bias": to_np(twin.tdl_1.bias)}
  enc_p["fc2"] = dense(twin.tdl_2)
  params["encoder"], stats["encoder"] = enc_p, enc_s
  for k, lstm in twin.lstms.items():
    params[f"lstm_{k}"] = {"kernel_ih": to_np(lstm.weight_ih_l0.T), "kernel_hh": to_np(lstm.weight_hh_l0.T),
                           "bias_ih": to_np(lstm.bias_ih_l0), "bias_hh": to_np(lstm.bias_hh_l0)}
  params["dec_fc1"] = dense(twin.dec_1)
  params["dec_fc2"] = dense(twin.dec_2)
  if twin.mirror:  # output features in (C, H, W) order -> (H, W, C)
    w, b = twin.dec_2.weight, twin.dec_2.bias
    params["dec_fc2"] = {"kernel": to_np(w.reshape(dc, dh, dw, -1).permute(1, 2, 0, 3).reshape(dc * dh * dw, -1).T),
                         "bias": to_np(b.reshape(dc, dh, dw).permute(1, 2, 0).reshape(-1))}
  for i, mod in enumerate(twin.ups, 1):
    params[f"dec_block{i}"], stats[f"dec_block{i}"] = block(mod, up=True)
  params["dec_out"] = {"kernel": to_np(twin.out.weight.permute(2, 3, 4, 1, 0)), "bias": to_np(twin.out.bias)}
  return {"params": params, "batch_stats": stats}


def randomize_bn(twin, seed):
  g = torch.Generator().manual_seed(seed)
  for m in twin.modules():
    if isinstance(m, torch.nn.BatchNorm3d):
      n = m.num_features
      m.weight.data = 0.5 + torch.rand(n, generator=g)
      m.bias.data = 0.2 * torch.randn(n, generator=g)
      m.running_mean.data = 0.2 * torch.randn(n, generator=g)
      m.running_var.data = 0.5 + torch.rand(n, generator=g)


def ntchw_to_nthwc(t):
  return to_np(t.permute(0, 2, 3, 4, 1))


# ---------------------------------------------------------------------------------------------- tests


def init(model, x):
  # A jitted init with an "rbg" key: threefry's per-parameter random bits take ~20 s to compile on this CPU.
  return jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0, impl="rbg"), x)


@pytest.fixture(scope="module")
def small():
  model = get_model("mocca_video")(layers=("block2", "block4", "fc1", "code"), **SMALL)
  x = jax.random.uniform(jax.random.key(0), (2, 16, 32, 64, 3))
  return model, x, init(model, x)


def test_small_shapes_and_encoder_params(small):
  model, x, v = small
  x_hat, feats = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x)
  assert x_hat.shape == x.shape and bool(jnp.all(jnp.isfinite(x_hat)))
  assert {k: f.shape for k, f in feats.items()} == {
      "block1": (2, 16, 16, 32, 4), "block2": (2, 16, 8, 16, 4), "block3": (2, 8, 4, 8, 8),
      "block4": (2, 8, 2, 4, 8), "block5": (2, 4, 1, 2, 8), "fc1": (2, 4, 32), "code": (2, 4, 16),
      "lstm_block2": (2, 16, 8), "lstm_block4": (2, 16, 8), "lstm_fc1": (2, 16, 8), "lstm_code": (2, 16, 8)}
  # Per-step LSTM outputs are repeated over the frames each step covers.
  np.testing.assert_array_equal(feats["lstm_code"][:, 0::4], feats["lstm_code"][:, 3::4])
  np.testing.assert_array_equal(feats["lstm_block4"][:, 0::2], feats["lstm_block4"][:, 1::2])
  assert not np.allclose(feats["lstm_code"][:, 0], feats["lstm_code"][:, 4])
  # params['encoder'] is exactly a VideoEncoder's, and gives the same code.
  enc = video_ae.VideoEncoder(16, SMALL["widths"], SMALL["fc_dim"])
  ve = {"params": v["params"]["encoder"], "batch_stats": v["batch_stats"]["encoder"]}
  assert jax.tree.structure(ve) == jax.tree.structure(
      jax.eval_shape(lambda x: enc.init(jax.random.key(0), x, train=False), x))
  code, enc_feats = jax.jit(lambda v, x: enc.apply(v, x, train=False))(ve, x)
  np.testing.assert_allclose(code, feats["code"], rtol=1e-6, atol=1e-7)
  assert set(enc_feats) == set(video_ae.LAYERS)


def test_pytorch_default_inits(small):
  _, _, v = small
  p = v["params"]

  def near_bound(a, bound):  # U(-bound, bound): all inside, and the extremes close to it
    a = np.abs(np.asarray(a))
    return a.max() <= bound and a.max() > 0.8 * bound

  # Masked conv: PyTorch's bound counts all 3 time taps, 1/sqrt(27 * C_in), though only 2 are stored.
  assert near_bound(p["encoder"]["block2"]["conv1a"]["kernel"], 1 / np.sqrt(27 * 4))
  # Dense: fan_in of fc1 is the flattened block5 map, 1 x 2 x 8.
  assert near_bound(p["encoder"]["fc1"]["kernel"], 1 / np.sqrt(16)) and near_bound(p["encoder"]["fc1"]["bias"],
                                                                                     1 / np.sqrt(16))
  # Transposed conv: PyTorch's fan_in is over the *output* channels (dec_block3 maps 8 -> 4 channels).
  assert near_bound(p["dec_block3"]["conv1a"]["kernel"], 1 / np.sqrt(125 * 4))
  assert near_bound(p["lstm_code"]["kernel_hh"], 1 / np.sqrt(8)) and near_bound(p["lstm_code"]["bias_ih"],
                                                                                  1 / np.sqrt(8))
  assert set(v["batch_stats"]["encoder"]["block1"]["bn1a"]) == {"mean", "var"}


def test_runlocal_shapes_8_frames():
  model = video_ae.mocca_video(layers=("block1", "block5"), **SMALL)
  x = jax.ShapeDtypeStruct((2, 8, 32, 64, 1), jnp.float32)
  v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  x_hat, feats = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  assert x_hat.shape == x.shape and feats["code"].shape == (2, 2, 16) and feats["block3"].shape == (2, 4, 4, 8, 8)
  assert feats["lstm_block1"].shape == feats["lstm_block5"].shape == (2, 8, 8)


@pytest.mark.parametrize("rep_dim", [1024, 2048])
def test_paper_size_shapes_and_counts_equal_the_twin(rep_dim):
  model = video_ae.mocca_video(rep_dim, layers=video_ae.LAYERS)
  x = jax.ShapeDtypeStruct((1, 16, 256, 512, 3), jnp.float32)
  v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  x_hat, feats = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  assert x_hat.shape == (1, 16, 256, 512, 3)
  assert {k: feats[k].shape for k in video_ae.LAYERS} == {
      "block1": (1, 16, 128, 256, 8), "block2": (1, 16, 64, 128, 16), "block3": (1, 8, 32, 64, 32),
      "block4": (1, 8, 16, 32, 64), "block5": (1, 4, 8, 16, 64), "fc1": (1, 4, 512), "code": (1, 4, rep_dim)}
  assert all(feats[f"lstm_{k}"].shape == (1, 16, 100) for k in video_ae.LAYERS)

  twin = TwinAE((3, 16, 256, 512), rep_dim, 100, video_ae.WIDTHS, 512, video_ae.LAYERS)
  p = v["params"]
  enc = count_params(p["encoder"])
  lstms = {k: count_params(p[f"lstm_{k}"]) for k in video_ae.LAYERS}
  assert enc + sum(lstms.values()) + sum(count_params(p[k]) for k in p if k.startswith("dec_")) == \
      effective_count(twin)
  assert enc == effective_count(torch.nn.ModuleList([twin.blocks, twin.tdl_1, twin.tdl_2]))
  assert lstms == {k: sum(q.numel() for q in m.parameters()) for k, m in twin.lstms.items()}
  # The numbers quoted in the module docstring.
  assert enc == {1024: 5_022_232, 2048: 5_547_544}[rep_dim]
  assert count_params(p) - enc - sum(lstms.values()) == {1024: 6_588_699, 2048: 7_112_987}[rep_dim]
  assert lstms["code"] == {1024: 450_400, 2048: 860_000}[rep_dim]


@pytest.mark.parametrize("ae_variant", ["mocca", "mirror"])
def test_parity_with_torch_twin(ae_variant):
  torch.manual_seed(0)
  twin = TwinAE((3, 16, 32, 64), SMALL["rep_dim"], SMALL["lstm_dim"], SMALL["widths"], SMALL["fc_dim"],
                video_ae.LAYERS, mirror=ae_variant == "mirror").eval()
  randomize_bn(twin, 1)
  x = np.random.default_rng(2).uniform(size=(2, 16, 32, 64, 3)).astype(np.float32)
  with torch.no_grad():
    ref_hat, ref = twin(torch.from_numpy(x).permute(0, 4, 1, 2, 3))
  model = video_ae.mocca_video(ae_variant=ae_variant, layers=video_ae.LAYERS, **SMALL)
  v = convert(twin)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  assert jax.tree.map(np.shape, v) == jax.tree.map(np.shape, shapes)
  x_hat, feats = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x)
  for k in video_ae.LAYERS:
    want = ntchw_to_nthwc(ref[k]) if ref[k].ndim == 5 else to_np(ref[k])
    np.testing.assert_allclose(feats[k], want, rtol=1e-4, atol=1e-4, err_msg=k)
  for k in video_ae.LAYERS:
    want = to_np(ref[f"lstm_{k}"])  # [B, T', D]
    got = feats[f"lstm_{k}"]
    np.testing.assert_allclose(got[:, ::16 // want.shape[1]], want, rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(got[:, -1], want[:, -1], rtol=1e-4, atol=1e-5)  # the code's clip feature
  np.testing.assert_allclose(x_hat, ntchw_to_nthwc(ref_hat), rtol=1e-4, atol=1e-4)
  if ae_variant == "mirror":
    assert bool(jnp.all((x_hat > 0) & (x_hat < 1)))


def test_causal_in_time_and_end_to_end_gradients(small):
  model, x, v = small
  x2 = x.at[:, 9:].set(jax.random.uniform(jax.random.key(2), (2, 7, 32, 64, 3)))
  _, f = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, jnp.concatenate([x, x2]))
  f1, f2 = jax.tree.map(lambda a: a[:2], f), jax.tree.map(lambda a: a[2:], f)
  # Frames 0..8 are shared: block2 (all frames) up to t=8, block4 (steps cover frames 2s-1, 2s) up to step 4.
  np.testing.assert_allclose(f1["block2"][:, :9], f2["block2"][:, :9], atol=1e-6)
  np.testing.assert_allclose(f1["lstm_block4"][:, :9], f2["lstm_block4"][:, :9], atol=1e-6)
  assert not np.allclose(f1["block2"][:, 9], f2["block2"][:, 9], atol=1e-3)

  def loss(params):  # reconstruction + a hypersphere term on every LSTM, as in the end-to-end step
    (x_hat, feats), _ = model.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.mean((x_hat - x)**2) + sum(jnp.mean(feats[f"lstm_{k}"]**2) for k in model.layers)

  grads = jax.jit(jax.grad(loss))(v["params"])
  norms = {k: float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(t)))) for k, t in grads.items()}
  assert all(np.isfinite(n) and n > 0 for n in norms.values()), norms


def test_bad_names_raise():
  with pytest.raises(ValueError, match="layers"):
    video_ae.mocca_video(layers=("conv1",))
  with pytest.raises(ValueError, match="layers"):
    video_ae.VideoAE(layers=("code", "code"))
  with pytest.raises(ValueError, match="ae_variant"):
    video_ae.mocca_video(ae_variant="dsvdd")
  model = video_ae.mocca_video(**SMALL)
  with pytest.raises(ValueError, match="multiple"):
    model.init(jax.random.key(0), jnp.zeros((1, 10, 32, 64, 3)), train=False)
  with pytest.raises(ValueError, match=r"\[B, T, H, W, C\]"):
    model.init(jax.random.key(0), jnp.zeros((1, 16, 32, 64)), train=False)
