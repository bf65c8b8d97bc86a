"""Tests for the ImageNet backbones (DenseNet, ResNet v1/v1.5), their Keras / PyTorch converters and keras_h5.

References are independent of jaxad: Keras 3 (JAX backend) models from keras.applications with random weights, and
PyTorch twins of torchvision's DenseNet-169 / ResNet-152 written here from the published architectures (torchvision
itself is not installed). Weights are written in the real file formats (legacy Keras-2 HDF5, Keras 3 .weights.h5 and
.keras, torch.save state dicts), converted with the command-line converters' functions, and the jaxad logits and
features compared with the references.
"""

from __future__ import annotations

import os

os.environ['KERAS_BACKEND'] = 'jax'  # before keras is imported (in this module or any other)

import json  # noqa: E402
import pathlib  # noqa: E402
import zipfile  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxad.errors import DataError  # noqa: E402
from jaxad.models import keras_h5  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def _keras():
  import keras  # pylint: disable=g-import-not-at-top
  return keras


def _save_legacy(model, path):
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  with h5py.File(path, 'w') as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _randomise(model, seed=0):
  """Random weights for every variable of a Keras model; BN variances positive, BN stats non-trivial."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    values = []
    for v in layer.weights:
      shape = tuple(v.shape)
      name = v.name
      if name == 'moving_variance':
        values.append(rng.uniform(0.5, 1.5, shape))
      elif name in ('gamma',):
        values.append(rng.uniform(0.5, 1.5, shape))
      elif name in ('beta', 'moving_mean', 'bias'):
        values.append(rng.normal(0, 0.1, shape))
      else:  # kernels: He-like scale keeps activations O(1) through deep nets
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        values.append(rng.normal(0, np.sqrt(1.0 / fan_in), shape))
    if values:
      layer.set_weights([a.astype(np.float32) for a in values])


def _expected(model):
  return {layer.name: {v.name: np.asarray(v) for v in layer.weights} for layer in model.layers if layer.weights}


def _assert_same(got, want):
  assert sorted(got) == sorted(want)
  for layer in want:
    assert sorted(got[layer]) == sorted(want[layer]), layer
    for name in want[layer]:
      np.testing.assert_array_equal(got[layer][name], want[layer][name], err_msg=f'{layer}/{name}')


# --- keras_h5 -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def small_keras(tmp_path_factory):
  """A small Keras model with every variable pattern the readers must name, saved in all three layouts."""
  keras = _keras()
  inp = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, name='conv1_conv')(inp)
  x = keras.layers.BatchNormalization(name='bn_nocenter', center=False)(x)
  x = keras.layers.BatchNormalization(name='bn_noscale', scale=False)(x)
  x = keras.layers.Conv2D(5, 1, use_bias=False, name='conv_nobias')(x)
  x = keras.layers.BatchNormalization(name='bn', epsilon=1.001e-5)(x)
  x = keras.layers.Activation('relu', name='relu')(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  x = keras.layers.Dense(3, name='fc')(x)
  model = keras.Model(inp, x, name='small')
  _randomise(model, seed=1)
  d = tmp_path_factory.mktemp('small_keras')
  _save_legacy(model, d / 'legacy.h5')
  model.save_weights(d / 'k3.weights.h5')
  model.save(d / 'k3.keras')
  return model, d


def test_read_keras_weights_legacy_keras3_and_keras_zip_agree(small_keras):
  model, d = small_keras
  want = _expected(model)
  assert sorted(want['bn_noscale']) == ['beta', 'moving_mean', 'moving_variance']
  assert sorted(want['bn_nocenter']) == ['gamma', 'moving_mean', 'moving_variance']
  assert sorted(want['conv_nobias']) == ['kernel']
  _assert_same(keras_h5.read_keras_weights(d / 'legacy.h5'), want)
  _assert_same(keras_h5.read_keras_weights(d / 'k3.keras'), want)
  # A bare .weights.h5 cannot tell gamma from beta in a 3-variable BN: refused, unless the config is given.
  with pytest.raises(DataError, match=r"(?s)bn_nocenter.*config=.*HINT"):
    keras_h5.read_keras_weights(d / 'k3.weights.h5', hint='HINT')
  _assert_same(keras_h5.read_keras_weights(d / 'k3.weights.h5', config=model.get_config()), want)
  (d / 'config.json').write_text(json.dumps(json.loads(zipfile.ZipFile(d / 'k3.keras').read('config.json'))))
  _assert_same(keras_h5.read_keras_weights(d / 'k3.weights.h5', config=d / 'config.json'), want)
  flat = keras_h5.flatten_weights(want)
  assert 'conv1_conv/kernel' in flat and 'bn/moving_variance' in flat


def test_read_keras3_without_recorded_names_uses_the_config(small_keras, tmp_path):
  model, d = small_keras
  path = tmp_path / 'old.weights.h5'
  path.write_bytes((d / 'k3.weights.h5').read_bytes())
  with h5py.File(path, 'a') as f:  # as older Keras 3 versions wrote it: no 'name' attribute on the vars groups
    f.visititems(lambda n, o: o.attrs.__delitem__('name') if 'name' in o.attrs else None)
  with pytest.raises(DataError, match=r'do not record the layer name'):
    keras_h5.read_keras_weights(path)
  _assert_same(keras_h5.read_keras_weights(path, config=model.get_config()), _expected(model))


def test_read_keras2_style_names(tmp_path):
  """Files written by Keras 2 (the keras.applications downloads): bytes attributes and ':0' suffixes."""
  path = tmp_path / 'k2.h5'
  rng = np.random.default_rng(0)
  kernel, gamma, other = rng.normal(size=(7, 7, 3, 4)), rng.normal(size=4), rng.normal(size=4)
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = np.array([b'input_1', b'conv1/conv', b'bn_conv1'])
    f.attrs['keras_version'] = b'2.2.4'
    f.create_group('input_1').attrs['weight_names'] = np.array([], 'S1')
    g = f.create_group('conv1/conv')
    g.attrs['weight_names'] = np.array([b'conv1/conv/kernel:0'])
    g['conv1/conv/kernel:0'] = kernel
    g = f.create_group('bn_conv1')  # weights named after the layer they were created in
    g.attrs['weight_names'] = np.array([b'batch_normalization_1/gamma:0', b'batch_normalization_1/beta:0'])
    g['batch_normalization_1/gamma:0'] = gamma
    g['batch_normalization_1/beta:0'] = other
  got = keras_h5.read_keras_weights(path)
  assert sorted(got) == ['bn_conv1', 'conv1/conv']
  np.testing.assert_array_equal(got['conv1/conv']['kernel'], kernel)
  np.testing.assert_array_equal(got['bn_conv1']['gamma'], gamma)
  np.testing.assert_array_equal(got['bn_conv1']['beta'], other)
  # A whole-model .h5 save keeps the same layout under 'model_weights'.
  whole = tmp_path / 'whole.h5'
  with h5py.File(path, 'r') as src, h5py.File(whole, 'w') as dst:
    src.copy(src['/'], dst, 'model_weights')
    for k, v in src.attrs.items():
      dst['model_weights'].attrs[k] = v
  assert sorted(keras_h5.read_keras_weights(whole)) == ['bn_conv1', 'conv1/conv']


def test_read_keras_weights_refuses_bad_files(small_keras, tmp_path):
  _, d = small_keras
  with pytest.raises(DataError, match=r'(?s)nope\.h5 do not exist.*Download it'):
    keras_h5.read_keras_weights(tmp_path / 'nope.h5', hint='Download it.')
  html = tmp_path / 'page.h5'
  html.write_text('<html>404</html>')
  with pytest.raises(DataError, match=r'page\.h5 are not an HDF5 file'):
    keras_h5.read_keras_weights(html)
  truncated = tmp_path / 'truncated.h5'
  truncated.write_bytes((d / 'legacy.h5').read_bytes()[:3000])
  with pytest.raises(DataError, match=r'truncated\.h5'):
    keras_h5.read_keras_weights(truncated)
  other_zip = tmp_path / 'other.keras'
  with zipfile.ZipFile(other_zip, 'w') as z:
    z.writestr('readme.txt', 'x')
  with pytest.raises(DataError, match=r'without model\.weights\.h5'):
    keras_h5.read_keras_weights(other_zip)
  plain = tmp_path / 'plain.h5'
  with h5py.File(plain, 'w') as f:
    f['x'] = np.zeros(3)
  with pytest.raises(DataError, match=r'no known Keras layout'):
    keras_h5.read_keras_weights(plain)
  with pytest.raises(DataError, match=r'directory'):
    keras_h5.read_keras_weights(tmp_path)


# --- preprocessing --------------------------------------------------------------------------------------------------


def test_imagenet_preprocess_matches_the_formulas():
  from jaxad.models.preprocess import imagenet_preprocess  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).integers(0, 256, size=(2, 4, 5, 3)).astype(np.uint8)
  xf = x.astype(np.float64)
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(imagenet_preprocess(x, 'torch'), (xf / 255 - mean) / std, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(imagenet_preprocess(x, 'caffe'), xf[..., ::-1] - [103.939, 116.779, 123.68],
                             rtol=1e-6, atol=1e-4)
  np.testing.assert_allclose(imagenet_preprocess(x, 'tf'), xf / 127.5 - 1, rtol=1e-6, atol=1e-6)
  assert imagenet_preprocess(x, 'tf').dtype == np.float32
  keras = _keras()  # keras' own implementation agrees (an independent reference)
  for mode in ('torch', 'caffe', 'tf'):
    want = keras.applications.imagenet_utils.preprocess_input(xf.astype(np.float32).copy(), mode=mode)
    np.testing.assert_allclose(imagenet_preprocess(x, mode), want, rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match=r"mode='inception'"):
    imagenet_preprocess(x, 'inception')
  with pytest.raises(ValueError, match=r'\[\.\.\., 3\]'):
    imagenet_preprocess(x[..., :2], 'tf')


# --- shared helpers for the parity tests -----------------------------------------------------------------------------

DENSENET169_PARAMS = 14_149_480  # torchvision / Keras trainable, with the 1000-way head
DENSENET169_BN_STATS = 158_400  # Keras' count_params() adds these: 14,307,880
RESNET152_PARAMS_TORCH = 60_192_808
RESNET152_PARAMS_KERAS = 60_268_520  # + conv biases; Keras' count_params() adds 151,424 BN statistics: 60,419,944
RESNET152_BN_STATS = 151_424
SIZE = 64  # the smallest size that keeps DenseNet's / ResNet's last maps at 2x2


def _converter(name):
  import importlib.util  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  if str(REPO / 'third_party_weights') not in sys.path:  # convert_torch_imagenet imports convert_keras
    sys.path.insert(0, str(REPO / 'third_party_weights'))
  spec = importlib.util.spec_from_file_location(f'_test_{name}', REPO / 'third_party_weights' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def images():
  return np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)


def _count(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _jaxad(model, variables, x, jit):
  import jax  # pylint: disable=g-import-not-at-top
  fn = lambda v, x: model.apply(v, x, train=False)
  logits, feats = (jax.jit(fn) if jit else fn)(variables, x)
  return np.asarray(logits), {k: np.asarray(v) for k, v in feats.items()}


def _close(got, want, what, tol=1e-4):
  """|got - want| <= tol * max(1, max|want|): float32 through 150+ layers rounds relative to the scale."""
  assert got.shape == want.shape, (what, got.shape, want.shape)
  scale = max(1.0, float(np.abs(want).max()))
  err = float(np.abs(got - want).max())
  assert err <= tol * scale, f'{what}: max abs error {err:.3g} > {tol} * {scale:.3g}'


def _convert_cli(module, args, capsys):
  rc = module.main(args)
  out = capsys.readouterr()
  return rc, out.out, out.err


# --- PyTorch twins of torchvision's DenseNet-169 and ResNet-152 (written from the papers' architectures) ------------


def _torch_models():
  """Classes built on demand so that importing this module does not import torch."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  class DenseLayer(nn.Module):

    def __init__(self, cin, growth, bn_size):
      super().__init__()
      self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, bn_size * growth, 1, bias=False)
      self.norm2 = nn.BatchNorm2d(bn_size * growth)
      self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
      y = self.conv1(F.relu(self.norm1(x)))
      return torch.cat([x, self.conv2(F.relu(self.norm2(y)))], 1)

  class Transition(nn.Module):

    def __init__(self, cin, cout):
      super().__init__()
      self.norm, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
      return F.avg_pool2d(self.conv(F.relu(self.norm(x))), 2, 2)

  class DenseNet(nn.Module):
    """features.{conv0, norm0, denseblock{b}.denselayer{i}, transition{b}, norm5}, classifier: torchvision's keys."""

    def __init__(self, blocks=(6, 12, 32, 32), growth=32, init=64, bn_size=4, classes=1000):
      super().__init__()
      self.features = nn.Module()
      self.features.conv0 = nn.Conv2d(3, init, 7, 2, 3, bias=False)
      self.features.norm0 = nn.BatchNorm2d(init)
      c = init
      self.blocks = blocks
      for b, n in enumerate(blocks, start=1):
        block = nn.Module()
        for i in range(n):
          block.add_module(f'denselayer{i + 1}', DenseLayer(c + i * growth, growth, bn_size))
        self.features.add_module(f'denseblock{b}', block)
        c += n * growth
        if b < len(blocks):
          self.features.add_module(f'transition{b}', Transition(c, c // 2))
          c //= 2
      self.features.norm5 = nn.BatchNorm2d(c)
      self.classifier = nn.Linear(c, classes)

    def forward(self, x):
      f, feats = self.features, {}
      y = F.max_pool2d(F.relu(f.norm0(f.conv0(x))), 3, 2, 1)
      feats['stem'] = y
      for b in range(1, len(self.blocks) + 1):
        for layer in getattr(f, f'denseblock{b}').children():
          y = layer(y)
        feats[f'denseblock{b}'] = y
        if b < len(self.blocks):
          y = getattr(f, f'transition{b}')(y)
          feats[f'transition{b}'] = y
      y = F.relu(f.norm5(y))
      feats['final'] = y
      feats['pool'] = y.mean((2, 3))
      return self.classifier(feats['pool']), feats

  class Bottleneck(nn.Module):
    """v1.5: the stride on the 3x3 conv."""

    def __init__(self, cin, width, stride, project):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
      self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
      self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
      self.downsample = (nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width))
                         if project else None)

    def forward(self, x):
      y = F.relu(self.bn1(self.conv1(x)))
      y = F.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
      return F.relu(y + (self.downsample(x) if self.downsample is not None else x))

  class ResNet(nn.Module):
    """conv1, bn1, layer{1-4}.{i}, fc: torchvision's keys."""

    def __init__(self, sizes=(3, 8, 36, 3), classes=1000):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
      cin = 64
      for s, (n, width) in enumerate(zip(sizes, (64, 128, 256, 512)), start=1):
        blocks = [Bottleneck(cin if i == 0 else 4 * width, width, (1 if s == 1 else 2) if i == 0 else 1, i == 0)
                  for i in range(n)]
        self.add_module(f'layer{s}', nn.Sequential(*blocks))
        cin = 4 * width
      self.fc = nn.Linear(2048, classes)

    def forward(self, x):
      feats = {'stem': F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)}
      y = feats['stem']
      for s in range(1, 5):
        y = getattr(self, f'layer{s}')(y)
        feats[f'stage{s}'] = y
      feats['pool'] = y.mean((2, 3))
      return self.fc(feats['pool']), feats

  return DenseNet, ResNet


