r"""Converts TransferAD's ImageNet-32 ResNet26 (`resnet26.pth`, a PyTorch state_dict) into jaxad variables.

Source: VICO-UoE/TransferAD, Google Drive id 1uRmyJfs5OW2s0USoue6WbPdr_04MNOFI (see README.md here).

  pip install gdown torch==2.13.0
  gdown "https://drive.google.com/uc?id=1uRmyJfs5OW2s0USoue6WbPdr_04MNOFI" -O resnet26.pth
  python third_party_weights/convert_resnet26_torch.py --input resnet26.pth --output /abs/path/resnet26_transferad

The output directory is an Orbax `StandardCheckpointer` checkpoint of `{'params': ..., 'batch_stats': ...}` for
`jaxad.models.resnet26.ResNet26(variant='transferad', adapters=..., num_classes=...)`, written and read with
`jaxad.models.weights.save` / `load` (numpy arrays; `orbax.checkpoint.StandardCheckpointer().restore(path)` works
too). The input is read with `torch.load(..., weights_only=True)`, so no pickled code runs. An --output that exists
is refused unless --force (which replaces only an existing checkpoint); an --output that is, lies in or contains
--input is always refused. Exit status: 0 done, 1 bad input file, 2 bad --output (nothing read or written).

Key mapping (PyTorch -> jaxad):
  pre_conv.weight [O,I,3,3]              -> params/stem/conv/kernel [3,3,I,O]   (transpose(2, 3, 1, 0))
  pre_ra.weight (ADRA nets only)         -> params/stem/adapter/kernel
  pre_bn.{weight,bias}                   -> params/stem/bn/{scale,bias}
  pre_bn.{running_mean,running_var}      -> batch_stats/stem/bn/{mean,var}
  layer{s}.{i}.conv{j}.weight            -> params/layer{s}_{i}/conv{j}/kernel
  layer{s}.{i}.ra{j}.weight (ADRA only)  -> params/layer{s}_{i}/adapter{j}/kernel
  layer{s}.{i}.bn{j}.*                   -> layer{s}_{i}/bn{j}/*
  end_bn_relu.0.*                        -> end_bn/*
  linears.{weight,bias}                  -> params/head/{kernel (transposed), bias}, only with keep_head
  *.num_batches_tracked                  -> ignored (the flax-convention BN has no step counter)
Adapters absent from the checkpoint and the (new) AD head are initialised as `ResNet26.init` does. The renamed
arrays are merged into those initial variables with `weights.merge_params`, so one error lists every missing,
unexpected and mis-shaped key.
"""

import argparse
import os
import pathlib
import re
import sys
from typing import Any, Mapping

import numpy as np

try:
  import jaxad  # noqa: F401
except ImportError:  # run as a script from a source checkout
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxad.errors import UserError  # noqa: E402
from jaxad.models import weights  # noqa: E402
from jaxad.models.resnet26 import ResNet26  # noqa: E402

DRIVE_ID = '1uRmyJfs5OW2s0USoue6WbPdr_04MNOFI'
DOWNLOAD_HINT = (
    "TransferAD's ImageNet-32 ResNet26 is on Google Drive (id " + DRIVE_ID + "). Download it with:\n"
    "  pip install gdown\n"
    '  gdown "https://drive.google.com/uc?id=' + DRIVE_ID + '" -O resnet26.pth\n'
    'See third_party_weights/README.md.')

_BN_KEYS = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
            'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var')}
ADAPTER = r'(^|/)adapter\d*/'  # jaxad names of the 1x1 adapters
_MODULES = re.compile(r'^(pre_conv|pre_ra|pre_bn|end_bn_relu\.0|linears|layer([123])\.([0-3])\.(conv|ra|bn)([12]))\.(\w+)$')


class ConversionError(UserError, ValueError):
  """The state dict does not fit the jaxad ResNet26 (missing, unexpected or mis-shaped keys)."""


