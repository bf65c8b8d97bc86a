"""Tests for jaxad.models.resnet26 and third_party_weights/convert_resnet26_torch.py.

The parity tests build the TransferAD ResNet26 in plain torch.nn (written here from the layout in
shared/spec/reference_implementations.md section 1.1; no torchvision), convert its state_dict and compare, in
float32, eval-mode logits/features and train-mode outputs plus every BN running-stat update.
"""

import importlib.util
import pathlib
import re
import sys

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.models import resnet26
from jaxad.models.resnet26 import ResNet26

try:
  import torch
except ImportError:  # the parity tests fail (not skip) below
  torch = None

REPO = pathlib.Path(__file__).resolve().parents[1]
TOL = 1e-5


def _require_torch():
  if torch is None:
    pytest.fail('PyTorch is required for the ResNet26 converter parity tests: pip install torch==2.13.0')


def _load_converter():
  name = 'convert_resnet26_torch'
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, REPO / 'third_party_weights' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep='/')


def _num_params(params, pattern=''):
  return sum(int(np.prod(v.shape)) for k, v in _flat(params).items() if re.search(pattern, k))


def _abstract_init(model, size=32, batch=2):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((batch, size, size, 3)), train=False))


def _count_by_hand(stem, widths, strides, *, adapters, num_classes=1, blocks=4):
  """Parameter count of a ResNet26 layout: bias-free convs, BN (scale, bias), Dense head."""
  conv = lambda cin, cout: 9 * cin * cout + (cin * cout if adapters else 0)
  total = conv(3, stem) + 2 * stem
  cin = stem
  for width in widths:
    for _ in range(blocks):
      total += conv(cin, width) + 2 * width + conv(width, width) + 2 * width
      cin = width
  return total + 2 * cin + cin * num_classes + num_classes


# ---------------------------------------------------------------------------------------------------------------
# Model structure.


def test_param_counts_transferad():
  params = _abstract_init(ResNet26())['params']
  assert _num_params(params) == 5_834_305
  assert _num_params(params, 'conv') == 5_826_240  # 3x3 conv weights
  assert _num_params(params, 'bn') == 7_808
  assert _num_params(params, 'head') == 257

  params = _abstract_init(ResNet26(adapters=True))['params']
  assert _num_params(params) == 6_481_665
  assert _num_params(params, 'adapter') == 647_360
  assert _num_params(params, 'stem/adapter') == 192
  for stage, n in (('layer1', 32_768), ('layer2', 122_880), ('layer3', 491_520)):
    assert _num_params(params, f'{stage}_.*adapter') == n
  assert _num_params(params, 'adapter|bn|head') == 655_425  # ADRA's trainable set
  assert _count_by_hand(64, (64, 128, 256), (1, 2, 2), adapters=True) == 6_481_665


def test_param_counts_rebuffi():
  # Stem 3->32 + BN; stages 64/128/256 (layer1[0] widens 32->64 with the zero-pad shortcut); end BN; head.
  expected = (3 * 32 * 9 + 64
              + (32 * 64 * 9 + 7 * 64 * 64 * 9 + 8 * 128)
              + (64 * 128 * 9 + 7 * 128 * 128 * 9 + 8 * 256)
              + (128 * 256 * 9 + 7 * 256 * 256 * 9 + 8 * 512)
              + 512 + 257)
  assert expected == 5_814_945
  assert _num_params(_abstract_init(ResNet26(variant='rebuffi'))['params']) == expected
  expected_adapters = _count_by_hand(32, (64, 128, 256), (2, 2, 2), adapters=True)
  params = _abstract_init(ResNet26(variant='rebuffi', adapters=True))['params']
  assert _num_params(params) == expected_adapters
  assert _num_params(params, 'adapter') == expected_adapters - expected


