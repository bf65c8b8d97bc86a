"""Reads Keras weight files (legacy Keras-2 HDF5 and Keras 3 `.weights.h5` / `.keras`) into plain numpy dicts.

jaxad's converters for keras.applications backbones (DenseNet-169, ResNet-152, Inception-V3) need the weights of a
Keras model without Keras itself (Keras is not a jaxad dependency; h5py is). Two on-disk layouts exist:

* **Legacy Keras-2 HDF5** (what the keras.applications downloads such as
  `densenet169_weights_tf_dim_ordering_tf_kernels.h5` are; also Keras 3's `save_weights('x.h5')` via
  `keras.src.legacy.saving.legacy_h5_format`): the root (or its `model_weights` group, for a whole-model save) has
  the attribute `layer_names`; each layer's group has the attribute `weight_names`, e.g. `conv1/conv/kernel:0`, and
  the dataset of that name. Weights are named by their variable names.
* **Keras 3** (`model.save_weights('x.weights.h5')`, and `model.weights.h5` inside a `.keras` zip): groups
  `layers/<snake_case class name>[_<n>]/vars/<i>`; variable names are not stored, only their order. Newer Keras 3
  versions record the layer name as the attribute `name` of each `vars` group; a `.keras` zip also holds the model
  config (`config.json`), whose layer list gives the names (and the BatchNormalization `scale` / `center` options)
  in the order the group names were made. Variables are named by the layer type: Conv*/Dense `[kernel, bias]`,
  BatchNormalization `[gamma, beta, moving_mean, moving_variance]` without `gamma` when `scale=False` and without
  `beta` when `center=False`, etc. (`KERAS3_VARIABLES`); a type not in that table gets the names '0', '1', ...

Both give `{layer name: {weight name: np.ndarray}}` with the Keras weight names (`kernel`, `bias`, `gamma`, `beta`,
`moving_mean`, `moving_variance`, ...), so a converter handles both layouts with one renaming. Nothing is executed:
h5py reads arrays and attributes only, and `config.json` is parsed as JSON.

Layers without weights (activations, pooling, inputs) are left out of the result.
"""

from __future__ import annotations

from collections.abc import Mapping
import io
import json
import os
import re
from typing import Any
import zipfile

import numpy as np

from jaxad.errors import DataError

# Keras 3 stores `trainable variables + non-trainable variables` in creation order; these are their names by layer
# type (snake_case class name, as in the group names). BatchNormalization and LayerNormalization depend on
# scale/center (see `_bn_names`).
KERAS3_VARIABLES: dict[str, tuple[str, ...]] = {
    'conv1d': ('kernel', 'bias'),
    'conv2d': ('kernel', 'bias'),
    'conv3d': ('kernel', 'bias'),
    'conv1d_transpose': ('kernel', 'bias'),
    'conv2d_transpose': ('kernel', 'bias'),
    'conv3d_transpose': ('kernel', 'bias'),
    'depthwise_conv1d': ('kernel', 'bias'),
    'depthwise_conv2d': ('kernel', 'bias'),
    'separable_conv1d': ('depthwise_kernel', 'pointwise_kernel', 'bias'),
    'separable_conv2d': ('depthwise_kernel', 'pointwise_kernel', 'bias'),
    'dense': ('kernel', 'bias'),
    'embedding': ('embeddings',),
}
_NORMALIZATIONS = {'batch_normalization', 'layer_normalization'}

LEGACY_HINT = ('Keras 3 writes the legacy layout with keras.src.legacy.saving.legacy_h5_format.'
               'save_weights_to_hdf5_group(h5py.File(path, "w"), model); the .keras format also works.')


def to_snake_case(name: str) -> str:
  """Keras' snake_case of a class name ('BatchNormalization' -> 'batch_normalization', 'Conv2D' -> 'conv2d')."""
  name = re.sub(r'\W+', '', name)
  name = re.sub('(.)([A-Z][a-z]+)', r'\1_\2', name)
  return re.sub('([a-z])([A-Z])', r'\1_\2', name).lower()


def _text(value: Any) -> str:
  return value.decode('utf8') if isinstance(value, bytes) else str(value)


def _fail(path: str, problem: str, hint: str) -> DataError:
  return DataError(f'Keras weights {path} {problem}.' + (f' {hint}' if hint else ''))


