"""Tests for jaxad.models.vgg (VGG-F / VGG-M), jaxad.models.face_cnn (Male-5045) and the MatConvNet converter.

The parity tests write .mat files in MatConvNet's SimpleNN layout with scipy.io.savemat (cells of structs, random
weights): VGG-F in the older layout (top-level `normalization` with a full 224x224x3 mean image, `filters`/`biases`,
'normalize' layers, scalar strides and pads) and VGG-M in the beta17+ layout (`meta.normalization` with a per-channel
mean, `weights` cells {W, b}, 'lrn' layers, dropout layers kept). They convert them with the command line, load the
result with `vgg.load_converted`, and compare every feature with a float64 NumPy implementation written here from
the layer descriptions (MatConvNet's vl_nnconv / vl_nnpool / vl_nnnormalize conventions), not from vgg.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from jaxad.errors import ConfigError, DataError
from jaxad.models import count_params, vgg
from jaxad.models.face_cnn import Male5045

REPO = pathlib.Path(__file__).resolve().parents[1]
TOL = 1e-4  # relative to each feature's largest magnitude (float32 through 8 layers vs float64)

# The nets as MatConvNet's files list them (Chatfield et al. 2014; shared/spec/reference_implementations.md
# section 7; MatConvNet's cnn_imagenet_init): ('conv', name, k, in, out, stride, [t b l r]), ('relu', name),
# ('lrn', name, which), ('pool', name, [t b l r]) (3x3 stride 2 max pools), ('softmax', name).
P0, P1, PAD_BR = (0, 0, 0, 0), (1, 1, 1, 1), (0, 1, 0, 1)
NETS = {
    "vgg_f": [("conv", "conv1", 11, 3, 64, 4, P0), ("relu", "relu1"), ("lrn", "norm1", 0), ("pool", "pool1", PAD_BR),
              ("conv", "conv2", 5, 64, 256, 1, (2, 2, 2, 2)), ("relu", "relu2"), ("lrn", "norm2", 1),
              ("pool", "pool2", P0), ("conv", "conv3", 3, 256, 256, 1, P1), ("relu", "relu3"),
              ("conv", "conv4", 3, 256, 256, 1, P1), ("relu", "relu4"), ("conv", "conv5", 3, 256, 256, 1, P1),
              ("relu", "relu5"), ("pool", "pool5", P0), ("conv", "fc6", 6, 256, 4096, 1, P0), ("relu", "relu6"),
              ("conv", "fc7", 1, 4096, 4096, 1, P0), ("relu", "relu7"), ("conv", "fc8", 1, 4096, 1000, 1, P0),
              ("softmax", "prob")],
    "vgg_m": [("conv", "conv1", 7, 3, 96, 2, P0), ("relu", "relu1"), ("lrn", "norm1", 0), ("pool", "pool1", P0),
              ("conv", "conv2", 5, 96, 256, 2, P1), ("relu", "relu2"), ("lrn", "norm2", 1), ("pool", "pool2", PAD_BR),
              ("conv", "conv3", 3, 256, 512, 1, P1), ("relu", "relu3"), ("conv", "conv4", 3, 512, 512, 1, P1),
              ("relu", "relu4"), ("conv", "conv5", 3, 512, 512, 1, P1), ("relu", "relu5"), ("pool", "pool5", P0),
              ("conv", "fc6", 6, 512, 4096, 1, P0), ("relu", "relu6"), ("conv", "fc7", 1, 4096, 4096, 1, P0),
              ("relu", "relu7"), ("conv", "fc8", 1, 4096, 1000, 1, P0), ("softmax", "prob")],
}
# Two different [N kappa alpha beta] per file, so that norm1 and norm2 are read separately.
LRN_PARAMS = ([5.0, 2.0, 1e-4, 0.75], [5.0, 1.5, 2e-4, 0.7])


def _load_converter():
  name = "convert_matconvnet"
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, REPO / "third_party_weights" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


conv = _load_converter()


# --- Independent NumPy implementation ------------------------------------------------------------------------------


def np_conv(x, w, b, stride, pad):
  """vl_nnconv: x [B, H, W, C], w [kh, kw, C, O], zero pad [top bottom left right], one stride for both axes."""
  x = np.pad(x, ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
  kh, kw = w.shape[:2]
  ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, w.shape[3])) + b
  for i in range(kh):
    for j in range(kw):
      patch = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
      out += np.tensordot(patch, w[i, j], axes=([3], [0]))
  return out


def np_maxpool(x, size, stride, pad):
  """vl_nnpool 'max': padded cells never win (-inf)."""
  x = np.pad(x, ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)), constant_values=-np.inf)
  ho, wo = (x.shape[1] - size) // stride + 1, (x.shape[2] - size) // stride + 1
  out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
  for i in range(size):
    for j in range(size):
      out = np.maximum(out, x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :])
  return out


def np_lrn(x, n, kappa, alpha, beta):
  """vl_nnnormalize: window [k - floor((N-1)/2), k + ceil((N-1)/2)] clipped to the channels, alpha as is."""
  n = int(n)
  out = np.empty_like(x)
  channels = x.shape[-1]
  for k in range(channels):
    lo, hi = max(0, k - (n - 1) // 2), min(channels - 1, k + math.ceil((n - 1) / 2))
    total = np.sum(np.square(x[..., lo:hi + 1]), axis=-1)
    out[..., k] = x[..., k] / (kappa + alpha * total)**beta
  return out


def np_forward(arch, params, x, lrn):
  """float64 forward pass of NETS[arch]; returns the features jaxad names (pre-ReLU conv/fc outputs, pools)."""
  feats, y, pools = {}, x.astype(np.float64), iter(("P1", "P2", "P5"))
  for layer in NETS[arch]:
    kind = layer[0]
    if kind == "conv":
      name, stride, pad = layer[1], layer[5], layer[6]
      w, b = (np.asarray(params[name][k], np.float64) for k in ("kernel", "bias"))
      if name == "fc6":  # a 6x6 valid conv over the 6x6 pool5 map = one contraction over H, W, C
        y = (np.einsum("bhwc,hwco->bo", y, w) + b)[:, None, None, :]
      else:
        y = np_conv(y, w, b, stride, pad)
      feats[name.upper() if name.startswith("fc") else name] = y[:, 0, 0, :] if name.startswith("fc") else y
    elif kind == "relu":
      y = np.maximum(y, 0.0)
      if layer[1] in ("relu6", "relu7"):
        feats[f"FC{layer[1][-1]}_relu"] = y[:, 0, 0, :]
    elif kind == "lrn" and lrn is not None:
      y = np_lrn(y, *lrn[layer[2]])
    elif kind == "pool":
      y = np_maxpool(y, 3, 2, layer[2])
      feats[next(pools)] = y
  return feats


# --- Writing MatConvNet files --------------------------------------------------------------------------------------


def _row(*values):
  return np.asarray(values, dtype=np.float64).reshape(1, -1)


def random_params(arch, seed):
  """Random weights (He-scaled, so activations keep the 0-255 input's scale), {name: {'kernel', 'bias'}} float32."""
  rng = np.random.default_rng(seed)
  params = {}
  for layer in NETS[arch]:
    if layer[0] == "conv":
      _, name, k, cin, cout = layer[:5]
      w = rng.standard_normal((k, k, cin, cout), dtype=np.float32) * np.float32(math.sqrt(2.0 / (k * k * cin)))
      params[name] = {"kernel": w, "bias": (rng.standard_normal(cout) * 0.1).astype(np.float32)}
  return params


def mat_layers(arch, params, *, old, lrn=True, dropout=False):
  """A 1xL cell of layer structs as MatConvNet writes them: `old` uses filters/biases, 'normalize', scalar fields."""
  cells = []
  for layer in NETS[arch]:
    kind, name = layer[:2]
    if kind == "conv":
      _, _, k, _, cout, stride, pad = layer
      w, b = params[name]["kernel"], params[name]["bias"]
      entry = {"name": name, "type": "conv"}
      if old:
        entry.update(filters=w, biases=b.reshape(1, -1), stride=float(stride),
                     pad=float(pad[0]) if len(set(pad)) == 1 else _row(*pad))
      else:
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = w, b.reshape(-1, 1)
        entry.update(weights=cell, stride=_row(stride, stride), pad=_row(*pad), dilate=1.0, opts=np.empty((1, 0)))
      cells.append(entry)
    elif kind == "relu":
      cells.append({"name": name, "type": "relu", "leak": 0.0} if not old else {"name": name, "type": "relu"})
      if dropout and name in ("relu6", "relu7"):
        cells.append({"name": f"dropout{name[-1]}", "type": "dropout", "rate": 0.5})
    elif kind == "lrn":
      if lrn:
        cells.append({"name": name, "type": "normalize" if old else "lrn", "param": _row(*LRN_PARAMS[layer[2]])})
    elif kind == "pool":
      cells.append({"name": name, "type": "pool", "method": "max", "pool": _row(3, 3) if not old else 3.0,
                    "stride": _row(2, 2) if not old else 2.0, "pad": _row(*layer[2])})
    else:
      cells.append({"name": name, "type": "softmax"})
  out = np.empty((1, len(cells)), dtype=object)
  for i, entry in enumerate(cells):
    out[0, i] = entry
  return out


def write_mat(path, arch, params, average_image, *, old, lrn=True, dropout=False):
  normalization = {"imageSize": _row(224, 224, 3), "averageImage": average_image, "keepAspect": True,
                   "interpolation": "bilinear", "border": _row(0, 0)}
  classes = {"name": np.array([f"n{i:08d}" for i in range(3)], dtype=object).reshape(1, -1)}
  layers = mat_layers(arch, params, old=old, lrn=lrn, dropout=dropout)
  if old:
    content = {"layers": layers, "normalization": normalization, "classes": classes}
  else:
    content = {"layers": layers, "meta": {"normalization": normalization, "classes": classes,
                                          "inputSize": _row(224, 224, 3)}}
  scipy.io.savemat(str(path), content, oned_as="row")


def run_cli(args):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = conv.main([str(a) for a in args])
  return code, out.getvalue(), err.getvalue()


# --- Parameter counts ----------------------------------------------------------------------------------------------


def _abstract_params(model, shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)


def _conv_count(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def test_param_counts_match_the_published_architectures():
  # VGG-F: conv1 11x11x3x64, conv2 5x5x64x256, conv3-5 3x3x256x256, fc6 6x6x256x4096, fc7 4096^2, fc8 4096x1000.
  vgg_f = (_conv_count(11, 3, 64) + _conv_count(5, 64, 256) + 3 * _conv_count(3, 256, 256) + _conv_count(6, 256, 4096)
           + _conv_count(1, 4096, 4096) + _conv_count(1, 4096, 1000))
  # VGG-M: conv1 7x7x3x96, conv2 5x5x96x256, conv3 3x3x256x512, conv4-5 3x3x512x512, fc6 6x6x512x4096, fc7, fc8.
  vgg_m = (_conv_count(7, 3, 96) + _conv_count(5, 96, 256) + _conv_count(3, 256, 512) + 2 * _conv_count(3, 512, 512)
           + _conv_count(6, 512, 4096) + _conv_count(1, 4096, 4096) + _conv_count(1, 4096, 1000))
  assert (vgg_f, vgg_m) == (60_834_536, 102_908_520)  # ~61M and ~103M (Chatfield et al. 2014)
  for arch, expected in (("vgg_f", vgg_f), ("vgg_m", vgg_m)):
    for lrn in ((vgg.DEFAULT_LRN,) * 2, None):  # LRN has no parameters
      variables = _abstract_params(vgg.VGG(arch=arch, lrn=lrn), (1, 224, 224, 3))
      assert set(variables) == {"params"}
      assert count_params(variables["params"]) == expected
      assert sorted(variables["params"]) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert variables["params"]["fc6"]["kernel"].shape == (6, 6, NETS[arch][-6][3], 4096)  # MatConvNet's HWIO

  # Male-5045 (Andrews Table 2): bias-free 3x3 convs 1-32-64-64-128-96-256-160-320, BN scale+bias on each,
  # FC9 over P8 = 7x7x320 (100 -> 50 -> 25 -> 13 -> 7) with 5045 outputs and a bias.
  widths = [1, 32, 64, 64, 128, 96, 256, 160, 320]
  convs = sum(_conv_count(3, a, b, bias=False) for a, b in zip(widths, widths[1:]))
  bn = 2 * sum(widths[1:])
  fc9 = 7 * 7 * 320 * 5045 + 5045
  assert (convs, bn, fc9) == (1_290_528, 2_240, 79_110_645)
  variables = _abstract_params(Male5045(), (1, 100, 100, 1))
  assert count_params(variables["params"]) == convs + bn + fc9 == 80_403_413
  assert count_params(variables["batch_stats"]) == bn


# --- Modules -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 4, 1])
def test_lrn_matches_numpy_vl_nnnormalize(n):
  x = np.random.default_rng(n).normal(0, 30, (2, 3, 3, 7)).astype(np.float32)
  kappa, alpha, beta = 2.0, 3e-4, 0.75
  got = jax.jit(lambda x: vgg.LRN(n, kappa, alpha, beta).apply({}, x))(x)
  want = np_lrn(x.astype(np.float64), n, kappa, alpha, beta)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
  assert np.abs(want - x).max() > 1.0  # the normalisation is not a no-op at this scale


def test_bad_arguments_name_the_fix():
  x = jnp.zeros((1, 224, 224, 3))
  with pytest.raises(ConfigError, match="arch='vgg_x'"):
    vgg.VGG(arch="vgg_x").init(jax.random.key(0), x, train=False)
  with pytest.raises(ConfigError, match="lrn="):
    vgg.VGG(lrn=((5, 1, 1e-4, 0.75),)).init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match="P5"):
    jax.eval_shape(lambda: vgg.VGG(lrn=None).init(jax.random.key(0), jnp.zeros((1, 160, 160, 3)), train=False))
  with pytest.raises(ValueError, match="RGB"):
    jax.eval_shape(lambda: vgg.VGG().init(jax.random.key(0), jnp.zeros((1, 224, 224, 1)), train=False))


def test_preprocess_replicates_grey_resizes_and_subtracts_the_mean():
  mean = np.random.default_rng(0).uniform(90, 140, (224, 224, 3)).astype(np.float32)
  grey = np.full((2, 28, 28, 1), 200, np.uint8)  # a constant image stays constant through any resize
  out = np.asarray(vgg.preprocess(grey, mean))
  assert out.shape == (2, 224, 224, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, np.broadcast_to(200.0 - mean, out.shape), atol=1e-4)
  rgb = np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(vgg.preprocess(rgb, [1.0, 2.0, 3.0])), rgb - np.array([1.0, 2.0, 3.0]),
                             atol=1e-4)
  with pytest.raises(ValueError, match="average_image"):
    vgg.preprocess(rgb, np.zeros((100, 100, 3)))


