r"""Converts keras.applications ImageNet weights (.h5, .weights.h5, .keras) into jaxad variables.

Sources (keras-team/keras-applications releases; see README.md here for licences, checksums and preprocessing):

  wget https://storage.googleapis.com/tensorflow/keras-applications/densenet/densenet169_weights_tf_dim_ordering_tf_kernels.h5
  python third_party_weights/convert_keras.py --arch densenet169 \
      --input densenet169_weights_tf_dim_ordering_tf_kernels.h5 --output /abs/path/densenet169_keras
  wget https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet152_weights_tf_dim_ordering_tf_kernels.h5
  python third_party_weights/convert_keras.py --arch resnet152 \
      --input resnet152_weights_tf_dim_ordering_tf_kernels.h5 --output /abs/path/resnet152_keras
  wget https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5
  python third_party_weights/convert_keras.py --arch inception_v3 \
      --input inception_v3_weights_tf_dim_ordering_tf_kernels.h5 --output /abs/path/inception_v3_keras

The file is read with h5py (`jaxad.models.keras_h5.read_keras_weights`: the legacy Keras-2 HDF5 layout of these
downloads, or Keras 3's `.weights.h5` / `.keras`); no Keras and no pickled code is involved. The output directory is
an Orbax checkpoint of `{'params': ..., 'batch_stats': ...}` for the Keras layout of the jaxad model
(`densenet169(weights='keras')`: BN epsilon 1.001e-5; `resnet152(weights='keras')`: stride on the first 1x1 conv,
conv biases, epsilon 1.001e-5; `inception_v3('keras')`: BN without gamma, epsilon 1e-3, average pooling that
excludes the padding), written with `jaxad.models.weights.save`. Without --keep_head the 1000-way
classifier is dropped: load the result with `weights.merge_params(loaded, model.init(...),
dont_load=[r'^params/head/'])`. With --keep_head the head is kept (logits; Keras applies a softmax after it).
Exit status: 0 done, 1 bad input file, 2 bad --output (nothing read or written).

Key mapping (Keras layer/weight -> jaxad; Keras-2 files name DenseNet's stem 'conv1/conv', Keras 3 'conv1_conv':
a '/' in a layer name is read as '_'). Kernels are HWIO / [in, out] in both, so nothing is transposed.
  <bn layer>/{gamma, beta}                    -> params/<bn>/{scale, bias}
  <bn layer>/{moving_mean, moving_variance}   -> batch_stats/<bn>/{mean, var}
  <conv layer>/{kernel, bias}                 -> params/<conv>/{kernel, bias}
  DenseNet: conv1_conv, conv1_bn              -> stem/conv, stem/bn
            conv{b+1}_block{i+1}_{0_bn, 1_conv, 1_bn, 2_conv}
                                              -> denseblock{b}/layer{i}/{bn1, conv1, bn2, conv2}
            pool{b+1}_{bn, conv}              -> transition{b}/{bn, conv};  bn -> final_bn
  ResNet:   conv1_conv, conv1_bn              -> stem/conv, stem/bn
            conv{s+1}_block{i+1}_{0, 1, 2, 3}_{conv, bn}
                                              -> stage{s}/block{i}/{proj_conv/bn, conv1/bn1, conv2/bn2, conv3/bn3}
  head:     fc1000 (DenseNet, Keras 2), probs (ResNet, Keras 2) or predictions (Keras 3) -> head
  InceptionV3: the layers are named automatically ('conv2d_1', 'batch_normalization_1', ...; the numbers depend on
            the process that built the model), so its i-th Conv2D and i-th BatchNormalization in MODEL order are
            the i-th conv unit of `inception_names.KERAS_V3_UNITS`; predictions -> head (see inception_names.py).
            Model order is the legacy file's `layer_names`, the .keras zip's config.json layer list, or for a
            Keras 3 .weights.h5 the numbers of its HDF5 groups (`layers/conv2d_<n>`, `keras_layer_order`). Its
            BN layers lack gamma, so a Keras 3 .weights.h5 also needs the model config (`read_keras(config=)`);
            the command line takes the legacy .h5 (the download) and .keras files.

`ARCHS` maps each --arch to an `Arch` (model builder, renaming function, URL, input size, preprocessing mode);
another backbone is one more entry (third_party_weights/convert_torch_imagenet.py shares `Arch` and `convert`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import re
import sys
from typing import Any, Callable, Mapping
import zipfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # inception_names beside this file
try:
  import jaxad  # noqa: F401
except ImportError:  # run as a script from a source checkout
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import inception_names  # noqa: E402
from jaxad.errors import DataError, UserError  # noqa: E402
from jaxad.models import densenet, inception, keras_h5, resnet_imagenet, weights  # noqa: E402

HEAD = r'^params/head/'
IGNORE = ''  # what a renaming function returns for a file entry that is read but not kept (BN step counters)


@dataclasses.dataclass(frozen=True)
class Arch:
  """How to convert one backbone's weights.

  Attributes:
    build: `build(num_classes=...) -> flax module` returning (logits, features), in the layout of these weights.
    rename: the file's '/'-joined weight name (Keras: '<layer>/<weight>'; PyTorch: the state_dict key) -> the jaxad
      '/'-joined variable name ('params/...' or 'batch_stats/...'); None when it has no place in the model (it is
      reported as unexpected), IGNORE ('') for an entry to skip (PyTorch's `num_batches_tracked`). None when
      `rename_file` is given.
    url: where the weights are downloaded from.
    input_size: the image side the weights were trained at (H = W); the template variables are built at this size.
    preprocess: the `jaxad.models.preprocess.imagenet_preprocess` mode the weights expect.
    file_name: optional inverse of `rename` (jaxad name -> the file's name), for naming missing weights in errors.
    transpose: PyTorch only: turn OIHW conv kernels into HWIO and [out, in] Linear weights into [in, out].
    rename_file: for files whose names alone do not say where a weight goes (Keras' auto-named InceptionV3 layers,
      matched by order): `rename_file(flat) -> rename`, given the whole `{file name: array}` dict in model order,
      returns the per-name renaming for that file (same contract as `rename`); it may raise DataError when the file
      cannot be matched at all. Used instead of `rename`.
  """
  build: Callable[..., Any]
  rename: Callable[[str], str | None] | None
  url: str
  input_size: int
  preprocess: str
  file_name: Callable[[str], str] | None = None
  transpose: bool = False
  rename_file: Callable[[Mapping[str, Any]], Callable[[str], str | None]] | None = None

  def __post_init__(self):
    if (self.rename is None) == (self.rename_file is None):
      raise ValueError(f'Arch needs exactly one of rename and rename_file; got rename={self.rename!r}, '
                       f'rename_file={self.rename_file!r}.')


class ConversionError(UserError, ValueError):
  """The weight file does not fit the jaxad model (missing, unexpected, mis-shaped or duplicated names)."""


_KERAS_BN = {'gamma': 'params/{}/scale', 'beta': 'params/{}/bias', 'moving_mean': 'batch_stats/{}/mean',
             'moving_variance': 'batch_stats/{}/var'}
_KERAS_CONV = {'kernel': 'params/{}/kernel', 'bias': 'params/{}/bias'}
_KERAS_HEADS = ('fc1000', 'probs', 'predictions')


def _keras_leaf(module: str, is_bn: bool, leaf: str) -> str | None:
  pattern = (_KERAS_BN if is_bn else _KERAS_CONV).get(leaf)
  return pattern.format(module) if pattern else None


def _split_keras(name: str) -> tuple[str, str]:
  layer, _, leaf = name.rpartition('/')
  return layer.replace('/', '_'), leaf  # Keras-2 'conv1/conv' is Keras 3's 'conv1_conv'


def rename_keras_densenet(name: str) -> str | None:
  """keras.applications DenseNet '<layer>/<weight>' -> jaxad name (see the module docstring), or None."""
  layer, leaf = _split_keras(name)
  if layer in _KERAS_HEADS:
    return _keras_leaf('head', False, leaf)
  if layer in ('conv1_conv', 'conv1_bn'):
    return _keras_leaf('stem/' + layer[6:], layer.endswith('bn'), leaf)
  if layer == 'bn':
    return _keras_leaf('final_bn', True, leaf)
  m = re.fullmatch(r'conv(\d+)_block(\d+)_(0_bn|1_conv|1_bn|2_conv)', layer)
  if m:
    block, i, part = int(m[1]) - 1, int(m[2]) - 1, m[3]
    if block < 1 or i < 0:
      return None
    module = {'0_bn': 'bn1', '1_conv': 'conv1', '1_bn': 'bn2', '2_conv': 'conv2'}[part]
    return _keras_leaf(f'denseblock{block}/layer{i}/{module}', part.endswith('bn'), leaf)
  m = re.fullmatch(r'pool(\d+)_(bn|conv)', layer)
  if m and int(m[1]) >= 2:
    return _keras_leaf(f'transition{int(m[1]) - 1}/{m[2]}', m[2] == 'bn', leaf)
  return None


def keras_name_densenet(name: str) -> str:
  """The Keras 3 '<layer>/<weight>' that `rename_keras_densenet` maps to jaxad `name` (for error messages)."""
  _, *mods, leaf = name.split('/')
  leaf = {'scale': 'gamma', 'bias': 'beta' if 'bn' in mods[-1] else 'bias', 'mean': 'moving_mean',
          'var': 'moving_variance'}.get(leaf, leaf)
  path = '/'.join(mods)
  m = re.fullmatch(r'denseblock(\d+)/layer(\d+)/(bn1|conv1|bn2|conv2)', path)
  if m:
    part = {'bn1': '0_bn', 'conv1': '1_conv', 'bn2': '1_bn', 'conv2': '2_conv'}[m[3]]
    layer = f'conv{int(m[1]) + 1}_block{int(m[2]) + 1}_{part}'
  elif re.fullmatch(r'transition(\d+)/(bn|conv)', path):
    b, part = re.fullmatch(r'transition(\d+)/(bn|conv)', path).groups()
    layer = f'pool{int(b) + 1}_{part}'
  else:
    layer = {'stem/conv': 'conv1_conv', 'stem/bn': 'conv1_bn', 'final_bn': 'bn', 'head': 'predictions'}.get(path, path)
  return f'{layer}/{leaf}'


def rename_keras_resnet(name: str) -> str | None:
  """keras.applications ResNet v1 '<layer>/<weight>' -> jaxad name (see the module docstring), or None."""
  layer, leaf = _split_keras(name)
  if layer in _KERAS_HEADS:
    return _keras_leaf('head', False, leaf)
  if layer in ('conv1_conv', 'conv1_bn'):
    return _keras_leaf('stem/' + layer[6:], layer.endswith('bn'), leaf)
  m = re.fullmatch(r'conv(\d+)_block(\d+)_([0-3])_(conv|bn)', layer)
  if m:
    stage, i, j, kind = int(m[1]) - 1, int(m[2]) - 1, m[3], m[4]
    if stage < 1 or i < 0:
      return None
    module = f'proj_{kind}' if j == '0' else f'{kind}{j}'
    return _keras_leaf(f'stage{stage}/block{i}/{module}', kind == 'bn', leaf)
  return None


def keras_name_resnet(name: str) -> str:
  """The Keras 3 '<layer>/<weight>' that `rename_keras_resnet` maps to jaxad `name` (for error messages)."""
  _, *mods, leaf = name.split('/')
  leaf = {'scale': 'gamma', 'bias': 'beta' if 'bn' in mods[-1] else 'bias', 'mean': 'moving_mean',
          'var': 'moving_variance'}.get(leaf, leaf)
  path = '/'.join(mods)
  m = re.fullmatch(r'stage(\d+)/block(\d+)/(proj_conv|proj_bn|conv\d|bn\d)', path)
  if m:
    module = m[3]
    part = f'0_{module[5:]}' if module.startswith('proj_') else f'{module[-1]}_{module[:-1]}'
    layer = f'conv{int(m[1]) + 1}_block{int(m[2]) + 1}_{part}'
  else:
    layer = {'stem/conv': 'conv1_conv', 'stem/bn': 'conv1_bn', 'head': 'predictions'}.get(path, path)
  return f'{layer}/{leaf}'


def rename_keras_inception_v3(flat: Mapping[str, Any]) -> Callable[[str], str | None]:
  """The renaming of one keras.applications InceptionV3 file, `flat` = `{'<layer>/<weight>': array}` in model order.

  Layers are matched by order (`inception_names.keras_inception_v3_names`); raises DataError when the file does not
  hold InceptionV3's 94 Conv2D and 94 BatchNormalization layers.
  """
  layers: dict[str, dict[str, Any]] = {}
  for name, array in flat.items():
    layer, _, leaf = name.rpartition('/')  # Keras-2 layer names may hold '/' themselves; weight names do not
    layers.setdefault(layer, {})[leaf] = array
  return inception_names.keras_inception_v3_names(layers).get


ARCHS: dict[str, Arch] = {
    'densenet169': Arch(
        functools.partial(densenet.densenet169, weights='keras'), rename_keras_densenet,
        'https://storage.googleapis.com/tensorflow/keras-applications/densenet/'
        'densenet169_weights_tf_dim_ordering_tf_kernels.h5', 224, 'torch', keras_name_densenet),
    'resnet152': Arch(
        functools.partial(resnet_imagenet.resnet152, weights='keras'), rename_keras_resnet,
        'https://storage.googleapis.com/tensorflow/keras-applications/resnet/'
        'resnet152_weights_tf_dim_ordering_tf_kernels.h5', 224, 'caffe', keras_name_resnet),
    'inception_v3': Arch(
        functools.partial(inception.inception_v3, 'keras'), None,
        'https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/'
        'inception_v3_weights_tf_dim_ordering_tf_kernels.h5', 299, 'tf', inception_names.keras_inception_v3_layer,
        rename_file=rename_keras_inception_v3),
}


def download_hint(arch: Arch, script: str) -> str:
  """How to get a fitting file (ends every error message)."""
  name = arch.url.rsplit('/', 1)[-1]
  return (f'Download the weights with:\n  wget {arch.url}\nthen run {script} --input {name} ...; see '
          'third_party_weights/README.md.')


@functools.lru_cache(maxsize=8)
def _variable_shapes(arch: Arch, num_classes: int) -> Any:
  model = arch.build(num_classes=num_classes)
  # At the weights' own size: shapes only (eval_shape), so the size costs nothing, and every backbone accepts it
  # (Inception needs >= inception.MIN_SIZE = 75; a fixed small size would not fit every future entry).
  size = max(arch.input_size, inception.MIN_SIZE)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3), jnp.float32),
                                           train=False))


def template_variables(arch: Arch, *, num_classes: int = 1000, keep_head: bool = True) -> dict[str, Any]:
  """The model's variable structure as zero arrays (shapes from `jax.eval_shape`: nothing is computed)."""
  zeros = jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), _variable_shapes(arch, num_classes))
  variables = {k: dict(v) for k, v in zeros.items()}
  if not keep_head:
    variables['params'].pop('head', None)
  return variables


