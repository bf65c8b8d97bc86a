"""Orbax checkpoints of a `TrainState` (exact resume) and of phase outputs, verified on restore.

A checkpoint holds everything a step depends on (step, params, batch_stats, optimizer state and the method's
extra state); the data order is a pure function of (seed, step), so a resumed run continues bit-for-bit. Orbax
writes each step into a temporary folder and renames it when complete, so a run killed mid-save leaves the previous
checkpoint intact.

Each finished step (and each phase output) gets a manifest, `jaxad_manifest.json`: the size and sha256 of every
other file in its folder. A restore checks it first; a step whose files do not match (flipped bytes, truncated or
missing files) or that orbax cannot read is moved aside (never deleted) to `<directory>/corrupt-<step>` and the
previous step is tried. A step without a manifest (written by an older jaxad) is restored as before. A step whose
weights, statistics or optimizer state hold NaN or inf is moved aside the same way: jaxad never saves one (training
stops at a non-finite loss first), so such a step was damaged after it was written.

Each step and output also holds the config of the run that wrote it (`jaxad_config.json`, covered by the manifest),
so a workdir that lost its `config.json` still knows what it was trained with (`saved_config`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from jaxad import files, parallel
from jaxad.errors import UserError

_FIELDS = ("step", "params", "batch_stats", "opt_state", "extra", "loss_sum", "best")
_FINITE_FIELDS = ("params", "batch_stats", "opt_state")  # `best` starts at inf; `extra` may hold inf by design
MANIFEST = "jaxad_manifest.json"
CONFIG_FILE = "jaxad_config.json"
_MANIFEST_FORMAT = "jaxad-checkpoint-manifest/1"


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _files(folder: str) -> list[str]:
  """Every regular file under `folder` (relative, '/'-separated, sorted), the manifest itself excluded."""
  out = []
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
      if rel != MANIFEST and not name.startswith(MANIFEST + "."):  # the manifest and its temp files
        out.append(rel)
  return sorted(out)


def write_manifest(folder: str) -> None:
  """Writes `folder/jaxad_manifest.json` (size and sha256 of every file) atomically: temp file + os.replace."""
  files = {}
  for rel in _files(folder):
    path = os.path.join(folder, rel)
    files[rel] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
  fd, tmp = tempfile.mkstemp(prefix=MANIFEST + ".", suffix=".tmp", dir=folder)
  try:
    with os.fdopen(fd, "w") as f:
      json.dump({"format": _MANIFEST_FORMAT, "algorithm": "sha256", "files": files}, f, indent=1, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, MANIFEST))
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def verify_manifest(folder: str) -> str | None:
  """None when `folder`'s files match its manifest (or it has none: an older jaxad); else what is wrong."""
  path = os.path.join(folder, MANIFEST)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      manifest = json.load(f)
    files = manifest["files"]
    if manifest.get("format") != _MANIFEST_FORMAT or not isinstance(files, dict):
      return f"{MANIFEST} has an unknown format"
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"{MANIFEST} is unreadable ({type(e).__name__})"
  for rel, want in sorted(files.items()):
    p = os.path.join(folder, *rel.split("/"))
    if not os.path.isfile(p):
      return f"{rel} is missing"
    size = os.path.getsize(p)
    if size != want["size"]:
      return f"{rel} has {size} bytes, expected {want['size']}"
    if _sha256(p) != want["sha256"]:
      return f"{rel} has a wrong sha256"
  return None


def _has_manifest(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, MANIFEST))


def move_aside(src: str, dst: str) -> str:
  """Renames `src` to `dst` (or `dst-2`, `dst-3`, ... when taken); returns the new path. Nothing is deleted.

  Every process of a multi-host job reaches the same verdict on the shared workdir and calls this for the same
  folder. Only process 0 renames, and only once every process has arrived (so none is still reading `src`); the
  others wait for the rename. Renaming in each process would race: the second rename finds `src` gone.
  """
  numbered = lambda n: dst if n == 1 else f"{dst}-{n}"
  n = 1
  if jax.process_index() == 0:
    while os.path.lexists(numbered(n)):
      n += 1
  if jax.process_count() > 1:  # a collective: it returns once every process is here, with process 0's n
    n = int(multihost_utils.broadcast_one_to_all(np.int32(n)))
  if jax.process_index() == 0:
    os.rename(src, numbered(n))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"jaxad: {src} moved aside")
  return numbered(n)


