"""Renaming of Inception-V3 / Inception-V4 weight files into jaxad variable names (`jaxad.models.inception`).

Pure functions from a file's names and arrays to `{'/'-joined jaxad name: np.ndarray}` (`torch_inception_v3`,
`torch_inception_v4`, `keras_inception_v3`), which `jaxad.models.weights.merge_params(loaded, model.init(...))` then
checks and merges (one error lists every missing, unexpected and mis-shaped leaf); per-name forms for the converter
CLIs' `Arch.rename` (`torch_inception_v3_name`, `torch_inception_v4_name`), and `keras_inception_v3_names`, which
needs the whole file because Keras layers are matched by order (`convert_keras.py` uses it as `Arch.rename_file`);
and the inverses for error messages (`torch_inception_v3_key`, `torch_inception_v4_key`, and by position
`keras_inception_v3_layer`). The CLIs (`convert_torch_imagenet.py`, `convert_keras.py`) read the files; nothing
here reads a file or runs pickled code.

torchvision `inception_v3` (`inception_v3_google-0cc3c7bd.pth`; `inception_v3('torchvision')`):
  Conv2d_1a_3x3.conv.weight [O,I,kh,kw]     -> params/conv2d_1a_3x3/conv/kernel [kh,kw,I,O]  (transpose(2, 3, 1, 0))
  Mixed_5b.branch1x1.bn.{weight,bias}       -> params/mixed5b/branch1x1/bn/{scale,bias}
  Mixed_5b.branch1x1.bn.running_{mean,var}  -> batch_stats/mixed5b/branch1x1/bn/{mean,var}
  fc.{weight,bias}                          -> params/head/{kernel (transposed), bias}
  AuxLogits.*, *.num_batches_tracked        -> dropped (the auxiliary classifier is no part of the jaxad model)
timm / Cadene `inception_v4` (`inceptionv4-8e4777a0.pth`, 1001 classes; timm's, 1000; `inception_v4(...)`):
  features.0/1/2.conv.weight                -> params/conv2d_1a_3x3, conv2d_2a_3x3, conv2d_2b_3x3 /conv/kernel
  features.{3..21}.<path>.{conv,bn}.*       -> params|batch_stats/<block>/<path with '.' -> '_'>/{conv,bn}/*, blocks
                                               mixed3a, mixed4a, mixed5a, inception_a1-4, reduction_a,
                                               inception_b1-7, reduction_b, inception_c1-3; e.g.
                                               features.6.branch1.0.conv.weight -> inception_a1/branch1_0/conv/kernel
  last_linear.{weight,bias}                 -> params/head/{kernel (transposed), bias}
keras.applications `InceptionV3` (`inception_v3_weights_tf_dim_ordering_tf_kernels[_notop].h5`;
`inception_v3('keras')`): the layers are named automatically ('conv2d_1' ... 'conv2d_94' in the Keras-2 download,
'conv2d' ... 'conv2d_93' in Keras 3, other numbers when a process made other layers first), so they are matched by
their ORDER in the file (the legacy root attribute `layer_names` lists `model.layers`), never by the number: the
i-th Conv2D and the i-th BatchNormalization are the i-th unit of `KERAS_V3_UNITS`.
  Conv2D kernel [kh,kw,I,O]                 -> params/<unit>/conv/kernel (Keras kernels are HWIO already)
  BatchNormalization beta                   -> params/<unit>/bn/bias (Keras' Inception BN has no gamma; a gamma
                                               would go to .../bn/scale)
  moving_mean, moving_variance              -> batch_stats/<unit>/bn/{mean,var}
  predictions kernel [I,O], bias            -> params/head/{kernel, bias}

Names that none of these rules know are kept under their own name (Keras: '<layer>/<weight>'), so that
`merge_params` reports them as unexpected instead of dropping them silently.
"""

from __future__ import annotations

import pathlib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

try:
  import jaxad  # noqa: F401
except ImportError:  # run as a script from a source checkout
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxad.errors import DataError  # noqa: E402
from jaxad.models.inception import V4_BLOCKS  # noqa: E402

# PyTorch BatchNorm2d leaf -> (jaxad collection, jaxad leaf).
_TORCH_BN = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'), 'running_mean': ('batch_stats', 'mean'),
             'running_var': ('batch_stats', 'var')}
