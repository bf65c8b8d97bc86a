r"""Converts PyTorch ImageNet weights (torchvision densenet169, resnet152, inception_v3; Cadene / timm inception_v4
state dicts) into jaxad variables.

Sources (torchvision's model zoo and Cadene's pretrainedmodels; see README.md here for licences, checksums and
preprocessing). The 8 hex digits in each file name are, by the torch.hub convention, the start of the file's sha256,
which this script prints in full:

  wget https://download.pytorch.org/models/densenet169-b2777c0a.pth
  python third_party_weights/convert_torch_imagenet.py --arch densenet169 --input densenet169-b2777c0a.pth \
      --output /abs/path/densenet169_torchvision
  wget https://download.pytorch.org/models/resnet152-394f9c45.pth
  python third_party_weights/convert_torch_imagenet.py --arch resnet152 --input resnet152-394f9c45.pth \
      --output /abs/path/resnet152_torchvision
  wget https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth
  python third_party_weights/convert_torch_imagenet.py --arch inception_v3 --input inception_v3_google-0cc3c7bd.pth \
      --output /abs/path/inception_v3_torchvision
  wget http://data.lip6.fr/cadene/pretrainedmodels/inceptionv4-8e4777a0.pth
  python third_party_weights/convert_torch_imagenet.py --arch inception_v4 --input inceptionv4-8e4777a0.pth \
      --output /abs/path/inception_v4_cadene

Only torch state dicts (`torch.save` files: .pth, .bin) are read. timm's Inception-V4 (`timm/inception_v4.tf_in1k`
on the Hugging Face hub: Cadene's weights with a 1000-way head, same keys) is a `model.safetensors`; turn it into a
state dict first (pip install safetensors), then convert `inception_v4_timm.pth` with --arch inception_v4:
  python -c "import torch; from safetensors.torch import load_file; \
             torch.save(load_file('model.safetensors'), 'inception_v4_timm.pth')"

The file is read with `torch.load(weights_only=True)` (`jaxad.models.weights.read_torch_state_dict`), so no pickled
code runs. The output directory is an Orbax checkpoint of `{'params': ..., 'batch_stats': ...}` for the torchvision
layout of the jaxad model (`densenet169(weights='torchvision')`, `resnet152(weights='torchvision')`: ResNet v1.5
with the stride on the 3x3 conv, no conv biases, BN epsilon 1e-5; `inception_v3('torchvision')`;
`inception_v4(num_classes=...)`), written with `jaxad.models.weights.save`. Without --keep_head the classifier is
dropped: load the result with `weights.merge_params(loaded, model.init(...), dont_load=[r'^params/head/'])`. With
--keep_head its size is the file's (Cadene's Inception-V4: 1001 classes, class 0 = background; build
`inception_v4(num_classes=1001)`). Exit status: 0 done, 1 bad input file, 2 bad --output (nothing read or
written).

Key mapping (PyTorch -> jaxad). Conv weights OIHW -> HWIO kernels (transpose(2, 3, 1, 0)), Linear weights
transposed; `*.num_batches_tracked` is ignored (the flax-convention BN has no step counter).
  <bn>.{weight, bias}                     -> params/<bn>/{scale, bias}
  <bn>.{running_mean, running_var}        -> batch_stats/<bn>/{mean, var}
  DenseNet: features.conv0, features.norm0 -> stem/conv, stem/bn
            features.denseblock{b}.denselayer{i+1}.{norm1, conv1, norm2, conv2}
                                          -> denseblock{b}/layer{i}/{bn1, conv1, bn2, conv2}
              (older files name them norm.1, conv.1, norm.2, conv.2: both are read)
            features.transition{b}.{norm, conv} -> transition{b}/{bn, conv};  features.norm5 -> final_bn
            classifier                    -> head
  ResNet:   conv1, bn1                    -> stem/conv, stem/bn
            layer{s}.{i}.{conv1, bn1, conv2, bn2, conv3, bn3} -> stage{s}/block{i}/<same>
            layer{s}.{i}.downsample.{0, 1} -> stage{s}/block{i}/{proj_conv, proj_bn}
            fc                            -> head
  Inception-V3 (torchvision) and Inception-V4 (Cadene / timm `features.{i}`, `last_linear`): see
            inception_names.py (`torch_inception_v3_name`, `torch_inception_v4_name`); torchvision's auxiliary
            classifier `AuxLogits.*` is dropped (a training-time loss only).

`ARCHS` maps each --arch to a `convert_keras.Arch` (model builder, renaming function, URL, input size,
preprocessing mode); another backbone is one more entry.
"""

from __future__ import annotations

import functools
import pathlib
import re
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # convert_keras beside this file
try:
  import jaxad  # noqa: F401
except ImportError:  # run as a script from a source checkout
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from convert_keras import IGNORE, Arch, ConversionError, convert, download_hint, run  # noqa: E402,F401
import inception_names  # noqa: E402
from jaxad.models import densenet, inception, resnet_imagenet, weights  # noqa: E402

_BN = {'weight': 'params/{}/scale', 'bias': 'params/{}/bias', 'running_mean': 'batch_stats/{}/mean',
       'running_var': 'batch_stats/{}/var'}
_WEIGHTED = {'weight': 'params/{}/kernel', 'bias': 'params/{}/bias'}
_BN_BACK = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}


def _leaf(module: str, is_bn: bool, leaf: str) -> str | None:
  if is_bn and leaf == 'num_batches_tracked':
    return IGNORE
  pattern = (_BN if is_bn else _WEIGHTED).get(leaf)
  return pattern.format(module) if pattern else None