def read_keras_weights(path: str | os.PathLike, *, hint: str = '',
                       config: Mapping[str, Any] | str | os.PathLike | None = None) -> dict[str, dict[str, np.ndarray]]:
  """`{layer name: {weight name: array}}` of a Keras weights file, legacy HDF5 or Keras 3 (see the module docstring).

  Args:
    path: a legacy Keras-2 `.h5` weights file (or whole-model `.h5`), a Keras 3 `.weights.h5`, or a `.keras` zip.
    hint: how to get a good file (e.g. the download command); ends every error message.
    config: only for a Keras 3 `.weights.h5` whose names cannot be told from the file alone (Keras versions that
      do not record layer names, or a BatchNormalization with 3 variables, where only the config says whether
      `gamma` or `beta` is absent): the model config as `model.get_config()` / the `config.json` of a `.keras`
      zip gives it (a dict, or the path of such a JSON file). A `.keras` zip uses its own config.

  Returns:
    Layer name -> weight name -> numpy array; weight names without the layer prefix and the `:0` suffix, e.g.
    `{'conv1/conv': {'kernel': [7, 7, 3, 64]}, 'conv1/bn': {'gamma': [64], 'beta': ..., 'moving_mean': ...,
    'moving_variance': ...}}`. Layers without weights are left out.

  Raises:
    DataError: naming the file and ending with `hint`, when it is missing, not HDF5 (or not a .keras zip holding
      model.weights.h5), corrupt, or in neither layout, or when Keras 3 names cannot be determined.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    problem = 'are a directory, not a file' if os.path.isdir(path) else 'do not exist'
    raise _fail(path, problem, hint)
  import h5py  # pylint: disable=g-import-not-at-top  (only converters need h5py)

  file_config = None
  try:
    if zipfile.is_zipfile(path):  # a .keras archive: config.json + model.weights.h5
      with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if 'model.weights.h5' not in names:
          raise _fail(path, f'are a zip archive without model.weights.h5 (it holds {sorted(names)[:5]}), so not a '
                      '.keras file; sharded .keras weights are not supported', hint)
        data = archive.read('model.weights.h5')
        if 'config.json' in names:
          file_config = json.loads(archive.read('config.json'))
      source: Any = io.BytesIO(data)
    else:
      if not h5py.is_hdf5(path):
        raise _fail(path, 'are not an HDF5 file (nor a .keras zip); the download may be incomplete or an HTML error '
                    'page: download it again', hint)
      source = path
    with h5py.File(source, 'r') as f:
      root = f['model_weights'] if 'layer_names' not in f.attrs and 'model_weights' in f else f
      if 'layer_names' in root.attrs:
        return _read_legacy(root)
      if 'layers' in f and isinstance(f['layers'], h5py.Group):
        if file_config is None and config is not None:
          file_config = _load_config(config, path, hint)
        return _read_keras3(f, file_config, path, hint)
      raise _fail(path, f'are HDF5 but in no known Keras layout (no "layer_names" attribute, no "layers" group; '
                  f'top-level keys: {sorted(f.keys())[:8]})', hint)
  except DataError:
    raise
  except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as e:  # truncated/corrupt files
    raise _fail(path, f'cannot be read ({type(e).__name__}: {e}); the file may be corrupt or truncated: download '
                'it again', hint) from e


def _load_config(config: Any, path: str, hint: str) -> Mapping[str, Any]:
  if isinstance(config, Mapping):
    return config
  try:
    with open(config, encoding='utf8') as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise _fail(path, f'need a model config, and config={os.fspath(config)!r} is not a readable JSON file ({e})',
                hint) from e


def _read_legacy(root: Any) -> dict[str, dict[str, np.ndarray]]:
  """The Keras-2 layout: `layer_names` -> groups with `weight_names` -> datasets."""
  out: dict[str, dict[str, np.ndarray]] = {}
  for layer in (_text(n) for n in root.attrs['layer_names']):
    group = root[layer]
    for full in (_text(n) for n in group.attrs.get('weight_names', [])):
      array = np.asarray(group[full])
      name = re.sub(r':\d+$', '', full)
      if name.startswith(layer + '/'):
        rest = name[len(layer) + 1:]
        # 'outer/inner/kernel' under a nested model 'outer' belongs to its layer 'inner'.
        owner, _, leaf = rest.rpartition('/')
        owner = owner or layer
      else:  # Keras 2 weights keep the name of the layer they were created in ('batch_normalization_1/gamma:0')
        owner, leaf = layer, name.rpartition('/')[2]
      out.setdefault(owner, {})[leaf] = array
  return out


def _config_entries(config: Mapping[str, Any], prefix: str, out: dict[str, Mapping[str, Any]]) -> None:
  """Fills `out` with '<h5 group path>' -> layer config entry, naming layers as Keras 3's saver does.

  The saver walks `model.layers` in order and names each `<snake_case class>` plus `_<n>` from the second one of a
  class on; a Sequential model's `layers` leaves out its InputLayer.
  """
  body = config.get('config', config)
  layers = body.get('layers') if isinstance(body, Mapping) else None
  if not isinstance(layers, list):
    return
  sequential = config.get('class_name') == 'Sequential'
  used: dict[str, int] = {}
  for entry in layers:
    if sequential and entry.get('class_name') == 'InputLayer':
      continue
    base = to_snake_case(entry.get('class_name', ''))
    if base in used:
      used[base] += 1
      key = f'{base}_{used[base]}'
    else:
      used[base] = 0
      key = base
    group = f'{prefix}layers/{key}'
    out[group] = entry
    _config_entries(entry, group + '/', out)


def _layer_config(entry: Mapping[str, Any] | None) -> Mapping[str, Any]:
  if not entry:
    return {}
  inner = entry.get('config', {})
  return inner if isinstance(inner, Mapping) else {}


def _variable_names(kind: str, count: int, layer_config: Mapping[str, Any], layer: str, path: str,
                    hint: str) -> list[str]:
  """Names of a Keras 3 layer's `count` stored variables (in stored order) from its type and config."""
  if kind in _NORMALIZATIONS:
    scale, center = layer_config.get('scale'), layer_config.get('center')
    stats = ['moving_mean', 'moving_variance'] if kind == 'batch_normalization' else []
    affine = count - len(stats)
    if scale is None or center is None:  # not recorded: the count decides unless it is ambiguous
      if affine == 2:
        scale = center = True
      elif affine == 0:
        scale = center = False
      else:
        raise _fail(path, f'hold {count} variables for the {kind} layer {layer!r}; whether its gamma (scale) or beta '
                    '(center) is absent is recorded only in the model config: convert the .keras file, pass '
                    'config=model.get_config() (or the path of a config.json), or save in the legacy layout '
                    f'({LEGACY_HINT})', hint)
    names = (['gamma'] if scale else []) + (['beta'] if center else []) + stats
  elif kind in KERAS3_VARIABLES:
    names = list(KERAS3_VARIABLES[kind])
  else:
    return [str(i) for i in range(count)]
  if len(names) < count or (kind in _NORMALIZATIONS and len(names) != count):
    raise _fail(path, f'hold {count} variables for the {kind} layer {layer!r}, expected {names}', hint)
  return names[:count]  # e.g. a Conv2D without bias stores only its kernel