_JAXAD_TO_TORCH = {('params', 'conv', 'kernel'): 'conv.weight', ('params', 'bn', 'scale'): 'bn.weight',
                   ('params', 'bn', 'bias'): 'bn.bias', ('batch_stats', 'bn', 'mean'): 'bn.running_mean',
                   ('batch_stats', 'bn', 'var'): 'bn.running_var'}
# Keras BatchNormalization weight -> (jaxad collection, jaxad leaf).
_KERAS_BN = {'gamma': ('params', 'scale'), 'beta': ('params', 'bias'), 'moving_mean': ('batch_stats', 'mean'),
             'moving_variance': ('batch_stats', 'var')}

_V3_TORCH = re.compile(r'^(Conv2d_(?:1a_3x3|2a_3x3|2b_3x3|3b_1x1|4a_3x3)|Mixed_(?:5[bcd]|6[a-e]|7[abc]))\.'
                       r'(?:(branch\w+)\.)?(conv|bn)\.(\w+)$')
_V4_TORCH = re.compile(r'^features\.(\d+)\.(?:([\w.]+?)\.)?(conv|bn)\.(\w+)$')
# torch's features.{i} of Inception-V4 -> jaxad block name.
V4_UNITS = ('conv2d_1a_3x3', 'conv2d_2a_3x3', 'conv2d_2b_3x3', *(name for name, _ in V4_BLOCKS))

# Inception-V3's 94 conv units in the order of Keras' `model.layers`, which is the order of the legacy file's
# `layer_names`. Keras sorts a functional model's layers by their depth from the output, ties in traversal order, so
# within a block the branches interleave (e.g. Mixed_5b: the first conv of the double-3x3 branch comes first, its
# own branch1x1 fourth); blocks never interleave, as each ends in a concatenation.
_KERAS_A = ('branch3x3dbl_1', 'branch5x5_1', 'branch3x3dbl_2', 'branch1x1', 'branch5x5_2', 'branch3x3dbl_3',
            'branch_pool')
_KERAS_B = ('branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3', 'branch3x3dbl_3')
_KERAS_C = ('branch7x7dbl_1', 'branch7x7dbl_2', 'branch7x7_1', 'branch7x7dbl_3', 'branch7x7_2', 'branch7x7dbl_4',
            'branch1x1', 'branch7x7_3', 'branch7x7dbl_5', 'branch_pool')
_KERAS_D = ('branch7x7x3_1', 'branch7x7x3_2', 'branch3x3_1', 'branch7x7x3_3', 'branch3x3_2', 'branch7x7x3_4')
_KERAS_E = ('branch3x3dbl_1', 'branch3x3_1', 'branch3x3dbl_2', 'branch3x3_2a', 'branch3x3_2b', 'branch3x3dbl_3a',
            'branch3x3dbl_3b', 'branch1x1', 'branch_pool')
_KERAS_BLOCKS = (('mixed5b', _KERAS_A), ('mixed5c', _KERAS_A), ('mixed5d', _KERAS_A), ('mixed6a', _KERAS_B),
                 ('mixed6b', _KERAS_C), ('mixed6c', _KERAS_C), ('mixed6d', _KERAS_C), ('mixed6e', _KERAS_C),
                 ('mixed7a', _KERAS_D), ('mixed7b', _KERAS_E), ('mixed7c', _KERAS_E))
KERAS_V3_UNITS: tuple[str, ...] = (
    'conv2d_1a_3x3', 'conv2d_2a_3x3', 'conv2d_2b_3x3', 'conv2d_3b_1x1', 'conv2d_4a_3x3',
    *(f'{block}/{branch}' for block, branches in _KERAS_BLOCKS for branch in branches))
KERAS_V3_HEAD = 'predictions'


def oihw_to_hwio(array: Any) -> np.ndarray:
  """A PyTorch conv weight [O, I, kh, kw] as a flax kernel [kh, kw, I, O]; arrays of another rank pass unchanged
  (merge_params then reports them as mis-shaped)."""
  array = np.asarray(array)
  return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array


def linear_to_dense(array: Any) -> np.ndarray:
  """A PyTorch nn.Linear weight [out, in] as a flax Dense kernel [in, out]; other ranks pass unchanged."""
  array = np.asarray(array)
  return array.T if array.ndim == 2 else array


