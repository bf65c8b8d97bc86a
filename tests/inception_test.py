"""Tests for jaxad.models.inception, third_party_weights/inception_names.py and the converters' inception entries.

Parity on random weights in the real file formats, in float32, eval mode:
* Keras: keras.applications.InceptionV3 (Keras 3, JAX backend, weights=None) with random BN statistics, saved in the
  legacy Keras-2 HDF5 layout of the official download, read by `jaxad.models.keras_h5`, renamed by layer order and
  merged into the Flax variables: logits, the eleven mixed outputs and the pooled features must match Keras.
* PyTorch: twins of torchvision's inception_v3 (with its AuxLogits branch, which the converter must drop) and of
  timm / Cadene's inception_v4, written here in plain torch.nn from the papers and the state-dict key layout (no
  torchvision or timm code), random weights, `torch.save` -> `weights.read_torch_state_dict` -> renamed -> merged.
* Command line: `convert_keras.py --arch inception_v3` on the legacy HDF5 file (and `read_keras` on the Keras 3
  `.weights.h5` / `.keras` saves of the same model), `convert_torch_imagenet.py --arch inception_v3 | inception_v4` on
  the twins' state dicts; the written checkpoint, read with `weights.load` and merged with `merge_params`, must give
  the references' logits, and mismatching files must be refused (exit 1) with the file's names.
Inputs are 107x107 (the nets need >= 75; 107 leaves 2x2 maps after the last reduction) to keep the file fast.
"""

from __future__ import annotations

import os

os.environ['KERAS_BACKEND'] = 'jax'  # before keras is imported anywhere in this process

import copy  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxad.errors import DataError  # noqa: E402
from jaxad.models import inception, keras_h5, weights  # noqa: E402

try:
  import torch
  from torch import nn as tnn
  import torch.nn.functional as F
except ImportError:  # the parity tests fail (not skip) below
  torch = tnn = F = None

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = 107
TOL = 1e-4
V3_TORCH_PARAMS = 23_834_568  # torchvision inception_v3: 27,161,264 with AuxLogits (its documented count)
V3_KERAS_COUNT = 23_851_784  # keras.applications.InceptionV3().count_params(), BN moving statistics included
V4_PARAMS_1000 = 42_679_816  # timm inception_v4: "42.68M"


def _require_torch():
  if torch is None:
    pytest.fail('PyTorch is required for the Inception parity tests: pip install torch==2.13.0')


def _names_module():
  name = 'inception_names'
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, REPO / 'third_party_weights' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


def _converter(name):
  """A third_party_weights converter script as a module (convert_torch_imagenet imports convert_keras beside it)."""
  if str(REPO / 'third_party_weights') not in sys.path:
    sys.path.insert(0, str(REPO / 'third_party_weights'))
  spec = importlib.util.spec_from_file_location(f'_inception_test_{name}', REPO / 'third_party_weights' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def _cli(module, args, capsys):
  """(exit status, stdout, stderr) of a converter's `main`."""
  rc = module.main([str(a) for a in args])
  captured = capsys.readouterr()
  return rc, captured.out, captured.err


def _template(model) -> dict:
  """Zero variables with the structure of `model.init` (merge_params needs only names, shapes and dtypes; an
  op-by-op init of these nets takes ~30 s)."""
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), _shapes(model))


@functools.lru_cache(maxsize=None)
def _shapes(model):  # flax modules are frozen dataclasses, so hashable
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=None)
def _forward(model):  # one compilation per model, shared by the parity and the command-line tests
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


def _apply(model, variables, x):
  logits, feats = _forward(model)(variables, x)
  return np.asarray(logits), {k: np.asarray(v) for k, v in feats.items()}


def _assert_close(actual, expected, what):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, f'{what}: shape {actual.shape} vs {expected.shape}'
  scale = max(1.0, float(np.abs(expected).max()))
  err = float(np.abs(actual - expected).max())
  assert err <= TOL * scale, f'{what}: max |diff| {err:.3g} > {TOL} * {scale:.3g}'