def convert(flat: Mapping[str, Any], arch: Arch, *, keep_head: bool = False, source: str = 'the file',
            dtype: Any = np.float32) -> dict[str, Any]:
  """Renames (and for PyTorch, transposes) a flat `{file name: array}` dict into jaxad variables of `arch`.

  Every model variable must come from the file (except the head without `keep_head`), and every file weight must
  have a place (the head's are dropped without `keep_head`).

  Args:
    flat: the file's weights by '/'-joined name (Keras: `keras_h5.flatten_weights(read_keras_weights(path))`;
      PyTorch: the state dict).
    arch: an `ARCHS` entry.
    keep_head: keep the classifier (its size is read from the file); otherwise it is dropped and the result has no
      `params/head`.
    source: what `flat` is, for error messages.
    dtype: dtype of every returned array.

  Returns:
    `{'params': ..., 'batch_stats': ...}` nested dicts of numpy arrays.

  Raises:
    ConversionError: listing every missing, unexpected, mis-shaped and duplicated name, in the file's names (or,
      with `arch.rename_file`, saying why the file cannot be matched at all).
  """
  rename = arch.rename
  if arch.rename_file is not None:
    try:
      rename = arch.rename_file(flat)
    except DataError as e:
      raise ConversionError(f'{source} does not fit the jaxad model: {e}') from e
  loaded, origin, duplicated = {}, {}, []
  for key, value in flat.items():
    array = np.asarray(value)
    target = rename(key)
    if target is None:  # no place in the model: kept under its own name, so that merge_params reports it
      loaded[key] = array
      continue
    if target == IGNORE:
      continue
    if arch.transpose and array.ndim == 4:
      array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif arch.transpose and array.ndim == 2:
      array = array.T  # Linear [out, in] -> Dense [in, out]
    if target in origin:
      duplicated.append(f'{origin[target][0]} and {key} -> jaxad {target}')
    loaded[target] = array
    origin[target] = (key, tuple(np.shape(value)))
  head_shape = loaded.get('params/head/kernel', np.zeros((0, 1000))).shape
  if not keep_head:
    loaded = {k: v for k, v in loaded.items() if not re.search(HEAD, k)}
  template = template_variables(arch, num_classes=int(head_shape[-1]) or 1000, keep_head=keep_head)

  def file_name(name):
    if name in origin:
      key, shape = origin[name]
      return f'{key} {shape} -> jaxad {name}'
    if name in report.missing:
      return f'{arch.file_name(name)} (jaxad {name})' if arch.file_name else f'jaxad {name}'
    return name

  report = weights.compare(loaded, template)
  if report.ok and not duplicated:
    variables = weights.merge_params(loaded, template)
    return jax.tree.map(lambda a: np.asarray(a, dtype), variables)
  details = report.renamed(file_name).describe(limit=None)
  if duplicated:
    details += ('\n' if details else '') + f'Duplicated ({len(duplicated)}): ' + '; '.join(duplicated)
  raise ConversionError(f'{source} does not fit the jaxad model (keep_head={keep_head}); names are the file\'s '
                        f'(shapes as stored).\n{details}')