class Checkpointer:
  """Saves and restores one training phase's `TrainState` under `directory`."""

  def __init__(self, directory: str, *, max_to_keep: int = 2, config: dict | None = None):
    """`config` (the run's config as a JSON-able dict) is stored in every step as `jaxad_config.json`."""
    self.directory = os.path.abspath(directory)
    self._config = config
    self._max_to_keep = max_to_keep
    self._pending: list[int] = []  # saved steps whose manifest waits for orbax to finish them
    self._manager = self._new_manager()

  def _new_manager(self):
    return ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, create=True))

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _finish_pending(self) -> None:
    """Waits for orbax's async saves, then writes the manifest of every step it has finished (the primary host)."""
    if not self._pending:
      return
    self._manager.wait_until_finished()
    pending, self._pending = self._pending, []
    if jax.process_index() != 0:
      return
    for step in pending:
      folder = self._step_dir(step)
      if os.path.isdir(folder) and not _has_manifest(folder):  # the step may already be rotated out
        _write_config(folder, self._config)
        write_manifest(folder)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, state) -> None:
    self._finish_pending()
    step = int(np.asarray(jax.device_get(state.step)).flat[0])  # a sweep's stacked state: one equal step per task
    tree = {f: getattr(state, f) for f in _FIELDS}
    files.check_free_space(self.directory, files.tree_nbytes(tree), f"checkpoint step {step}")
    self._manager.save(step, args=ocp.args.StandardSave(tree))
    self._pending.append(step)

  def _set_aside(self, step: int, why: str) -> str:
    moved = move_aside(self._step_dir(step), os.path.join(self.directory, f"corrupt-{step}"))
    parallel.log(f"checkpoint step {step} in {self.directory} is corrupt ({why}); moved it aside to {moved}.")
    self._manager.reload()  # forget the moved step: latest_step() is then the next newest
    return moved

  def restore(self, state):
    """Returns `state` with every field replaced by the newest intact checkpoint's (same tree structure required).

    Corrupt steps are moved aside to `<directory>/corrupt-<step>` (one line each on stderr) and the previous one is
    tried; a UserError names what was moved when no intact step is left.
    """
    self._finish_pending()
    target = {f: getattr(state, f) for f in _FIELDS}
    moved = []
    while (step := self.latest_step()) is not None:
      folder = self._step_dir(step)
      why = verify_manifest(folder)
      if why is None:
        try:
          restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # orbax raises many kinds for a corrupt or mismatched checkpoint
          if _has_manifest(folder):  # its bytes are as written: the saved tree does not fit this run's state
            raise UserError(
                f"Could not restore checkpoint step {step} from {self.directory} ({type(e).__name__}: {e}). Its files "
                "match their checksums, so the saved state does not fit this run's config (model, optimizer or "
                "method changed?); use the config it was trained with, or train into a new --workdir. Nothing was "
                "deleted.") from e
          why = f"orbax cannot read it: {type(e).__name__}: {_one_line(e)}"
        else:
          why = _non_finite({k: restored[k] for k in _FINITE_FIELDS})
          if why is None:
            return state.replace(**restored)
      moved.append(self._set_aside(step, why))
    if not moved:
      raise UserError(f"No checkpoint to restore in {self.directory}.")
    earlier = sorted(os.path.join(self.directory, n) for n in os.listdir(self.directory)
                     if n.startswith("corrupt-") and os.path.join(self.directory, n) not in moved)
    raise UserError(
        f"No intact checkpoint is left in {self.directory}: every step failed verification and was moved aside "
        f"(nothing was deleted): {', '.join(moved)}" + (f" (moved earlier: {', '.join(earlier)})" if earlier else "")
        + ". Training would have to start over from step 0; to do that, train into a new --workdir.")

  def close(self) -> None:
    self._finish_pending()
    self._manager.wait_until_finished()
    self._manager.close()


