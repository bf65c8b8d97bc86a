"""Model weights on disk and their merge into freshly initialised variables (used by every weight converter).

Variables are nested dicts `{'params': ..., 'batch_stats': ...}`; a leaf is named by its '/'-joined path, e.g.
`params/layer2_0/conv1/kernel`. Three steps cover loading someone else's weights:

  init = model.init(rng, x, train=False)                        # what the model needs
  loaded = weights.load(path, hint='make it with: ...')         # what the file holds (numpy)
  variables = weights.merge_params(loaded, init, dont_load=[r'^params/head/'], what=f'weights {path}')

`merge_params` lists every missing, unexpected and mis-shaped leaf in one `DataError` instead of failing on the
first; leaves matched by a `dont_load` regex keep their initial value (a fresh head, new adapters). Files are Orbax
`StandardCheckpointer` directories of numpy arrays (`save`); reading them never runs pickled code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from jaxad.errors import ConfigError, DataError

# Files that Orbax writes into every checkpoint directory; `save(force=True)` replaces only such directories.
_ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "_METADATA", "commit_success.txt")


def flatten(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """`{'/'-joined name: np.ndarray}` for every leaf of a nested mapping (dicts, FrozenDicts); empty dicts vanish.

  Keys that already hold '/' pass through, so a flat dict flattens to itself.

  >>> flatten({'params': {'conv': {'kernel': [1.0]}}})
  {'params/conv/kernel': array([1.])}
  """
  out = {}

  def visit(node, prefix):
    for key, value in node.items():
      name = f"{prefix}/{key}" if prefix else str(key)
      if isinstance(value, Mapping):
        visit(value, name)
      elif name in out:
        raise ValueError(f"flatten: the name {name!r} occurs twice (a nested key and a '/'-joined key).")
      else:
        out[name] = np.asarray(value)

  visit(tree, "")
  return out


def unflatten(flat: Mapping[str, Any]) -> dict:
  """The nested dict of a `{'/'-joined name: leaf}` dict (the inverse of `flatten`); leaves are kept as they are.

  >>> unflatten({'params/conv/kernel': 1, 'params/conv/bias': 0})
  {'params': {'conv': {'kernel': 1, 'bias': 0}}}
  """
  out: dict = {}
  for name, value in flat.items():
    *parents, leaf = name.split("/")
    node = out
    for i, part in enumerate(parents):
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        raise ValueError(f"unflatten: {'/'.join(parents[:i + 1])!r} is both a leaf and a prefix of {name!r}.")
    if leaf in node:
      raise ValueError(f"unflatten: {name!r} is both a leaf and a prefix of other names.")
    node[leaf] = value
  return out


def _plain(tree: Mapping[str, Any]) -> dict:
  """Nested plain dicts of numpy arrays (keeps empty dicts, e.g. the `batch_stats` of a model without BN)."""
  return {str(k): _plain(v) if isinstance(v, Mapping) else np.asarray(v) for k, v in tree.items()}


def _is_checkpoint(path: str) -> bool:
  return any(os.path.exists(os.path.join(path, marker)) for marker in _ORBAX_MARKERS)


def save(path: str | os.PathLike, variables: Mapping[str, Any], *, force: bool = False) -> str:
  """Writes `variables` (e.g. `{'params': ..., 'batch_stats': ...}`) as an Orbax StandardCheckpointer directory.

  Every leaf is stored as a numpy array (jax arrays are copied to the host), so `load` gives the same tree back on
  any machine. Orbax writes into a temporary directory and renames it when complete: an interrupted save leaves no
  half-written `path`.

  Args:
    path: the checkpoint directory to create (made absolute).
    variables: nested mapping of arrays.
    force: replace an existing checkpoint at `path`. Even then, a file or a non-empty directory that is not an
      Orbax checkpoint is never deleted.

  Returns:
    The absolute path written.

  Raises:
    ConfigError: `path` exists (without `force`), or is something other than a checkpoint.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = os.path.abspath(os.fspath(path))
  if os.path.lexists(path):
    if not os.path.isdir(path) or (os.listdir(path) and not _is_checkpoint(path)):
      raise ConfigError(f"Cannot save weights to {path}: it exists and is not an Orbax checkpoint directory, so it "
                        "is left alone; choose another path.")
    if not force:
      raise ConfigError(f"Cannot save weights to {path}: it already exists. Overwrite it with force=True "
                        "(--force), or choose another path.")
  tree = _plain(variables)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, tree, force=force)
    checkpointer.wait_until_finished()
  return path