def _torch_randomise(model, seed):
  """Random weights with non-trivial BN statistics, scaled so activations stay O(1) through the depth."""
  import torch  # pylint: disable=g-import-not-at-top
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5, generator=gen)
        m.bias.normal_(0, 0.1, generator=gen)
        m.running_mean.normal_(0, 0.1, generator=gen)
        m.running_var.uniform_(0.5, 1.5, generator=gen)
      elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        m.weight.normal_(0, (1.0 / np.prod(m.weight.shape[1:])) ** 0.5, generator=gen)
        if m.bias is not None:
          m.bias.normal_(0, 0.1, generator=gen)
  return model.eval()


def _torch_reference(model, x):
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    logits, feats = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1) if t.ndim == 4 else t.numpy()
  return logits.numpy(), {k: nhwc(v) for k, v in feats.items()}


@pytest.fixture(scope='module')
def torch_nets(tmp_path_factory, images):
  """Both twins with random weights, their state dicts saved with torch.save, and their outputs on `images`."""
  import torch  # pylint: disable=g-import-not-at-top
  DenseNet, ResNet = _torch_models()
  d = tmp_path_factory.mktemp('torch_nets')
  out = {}
  for arch, net in (('densenet169', DenseNet()), ('resnet152', ResNet())):
    net = _torch_randomise(net, seed=len(arch))
    path = d / f'{arch}.pth'
    torch.save(net.state_dict(), path)
    out[arch] = (net, path, _torch_reference(net, images))
  # The same DenseNet weights under the old key names of some released torchvision files ('norm.1', 'conv.1').
  state = torch.load(out['densenet169'][1], weights_only=True)
  old = {k.replace('.norm1.', '.norm.1.').replace('.conv1.', '.conv.1.').replace('.norm2.', '.norm.2.')
         .replace('.conv2.', '.conv.2.'): v for k, v in state.items()}
  assert 'features.denseblock1.denselayer1.norm.1.weight' in old
  torch.save(old, d / 'densenet169_old_names.pth')
  out['old_names'] = d / 'densenet169_old_names.pth'
  return out