def test_face_cnn_shapes_and_batch_norm_updates():
  model = Male5045(num_classes=7)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 100, 100, 1)), jnp.float32)

  @jax.jit
  def run(x):
    variables = model.init(jax.random.key(0), x, train=False)
    (logits, feats), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return variables, logits, feats, updates

  variables, logits, feats, updates = run(x)
  shapes = {k: v.shape for k, v in feats.items()}
  assert shapes["P2"] == (2, 50, 50, 64) and shapes["P4"] == (2, 25, 25, 128) and shapes["P6"] == (2, 13, 13, 256)
  assert shapes["P8"] == (2, 7, 7, 320) and shapes["C8"] == (2, 13, 13, 320) and logits.shape == (2, 7)
  np.testing.assert_array_equal(feats["FC9"], logits)
  # P8 is a 7x7 stride-1 max pool of C8 (Table 2's P8(7, 1, 0)); P6 pads by one -inf cell on each side.
  c8 = np.asarray(feats["C8"])
  np.testing.assert_allclose(np.asarray(feats["P8"]), np_maxpool(c8, 7, 1, P0), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(feats["P6"]), np_maxpool(np.asarray(feats["C6"]), 2, 2, P1), rtol=1e-6)
  # FC9 = Dense over P8 flattened in H, W, C order.
  fc9 = variables["params"]["fc9"]
  want = np.asarray(feats["P8"]).reshape(2, -1) @ np.asarray(fc9["kernel"]) + np.asarray(fc9["bias"])
  np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)
  # Train mode normalises with batch statistics and moves the running averages.
  c1 = np.asarray(feats["C1"])
  assert c1.min() == 0.0 and np.all(np.isfinite(c1))
  assert not np.allclose(updates["batch_stats"]["bn1"]["mean"], variables["batch_stats"]["bn1"]["mean"])
  with pytest.raises(ValueError, match="grey"):
    model.init(jax.random.key(0), jnp.zeros((1, 100, 100, 3)), train=False)