def load(path: str | os.PathLike, *, hint: str = "", what: str = "Weights") -> dict:
  """Reads an Orbax checkpoint directory (as `save` writes) into a nested dict of numpy arrays.

  Arrays come back on the host whatever devices or sharding they were saved from. No pickled code is executed.

  Args:
    path: the checkpoint directory.
    hint: how to make the file (e.g. the converter's command); ends every error message.
    what: what the file is, for error messages ('Weights', 'Source weights').

  Raises:
    DataError: naming `path` and `hint`, when it does not exist or is not a readable checkpoint.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = os.path.abspath(os.fspath(path))
  tail = f" {hint}" if hint else ""
  if not os.path.isdir(path):
    problem = "are a file, not a checkpoint directory" if os.path.exists(path) else "do not exist"
    raise DataError(f"{what} {path} {problem}.{tail}")
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      tree = getattr(checkpointer.metadata(path).item_metadata, "tree", None)
      if not isinstance(tree, Mapping):  # orbax logs why and returns None; a plain restore raises the reason
        restored = checkpointer.restore(path)
    if isinstance(tree, Mapping):  # host numpy arrays, whatever sharding the arrays were saved with
      restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), dict(tree))
      with ocp.PyTreeCheckpointer() as checkpointer:
        restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    if not isinstance(restored, Mapping):
      raise ValueError(f"it holds a {type(restored).__name__}, not a dict of arrays")
  except Exception as e:  # orbax raises many kinds (ValueError, FileNotFoundError, JSON, tensorstore errors)
    message = re.sub(r"\s*\[tensorstore_spec=.*", "", " ".join(f"{type(e).__name__}: {e}".split()))
    message = message.rstrip(".") if len(message) <= 400 else message[:400] + " ..."
    raise DataError(f"{what} {path} are not a readable Orbax checkpoint ({message}).{tail}") from e
  return _plain(restored)


@dataclasses.dataclass(frozen=True)
class MergeReport:
  """What keeps loaded weights from fitting a model: '/'-joined leaf names.

  Attributes:
    missing: leaves the model needs that the loaded weights lack.
    unexpected: loaded leaves the model has no place for.
    mis_shaped: "name (loaded shape) vs (expected shape)" for leaves present in both with different shapes.
  """
  missing: list[str] = dataclasses.field(default_factory=list)
  unexpected: list[str] = dataclasses.field(default_factory=list)
  mis_shaped: list[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    """True when nothing is missing, unexpected or mis-shaped."""
    return not (self.missing or self.unexpected or self.mis_shaped)

  def renamed(self, rename: Callable[[str], str]) -> MergeReport:
    """The same report with every name passed through `rename` (e.g. to a converter's source key names)."""

    def shaped(entry):
      name, sep, shapes = entry.partition(" (")
      return rename(name) + sep + shapes

    return MergeReport([rename(n) for n in self.missing], [rename(n) for n in self.unexpected],
                       [shaped(e) for e in self.mis_shaped])

  def describe(self, limit: int | None = 5, *, unexpected: bool = True) -> str:
    """One line per non-empty kind, e.g. 'Missing (12): a, b, c, d, e, ... (7 more)'; `limit=None` lists all."""
    lines = []
    kinds = [("Missing", self.missing, ", "), ("Unexpected", self.unexpected if unexpected else [], ", "),
             ("Mis-shaped", self.mis_shaped, "; ")]
    for label, names, sep in kinds:
      if names:
        shown = names if limit is None else names[:limit]
        more = f"{sep}... ({len(names) - len(shown)} more)" if len(shown) < len(names) else ""
        lines.append(f"{label} ({len(names)}): {sep.join(shown)}{more}")
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.describe() or "Missing (0), unexpected (0), mis-shaped (0)."


class MergeError(DataError):
  """Loaded weights do not fit the model; `report` holds the full lists (a converter can re-word them)."""

  def __init__(self, message: str, report: MergeReport):
    super().__init__(message)
    self.report = report


def _matcher(dont_load: Sequence[str]) -> Callable[[str], bool]:
  try:
    patterns = [re.compile(p) for p in dont_load]
  except re.error as e:
    raise ConfigError(f"dont_load: {e.pattern!r} is not a valid regex ({e}).") from e
  return lambda name: any(p.search(name) for p in patterns)


def compare(loaded: Mapping[str, Any], initialised: Mapping[str, Any], *,
            dont_load: Sequence[str] = ()) -> MergeReport:
  """The `MergeReport` of merging `loaded` into `initialised` (see `merge_params`); raises nothing."""
  skip = _matcher(dont_load)
  src, dst = flatten(loaded), flatten(initialised)
  missing, mis_shaped = [], []
  for name, value in dst.items():
    if skip(name):
      continue
    if name not in src:
      missing.append(name)
    elif src[name].shape != value.shape:
      mis_shaped.append(f"{name} {src[name].shape} vs {value.shape}")
  unexpected = [name for name in src if name not in dst and not skip(name)]
  return MergeReport(missing, unexpected, mis_shaped)


def merge_params(loaded: Mapping[str, Any], initialised: Mapping[str, Any], *, dont_load: Sequence[str] = (),
                 strict: bool = True, what: str = "weights", hint: str = "") -> dict:
  """`initialised` with every leaf taken from `loaded`, except those that `dont_load` names.

  Both are nested variable dicts (`{'params': ..., 'batch_stats': ...}`; `loaded` may also be flat, keyed by
  '/'-joined names). A leaf of `initialised` whose name matches (`re.search`) any `dont_load` regex keeps its
  initial value, whether or not `loaded` has it; every other leaf comes from `loaded`, cast to the initialised
  dtype. Loaded leaves matching `dont_load` are ignored (e.g. a 1000-way source head under `^params/head/`).

  Args:
    loaded: the weights read from a file.
    initialised: the model's freshly initialised variables (e.g. `model.init(...)`); gives the structure, the
      dtypes and the values of the `dont_load` leaves.
    dont_load: regexes of names to keep from `initialised`, e.g. `[r'^params/head/', r'(^|/)adapter\\d*/']`.
    strict: also refuse loaded leaves the model has no place for (unexpected). Missing and mis-shaped leaves are
      always refused: the model cannot run without them.
    what: what `loaded` is, for the error message (e.g. f'Source weights {path}').
    hint: how to make fitting weights; ends the error message.

  Returns:
    Nested dicts of numpy arrays with exactly the structure of `initialised`.

  Raises:
    MergeError (a DataError): naming `what`, listing the first missing, unexpected and mis-shaped names with their
      counts, and ending with `hint`. Its `report` holds the full lists.
  """
  report = compare(loaded, initialised, dont_load=dont_load)
  if report.missing or report.mis_shaped or (strict and report.unexpected):
    counts = (f"{len(report.missing)} missing, {len(report.unexpected)} unexpected, {len(report.mis_shaped)} "
              "mis-shaped (loaded vs expected shape)")
    if not strict:
      counts = f"{len(report.missing)} missing, {len(report.mis_shaped)} mis-shaped (loaded vs expected shape)"
    lines = [f"{what[:1].upper()}{what[1:]} do not fit the model: {counts}.", report.describe(unexpected=strict)]
    if hint:
      lines.append(hint)
    raise MergeError("\n".join(lines), report)
  skip = _matcher(dont_load)
  src = flatten(loaded)

  def merge(node, prefix):  # walks `initialised` itself, so that empty subtrees (batch_stats={}) are kept
    out = {}
    for key, value in node.items():
      name = f"{prefix}/{key}" if prefix else str(key)
      if isinstance(value, Mapping):
        out[str(key)] = merge(value, name)
      else:
        value = np.asarray(value)
        out[str(key)] = value.copy() if skip(name) else src[name].astype(value.dtype)
    return out

  return merge(initialised, "")


# --- Helpers shared by the converters in third_party_weights/ -------------------------------------------------------


def sha256(path: str | os.PathLike) -> str:
  """The hex sha256 of a file (converters print it, so that README can record the checksum of a download)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def check_output_path(input_path: str | os.PathLike, output_path: str | os.PathLike, force: bool) -> str | None:
  """Why a converter must not write `output_path` (one line), or None; nothing is read or written here.

  An output that is the input, lies inside it or contains it is always refused (writing it could destroy the input);
  an existing output is refused unless `force`.
  """
  inp, out = pathlib.Path(input_path).resolve(), pathlib.Path(output_path).resolve()
  if out == inp:
    return f"--output {out} is the --input file; choose another --output (a new directory)."
  if inp in out.parents:
    return f"--output {out} lies inside --input {inp}; choose a directory elsewhere."
  if out in inp.parents:
    return f"--output {out} contains --input {inp}, and writing it would delete the input; choose another --output."
  if os.path.lexists(out) and not force:
    return f"--output {out} already exists; pass --force to replace it, or choose another --output."
  return None


def read_torch_state_dict(path: str | os.PathLike, *, hint: str = "") -> dict[str, np.ndarray]:
  """A PyTorch state_dict file as `{key: np.ndarray}`, read with `torch.load(weights_only=True)` (no pickled code runs).

  Accepts a plain state_dict or a checkpoint dict holding one under 'state_dict', 'model' or 'state_dict_ema' (timm's
  training checkpoints); a 'module.' prefix (DataParallel) is stripped.

  Raises:
    DataError: the file is missing (message ends with `hint`), is not weights-only, or holds no mapping of tensors.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"Input file {str(path)!r} not found." + (f"\n{hint}" if hint else ""))
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError("Reading .pth files needs PyTorch: pip install torch==2.13.0") from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle errors from weights_only come in several types
    raise DataError(f"{str(path)!r} is not a weights-only PyTorch state_dict (torch.load(weights_only=True) failed: "
                    f"{e}). Only plain state_dicts are supported; pickled models are never executed.") from e
  for key in ("state_dict", "model", "state_dict_ema"):
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
      obj = obj[key]
      break
  if not isinstance(obj, Mapping):
    raise DataError(f"{str(path)!r} holds a {type(obj).__name__}, not a state_dict mapping.")
  out = {}
  for key, value in obj.items():
    key = key[len("module."):] if key.startswith("module.") else key
    out[key] = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
  return out