def rename_torch_densenet(key: str) -> str | None:
  """torchvision DenseNet state_dict key -> jaxad name (see the module docstring), IGNORE or None."""
  module, _, leaf = key.rpartition('.')
  simple = {'features.conv0': ('stem/conv', False), 'features.norm0': ('stem/bn', True),
            'features.norm5': ('final_bn', True), 'classifier': ('head', False)}
  if module in simple:
    return _leaf(simple[module][0], simple[module][1], leaf)
  m = re.fullmatch(r'features\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)\.?([12])', module)
  if m and int(m[2]) >= 1:
    kind = 'bn' if m[3] == 'norm' else 'conv'
    return _leaf(f'denseblock{int(m[1])}/layer{int(m[2]) - 1}/{kind}{m[4]}', kind == 'bn', leaf)
  m = re.fullmatch(r'features\.transition(\d+)\.(norm|conv)', module)
  if m:
    return _leaf(f'transition{int(m[1])}/' + ('bn' if m[2] == 'norm' else 'conv'), m[2] == 'norm', leaf)
  return None


def torch_name_densenet(name: str) -> str:
  """The (modern) torchvision key that `rename_torch_densenet` maps to jaxad `name` (for error messages)."""
  _, *mods, leaf = name.split('/')
  path = '/'.join(mods)
  is_bn = 'bn' in mods[-1]
  leaf = _BN_BACK[leaf] if is_bn else {'kernel': 'weight'}.get(leaf, leaf)
  m = re.fullmatch(r'denseblock(\d+)/layer(\d+)/(bn|conv)([12])', path)
  if m:
    module = f'features.denseblock{m[1]}.denselayer{int(m[2]) + 1}.' + ('norm' if m[3] == 'bn' else 'conv') + m[4]
  elif re.fullmatch(r'transition\d+/(bn|conv)', path):
    b, kind = re.fullmatch(r'transition(\d+)/(bn|conv)', path).groups()
    module = f'features.transition{b}.' + ('norm' if kind == 'bn' else 'conv')
  else:
    module = {'stem/conv': 'features.conv0', 'stem/bn': 'features.norm0', 'final_bn': 'features.norm5',
              'head': 'classifier'}.get(path, path)
  return f'{module}.{leaf}'


def rename_torch_resnet(key: str) -> str | None:
  """torchvision ResNet state_dict key -> jaxad name (see the module docstring), IGNORE or None."""
  module, _, leaf = key.rpartition('.')
  simple = {'conv1': ('stem/conv', False), 'bn1': ('stem/bn', True), 'fc': ('head', False)}
  if module in simple:
    return _leaf(simple[module][0], simple[module][1], leaf)
  m = re.fullmatch(r'layer(\d+)\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])', module)
  if m:
    part = {'downsample.0': 'proj_conv', 'downsample.1': 'proj_bn'}.get(m[3], m[3])
    return _leaf(f'stage{m[1]}/block{m[2]}/{part}', 'bn' in part, leaf)
  return None


def torch_name_resnet(name: str) -> str:
  """The torchvision key that `rename_torch_resnet` maps to jaxad `name` (for error messages)."""
  _, *mods, leaf = name.split('/')
  path = '/'.join(mods)
  is_bn = 'bn' in mods[-1]
  leaf = _BN_BACK[leaf] if is_bn else {'kernel': 'weight'}.get(leaf, leaf)
  m = re.fullmatch(r'stage(\d+)/block(\d+)/(\w+)', path)
  if m:
    part = {'proj_conv': 'downsample.0', 'proj_bn': 'downsample.1'}.get(m[3], m[3])
    module = f'layer{m[1]}.{m[2]}.{part}'
  else:
    module = {'stem/conv': 'conv1', 'stem/bn': 'bn1', 'head': 'fc'}.get(path, path)
  return f'{module}.{leaf}'


ARCHS: dict[str, Arch] = {
    'densenet169': Arch(
        functools.partial(densenet.densenet169, weights='torchvision'), rename_torch_densenet,
        'https://download.pytorch.org/models/densenet169-b2777c0a.pth', 224, 'torch', torch_name_densenet,
        transpose=True),
    'resnet152': Arch(
        functools.partial(resnet_imagenet.resnet152, weights='torchvision'), rename_torch_resnet,
        'https://download.pytorch.org/models/resnet152-394f9c45.pth', 224, 'torch', torch_name_resnet,
        transpose=True),
    'inception_v3': Arch(
        functools.partial(inception.inception_v3, 'torchvision'), inception_names.torch_inception_v3_name,
        'https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth', 299, 'tf',
        inception_names.torch_inception_v3_key, transpose=True),
    # Cadene's server is plain http; the printed sha256 is the check (README.md).
    'inception_v4': Arch(
        inception.inception_v4, inception_names.torch_inception_v4_name,
        'http://data.lip6.fr/cadene/pretrainedmodels/inceptionv4-8e4777a0.pth', 299, 'tf',
        inception_names.torch_inception_v4_key, transpose=True),
}


def read_torch(path: str, arch: Arch) -> dict[str, Any]:
  """The state dict as `{key: np.ndarray}` (no pickled code runs)."""
  return weights.read_torch_state_dict(path, hint=download_hint(arch, 'convert_torch_imagenet.py'))


def main(argv=None) -> int:
  """Command line; returns 0 on success, 1 for a bad input file, 2 for a bad --output (nothing read or written)."""
  return run(argv, archs=ARCHS, read=read_torch, what='PyTorch', description=__doc__.split('\n\n')[0])


if __name__ == '__main__':
  sys.exit(main())