# --- Converter parity ----------------------------------------------------------------------------------------------

CASES = {
    # arch, old layout?, mean kind, seed
    "vgg_f-old-layout": ("vgg_f", True, "image", 1),
    "vgg_m-new-layout": ("vgg_m", False, "channels", 2),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request, tmp_path_factory):
  """Writes a .mat, converts it with the CLI, loads it and runs jaxad on two images; yields everything compared."""
  arch, old, mean_kind, seed = CASES[request.param]
  tmp = tmp_path_factory.mktemp(request.param)
  params = random_params(arch, seed)
  rng = np.random.default_rng(seed + 10)
  if mean_kind == "image":
    mean = rng.uniform(90, 140, (224, 224, 3)).astype(np.float32)
  else:
    mean = np.array([122.80, 114.89, 101.57], np.float32).reshape(1, 1, 3)
  mat = tmp / f"imagenet-{arch.replace('_', '-')}.mat"
  write_mat(mat, arch, params, mean, old=old, dropout=not old)
  code, printed, err = run_cli(["--input", mat, "--output", tmp / "out"])
  assert code == 0, err
  model, variables, preprocess_fn = vgg.load_converted(tmp / "out")
  images = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
  logits, feats = jax.jit(lambda v, im: model.apply(v, preprocess_fn(im), train=False))(variables, images)
  x = images.astype(np.float64) - mean.astype(np.float64)
  want = np_forward(arch, params, x, LRN_PARAMS)
  yield dict(arch=arch, old=old, params=params, mean=mean, mat=mat, out=tmp / "out", printed=printed, model=model,
             variables=variables, logits=np.asarray(logits), feats={k: np.asarray(v) for k, v in feats.items()},
             want=want, x=x)