def test_freezing_regexes_separate_parameter_groups():
  names = list(_flat(_abstract_init(ResNet26(adapters=True))['params']))
  groups = {pattern: {n for n in names if re.search(pattern, n)} for pattern in ('conv', 'adapter', 'bn', 'head')}
  assert len(groups['conv']) == 25 and len(groups['adapter']) == 25
  assert len(groups['bn']) == 2 * 26 and len(groups['head']) == 2
  assert sum(len(g) for g in groups.values()) == len(names)  # disjoint and complete
  assert set().union(*groups.values()) == set(names)
  for n in ('stem/conv/kernel', 'stem/adapter/kernel', 'stem/bn/scale', 'layer1_0/conv1/kernel',
            'layer1_0/adapter1/kernel', 'layer1_0/bn1/bias', 'layer3_3/conv2/kernel', 'end_bn/scale', 'head/kernel'):
    assert n in names


@pytest.mark.parametrize('variant,size,spatial', [
    ('transferad', 32, (32, 32, 16, 8)),
    ('transferad', 96, (96, 96, 48, 24)),
    ('rebuffi', 32, (32, 16, 8, 4)),
    ('rebuffi', 96, (96, 48, 24, 12)),
])
def test_output_and_feature_shapes(variant, size, spatial):
  model = ResNet26(num_classes=3, variant=variant, adapters=True)
  x = jnp.zeros((2, size, size, 3))
  variables = _abstract_init(model, size)
  for train in (False, True):
    (logits, feats), _ = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=train, mutable=['batch_stats']), variables, x)
    assert logits.shape == (2, 3)
    stem = 64 if variant == 'transferad' else 32
    expected = {'stem': (2, spatial[0], spatial[0], stem), 'layer1': (2, spatial[1], spatial[1], 64),
                'layer2': (2, spatial[2], spatial[2], 128), 'layer3': (2, spatial[3], spatial[3], 256),
                'end': (2, spatial[3], spatial[3], 256), 'pooled': (2, 256)}
    assert {k: v.shape for k, v in feats.items()} == expected


def test_init_statistics():
  variables = ResNet26(adapters=True).init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)), train=False)
  p = _flat(variables['params'])
  w = np.asarray(p['layer3_1/conv1/kernel'])  # He fan-out: std sqrt(2 / (3*3*256))
  np.testing.assert_allclose(w.std(), np.sqrt(2 / (9 * 256)), rtol=0.02)
  a = np.asarray(p['layer3_1/adapter1/kernel'])  # std sqrt(2 / 256)
  np.testing.assert_allclose(a.std(), np.sqrt(2 / 256), rtol=0.05)
  for name in ('head/kernel', 'head/bias'):  # PyTorch Linear default: U(-1/16, 1/16)
    assert np.abs(np.asarray(p[name])).max() <= 1 / 16
  np.testing.assert_array_equal(p['layer2_0/bn1/scale'], 1.0)
  np.testing.assert_array_equal(p['layer2_0/bn1/bias'], 0.0)
  zeros = ResNet26(adapters=True, adapter_init='zeros').init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)),
                                                              train=False)
  assert all(not np.any(v) for k, v in _flat(zeros['params']).items() if 'adapter' in k)


def test_zero_adapters_match_plain_network():
  x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
  plain = ResNet26()
  v_plain = plain.init(jax.random.key(3), x, train=False)
  adapted = ResNet26(adapters=True, adapter_init='zeros')
  v_adapted = adapted.init(jax.random.key(4), x, train=False)
  flat = _flat(v_adapted)
  for k, v in _flat(v_plain).items():  # same base weights, zero adapters on top
    flat[k] = v
  v_adapted = traverse_util.unflatten_dict(flat, sep='/')
  for train in (False, True):
    (lp, fp), up = plain.apply(v_plain, x, train=train, mutable=['batch_stats'])
    (la, fa), ua = adapted.apply(v_adapted, x, train=train, mutable=['batch_stats'])
    np.testing.assert_array_equal(lp, la)
    np.testing.assert_array_equal(fp['pooled'], fa['pooled'])
    jax.tree.map(np.testing.assert_array_equal, up, ua)