def _images(seed=0, batch=2):
  return np.random.default_rng(seed).uniform(-1, 1, (batch, SIZE, SIZE, 3)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Hand counts from the papers' block tables (Cadene / timm channel numbers for V4).


def _conv_units(*units):
  """(kh, kw, in, out) conv units -> parameters: bias-free conv + BN gamma and beta."""
  return sum(kh * kw * cin * cout + 2 * cout for kh, kw, cin, cout in units)


def _v4_hand_count(num_classes):
  stem = _conv_units((3, 3, 3, 32), (3, 3, 32, 32), (3, 3, 32, 64), (3, 3, 64, 96), (1, 1, 160, 64),
                     (3, 3, 64, 96), (1, 1, 160, 64), (1, 7, 64, 64), (7, 1, 64, 64), (3, 3, 64, 96),
                     (3, 3, 192, 192))
  block_a = _conv_units((1, 1, 384, 96), (1, 1, 384, 64), (3, 3, 64, 96), (1, 1, 384, 64), (3, 3, 64, 96),
                        (3, 3, 96, 96), (1, 1, 384, 96))
  red_a = _conv_units((3, 3, 384, 384), (1, 1, 384, 192), (3, 3, 192, 224), (3, 3, 224, 256))
  block_b = _conv_units((1, 1, 1024, 384), (1, 1, 1024, 192), (1, 7, 192, 224), (7, 1, 224, 256),
                        (1, 1, 1024, 192), (7, 1, 192, 192), (1, 7, 192, 224), (7, 1, 224, 224), (1, 7, 224, 256),
                        (1, 1, 1024, 128))
  red_b = _conv_units((1, 1, 1024, 192), (3, 3, 192, 192), (1, 1, 1024, 256), (1, 7, 256, 256), (7, 1, 256, 320),
                      (3, 3, 320, 320))
  block_c = _conv_units((1, 1, 1536, 256), (1, 1, 1536, 384), (1, 3, 384, 256), (3, 1, 384, 256),
                        (1, 1, 1536, 384), (3, 1, 384, 448), (1, 3, 448, 512), (1, 3, 512, 256), (3, 1, 512, 256),
                        (1, 1, 1536, 256))
  return stem + 4 * block_a + red_a + 7 * block_b + red_b + 3 * block_c + 1536 * num_classes + num_classes


def test_param_counts():
  v3_tv = _template(inception.inception_v3('torchvision'))
  v3_keras = _template(inception.inception_v3('keras'))
  assert _count(v3_tv['params']) == V3_TORCH_PARAMS
  assert _count(v3_keras['params']) == V3_KERAS_COUNT - 34_432  # Keras' trainable count: no BN gamma
  assert _count(v3_keras) == V3_KERAS_COUNT
  assert _count(v3_tv['params']) - _count(v3_keras['params']) == _count(v3_tv['batch_stats']) // 2  # the gammas
  for num_classes in (1000, 1001):
    v4 = _template(inception.inception_v4(num_classes=num_classes))
    assert _count(v4['params']) == _v4_hand_count(num_classes)
  assert _v4_hand_count(1000) == V4_PARAMS_1000 and round(_v4_hand_count(1001) / 1e6, 2) == 42.68


def test_input_checks():
  model = inception.inception_v3('keras')
  with pytest.raises(ValueError, match=r'H, W >= 75.*\(2, 74, 80, 3\)'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 74, 80, 3)), train=False))
  with pytest.raises(ValueError, match='variant'):
    inception.inception_v3('tf')
  # 75 is the smallest input that survives: the last blocks see 1x1 maps.
  out = jax.eval_shape(lambda: inception.inception_v4().init_with_output(
      jax.random.key(0), jnp.zeros((1, 75, 75, 3)), train=False))[0]
  assert out[1]['inception_c3'].shape == (1, 1, 1, 1536)


# ---------------------------------------------------------------------------------------------------------------
# Keras 3 InceptionV3 -> legacy HDF5 -> jaxad.


@pytest.fixture(scope='module')
def keras_v3(tmp_path_factory):
  import keras  # pylint: disable=g-import-not-at-top
  assert keras.backend.backend() == 'jax', 'keras was imported with another backend before this module'
  keras.utils.set_random_seed(1)
  model = keras.applications.InceptionV3(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
  count = model.count_params()
  # Random BN moving statistics near the real activation statistics: one training-mode pass with momentum 0 sets
  # them to a batch's statistics, then each is perturbed (so eval mode is not a batch-norm of the test batch). Both
  # passes are jitted stateless calls: an eager Keras call compiles every op separately (~10 s each).
  rng = np.random.default_rng(2)
  bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
  for layer in bns:
    layer.momentum = 0.0
  values = lambda variables: [v.value for v in variables]
  train = jax.jit(functools.partial(model.stateless_call, training=True))
  _, stats = train(values(model.trainable_variables), values(model.non_trainable_variables), _images(1))
  for variable, value in zip(model.non_trainable_variables, stats):
    variable.assign(value)
  for layer in bns:
    n = layer.moving_mean.shape[0]
    var = np.asarray(layer.moving_variance.value)
    mean = np.asarray(layer.moving_mean.value) + 0.2 * np.sqrt(var) * rng.standard_normal(n)
    layer.moving_mean.assign(mean.astype(np.float32))
    layer.moving_variance.assign((var * rng.uniform(0.7, 1.4, n)).astype(np.float32))
    layer.beta.assign((0.2 * rng.standard_normal(n)).astype(np.float32))
  taps = [model.get_layer(f'mixed{i}').output for i in range(11)] + [model.get_layer('avg_pool').output]
  tapped = keras.Model(model.input, taps + [model.output])
  run = jax.jit(lambda t, n, x: tapped.stateless_call(t, n, x, training=False)[0])
  outputs = run(values(tapped.trainable_variables), values(tapped.non_trainable_variables), _images(0))
  *feats, logits = [np.asarray(a) for a in outputs]
  path = tmp_path_factory.mktemp('keras') / 'inception_v3_weights_tf_dim_ordering_tf_kernels.h5'
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  with h5py.File(path, 'w') as f, warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)  # Keras' own np.array(x, copy=False) on jax arrays
    legacy_h5_format.save_weights_to_hdf5_group(f, model)
  # The Keras 3 layouts of the same weights, whose layer groups h5py lists alphabetically, not in model order.
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    model.save_weights(path.parent / 'inception_v3.weights.h5')
    model.save(path.parent / 'inception_v3.keras')
  names = ['mixed5b', 'mixed5c', 'mixed5d', 'mixed6a', 'mixed6b', 'mixed6c', 'mixed6d', 'mixed6e', 'mixed7a',
           'mixed7b', 'mixed7c', 'pool']
  return dict(path=path, count=count, logits=logits, features=dict(zip(names, feats)), config=model.get_config(),
              weights_h5=path.parent / 'inception_v3.weights.h5', keras=path.parent / 'inception_v3.keras')