def test_converter_parity_with_numpy(converted):
  feats, want = converted["feats"], converted["want"]
  for name in ("conv1", "P1", "conv2", "P2", "conv3", "conv4", "conv5", "P5", "FC6", "FC6_relu", "FC7", "FC7_relu",
               "FC8"):
    got, ref = feats[name], want[name]
    assert got.shape == ref.shape, name
    scale = np.abs(ref).max()
    assert scale > 1e-3, name  # random weights keep every layer alive
    np.testing.assert_allclose(got, ref, rtol=TOL, atol=TOL * scale, err_msg=name)
  np.testing.assert_array_equal(converted["logits"], feats["FC8"])
  assert feats["P5"].shape[1:3] == (6, 6) and feats["P5"][0].size == {"vgg_f": 9216, "vgg_m": 18432}[converted["arch"]]


def test_converter_reads_settings_from_the_file(converted):
  model, variables, arch = converted["model"], converted["variables"], converted["arch"]
  assert model.arch == arch and model.num_classes == 1000
  np.testing.assert_allclose(np.asarray(model.lrn), np.asarray(LRN_PARAMS), rtol=1e-6)
  assert set(variables) == {"params"}
  for name, leaves in converted["params"].items():  # no transpose: the file's HWIO arrays as they are
    np.testing.assert_array_equal(variables["params"][name]["kernel"], leaves["kernel"])
    np.testing.assert_array_equal(variables["params"][name]["bias"], leaves["bias"])
  printed = converted["printed"]
  assert "sha256(" in printed and f"({arch}, 1000 classes" in printed
  assert f"but MatConvNet publishes {conv.PUBLISHED_MD5[converted['mat'].name]}" in printed  # random weights
  layout = "normalization, filters/biases" if converted["old"] else "meta.normalization, weights; skipped dropout6"
  assert layout in printed, printed
  mean = converted["mean"]
  assert ("mean image [224, 224, 3]" if mean.size > 3 else "per-channel mean [122.8 114.89 101.57]") in printed