def test_parameter_counts_match_the_published_architectures(torch_nets):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxad.models import densenet, resnet_imagenet  # pylint: disable=g-import-not-at-top

  def counts(model):
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
    return _count(v['params']), _count(v['batch_stats'])

  torch_params = {a: sum(p.numel() for p in torch_nets[a][0].parameters()) for a in ('densenet169', 'resnet152')}
  assert torch_params == {'densenet169': DENSENET169_PARAMS, 'resnet152': RESNET152_PARAMS_TORCH}
  for weights in ('torchvision', 'keras'):
    assert counts(densenet.densenet169(weights=weights)) == (DENSENET169_PARAMS, DENSENET169_BN_STATS)
  assert counts(resnet_imagenet.resnet152()) == (RESNET152_PARAMS_TORCH, RESNET152_BN_STATS)
  assert counts(resnet_imagenet.resnet152(weights='keras')) == (RESNET152_PARAMS_KERAS, RESNET152_BN_STATS)
  # The rest of the family, against the published torchvision parameter counts.
  assert counts(densenet.densenet121())[0] == 7_978_856
  assert counts(resnet_imagenet.resnet50())[0] == 25_557_032
  assert counts(densenet.densenet169(num_classes=2))[0] == DENSENET169_PARAMS - 1664 * 998 - 998