def test_keras_count(keras_v3):
  assert keras_v3['count'] == V3_KERAS_COUNT


def test_keras_v3_parity(keras_v3):
  names = _names_module()
  layers = keras_h5.read_keras_weights(keras_v3['path'])
  with h5py.File(keras_v3['path'], 'r') as f:
    order = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs['layer_names']]
  origin = {}
  loaded = names.keras_inception_v3(layers, order, origin=origin)
  assert sorted(names.keras_inception_v3_names(layers, order).values()) == sorted(loaded)
  first_conv = next(n for n in order if n in layers and np.ndim(layers[n].get('kernel')) == 4)
  assert origin['params/conv2d_1a_3x3/conv/kernel'] == f'{first_conv}/kernel'
  assert origin['params/head/bias'] == 'predictions/bias'
  model = inception.inception_v3('keras')
  variables = weights.merge_params(loaded, _template(model), what='keras weights')
  logits, feats = _apply(model, variables, _images(0))
  _assert_close(logits, keras_v3['logits'], 'logits')
  assert set(feats) == set(keras_v3['features'])
  for name, expected in keras_v3['features'].items():
    _assert_close(feats[name], expected, name)


def test_keras_matched_by_order_not_by_number(keras_v3):
  names = _names_module()
  layers = keras_h5.read_keras_weights(keras_v3['path'])
  reference = names.keras_inception_v3(layers)
  # The Keras-2 download numbers from 1 ('conv2d_1'); another process may number anything. Reversed numbers with
  # the dict in a different order: only layer_order may decide.
  order = list(layers)
  renamed = {name: name if name == 'predictions' else f'{name.rstrip("0123456789_")}_{1000 - i}'
             for i, name in enumerate(order)}
  shuffled = {renamed[n]: layers[n] for n in sorted(order, key=lambda n: renamed[n])}
  again = names.keras_inception_v3(shuffled, [renamed[n] for n in order])
  assert list(again) == list(reference) and all(np.array_equal(again[k], reference[k]) for k in reference)

  with pytest.raises(DataError, match=r'93 and 94'):  # a conv fewer: matching by order would shift everything
    names.keras_inception_v3({k: v for k, v in layers.items() if k != order[0]}, order)
  with pytest.raises(DataError, match='layer_order lacks'):
    names.keras_inception_v3(layers, order[1:])

  # A layer the mapping does not know is kept under its own name and reported by merge_params; notop has no head.
  extra = dict(layers, dense_extra={'kernel': np.zeros((3, 2), np.float32)})
  loaded = names.keras_inception_v3(extra, order + ['dense_extra'])
  assert 'dense_extra/kernel' in loaded
  with pytest.raises(weights.MergeError, match='dense_extra/kernel') as e:
    weights.merge_params(loaded, _template(inception.inception_v3('keras')))
  assert e.value.report.unexpected == ['dense_extra/kernel']
  notop = names.keras_inception_v3({k: v for k, v in layers.items() if k != 'predictions'})
  merged = weights.merge_params(notop, _template(inception.inception_v3('keras', num_classes=2)),
                                dont_load=[r'^params/head/'])
  assert merged['params']['head']['kernel'].shape == (2048, 2)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch twins (plain torch.nn, state-dict keys as torchvision / timm).