def _non_finite(tree) -> str | None:
  """'holds NaN/inf in <leaf>' for the first float leaf of `tree` with a non-finite value, else None."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
      return f"holds NaN/inf in {jax.tree_util.keystr(path)}, which jaxad never saves"
  return None


def _write_config(folder: str, config: dict | None) -> None:
  if config is not None:
    with open(os.path.join(folder, CONFIG_FILE), "w") as f:
      json.dump(config, f, indent=1, sort_keys=True)


def saved_config(workdir: str) -> tuple[dict, str] | None:
  """(config, path) of the newest `jaxad_config.json` in the checkpoints under `workdir`, or None if there is none."""
  found = []
  for root, dirs, names in os.walk(os.path.join(workdir, "checkpoints")):
    dirs[:] = [d for d in dirs if not d.startswith("corrupt-") and not d.endswith("-corrupt")]
    if CONFIG_FILE in names:
      path = os.path.join(root, CONFIG_FILE)
      found.append((os.path.getmtime(path), path))
  for _, path in sorted(found, reverse=True):
    try:
      with open(path) as f:
        return json.load(f), path
    except (OSError, ValueError):
      continue
  return None


def _one_line(e: BaseException, limit: int = 200) -> str:
  s = " ".join(str(e).split())
  return s if len(s) <= limit else s[:limit - 3] + "..."


def save_output(directory: str, output, *, config: dict | None = None) -> None:
  """Saves a phase's `Output` (variables and extra) as one orbax checkpoint with a manifest; an existing one is
  replaced.

  Orbax writes into a temporary folder and renames it when complete, so a run killed mid-save leaves no half-written
  output (the phase is then simply redone).
  """
  tree = {"variables": jax.tree.map(np.asarray, dict(output.variables)), "extra": jax.tree.map(np.asarray,
                                                                                                output.extra)}
  directory = os.path.abspath(directory)
  files.check_free_space(os.path.dirname(directory), files.tree_nbytes(tree), "a phase output")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(directory, tree, force=True)
    ckptr.wait_until_finished()
  if jax.process_index() == 0:
    _write_config(directory, config)
    write_manifest(directory)


def output_exists(directory: str) -> bool:
  return os.path.isdir(directory)


def restore_output(directory: str):
  """The `Output` saved by `save_output` (host arrays).

  A folder that fails its manifest or that orbax cannot read is moved aside to `<directory>-corrupt` (one line on
  stderr) and a UserError says the phase will be redone when the run is started again.
  """
  from jaxad.methods.base import Output  # pylint: disable=g-import-not-at-top  (methods import this module)

  directory = os.path.abspath(directory)
  why = verify_manifest(directory) if os.path.isdir(directory) else None
  if why is None:
    try:
      with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(directory)
    except Exception as e:  # orbax raises many kinds for a corrupt or partial checkpoint
      if not os.path.isdir(directory):
        raise UserError(f"Could not restore the phase output in {directory}: it does not exist.") from None
      why = f"orbax cannot read it: {type(e).__name__}: {_one_line(e)}"
    else:
      why = _non_finite(tree["variables"])
      if why is None:
        to_host = lambda t: jax.tree.map(np.asarray, t)
        return Output(to_host(tree["variables"]), to_host(tree.get("extra", {})))
  moved = move_aside(directory, directory + "-corrupt")
  parallel.log(f"phase output {directory} is corrupt ({why}); moved it aside to {moved}.")
  raise UserError(f"The phase output in {directory} was corrupt ({why}) and was moved aside to {moved} (nothing was "
                  "deleted). Run the same command with --mode=train: that phase will be redone (from its latest intact "
                  "checkpoint).")