def keras_layer_order(path: str) -> list[str] | None:
  """The layer names of a Keras 3 weights file in model order (`model.layers`); None for the legacy layout.

  `keras_h5.read_keras_weights` returns a legacy file's layers in its `layer_names` order, which is model order, but
  a Keras 3 file's in HDF5 group order ('conv2d', 'conv2d_1', 'conv2d_10', ...). Keras 3's saver names the groups
  `layers/<snake class>[_<n>]` walking `model.layers`, so within a layer type the group number is the model order;
  a `.keras` zip also has config.json, whose layer list is in model order. (The layer NAMES' numbers are creation
  order, which is not model order inside an Inception block.) Called after `read_keras_weights` accepted the file.
  """
  import h5py  # pylint: disable=g-import-not-at-top  (only the Keras converter needs h5py)
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      if 'config.json' not in archive.namelist():
        return None
      config = json.loads(archive.read('config.json'))
    body = config.get('config', config)
    entries = body.get('layers', []) if isinstance(body, Mapping) else []
    return [e.get('name') or e.get('config', {}).get('name') for e in entries if isinstance(e, Mapping)]
  with h5py.File(path, 'r') as f:
    if 'layer_names' in f.attrs or 'model_weights' in f or 'layers' not in f:
      return None
    ranked = []
    for group_name, group in f['layers'].items():
      variables = group.get('vars') if hasattr(group, 'get') else None
      if variables is None or 'name' not in variables.attrs:
        continue
      kind, _, number = group_name.rpartition('_')
      kind, number = (kind, int(number)) if number.isdigit() else (group_name, 0)
      name = variables.attrs['name']
      ranked.append((kind, number, name.decode() if isinstance(name, bytes) else str(name)))
  return [name for _, _, name in sorted(ranked)]