@pytest.mark.parametrize('arch', ['densenet169', 'resnet152'])
def test_torch_conversion_matches_the_pytorch_twin(arch, torch_nets, images, tmp_path, capsys):
  from jaxad.models import weights  # pylint: disable=g-import-not-at-top
  conv = _converter('convert_torch_imagenet')
  _, path, (want_logits, want_feats) = torch_nets[arch]
  rc, out, err = _convert_cli(conv, ['--arch', arch, '--input', str(path), '--output', str(tmp_path / 'ck'),
                                     '--keep_head'], capsys)
  assert rc == 0, err
  assert f'sha256({path}) = {weights.sha256(path)}' in out
  variables = weights.load(tmp_path / 'ck')
  model = conv.ARCHS[arch].build(num_classes=1000)
  logits, feats = _jaxad(model, variables, images, jit=arch.startswith('densenet'))
  assert np.std(want_logits) > 0.1  # random weights that still separate the inputs
  _close(logits, want_logits, 'logits')
  for name, want in want_feats.items():
    _close(feats[name], want, name)
  assert feats['pool'].shape == (2, 1664 if arch == 'densenet169' else 2048)

  # Without --keep_head the classifier is dropped; merge_params(dont_load=head) completes it.
  headless = conv.convert(weights.read_torch_state_dict(path), conv.ARCHS[arch])
  assert 'head' not in headless['params'] and set(headless) == {'params', 'batch_stats'}
  np.testing.assert_array_equal(weights.flatten(headless)['params/stem/conv/kernel'],
                                weights.flatten(variables)['params/stem/conv/kernel'])
  if arch == 'densenet169':  # the old key names give the same variables
    old = conv.convert(conv.read_torch(torch_nets['old_names'], conv.ARCHS[arch]), conv.ARCHS[arch], keep_head=True)
    flat_old, flat_new = weights.flatten(old), weights.flatten(variables)
    assert sorted(flat_old) == sorted(flat_new)
    for k in flat_new:
      np.testing.assert_array_equal(flat_old[k], flat_new[k], err_msg=k)