def _torch_unit(path: str, unit: str, leaf: str) -> str | None:
  """The jaxad name of `<unit>.<leaf>` ('conv.weight', 'bn.running_mean', ...) of the conv unit at jaxad `path`."""
  if unit == 'conv' and leaf == 'weight':
    return f'params/{path}/conv/kernel'
  if unit == 'bn' and leaf in _TORCH_BN:
    collection, jleaf = _TORCH_BN[leaf]
    return f'{collection}/{path}/bn/{jleaf}'
  return None


def _torch_head(leaf: str) -> str | None:
  return {'weight': 'params/head/kernel', 'bias': 'params/head/bias'}.get(leaf)


def torch_inception_v3_name(key: str) -> str | None:
  """The jaxad name of one torchvision inception_v3 key: '' for a key to drop (`AuxLogits.*`,
  `num_batches_tracked`), None for a key with no place in the model (the converters' `Arch.rename` contract)."""
  if key.startswith('AuxLogits.') or key.endswith('.num_batches_tracked'):
    return ''
  if key.startswith('fc.'):
    return _torch_head(key[len('fc.'):])
  m = _V3_TORCH.match(key)
  if m is None:
    return None
  module, branch, unit, leaf = m.groups()
  module = module.lower().replace('mixed_', 'mixed')
  return _torch_unit(f'{module}/{branch}' if branch else module, unit, leaf)


def torch_inception_v4_name(key: str) -> str | None:
  """The jaxad name of one timm / Cadene inception_v4 key: '' for `num_batches_tracked`, None for a key with no
  place in the model.

  `features.{i}` is the i-th of `V4_UNITS`; inside a block the module path keeps its names with '.' -> '_'
  (`branch1.0` -> `branch1_0`, `branch3.1` -> `branch3_1`; Inception-C's `branch1_1a` stays). `last_linear` is the
  head (1001 classes in Cadene's file, 1000 in timm's).
  """
  if key.endswith('.num_batches_tracked'):
    return ''
  if key.startswith('last_linear.'):
    return _torch_head(key[len('last_linear.'):])
  m = _V4_TORCH.match(key)
  if m is None or int(m.group(1)) >= len(V4_UNITS):
    return None
  index, path, unit, leaf = m.groups()
  block = V4_UNITS[int(index)]
  return _torch_unit(f'{block}/{path.replace(".", "_")}' if path else block, unit, leaf)


def _rename_torch(state_dict: Mapping[str, Any], name_of, origin: dict[str, str] | None) -> dict[str, np.ndarray]:
  """Renames with `name_of(key)` (see torch_inception_v3_name) and transposes conv and Linear weights."""
  out: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    name = name_of(key)
    if name == '':
      continue
    array = np.asarray(value)
    if name is None:  # no place in the model: kept under its own name, so that merge_params reports it
      name = key
    elif name.endswith('/conv/kernel'):
      array = oihw_to_hwio(array)
    elif name == 'params/head/kernel':
      array = linear_to_dense(array)
    if name in out:
      raise DataError(f'Two keys of the state dict map to the jaxad name {name!r} (the second is {key!r}); '
                      'the file is not a plain Inception state dict.')
    out[name] = array
    if origin is not None:
      origin[name] = key
  return out


def torch_inception_v3(state_dict: Mapping[str, Any], *,
                       origin: dict[str, str] | None = None) -> dict[str, np.ndarray]:
  """torchvision inception_v3 state dict -> `{jaxad name: array}` for `inception_v3('torchvision')`.

  Args:
    state_dict: PyTorch key -> array (numpy arrays or CPU tensors; anything `np.asarray` takes), e.g. from
      `jaxad.models.weights.read_torch_state_dict`.
    origin: if given, filled with jaxad name -> PyTorch key (to re-word merge errors in the file's names).

  Returns:
    '/'-joined jaxad names ('params/mixed5b/branch1x1/conv/kernel', 'batch_stats/.../bn/mean', 'params/head/...')
    -> numpy arrays, conv weights as HWIO and the fc weight transposed. `AuxLogits.*` and `num_batches_tracked` are
    dropped; any other key that is not an Inception-V3 key is kept under its own name.

  Raises:
    DataError: two keys map to one jaxad name.
  """
  return _rename_torch(state_dict, torch_inception_v3_name, origin)


def torch_inception_v4(state_dict: Mapping[str, Any], *,
                       origin: dict[str, str] | None = None) -> dict[str, np.ndarray]:
  """timm / Cadene inception_v4 state dict -> `{jaxad name: array}` for `inception_v4(num_classes=...)`.

  Names as `torch_inception_v4_name`; arguments, result and errors as `torch_inception_v3`.
  """
  return _rename_torch(state_dict, torch_inception_v4_name, origin)