def read_keras(path: str, arch: Arch, *, config: Mapping[str, Any] | str | None = None) -> dict[str, np.ndarray]:
  """`{'<layer>/<weight>': array}` of a Keras weights file (any layout `keras_h5` reads), layers in model order.

  `config` (the model config, or a config.json path) is only needed for a Keras 3 `.weights.h5` whose names the file
  alone does not settle (`keras_h5.read_keras_weights`), e.g. InceptionV3's gamma-less BatchNormalization; the
  command line reads the legacy `.h5` and `.keras` files, which need none.
  """
  layers = keras_h5.read_keras_weights(path, hint=download_hint(arch, 'convert_keras.py'), config=config)
  order = keras_layer_order(path)
  if order:
    rank = {name: i for i, name in enumerate(order)}
    layers = dict(sorted(layers.items(), key=lambda item: rank.get(item[0], len(rank))))  # stable: unranked last
  return keras_h5.flatten_weights(layers)


def run(argv, *, archs: Mapping[str, Arch], read: Callable[[str, Arch], Mapping[str, Any]], what: str,
        description: str) -> int:
  """The shared command line of the ImageNet converters; returns the exit status (0, 1 bad input, 2 bad --output)."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--arch', required=True, choices=sorted(archs), help='which backbone the file holds')
  parser.add_argument('--input', required=True, help=f'the {what} weights file')
  parser.add_argument('--output', required=True, help='checkpoint directory to create (Orbax)')
  parser.add_argument('--keep_head', action='store_true', help='keep the 1000-way classifier (default: drop it)')
  parser.add_argument('--force', action='store_true',
                      help='replace --output if it is an existing checkpoint (other files are never deleted)')
  args = parser.parse_args(argv)

  problem = weights.check_output_path(args.input, args.output, args.force)
  if problem:
    print(f'error: {problem}', file=sys.stderr)
    return 2
  arch = archs[args.arch]
  try:
    flat = read(args.input, arch)
    print(f'sha256({args.input}) = {weights.sha256(args.input)}')
    variables = convert(flat, arch, keep_head=args.keep_head, source=f'{what} weights {args.input}')
    out = weights.save(args.output, variables, force=args.force)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  n = sum(a.size for a in jax.tree.leaves(variables['params']))
  if args.keep_head:  # Cadene's Inception-V4 has 1001 classes: the model must be built with that many
    head = f'with the {variables["params"]["head"]["kernel"].shape[-1]}-way head'
  else:
    head = 'without the head (load with dont_load=[r"^params/head/"])'
  print(f'Wrote {out} ({args.arch}, {n:,} params {head}; input {arch.input_size}x{arch.input_size}, '
        f'preprocess mode {arch.preprocess!r}).')
  return 0


def main(argv=None) -> int:
  """Command line; returns 0 on success, 1 for a bad input file, 2 for a bad --output (nothing read or written)."""
  return run(argv, archs=ARCHS, read=read_keras, what='Keras', description=__doc__.split('\n\n')[0])


if __name__ == '__main__':
  sys.exit(main())