# --- keras.applications parity -----------------------------------------------------------------------------------

# jaxad feature -> the Keras layer whose output it is
KERAS_FEATURES = {
    'densenet169': {'stem': 'pool1', 'denseblock1': 'conv2_block6_concat', 'transition1': 'pool2_pool',
                    'denseblock2': 'conv3_block12_concat', 'transition2': 'pool3_pool',
                    'denseblock3': 'conv4_block32_concat', 'transition3': 'pool4_pool',
                    'denseblock4': 'conv5_block32_concat', 'final': 'relu', 'pool': 'avg_pool'},
    'resnet152': {'stem': 'pool1_pool', 'stage1': 'conv2_block3_out', 'stage2': 'conv3_block8_out',
                  'stage3': 'conv4_block36_out', 'stage4': 'conv5_block3_out', 'pool': 'avg_pool'},
}


@pytest.fixture(scope='module')
def keras_nets(tmp_path_factory, images):
  """keras.applications DenseNet169 / ResNet152 (weights=None) with random weights, saved in the legacy HDF5 and
  the Keras 3 .weights.h5 layouts, and their logits (no softmax) and features on `images`."""
  keras = _keras()
  from keras.src.backend.jax import random as keras_jax_random  # pylint: disable=g-import-not-at-top
  d = tmp_path_factory.mktemp('keras_nets')
  out = {}
  for arch, ctor in (('densenet169', keras.applications.DenseNet169), ('resnet152', keras.applications.ResNet152)):
    with pytest.MonkeyPatch.context() as mp:
      # Keras' initial values are overwritten below; drawing them with jax compiles one program per kernel shape
      # (~25 s for DenseNet-169 on 2 CPU cores), so zeros stand in while the model is built.
      for fn in ('uniform', 'normal', 'truncated_normal'):
        mp.setattr(keras_jax_random, fn, lambda shape, *a, dtype=None, **k: np.zeros(shape, dtype or 'float32'))
      model = ctor(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    _randomise(model, seed=len(arch))
    _save_legacy(model, d / f'{arch}.h5')
    model.save_weights(d / f'{arch}.weights.h5')
    names = KERAS_FEATURES[arch]
    probe = keras.Model(model.input, [model.get_layer('predictions').output]
                        + [model.get_layer(n).output for n in names.values()])
    # predict compiles the whole graph once (much faster than DenseNet's layer-by-layer eager call).
    outputs = probe.predict(images, verbose=0) if arch == 'densenet169' else probe(images, training=False)
    outputs = [np.asarray(o) for o in outputs]
    out[arch] = (model.count_params(), d / f'{arch}.h5', d / f'{arch}.weights.h5',
                 (outputs[0], dict(zip(names, outputs[1:]))))
  return out


@pytest.mark.parametrize('arch', ['densenet169', 'resnet152'])
def test_keras_conversion_matches_keras(arch, keras_nets, images, tmp_path, capsys):
  from jaxad.models import weights  # pylint: disable=g-import-not-at-top
  conv = _converter('convert_keras')
  count, legacy, k3, (want_logits, want_feats) = keras_nets[arch]
  # Keras counts the BN running statistics too (jaxad keeps them in batch_stats).
  assert count == {'densenet169': DENSENET169_PARAMS + DENSENET169_BN_STATS,
                   'resnet152': RESNET152_PARAMS_KERAS + RESNET152_BN_STATS}[arch]
  rc, out, err = _convert_cli(conv, ['--arch', arch, '--input', str(legacy), '--output', str(tmp_path / 'ck'),
                                     '--keep_head'], capsys)
  assert rc == 0, err
  assert f'sha256({legacy}) = {weights.sha256(legacy)}' in out
  variables = weights.load(tmp_path / 'ck')
  model = conv.ARCHS[arch].build(num_classes=1000)
  logits, feats = _jaxad(model, variables, images, jit=arch.startswith('densenet'))
  assert np.std(want_logits) > 0.1
  _close(logits, want_logits, 'logits')
  for name, want in want_feats.items():
    _close(feats[name], want, name)

  # The Keras 3 .weights.h5 layout converts to the very same variables.
  flat = weights.flatten(variables)
  flat_k3 = weights.flatten(conv.convert(conv.read_keras(str(k3), conv.ARCHS[arch]), conv.ARCHS[arch], keep_head=True))
  assert sorted(flat) == sorted(flat_k3)
  for k in flat:
    np.testing.assert_array_equal(flat_k3[k], flat[k], err_msg=k)

  # Keras-2 files (the real downloads) spell some layer names differently: same variables.
  keras2 = {'conv1_conv': 'conv1/conv', 'conv1_bn': 'conv1/bn',
            'predictions': 'fc1000' if arch == 'densenet169' else 'probs'}
  file_weights = conv.read_keras(str(legacy), conv.ARCHS[arch])
  renamed = {keras2.get(k.rpartition('/')[0], k.rpartition('/')[0]) + '/' + k.rpartition('/')[2]: v
             for k, v in file_weights.items()}
  assert 'conv1/conv/kernel' in renamed
  flat2 = weights.flatten(conv.convert(renamed, conv.ARCHS[arch], keep_head=True))
  assert sorted(flat2) == sorted(flat)
  np.testing.assert_array_equal(flat2['params/head/kernel'], flat['params/head/kernel'])


# --- refusals ---------------------------------------------------------------------------------------------------


def test_mismatching_files_are_refused_with_every_name_in_the_files_terms(torch_nets, keras_nets, tmp_path, capsys):
  conv_t, conv_k = _converter('convert_torch_imagenet'), _converter('convert_keras')
  state = conv_t.read_torch(torch_nets['densenet169'][1], conv_t.ARCHS['densenet169'])
  del state['features.norm5.running_var']
  state['features.extra.weight'] = np.zeros(3, np.float32)
  state['features.denseblock2.denselayer3.conv2.weight'] = np.zeros((32, 128, 1, 1), np.float32)
  with pytest.raises(conv_t.ConversionError) as e:
    conv_t.convert(state, conv_t.ARCHS['densenet169'], keep_head=True)
  message = str(e.value)
  assert 'Missing (1): features.norm5.running_var (jaxad batch_stats/final_bn/var)' in message
  assert 'Unexpected (1): features.extra.weight' in message
  assert ('Mis-shaped (1): features.denseblock2.denselayer3.conv2.weight (32, 128, 1, 1) -> jaxad '
          'params/denseblock2/layer2/conv2/kernel (1, 1, 128, 32) vs (3, 3, 128, 32)') in message
  # The same key under its old and its new name is a duplicate, not a silent overwrite.
  dup = conv_t.read_torch(torch_nets['densenet169'][1], conv_t.ARCHS['densenet169'])
  dup['features.denseblock1.denselayer1.norm.1.weight'] = dup['features.denseblock1.denselayer1.norm1.weight']
  with pytest.raises(conv_t.ConversionError, match=r'Duplicated \(1\): features\.denseblock1\.denselayer1\.norm1'):
    conv_t.convert(dup, conv_t.ARCHS['densenet169'])

  # The wrong architecture, through the command line: exit 1, one 'error:' message listing the file's names.
  path = torch_nets['resnet152'][1]
  rc, out, err = _convert_cli(conv_t, ['--arch', 'densenet169', '--input', str(path), '--output',
                                       str(tmp_path / 'x')], capsys)
  assert rc == 1 and err.startswith('error: ') and not (tmp_path / 'x').exists()
  assert 'layer4.2.conv3.weight' in err and 'features.conv0.weight (jaxad params/stem/conv/kernel)' in err
  assert f'sha256({path})' in out

  # Keras: a file missing a layer lists it under its Keras name.
  flat = conv_k.read_keras(str(keras_nets['resnet152'][1]), conv_k.ARCHS['resnet152'])
  flat = {k: v for k, v in flat.items() if not k.startswith('conv3_block2_2_bn/')}
  with pytest.raises(conv_k.ConversionError, match=r'Missing \(4\): ') as e:
    conv_k.convert(flat, conv_k.ARCHS['resnet152'])
  for leaf, jaxad_name in (('gamma', 'params/stage2/block1/bn2/scale'), ('beta', 'params/stage2/block1/bn2/bias'),
                           ('moving_mean', 'batch_stats/stage2/block1/bn2/mean'),
                           ('moving_variance', 'batch_stats/stage2/block1/bn2/var')):
    assert f'conv3_block2_2_bn/{leaf} (jaxad {jaxad_name})' in str(e.value)
  rc, _, err = _convert_cli(conv_k, ['--arch', 'resnet152', '--input', str(keras_nets['densenet169'][1]),
                                     '--output', str(tmp_path / 'y')], capsys)
  assert rc == 1 and 'conv2_block1_0_bn/gamma' in err and 'conv1_conv/bias (jaxad params/stem/conv/bias)' in err
  # A file that is not there: exit 1 with the download command.
  rc, _, err = _convert_cli(conv_k, ['--arch', 'densenet169', '--input', str(tmp_path / 'missing.h5'),
                                     '--output', str(tmp_path / 'z')], capsys)
  assert rc == 1 and 'wget https://storage.googleapis.com/tensorflow/keras-applications/densenet/' in err
  rc, _, err = _convert_cli(conv_t, ['--arch', 'resnet152', '--input', str(tmp_path / 'missing.pth'),
                                     '--output', str(tmp_path / 'z')], capsys)
  assert rc == 1 and 'https://download.pytorch.org/models/resnet152-394f9c45.pth' in err


@pytest.mark.parametrize('name', ['convert_keras', 'convert_torch_imagenet'])
def test_bad_output_exits_2_before_reading_or_writing(name, tmp_path, capsys):
  conv = _converter(name)
  existing = tmp_path / 'existing'
  existing.mkdir()
  (existing / 'keep.txt').write_text('x')
  missing_input = tmp_path / 'not_read.bin'  # never read: the output is checked first
  for output, pattern in ((existing, 'already exists; pass --force'), (missing_input, 'is the --input file'),
                          (missing_input / 'sub', 'lies inside --input')):
    rc, out, err = _convert_cli(conv, ['--arch', 'resnet152', '--input', str(missing_input), '--output',
                                       str(output)], capsys)
    assert rc == 2 and err.startswith('error: --output') and pattern in err, err
    assert 'sha256' not in out
  assert sorted(p.name for p in existing.iterdir()) == ['keep.txt'] and not missing_input.exists()


def test_archs_entries_describe_each_backbone():
  keras_conv, torch_conv = _converter('convert_keras'), _converter('convert_torch_imagenet')
  keras_archs, torch_archs = keras_conv.ARCHS, torch_conv.ARCHS
  assert sorted(keras_archs) == ['densenet169', 'inception_v3', 'resnet152']
  assert sorted(torch_archs) == ['densenet169', 'inception_v3', 'inception_v4', 'resnet152']
  for archs in (keras_archs, torch_archs):
    for name, arch in archs.items():
      assert arch.input_size == (299 if name.startswith('inception') else 224), name
      # Cadene's server has no https; every other source does.
      assert arch.url.startswith('http://data.lip6.fr/' if name == 'inception_v4' else 'https://'), name
      assert callable(arch.rename) != callable(arch.rename_file) and callable(arch.file_name), name
  assert {n: a.preprocess for n, a in keras_archs.items()} == {'densenet169': 'torch', 'resnet152': 'caffe',
                                                               'inception_v3': 'tf'}
  assert {n: a.preprocess for n, a in torch_archs.items()} == {'densenet169': 'torch', 'resnet152': 'torch',
                                                               'inception_v3': 'tf', 'inception_v4': 'tf'}
  assert keras_archs['resnet152'].build().stride_in_1x1 and not torch_archs['resnet152'].build().stride_in_1x1
  assert keras_archs['densenet169'].build().epsilon == 1.001e-5 and torch_archs['densenet169'].build().epsilon == 1e-5
  assert not keras_archs['inception_v3'].build().bn_scale and torch_archs['inception_v3'].build().bn_scale
  assert torch_archs['inception_v4'].build(num_classes=1001).num_classes == 1001
  with pytest.raises(ValueError, match='exactly one of rename and rename_file'):
    keras_conv.Arch(keras_archs['resnet152'].build, None, 'https://x', 224, 'torch')
  # The renaming functions and their inverses agree on every variable of the models (the order-based Keras
  # InceptionV3 renaming is checked on a real file in tests/inception_test.py).
  from jaxad.models import weights  # pylint: disable=g-import-not-at-top
  for archs in (keras_archs, torch_archs):
    for arch in archs.values():
      if arch.rename is None:
        continue
      template = weights.flatten(keras_conv.template_variables(arch))
      for name in template:
        assert arch.rename(arch.file_name(name)) == name, name