def test_bad_arguments():
  x = jnp.zeros((1, 8, 8, 3))
  for model, match in ((ResNet26(variant='resnet'), 'transferad'), (ResNet26(adapter_init='ones'), 'zeros')):
    with pytest.raises(ValueError, match=match):
      model.init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match='NHWC'):
    ResNet26().init(jax.random.key(0), jnp.zeros((8, 8, 3)), train=False)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference and converter.


def _torch_resnet26(*, adapters=False, num_classes=1):
  """TransferAD's ResNet26 in plain torch.nn, with the checkpoint's module names."""
  nn, F = torch.nn, torch.nn.functional

  class Block(nn.Module):

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      if adapters:
        self.ra1 = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.ra2 = nn.Conv2d(cout, cout, 1, 1, 0, bias=False)
      self.pool_and_pad = stride != 1 or cin != cout

    def forward(self, x):
      h = self.conv1(x) + (self.ra1(x) if adapters else 0)
      h = F.relu(self.bn1(h))
      h = self.conv2(h) + (self.ra2(h) if adapters else 0)
      h = self.bn2(h)
      skip = x
      if self.pool_and_pad:
        skip = F.avg_pool2d(x, 2)
        skip = torch.cat([skip, torch.zeros_like(skip)], dim=1)
      return F.relu(h + skip)

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.pre_conv = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
      if adapters:
        self.pre_ra = nn.Conv2d(3, 64, 1, 1, 0, bias=False)
      self.pre_bn = nn.BatchNorm2d(64)
      cin = 64
      for stage, (width, stride) in enumerate(zip((64, 128, 256), (1, 2, 2)), start=1):
        blocks = []
        for i in range(4):
          blocks.append(Block(cin, width, stride if i == 0 else 1))
          cin = width
        setattr(self, f'layer{stage}', nn.ModuleList(blocks))
      self.end_bn_relu = nn.Sequential(nn.BatchNorm2d(256), nn.ReLU())
      self.linears = nn.Linear(256, num_classes)

    def forward(self, x):
      h = self.pre_conv(x) + (self.pre_ra(x) if adapters else 0)
      h = F.relu(self.pre_bn(h))
      for stage in (self.layer1, self.layer2, self.layer3):
        for block in stage:
          h = block(h)
      pooled = self.end_bn_relu(h).mean(dim=(2, 3))
      return self.linears(pooled), pooled

  torch.manual_seed(0)
  net = Net()
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for module in net.modules():  # randomise BN affine and running stats, so that none is at its default
      if isinstance(module, nn.BatchNorm2d):
        c = module.num_features
        module.weight.copy_(0.5 + torch.rand(c, generator=gen))
        module.bias.copy_(0.1 * torch.randn(c, generator=gen))
        module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
        module.running_var.copy_(0.5 + torch.rand(c, generator=gen))
        module.num_batches_tracked.fill_(7)
  return net


def _numpy_state_dict(net):
  return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def _assert_close(actual, expected, what):
  expected = np.asarray(expected)
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=TOL, atol=TOL * scale, err_msg=what)


def _inputs(batch=3, size=32):
  x = np.random.default_rng(5).normal(size=(batch, size, size, 3)).astype(np.float32)
  return x, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


@pytest.mark.parametrize('adapters', [False, True])
def test_converter_parity_eval(adapters):
  _require_torch()
  conv = _load_converter()
  net = _torch_resnet26(adapters=adapters, num_classes=5).eval()
  variables = conv.convert_state_dict(_numpy_state_dict(net), adapters=adapters, num_classes=5, keep_head=True)
  x, xt = _inputs()
  with torch.no_grad():
    logits_t, pooled_t = net(xt)
  model = ResNet26(num_classes=5, adapters=adapters)
  logits, feats = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  _assert_close(logits, logits_t.numpy(), 'logits')
  _assert_close(feats['pooled'], pooled_t.numpy(), 'pooled')