def test_no_lrn_variant_matches_numpy(converted):
  """The imagenet-matconvnet-* nets have no LRN: same layers otherwise, recognised from the file's layer list."""
  arch, params = converted["arch"], converted["params"]
  layers = mat_layers(arch, params, old=converted["old"], lrn=False)
  net = conv.MatNet(layers=[_file_layer(i, c) for i, c in enumerate(layers.ravel(), start=1)],
                    average_image=converted["mean"], image_size=(224, 224, 3),
                    normalization_layout="meta.normalization", weights_layout="weights")
  result = conv.convert(net)
  assert result.arch == arch and result.lrn is None and "lrn" not in result.variables["meta"]
  if arch != "vgg_f":
    return  # one forward pass without LRN is enough (each costs a compilation)
  model = vgg.VGG(arch=arch, lrn=None)
  variables = {"params": result.variables["params"]}
  _, feats = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, converted["x"].astype(np.float32))
  want = np_forward(arch, params, converted["x"], None)
  for name in ("P2", "P5", "FC7", "FC8"):
    scale = np.abs(want[name]).max()
    np.testing.assert_allclose(np.asarray(feats[name]), want[name], rtol=TOL, atol=TOL * scale, err_msg=name)
  assert not np.allclose(np.asarray(feats["P2"]), converted["feats"]["P2"])  # LRN did change the net