def _torch_key(name: str, module_key, head: str) -> str:
  """The PyTorch key of a jaxad name, `module_key(jaxad module path) -> torch module path | None`, `head` the torch
  classifier's name; unknown names as they are."""
  collection, *mods, leaf = name.split('/')
  if mods == ['head'] and collection == 'params' and leaf in ('kernel', 'bias'):
    return f"{head}.{'weight' if leaf == 'kernel' else 'bias'}"
  if len(mods) < 2 or (collection, mods[-1], leaf) not in _JAXAD_TO_TORCH:
    return name
  module = module_key(mods[:-1])
  return name if module is None else f'{module}.{_JAXAD_TO_TORCH[(collection, mods[-1], leaf)]}'


def torch_inception_v3_key(name: str) -> str:
  """The torchvision key a jaxad Inception-V3 name comes from ('params/mixed5b/branch1x1/conv/kernel' ->
  'Mixed_5b.branch1x1.conv.weight'); for naming missing keys in errors. Other names are returned unchanged."""

  def module_key(mods):
    first = mods[0]
    if first.startswith('mixed'):
      first = 'Mixed_' + first[len('mixed'):]
    elif first.startswith('conv2d_'):
      first = 'Conv2d_' + first[len('conv2d_'):]
    return '.'.join([first, *mods[1:]])

  return _torch_key(name, module_key, 'fc')


def torch_inception_v4_key(name: str) -> str:
  """The timm / Cadene key a jaxad Inception-V4 name comes from ('params/inception_a1/branch1_0/conv/kernel' ->
  'features.6.branch1.0.conv.weight'); for naming missing keys in errors. Other names are returned unchanged."""

  def module_key(mods):
    if mods[0] not in V4_UNITS or len(mods) > 2:
      return None
    parts = [f'features.{V4_UNITS.index(mods[0])}']
    if len(mods) == 2:
      sub = mods[1]
      # Inception-C names its conv units 'branch1_1a' etc. itself; everywhere else '_' was a Sequential's '.'.
      parts.append(sub if mods[0].startswith('inception_c') and sub != 'branch3_1' else sub.replace('_', '.'))
    return '.'.join(parts)

  return _torch_key(name, module_key, 'last_linear')


def keras_inception_v3_names(layers: Mapping[str, Mapping[str, Any]],
                             layer_order: Sequence[str] | None = None) -> dict[str, str]:
  """`{'<keras layer>/<weight>': jaxad name}` for every weight of a keras.applications InceptionV3 file.

  Conv2D layers (a 4-D `kernel`) and BatchNormalization layers (a `moving_mean`) are matched to `KERAS_V3_UNITS` by
  their order in `layer_order`, whatever their names; the Dense layer 'predictions' is the head (absent from the
  `_notop` file: then `params/head/*` is missing and the caller keeps a fresh head with `dont_load`). A weight with
  no place in the model (another layer's, a conv bias) maps to its own '<layer>/<weight>'. With this dict's `get`,
  the converters' per-name `Arch.rename` works for this one file.

  Args:
    layers: layer name -> {weight name: array}, weight names without layer prefix or ':0' ('kernel', 'beta',
      'moving_mean', ...), as `jaxad.models.keras_h5.read_keras_weights` returns; layers without weights may be
      absent. Only the names, and which weights a layer has, are used.
    layer_order: the layers in model order; names absent from `layers` are skipped. None: the order of `layers`
      itself, right for a legacy file (read_keras_weights keeps its `layer_names` order) but NOT for the Keras 3
      layout, whose layers read_keras_weights returns in HDF5 group order ('conv2d', 'conv2d_1', 'conv2d_10', ...):
      there pass the layer names of the model config (`[l['name'] for l in config['config']['layers']]`, from the
      .keras zip's config.json or `model.get_config()`), which are in model order, or the layer names sorted by
      their HDF5 group's number (`layers/conv2d_<n>` is the n-th Conv2D of `model.layers`), as
      `convert_keras.keras_layer_order` does. Sorting the layer NAMES by their numbers is wrong: Keras numbers
      names in creation order, which differs from model order inside each Inception block.

  Raises:
    DataError: a layer of `layers` is missing from `layer_order`, or the file does not hold exactly 94 Conv2D and
      94 BatchNormalization layers (then it is not Inception-V3, and matching by order would be wrong).
  """
  order = list(layers) if layer_order is None else list(layer_order)
  unordered = [name for name in layers if name not in set(order)]
  if unordered:
    raise DataError(f'Keras Inception-V3 weights: layer_order lacks {len(unordered)} layer(s) of the file '
                    f'({", ".join(unordered[:5])}); pass every layer in model order (the file\'s layer_names).')
  convs, bns, head = [], [], []
  for layer in order:
    if layer not in layers:
      continue  # a layer without weights (activation, pooling, concatenation)
    ws = layers[layer]
    if np.ndim(ws.get('kernel')) == 4:
      convs.append(layer)
    elif 'moving_mean' in ws:
      bns.append(layer)
    elif layer == KERAS_V3_HEAD:
      head.append(layer)
  n = len(KERAS_V3_UNITS)
  if len(convs) != n or len(bns) != n:
    raise DataError(f'Keras Inception-V3 weights hold {n} Conv2D and {n} BatchNormalization layers; these hold '
                    f'{len(convs)} and {len(bns)} (first: {convs[:1] + bns[:1]}). They are not '
                    'keras.applications.InceptionV3 weights, so their layers cannot be matched by order.')
  names = {}
  for unit, conv, bn in zip(KERAS_V3_UNITS, convs, bns):
    names[f'{conv}/kernel'] = f'params/{unit}/conv/kernel'
    for weight, (collection, leaf) in _KERAS_BN.items():
      names[f'{bn}/{weight}'] = f'{collection}/{unit}/bn/{leaf}'
  for layer in head:
    names[f'{layer}/kernel'], names[f'{layer}/bias'] = 'params/head/kernel', 'params/head/bias'
  return {f'{layer}/{weight}': names.get(f'{layer}/{weight}', f'{layer}/{weight}')
          for layer in order if layer in layers for weight in layers[layer]}