def test_converter_parity_train_mode_and_bn_updates():
  _require_torch()
  conv = _load_converter()
  net = _torch_resnet26(num_classes=1).train()
  before = _numpy_state_dict(net)
  variables = conv.convert_state_dict(before, keep_head=True)
  x, xt = _inputs()
  with torch.no_grad():
    logits_t, pooled_t = net(xt)
  (logits, feats), updates = ResNet26().apply(variables, x, train=True, mutable=['batch_stats'])
  _assert_close(logits, logits_t.numpy(), 'train logits')
  _assert_close(feats['pooled'], pooled_t.numpy(), 'train pooled')

  after = conv.convert_state_dict(_numpy_state_dict(net), keep_head=True)['batch_stats']
  got = _flat(updates['batch_stats'])
  assert len(got) == 2 * 26
  for name, expected in _flat(after).items():
    assert not np.allclose(expected, _flat(variables['batch_stats'])[name])  # the stats did move
    _assert_close(got[name], expected, f'running stat {name}')


def test_converter_drops_head_and_inits_adapters():
  _require_torch()
  conv = _load_converter()
  sd = _numpy_state_dict(_torch_resnet26(num_classes=1000))
  variables = conv.convert_state_dict(sd, adapters=True, rng=7)
  template = conv.template_variables(adapters=True, rng=7)
  assert jax.tree.structure(variables) == jax.tree.structure(template)
  flat, flat_t = _flat(variables), _flat(template)
  np.testing.assert_array_equal(flat['params/head/kernel'], flat_t['params/head/kernel'])  # fresh 256 -> 1 head
  assert flat['params/head/kernel'].shape == (256, 1)
  np.testing.assert_array_equal(flat['params/layer2_0/adapter1/kernel'], flat_t['params/layer2_0/adapter1/kernel'])
  np.testing.assert_array_equal(flat['params/layer2_0/conv1/kernel'], sd['layer2.0.conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(flat['batch_stats/end_bn/var'], sd['end_bn_relu.0.running_var'])
  assert all(v.dtype == np.float32 for v in flat.values())


def test_converter_reports_missing_unexpected_and_misshaped_keys():
  _require_torch()
  conv = _load_converter()
  sd = _numpy_state_dict(_torch_resnet26())
  del sd['layer2.1.bn1.running_var']
  sd['layer4.0.conv1.weight'] = np.zeros((512, 256, 3, 3), np.float32)
  sd['layer3.0.conv1.weight'] = np.zeros((256, 128, 1, 1), np.float32)
  with pytest.raises(conv.ConversionError) as info:
    conv.convert_state_dict(sd)
  message = str(info.value)
  assert 'Missing (1): layer2.1.bn1.running_var' in message
  assert 'Unexpected (1): layer4.0.conv1.weight' in message
  assert 'Mis-shaped (1): layer3.0.conv1.weight' in message
  assert isinstance(info.value, ValueError)

  sd = _numpy_state_dict(_torch_resnet26(adapters=True))
  with pytest.raises(conv.ConversionError, match='pre_ra.weight'):
    conv.convert_state_dict(sd, adapters=False)


def test_converter_cli_writes_orbax_checkpoint(tmp_path, capsys):
  _require_torch()
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  conv = _load_converter()
  net = _torch_resnet26(num_classes=10)
  pth = tmp_path / 'resnet26.pth'
  torch.save(net.state_dict(), pth)
  out = tmp_path / 'ckpt'
  assert conv.main(['--input', str(pth), '--output', str(out), '--adapters']) == 0
  printed = capsys.readouterr().out
  assert conv.sha256(pth) in printed
  restored = ocp.StandardCheckpointer().restore(out)
  expected = conv.convert_state_dict(_numpy_state_dict(net), adapters=True, rng=0)
  assert jax.tree.structure(restored) == jax.tree.structure(expected)
  jax.tree.map(np.testing.assert_array_equal, restored, expected)

  assert conv.main(['--input', str(tmp_path / 'nope.pth'), '--output', str(tmp_path / 'x')]) == 1
  err = capsys.readouterr().err
  assert 'not found' in err and conv.DRIVE_ID in err and 'gdown' in err