def _file_layer(index, entry):
  """An in-memory `FileLayer` from one of `mat_layers`' dicts (what read_matconvnet returns for it)."""

  def numbers(key):
    return None if key not in entry else tuple(float(v) for v in np.ravel(entry[key]))

  kind = {"normalize": "lrn"}.get(entry["type"], entry["type"])
  w = None
  if "weights" in entry:
    w = (entry["weights"][0, 0], entry["weights"][0, 1])
  elif "filters" in entry:
    w = (entry["filters"], entry["biases"])
  return conv.FileLayer(index=index, name=entry["name"], type=kind, weights=w, stride=numbers("stride"),
                        pad=numbers("pad"), pool=numbers("pool"), method=entry.get("method"), param=numbers("param"))


# --- Refusals ------------------------------------------------------------------------------------------------------


def _zero_params(arch):
  """Weights of the right shapes that cost no memory (broadcast views of one zero)."""
  return {layer[1]: {"kernel": np.broadcast_to(np.float32(0), (layer[2], layer[2], layer[3], layer[4])),
                     "bias": np.zeros(layer[4], np.float32)} for layer in NETS[arch] if layer[0] == "conv"}


def _net(arch, mutate=None):
  cells = list(mat_layers(arch, _zero_params(arch), old=False).ravel())
  if mutate:
    cells = mutate(cells)
  return conv.MatNet(layers=[_file_layer(i, c) for i, c in enumerate(cells, start=1)],
                     average_image=np.zeros((1, 1, 3), np.float32), image_size=(224, 224, 3),
                     normalization_layout="meta.normalization", weights_layout="weights")


def _by_name(cells, name):
  return next(c for c in cells if c["name"] == name)


def test_check_accepts_both_nets_and_infers_the_arch():
  for arch in NETS:
    net = _net(arch)
    assert conv.infer_arch(net) == arch
    found = conv.check(net, arch)
    assert found.problems == [] and found.lrn == tuple(tuple(p) for p in LRN_PARAMS) and found.num_classes == 1000
  assert conv.check(_net("vgg_f"), "vgg_m").problems  # the other net's layer list does not fit