def _read_keras3(f: Any, config: Mapping[str, Any] | None, path: str, hint: str) -> dict[str, dict[str, np.ndarray]]:
  """The Keras 3 layout: `layers/<snake class>[_n]/vars/<i>` (nested models recurse under their own `layers`)."""
  entries: dict[str, Mapping[str, Any]] = {}
  if config is not None:
    _config_entries(config, '', entries)
  groups: list[str] = []

  def visit(name, obj):
    if name.endswith('/vars') and name.startswith('layers/') and hasattr(obj, 'keys'):
      groups.append(name)

  f.visititems(visit)
  out: dict[str, dict[str, np.ndarray]] = {}
  for vars_path in groups:
    group = f[vars_path]
    keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if not keys:
      continue
    if not all(k.isdigit() for k in keys):
      raise _fail(path, f'have non-numeric variables {keys} under {vars_path}; not the Keras 3 layout', hint)
    layer_path = vars_path[:-len('/vars')]
    entry = entries.get(layer_path)
    kind = re.sub(r'_\d+$', '', layer_path.rpartition('/')[2])
    if entry is not None:
      kind = to_snake_case(entry.get('class_name', kind))
    if 'name' in group.attrs:
      layer = _text(group.attrs['name'])
    elif entry is not None and (entry.get('name') or _layer_config(entry).get('name')):
      layer = entry.get('name') or _layer_config(entry)['name']
    else:
      raise _fail(path, f'do not record the layer name of {layer_path} (older Keras 3 versions do not); convert the '
                  '.keras file instead, pass config=model.get_config() (or the path of its config.json), or save in '
                  f'the legacy layout ({LEGACY_HINT})', hint)
    names = _variable_names(kind, len(keys), _layer_config(entry), layer, path, hint)
    if layer in out:
      raise _fail(path, f'hold two layers named {layer!r} (nested models?); rename one before saving', hint)
    out[layer] = {name: _dataset(group[k]) for name, k in zip(names, keys)}
  return out


def _dataset(ds: Any) -> np.ndarray:
  array = np.asarray(ds)
  if ds.attrs.get('dtype') in ('bfloat16', b'bfloat16') and array.dtype.itemsize == 2:  # raw 16-bit words
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    array = array.view(ml_dtypes.bfloat16)
  return array


def flatten_weights(layers: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """`{'<layer>/<weight>': array}` of `read_keras_weights`' result (the names a converter's renaming starts from)."""
  return {f'{layer}/{name}': array for layer, ws in layers.items() for name, array in ws.items()}