def _target(key: str) -> tuple[str, tuple[str, ...], str] | None:
  """Maps a PyTorch key to (collection, jaxad module path, kind) or None if it is not a ResNet26 key.

  kind is 'conv' (OIHW -> HWIO), 'linear' (transpose), 'copy' or 'ignore'.
  """
  m = _MODULES.match(key)
  if m is None:
    return None
  module, stage, block, kind, idx, leaf = m.groups()
  if stage is not None:
    prefix = (f'layer{stage}_{block}',)
    name = {'conv': 'conv', 'ra': 'adapter', 'bn': 'bn'}[kind] + idx
    is_bn = kind == 'bn'
  else:
    prefix, name = {'pre_conv': ((), 'stem/conv'), 'pre_ra': ((), 'stem/adapter'), 'pre_bn': ((), 'stem/bn'),
                    'end_bn_relu.0': ((), 'end_bn'), 'linears': ((), 'head')}[module]
    is_bn = module in ('pre_bn', 'end_bn_relu.0')
  path = prefix + tuple(name.split('/'))
  if is_bn:
    if leaf == 'num_batches_tracked':
      return ('', path, 'ignore')
    if leaf not in _BN_KEYS:
      return None
    collection, jleaf = _BN_KEYS[leaf]
    return (collection, path + (jleaf,), 'copy')
  if module == 'linears':
    if leaf == 'weight':
      return ('params', path + ('kernel',), 'linear')
    return ('params', path + ('bias',), 'copy') if leaf == 'bias' else None
  return ('params', path + ('kernel',), 'conv') if leaf == 'weight' else None


def template_variables(*, adapters: bool = False, num_classes: int = 1, rng: Any = 0) -> dict[str, Any]:
  """Freshly initialised jaxad ResNet26 (TransferAD layout) variables, as nested dicts of numpy arrays."""
  key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
  model = ResNet26(num_classes=num_classes, variant='transferad', adapters=adapters)
  # Parameter shapes do not depend on the image size; 8x8 keeps the init cheap.
  variables = model.init(key, jnp.zeros((1, 8, 8, 3), jnp.float32), train=False)
  return jax.tree.map(np.asarray, {k: dict(v) for k, v in variables.items()})


def _name(collection: str, path: tuple[str, ...]) -> str:
  return '/'.join((collection,) + path)


def convert_state_dict(state_dict: Mapping[str, Any], *, adapters: bool = False, num_classes: int = 1,
                       keep_head: bool = False, rng: Any = 0, dtype: Any = np.float32) -> dict[str, Any]:
  """Converts a TransferAD ResNet26 state dict into jaxad `{'params': ..., 'batch_stats': ...}`.

  The state dict is renamed and transposed into jaxad names, then merged into `template_variables(...)` with
  `jaxad.models.weights.merge_params`: the AD head (unless keep_head) and, when the file has none, the adapters keep
  their fresh initialisation; every other leaf must come from the file.

  Args:
    state_dict: PyTorch key -> array (numpy arrays, or CPU tensors; anything `np.asarray` takes).
    adapters: build the ADRA net; adapters absent from the checkpoint (the usual case) are freshly initialised, and
      a checkpoint that has adapters must have all of them.
    num_classes: outputs of the head; with keep_head it must equal the checkpoint's `linears` size.
    keep_head: convert `linears.*` into `head` instead of dropping them and initialising a new head.
    rng: int seed or jax PRNG key for the freshly initialised parts (adapters, head).
    dtype: dtype of every returned array.

  Returns:
    Nested dicts of numpy arrays, with exactly the structure of `ResNet26(...).init(...)`.

  Raises:
    ConversionError: listing every missing, unexpected and mis-shaped key (PyTorch names).
  """
  template = template_variables(adapters=adapters, num_classes=num_classes, rng=rng)
  loaded, origin = {}, {}  # jaxad name -> array; jaxad name -> (PyTorch key, PyTorch shape)
  for key, value in state_dict.items():
    target = _target(key)
    if target is None:  # no place in ResNet26: kept under its own name, so that merge_params reports it
      loaded[key] = np.asarray(value)
      continue
    collection, path, kind = target
    if kind == 'ignore':
      continue
    array = np.asarray(value)
    if kind == 'conv' and array.ndim == 4:
      array = array.transpose(2, 3, 1, 0)
    elif kind == 'linear' and array.ndim == 2:
      array = array.T
    loaded[_name(collection, path)] = array
    origin[_name(collection, path)] = (key, tuple(np.shape(value)))

  dont_load = [] if keep_head else [r'^params/head/']
  has_adapters = any(re.search(ADAPTER, name) for name in origin)
  if adapters and not has_adapters:
    dont_load.append(ADAPTER)
  try:
    variables = weights.merge_params(loaded, template, dont_load=dont_load, strict=True, what='the state dict')
  except weights.MergeError as e:

    def torch_name(name):
      if name in origin:
        key, shape = origin[name]
        if re.search(ADAPTER, name) and not adapters:
          return f'{key} (an adapter: convert with adapters=True / --adapters)'
        return f'{key} {shape} -> jaxad {name}'
      return _torch_name(name) if name in e.report.missing else name

    report = e.report.renamed(torch_name)
    raise ConversionError('The state dict does not match jaxad ResNet26 (TransferAD layout, '
                          f'adapters={adapters}, num_classes={num_classes}, keep_head={keep_head}).\n'
                          + report.describe(limit=None)) from None
  return jax.tree.map(lambda a: a.astype(dtype), variables)