def _twins():
  """Defines the twin classes (needs torch)."""

  class BasicConv2d(tnn.Module):
    """conv (no bias) -> BN(eps 1e-3) -> ReLU; keys `conv.weight`, `bn.*`."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
      super().__init__()
      self.conv = tnn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
      self.bn = tnn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  def same(k):  # symmetric padding of an odd (kh, kw) kernel
    k = (k, k) if isinstance(k, int) else k
    return (k[0] // 2, k[1] // 2)

  def unit(cin, cout, k, stride=1, valid=False):
    return BasicConv2d(cin, cout, k, stride, 0 if valid else same(k))

  def run(units, x):
    for u in units:
      x = u(x)
    return x

  # --- torchvision inception_v3 key layout: Conv2d_*, Mixed_*.branch*, AuxLogits.*, fc.

  class A(tnn.Module):
    def __init__(self, cin, pool):
      super().__init__()
      self.branch1x1 = unit(cin, 64, 1)
      self.branch5x5_1, self.branch5x5_2 = unit(cin, 48, 1), unit(48, 64, 5)
      self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3 = unit(cin, 64, 1), unit(64, 96, 3), unit(96, 96, 3)
      self.branch_pool = unit(cin, pool, 1)

    def forward(self, x):
      return torch.cat([self.branch1x1(x), run([self.branch5x5_1, self.branch5x5_2], x),
                        run([self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3], x),
                        self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)  # count_include_pad=True

  class B(tnn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3 = unit(cin, 384, 3, 2, valid=True)
      self.branch3x3dbl_1, self.branch3x3dbl_2 = unit(cin, 64, 1), unit(64, 96, 3)
      self.branch3x3dbl_3 = unit(96, 96, 3, 2, valid=True)

    def forward(self, x):
      return torch.cat([self.branch3x3(x), run([self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3], x),
                        F.max_pool2d(x, 3, 2)], 1)

  class C(tnn.Module):
    def __init__(self, cin, c7):
      super().__init__()
      self.branch1x1 = unit(cin, 192, 1)
      self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = unit(cin, c7, 1), unit(c7, c7, (1, 7)), unit(
          c7, 192, (7, 1))
      self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3 = unit(cin, c7, 1), unit(c7, c7, (7, 1)), unit(
          c7, c7, (1, 7))
      self.branch7x7dbl_4, self.branch7x7dbl_5 = unit(c7, c7, (7, 1)), unit(c7, 192, (1, 7))
      self.branch_pool = unit(cin, 192, 1)

    def forward(self, x):
      dbl = [getattr(self, f'branch7x7dbl_{i}') for i in range(1, 6)]
      return torch.cat([self.branch1x1(x), run([self.branch7x7_1, self.branch7x7_2, self.branch7x7_3], x),
                        run(dbl, x), self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)

  class D(tnn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3_1, self.branch3x3_2 = unit(cin, 192, 1), unit(192, 320, 3, 2, valid=True)
      self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3 = unit(cin, 192, 1), unit(192, 192, (1, 7)), unit(
          192, 192, (7, 1))
      self.branch7x7x3_4 = unit(192, 192, 3, 2, valid=True)

    def forward(self, x):
      b7 = [getattr(self, f'branch7x7x3_{i}') for i in range(1, 5)]
      return torch.cat([run([self.branch3x3_1, self.branch3x3_2], x), run(b7, x), F.max_pool2d(x, 3, 2)], 1)

  class E(tnn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch1x1 = unit(cin, 320, 1)
      self.branch3x3_1, self.branch3x3_2a, self.branch3x3_2b = unit(cin, 384, 1), unit(384, 384, (1, 3)), unit(
          384, 384, (3, 1))
      self.branch3x3dbl_1, self.branch3x3dbl_2 = unit(cin, 448, 1), unit(448, 384, 3)
      self.branch3x3dbl_3a, self.branch3x3dbl_3b = unit(384, 384, (1, 3)), unit(384, 384, (3, 1))
      self.branch_pool = unit(cin, 192, 1)

    def forward(self, x):
      b3 = self.branch3x3_1(x)
      bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3), self.branch3x3dbl_3a(bd),
                        self.branch3x3dbl_3b(bd), self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)

  class Aux(tnn.Module):  # only its keys matter: the converter must drop them
    def __init__(self, cin, num_classes):
      super().__init__()
      self.conv0, self.conv1 = unit(cin, 128, 1), unit(128, 768, 5, valid=True)
      self.fc = tnn.Linear(768, num_classes)

  class TwinV3(tnn.Module):
    def __init__(self, num_classes=1000):
      super().__init__()
      self.Conv2d_1a_3x3 = unit(3, 32, 3, 2, valid=True)
      self.Conv2d_2a_3x3 = unit(32, 32, 3, valid=True)
      self.Conv2d_2b_3x3 = unit(32, 64, 3)
      self.Conv2d_3b_1x1 = unit(64, 80, 1)
      self.Conv2d_4a_3x3 = unit(80, 192, 3, valid=True)
      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
      self.Mixed_6a = B(288)
      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = C(768, 128), C(768, 160), C(768, 160), C(768, 192)
      self.AuxLogits = Aux(768, num_classes)
      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = D(768), E(1280), E(2048)
      self.fc = tnn.Linear(2048, num_classes)

    def forward(self, x):
      x = run([self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3], x)
      x = run([self.Conv2d_3b_1x1, self.Conv2d_4a_3x3], F.max_pool2d(x, 3, 2))
      x = F.max_pool2d(x, 3, 2)
      feats = {}
      for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
        x = getattr(self, f'Mixed_{name}')(x)
        feats[f'mixed{name}'] = x
      feats['pool'] = x.mean((2, 3))
      return self.fc(feats['pool']), feats

  # --- timm / Cadene inception_v4 key layout: features.{0..21}.*, last_linear.

  class Mixed3a(tnn.Module):
    def __init__(self):
      super().__init__()
      self.conv = unit(64, 96, 3, 2, valid=True)

    def forward(self, x):
      return torch.cat([F.max_pool2d(x, 3, 2), self.conv(x)], 1)

  class Mixed4a(tnn.Module):
    def __init__(self):
      super().__init__()
      self.branch0 = tnn.Sequential(unit(160, 64, 1), unit(64, 96, 3, valid=True))
      self.branch1 = tnn.Sequential(unit(160, 64, 1), unit(64, 64, (1, 7)), unit(64, 64, (7, 1)),
                                    unit(64, 96, 3, valid=True))

    def forward(self, x):
      return torch.cat([self.branch0(x), self.branch1(x)], 1)

  class Mixed5a(tnn.Module):
    def __init__(self):
      super().__init__()
      self.conv = unit(192, 192, 3, 2, valid=True)

    def forward(self, x):
      return torch.cat([self.conv(x), F.max_pool2d(x, 3, 2)], 1)

  def avg():
    return tnn.AvgPool2d(3, 1, 1, count_include_pad=False)

  class BlockA(tnn.Module):
    def __init__(self):
      super().__init__()
      self.branch0 = unit(384, 96, 1)
      self.branch1 = tnn.Sequential(unit(384, 64, 1), unit(64, 96, 3))
      self.branch2 = tnn.Sequential(unit(384, 64, 1), unit(64, 96, 3), unit(96, 96, 3))
      self.branch3 = tnn.Sequential(avg(), unit(384, 96, 1))

    def forward(self, x):
      return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)

  class RedA(tnn.Module):
    def __init__(self):
      super().__init__()
      self.branch0 = unit(384, 384, 3, 2, valid=True)
      self.branch1 = tnn.Sequential(unit(384, 192, 1), unit(192, 224, 3), unit(224, 256, 3, 2, valid=True))
      self.branch2 = tnn.MaxPool2d(3, 2)

    def forward(self, x):
      return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)

  class BlockB(tnn.Module):
    def __init__(self):
      super().__init__()
      self.branch0 = unit(1024, 384, 1)
      self.branch1 = tnn.Sequential(unit(1024, 192, 1), unit(192, 224, (1, 7)), unit(224, 256, (7, 1)))
      self.branch2 = tnn.Sequential(unit(1024, 192, 1), unit(192, 192, (7, 1)), unit(192, 224, (1, 7)),
                                    unit(224, 224, (7, 1)), unit(224, 256, (1, 7)))
      self.branch3 = tnn.Sequential(avg(), unit(1024, 128, 1))

    def forward(self, x):
      return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)

  class RedB(tnn.Module):
    def __init__(self):
      super().__init__()
      self.branch0 = tnn.Sequential(unit(1024, 192, 1), unit(192, 192, 3, 2, valid=True))
      self.branch1 = tnn.Sequential(unit(1024, 256, 1), unit(256, 256, (1, 7)), unit(256, 320, (7, 1)),
                                    unit(320, 320, 3, 2, valid=True))
      self.branch2 = tnn.MaxPool2d(3, 2)

    def forward(self, x):
      return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)

  class BlockC(tnn.Module):
    def __init__(self):
      super().__init__()
      self.branch0 = unit(1536, 256, 1)
      self.branch1_0, self.branch1_1a, self.branch1_1b = unit(1536, 384, 1), unit(384, 256, (1, 3)), unit(
          384, 256, (3, 1))
      self.branch2_0, self.branch2_1, self.branch2_2 = unit(1536, 384, 1), unit(384, 448, (3, 1)), unit(
          448, 512, (1, 3))
      self.branch2_3a, self.branch2_3b = unit(512, 256, (1, 3)), unit(512, 256, (3, 1))
      self.branch3 = tnn.Sequential(avg(), unit(1536, 256, 1))

    def forward(self, x):
      b1 = self.branch1_0(x)
      b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
      return torch.cat([self.branch0(x), self.branch1_1a(b1), self.branch1_1b(b1), self.branch2_3a(b2),
                        self.branch2_3b(b2), self.branch3(x)], 1)

  class TwinV4(tnn.Module):
    def __init__(self, num_classes=1001):
      super().__init__()
      self.features = tnn.Sequential(unit(3, 32, 3, 2, valid=True), unit(32, 32, 3, valid=True), unit(32, 64, 3),
                                     Mixed3a(), Mixed4a(), Mixed5a(), *[BlockA() for _ in range(4)], RedA(),
                                     *[BlockB() for _ in range(7)], RedB(), *[BlockC() for _ in range(3)])
      self.last_linear = tnn.Linear(1536, num_classes)

    def forward(self, x):
      names = ['stem1', 'stem2', 'stem3', 'mixed3a', 'mixed4a', 'mixed5a', *[f'inception_a{i}' for i in range(1, 5)],
               'reduction_a', *[f'inception_b{i}' for i in range(1, 8)], 'reduction_b',
               *[f'inception_c{i}' for i in range(1, 4)]]
      feats = {}
      for name, layer in zip(names, self.features):
        x = layer(x)
        if not name.startswith('stem'):
          feats[name] = x
      feats['pool'] = x.mean((2, 3))
      return self.last_linear(feats['pool']), feats

  return TwinV3, TwinV4


def _randomise(model, x, seed):
  """Random BN affine parameters and running statistics near those of `x`'s activations (one training pass with
  momentum 1 sets them to the batch statistics; each is then perturbed), for well-scaled outputs at any depth."""
  gen = torch.Generator().manual_seed(seed)
  bns = [m for m in model.modules() if isinstance(m, tnn.BatchNorm2d)]
  with torch.no_grad():
    for bn in bns:
      bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
      bn.bias.copy_(0.2 * torch.randn(bn.num_features, generator=gen))
      bn.momentum = 1.0
    model.train()
    model(x)
    for bn in bns:
      n = bn.num_features
      bn.running_mean.add_(0.2 * bn.running_var.sqrt() * torch.randn(n, generator=gen))
      bn.running_var.mul_(0.7 + 0.7 * torch.rand(n, generator=gen))
      bn.momentum = 0.1
      bn.num_batches_tracked.fill_(1000)
  model.eval()


def _torch_case(twin_class, seed, path, **kwargs):
  torch.manual_seed(seed)
  twin = twin_class(**kwargs)
  _randomise(twin, torch.from_numpy(_images(seed + 10).transpose(0, 3, 1, 2)), seed)
  torch.save(twin.state_dict(), path)
  with torch.no_grad():
    logits, feats = twin(torch.from_numpy(_images(0).transpose(0, 3, 1, 2)))
  feats = {k: v.numpy().transpose(0, 2, 3, 1) if v.ndim == 4 else v.numpy() for k, v in feats.items()}
  return dict(twin=twin, path=path, logits=logits.numpy(), features=feats)


@pytest.fixture(scope='module')
def torch_v3(tmp_path_factory):
  _require_torch()
  twin_v3, _ = _twins()
  return _torch_case(twin_v3, 3, tmp_path_factory.mktemp('torch') / 'inception_v3_google.pth')


@pytest.fixture(scope='module')
def torch_v4(tmp_path_factory):
  _require_torch()
  _, twin_v4 = _twins()
  return _torch_case(twin_v4, 4, tmp_path_factory.mktemp('torch') / 'inceptionv4.pth', num_classes=1001)


def test_torch_twin_counts(torch_v3, torch_v4):
  params = lambda m, skip='': sum(p.numel() for n, p in m.named_parameters() if not (skip and n.startswith(skip)))
  assert params(torch_v3['twin']) == 27_161_264  # torchvision's documented inception_v3 size, AuxLogits included
  assert params(torch_v3['twin'], 'AuxLogits.') == V3_TORCH_PARAMS
  assert params(torch_v4['twin']) == _v4_hand_count(1001)


@pytest.mark.parametrize('arch', ['v3', 'v4'])
def test_torch_parity(arch, request):
  names = _names_module()
  case = request.getfixturevalue(f'torch_{arch}')
  state_dict = weights.read_torch_state_dict(case['path'])
  if arch == 'v3':
    assert any(k.startswith('AuxLogits.') for k in state_dict)  # present in the file, dropped by the renaming
    loaded, model = names.torch_inception_v3(state_dict), inception.inception_v3('torchvision')
  else:
    loaded, model = names.torch_inception_v4(state_dict), inception.inception_v4(num_classes=1001)
  variables = weights.merge_params(loaded, _template(model), what=f'{case["path"]}')  # strict: nothing unexpected
  logits, feats = _apply(model, variables, _images(0))
  _assert_close(logits, case['logits'], 'logits')
  assert set(feats) == set(case['features'])
  for name, expected in case['features'].items():
    _assert_close(feats[name], expected, name)


@pytest.mark.parametrize('arch', ['v3', 'v4'])
def test_torch_key_names_round_trip(arch, request):
  """Every jaxad leaf comes from exactly one file key, and the inverse names it (for error messages)."""
  names = _names_module()
  case = request.getfixturevalue(f'torch_{arch}')
  keys = {k for k in case['twin'].state_dict() if not k.endswith('num_batches_tracked')
          and not k.startswith('AuxLogits.')}
  if arch == 'v3':
    template, to_key, rename = _template(inception.inception_v3('torchvision')), names.torch_inception_v3_key, \
        names.torch_inception_v3
  else:
    template, to_key, rename = _template(inception.inception_v4(num_classes=1001)), names.torch_inception_v4_key, \
        names.torch_inception_v4
  jaxad_names = list(weights.flatten(template))
  assert sorted(to_key(n) for n in jaxad_names) == sorted(keys)
  per_key = names.torch_inception_v3_name if arch == 'v3' else names.torch_inception_v4_name
  assert per_key('features.2.bn.num_batches_tracked') == '' and per_key('classifier.weight') is None
  assert names.torch_inception_v3_name('AuxLogits.conv1.conv.weight') == ''
  origin = {}
  renamed = rename({k: np.zeros(1) for k in keys}, origin=origin)
  assert sorted(renamed) == sorted(jaxad_names) and all(to_key(n) == origin[n] for n in renamed)


def test_torch_bad_state_dicts_are_refused(torch_v3, torch_v4):
  names = _names_module()
  sd3 = weights.read_torch_state_dict(torch_v3['path'])
  template3 = _template(inception.inception_v3('torchvision'))
  missing = {k: v for k, v in sd3.items() if k != 'Mixed_6b.branch7x7_2.conv.weight'}
  with pytest.raises(weights.MergeError, match='params/mixed6b/branch7x7_2/conv/kernel') as e:
    weights.merge_params(names.torch_inception_v3(missing), template3)
  assert e.value.report.missing == ['params/mixed6b/branch7x7_2/conv/kernel']
  assert 'Mixed_6b.branch7x7_2.conv.weight' in str(e.value.report.renamed(names.torch_inception_v3_key))
  unknown = dict(sd3, **{'Mixed_5b.branch1x1.conv.bias': np.zeros(64, np.float32)})
  with pytest.raises(weights.MergeError, match=r'Unexpected \(1\): Mixed_5b.branch1x1.conv.bias'):
    weights.merge_params(names.torch_inception_v3(unknown), template3)

  sd4 = weights.read_torch_state_dict(torch_v4['path'])
  key = 'features.19.branch2_1.conv.weight'  # [448, 384, 3, 1]; a 1x3 kernel in its place must be refused
  sd4[key] = sd4[key].transpose(0, 1, 3, 2)
  with pytest.raises(weights.MergeError, match=r'params/inception_c1/branch2_1/conv/kernel \(1, 3, 384, 448\) vs '
                     r'\(3, 1, 384, 448\)') as e:
    weights.merge_params(names.torch_inception_v4(sd4), _template(inception.inception_v4(num_classes=1001)))
  assert key in str(e.value.report.renamed(names.torch_inception_v4_key))
  with pytest.raises(weights.MergeError, match='params/head/kernel'):  # 1001-way file into a 1000-way model
    weights.merge_params(names.torch_inception_v4(weights.read_torch_state_dict(torch_v4['path'])),
                         _template(inception.inception_v4()))


def test_train_mode_matches_torch(torch_v3, x64):
  """Training mode: batch statistics, PyTorch's running-statistics update, and dropout only on the head's input.

  In float64 on both sides: normalising by the statistics of 2 x 2 x 2 values per channel (the last blocks at this
  input size) amplifies float32 rounding by ~1.5x per block, to ~1e-3 at the end; eval mode has no such
  amplification and is checked in float32 above.
  """
  names = _names_module()
  model = inception.inception_v3('torchvision')
  variables = weights.merge_params(names.torch_inception_v3(weights.read_torch_state_dict(torch_v3['path'])),
                                   _template(model))
  variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
  x = _images(5).astype(np.float64)

  @jax.jit
  def step(variables, x, key):
    (logits, feats), updates = model.apply(variables, x, train=True, mutable=['batch_stats'],
                                           rngs={'dropout': key})
    return logits, feats['pool'], updates['batch_stats']

  logits_a, pool, stats = step(variables, x, jax.random.key(0))
  logits_b, pool_b, _ = step(variables, x, jax.random.key(1))
  assert pool.dtype == jnp.float64
  twin = copy.deepcopy(torch_v3['twin']).double().train()
  with torch.no_grad():
    _, twin_feats = twin(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(pool, twin_feats['pool'].numpy(), rtol=1e-9, atol=1e-9)
  np.testing.assert_array_equal(pool, pool_b)
  assert not np.allclose(logits_a, logits_b)  # dropout (rate 0.5) before the head
  expected = names.torch_inception_v3({k: v.numpy() for k, v in twin.state_dict().items()})
  flat = weights.flatten({'batch_stats': stats})
  assert len(flat) == 2 * 94
  for name, value in flat.items():
    np.testing.assert_allclose(value, expected[name], rtol=1e-9, atol=1e-9, err_msg=name)


# ---------------------------------------------------------------------------------------------------------------
# The command-line converters' inception entries (convert_keras.py, convert_torch_imagenet.py).


def test_keras_cli_converts_inception_v3(keras_v3, tmp_path, capsys):
  conv = _converter('convert_keras')
  arch = conv.ARCHS['inception_v3']
  path = keras_v3['path']
  rc, out, err = _cli(conv, ['--arch', 'inception_v3', '--input', path, '--output', tmp_path / 'ck', '--keep_head'],
                      capsys)
  assert rc == 0, err
  assert f'sha256({path}) = {weights.sha256(path)}' in out
  assert '1000-way head' in out and "input 299x299, preprocess mode 'tf'" in out
  model = inception.inception_v3('keras')
  variables = weights.merge_params(weights.load(tmp_path / 'ck'), _template(model))  # strict: nothing unexpected
  logits, feats = _apply(model, variables, _images(0))
  _assert_close(logits, keras_v3['logits'], 'logits')
  _assert_close(feats['pool'], keras_v3['features']['pool'], 'pool')

  # Keras 3 layouts: read_keras puts the layers back in model order (config.json of the .keras zip; the group
  # numbers of the .weights.h5, which needs the config only to tell the gamma-less BN's variables apart).
  flat = weights.flatten(variables)
  for source, config in ((keras_v3['keras'], None), (keras_v3['weights_h5'], keras_v3['config'])):
    converted = weights.flatten(conv.convert(conv.read_keras(str(source), arch, config=config), arch,
                                             keep_head=True))
    assert sorted(converted) == sorted(flat)
    for name in flat:
      np.testing.assert_array_equal(converted[name], flat[name], err_msg=f'{source.name}: {name}')
  # Without that ordering the convs would be matched to the wrong units: refused, never silently mis-loaded.
  layers = keras_h5.read_keras_weights(keras_v3['weights_h5'], config=keras_v3['config'])
  assert list(layers) != [n for n in conv.keras_layer_order(str(keras_v3['weights_h5'])) if n in layers]
  with pytest.raises(conv.ConversionError, match='Mis-shaped'):
    conv.convert(keras_h5.flatten_weights(layers), arch, keep_head=True)

  # Without --keep_head the classifier is dropped and a fresh one of any size is kept by dont_load.
  headless = conv.convert(conv.read_keras(str(path), arch), arch)
  assert 'head' not in headless['params']
  merged = weights.merge_params(headless, _template(inception.inception_v3('keras', num_classes=2)),
                                dont_load=[r'^params/head/'])
  np.testing.assert_array_equal(merged['batch_stats']['mixed7c']['branch_pool']['bn']['var'],
                                variables['batch_stats']['mixed7c']['branch_pool']['bn']['var'])


def test_keras_cli_refuses_mismatching_files(keras_v3, torch_v3, tmp_path, capsys):
  conv = _converter('convert_keras')
  bad = tmp_path / 'inception_v3_one_bn_short.h5'
  shutil.copy(keras_v3['path'], bad)
  text = lambda names: [n.decode() if isinstance(n, bytes) else str(n) for n in names]
  with h5py.File(bad, 'a') as f:  # the 9th BatchNormalization (unit mixed5b/branch1x1) loses its moving variance
    bns = [n for n in text(f.attrs['layer_names'])
           if any(w.split(':')[0].endswith('/moving_mean') for w in text(f[n].attrs['weight_names']))]
    group = f[bns[8]]
    names = text(group.attrs['weight_names'])
    gone = next(w for w in names if w.split(':')[0].endswith('/moving_variance'))
    del group[gone]
    group.attrs['weight_names'] = np.array([w.encode() for w in names if w != gone])
  rc, out, err = _cli(conv, ['--arch', 'inception_v3', '--input', bad, '--output', tmp_path / 'x'], capsys)
  assert rc == 1 and err.startswith('error: ') and not (tmp_path / 'x').exists()
  assert ('Missing (1): BatchNormalization 9 of 94 (mixed5b/branch1x1)/moving_variance '
          '(jaxad batch_stats/mixed5b/branch1x1/bn/var)') in err
  assert f'sha256({bad})' in out
  # Not a Keras file at all (a torch zip): exit 1 with the download command.
  rc, _, err = _cli(conv, ['--arch', 'inception_v3', '--input', torch_v3['path'], '--output', tmp_path / 'y'], capsys)
  assert rc == 1 and 'without model.weights.h5' in err
  assert 'wget https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/' in err


@pytest.mark.parametrize('arch', ['v3', 'v4'])
def test_torch_cli_converts(arch, request, tmp_path, capsys):
  conv = _converter('convert_torch_imagenet')
  case = request.getfixturevalue(f'torch_{arch}')
  rc, out, err = _cli(conv, ['--arch', f'inception_{arch}', '--input', case['path'], '--output', tmp_path / 'ck',
                             '--keep_head'], capsys)
  assert rc == 0, err
  assert f'sha256({case["path"]}) = {weights.sha256(case["path"])}' in out
  classes = 1000 if arch == 'v3' else 1001  # Cadene's Inception-V4 head: read from the file
  assert f'{classes}-way head' in out
  model = (inception.inception_v3('torchvision') if arch == 'v3' else inception.inception_v4(num_classes=1001))
  variables = weights.merge_params(weights.load(tmp_path / 'ck'), _template(model))  # strict: AuxLogits dropped
  logits, feats = _apply(model, variables, _images(0))
  _assert_close(logits, case['logits'], 'logits')
  _assert_close(feats['pool'], case['features']['pool'], 'pool')
  # Without --keep_head: the body only, which fits a model with timm's 1000-way (or any) head.
  headless = conv.convert(weights.read_torch_state_dict(case['path']), conv.ARCHS[f'inception_{arch}'])
  assert 'head' not in headless['params']
  other = inception.inception_v3('torchvision', num_classes=3) if arch == 'v3' else inception.inception_v4()
  merged = weights.flatten(weights.merge_params(headless, _template(other), dont_load=[r'^params/head/']))
  flat = weights.flatten(variables)
  assert all(np.array_equal(merged[k], flat[k]) for k in merged if not k.startswith('params/head/'))


def test_torch_cli_refuses_mismatching_files(torch_v3, torch_v4, tmp_path, capsys):
  conv = _converter('convert_torch_imagenet')
  rc, out, err = _cli(conv, ['--arch', 'inception_v3', '--input', torch_v4['path'], '--output', tmp_path / 'x'],
                      capsys)
  assert rc == 1 and err.startswith('error: ') and not (tmp_path / 'x').exists()
  assert 'Unexpected (' in err and 'features.21.branch3.1.conv.weight' in err
  assert 'Conv2d_1a_3x3.conv.weight (jaxad params/conv2d_1a_3x3/conv/kernel)' in err
  assert f'sha256({torch_v4["path"]})' in out
  state = weights.read_torch_state_dict(torch_v4['path'])
  del state['features.12.branch1.1.bn.running_var']
  with pytest.raises(conv.ConversionError, match=r'Missing \(1\): features\.12\.branch1\.1\.bn\.running_var '
                     r'\(jaxad batch_stats/inception_b2/branch1_1/bn/var\)'):
    conv.convert(state, conv.ARCHS['inception_v4'], keep_head=True)
  # A missing file: exit 1 with the download command (Cadene's URL for V4).
  rc, _, err = _cli(conv, ['--arch', 'inception_v4', '--input', tmp_path / 'nope.pth', '--output', tmp_path / 'z'],
                    capsys)
  assert rc == 1 and 'http://data.lip6.fr/cadene/pretrainedmodels/inceptionv4-8e4777a0.pth' in err