def test_mismatching_layers_are_refused_with_their_names():

  def wrong_shape(cells):
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = np.zeros((3, 3, 256, 128), np.float32), np.zeros((128, 1), np.float32)
    _by_name(cells, "conv3")["weights"] = cell
    return cells

  def missing_layer(cells):
    return [c for c in cells if c["name"] != "conv4"]

  def other_stride(cells):
    _by_name(cells, "conv2")["stride"] = _row(2, 2)
    _by_name(cells, "pool1")["pad"] = _row(0, 0, 0, 0)
    return cells

  def extra_layer(cells):
    i = cells.index(_by_name(cells, "conv1")) + 1
    return cells[:i] + [{"name": "bn1", "type": "bnorm"}] + cells[i:]

  cases = [(wrong_shape, ["conv3", "(3, 3, 256, 128)", "(3, 3, 256, 256)", "biases have 128 values"]),
           (missing_layer, ["missing layer conv4 (conv)"]),
           (other_stride, ["conv2 (layer 5): stride [2 2], expected [1 1]", "pool1 (layer 4): pad [0 0 0 0]"]),
           (extra_layer, ["unexpected layer 'bn1' (bnorm) at layer 2"])]
  for mutate, needles in cases:
    with pytest.raises(conv.ConversionError) as e:
      conv.convert(_net("vgg_f", mutate))
    message = str(e.value)
    assert "nothing was written" in message
    for needle in needles:
      assert needle in message, (mutate.__name__, message)

  with pytest.raises(conv.ConversionError, match="Cannot tell VGG-F from VGG-M.*--arch"):
    conv.convert(_net("vgg_f", lambda cells: [c for c in cells if c["name"] != "conv1"]))


def test_cli_refuses_a_mismatching_file_and_writes_nothing(tmp_path):
  params = _zero_params("vgg_f")
  params["conv3"] = {"kernel": np.zeros((3, 3, 256, 128), np.float32), "bias": np.zeros(128, np.float32)}
  cells = mat_layers("vgg_f", params, old=True)
  cells = np.array([[c for c in cells.ravel() if c["name"] != "conv4"]], dtype=object)
  for c in cells.ravel():
    if c["name"] == "conv2":
      c["stride"] = 2.0
  mat = tmp_path / "broken.mat"
  scipy.io.savemat(str(mat), {"layers": cells, "normalization": {"averageImage": _row(120, 110, 100),
                                                                 "imageSize": _row(224, 224, 3)}})
  code, _, err = run_cli(["--input", mat, "--output", tmp_path / "out"])
  assert code == 1 and err.startswith("error: ")
  for needle in ("conv3", "missing layer conv4", "conv2", "stride [2], expected [1 1]"):
    assert needle in err, err
  assert not (tmp_path / "out").exists()


def test_cli_refuses_bad_output_paths_with_one_line(tmp_path):
  mat = tmp_path / "imagenet-vgg-f.mat"
  mat.write_bytes(b"not read: the output is checked first")
  existing = tmp_path / "existing"
  existing.mkdir()
  for output in (mat, existing):
    code, out, err = run_cli(["--input", mat, "--output", output])
    assert code == 2 and out == ""
    assert err.startswith("error: --output") and err.count("\n") == 1, err
  assert "--force" in run_cli(["--input", mat, "--output", existing])[2]
  assert mat.read_bytes() == b"not read: the output is checked first" and list(existing.iterdir()) == []
  code, _, err = run_cli(["--input", tmp_path / "absent.mat", "--output", tmp_path / "new"])
  assert code == 1 and "not found" in err and conv.URLS["vgg_f"] in err
  code, _, err = run_cli(["--input", mat, "--output", tmp_path / "new"])
  assert code == 1 and "not a readable MATLAB .mat file" in err and not (tmp_path / "new").exists()


def test_load_converted_explains_a_wrong_directory(tmp_path):
  with pytest.raises(DataError, match="convert_matconvnet.py"):
    vgg.load_converted(tmp_path / "absent")