def keras_inception_v3_layer(name: str) -> str:
  """Where a jaxad Inception-V3 name comes from in a Keras file, by position (for naming missing weights in errors).

  Keras' layer names are not fixed (see the module docstring), so the layer is named by its rank among the file's
  Conv2D or BatchNormalization layers in model order: 'batch_stats/mixed5b/branch1x1/bn/var' ->
  'BatchNormalization 9 of 94 (mixed5b/branch1x1)/moving_variance', 'params/head/kernel' -> 'predictions/kernel'.
  Other names are returned unchanged.
  """
  collection, *mods, leaf = name.split('/')
  if mods == ['head'] and collection == 'params' and leaf in ('kernel', 'bias'):
    return f'{KERAS_V3_HEAD}/{leaf}'
  unit, kind = '/'.join(mods[:-1]), mods[-1] if mods else ''
  if unit not in KERAS_V3_UNITS:
    return name
  rank = f'{KERAS_V3_UNITS.index(unit) + 1} of {len(KERAS_V3_UNITS)} ({unit})'
  if kind == 'conv' and (collection, leaf) == ('params', 'kernel'):
    return f'Conv2D {rank}/kernel'
  keras_leaf = {value: key for key, value in _KERAS_BN.items()}.get((collection, leaf))
  return f'BatchNormalization {rank}/{keras_leaf}' if kind == 'bn' and keras_leaf else name


def keras_inception_v3(layers: Mapping[str, Mapping[str, Any]], layer_order: Sequence[str] | None = None, *,
                       origin: dict[str, str] | None = None) -> dict[str, np.ndarray]:
  """keras.applications InceptionV3 weights -> `{jaxad name: array}` for `inception_v3('keras')`.

  Matching by layer order as `keras_inception_v3_names` (same `layers`, `layer_order` and errors); Keras kernels are
  HWIO / [in, out] already, so nothing is transposed. Weights with no place in the model are kept as
  '<layer>/<weight>', so that merge_params reports them.

  Args:
    layers: see `keras_inception_v3_names`.
    layer_order: see `keras_inception_v3_names`.
    origin: if given, filled with jaxad name -> '<keras layer>/<weight>'.
  """
  out: dict[str, np.ndarray] = {}
  for source, name in keras_inception_v3_names(layers, layer_order).items():
    layer, _, weight = source.rpartition('/')
    out[name] = np.asarray(layers[layer][weight])
    if origin is not None:
      origin[name] = source
  return out