def _torch_name(name: str) -> str:
  """The PyTorch key that a jaxad variable name comes from, with the jaxad name (for error messages)."""
  collection, *mods, leaf = name.split('/')
  mods = '/'.join(mods)
  torch_leaf = {('params', 'scale'): 'weight', ('params', 'bias'): 'bias', ('params', 'kernel'): 'weight',
                ('batch_stats', 'mean'): 'running_mean', ('batch_stats', 'var'): 'running_var'}[(collection, leaf)]
  m = re.fullmatch(r'layer(\d)_(\d)/(conv|adapter|bn)(\d)', mods)
  if m:
    s, i, kind, j = m.groups()
    module = f'layer{s}.{i}.' + {'conv': 'conv', 'adapter': 'ra', 'bn': 'bn'}[kind] + j
  else:
    module = {'stem/conv': 'pre_conv', 'stem/adapter': 'pre_ra', 'stem/bn': 'pre_bn', 'end_bn': 'end_bn_relu.0',
              'head': 'linears'}[mods]
  return f'{module}.{torch_leaf} (jaxad {name})'


sha256 = weights.sha256


def load_torch_state_dict(path: os.PathLike) -> dict[str, np.ndarray]:
  """Loads a PyTorch state_dict with `weights_only=True` (no pickled code is executed)."""
  return weights.read_torch_state_dict(path, hint=DOWNLOAD_HINT)


def save_variables(directory: os.PathLike, variables: Mapping[str, Any], *, force: bool = False) -> pathlib.Path:
  """Writes variables as an Orbax StandardCheckpointer checkpoint at `directory` (made absolute); see weights.save."""
  return pathlib.Path(weights.save(directory, variables, force=force))


def main(argv=None) -> int:
  """Command line; returns 0 on success, 1 for a bad input file, 2 for a bad --output (nothing read or written)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--input', required=True, help='resnet26.pth (TransferAD state_dict)')
  parser.add_argument('--output', required=True, help='checkpoint directory to create (Orbax)')
  parser.add_argument('--adapters', action='store_true', help='build the ADRA net (fresh He-init adapters)')
  parser.add_argument('--keep_head', action='store_true', help='keep linears.* as the head (default: new AD head)')
  parser.add_argument('--num_classes', type=int, default=None,
                      help='head outputs; default 1, or the checkpoint head size with --keep_head')
  parser.add_argument('--seed', type=int, default=0, help='seed for the freshly initialised adapters/head')
  parser.add_argument('--force', action='store_true',
                      help='replace --output if it is an existing checkpoint (other files are never deleted)')
  args = parser.parse_args(argv)

  problem = weights.check_output_path(args.input, args.output, args.force)
  if problem:
    print(f'error: {problem}', file=sys.stderr)
    return 2
  try:
    state_dict = load_torch_state_dict(args.input)
    print(f'sha256({args.input}) = {sha256(args.input)}')
    num_classes = args.num_classes
    if num_classes is None:
      num_classes = state_dict['linears.weight'].shape[0] if args.keep_head and 'linears.weight' in state_dict else 1
    variables = convert_state_dict(state_dict, adapters=args.adapters, num_classes=num_classes,
                                   keep_head=args.keep_head, rng=args.seed)
    out = weights.save(args.output, variables, force=args.force)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  dropped = sorted(k for k in state_dict if k.startswith('linears.')) if not args.keep_head else []
  n = sum(a.size for a in jax.tree.leaves(variables['params']))
  print(f'Wrote {out} (ResNet26 transferad, adapters={args.adapters}, num_classes={num_classes}, {n:,} params'
        + (f'; dropped {", ".join(dropped)}' if dropped else '') + ').')
  return 0


if __name__ == '__main__':
  sys.exit(main())
