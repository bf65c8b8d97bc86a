"""Orbax checkpoints of a `TrainState` (exact resume) and of phase outputs.

A checkpoint holds everything a step depends on (step, params, batch_stats, optimizer state and the method's
extra state); the data order is a pure function of (seed, step), so a resumed run continues bit-for-bit. Orbax
writes each step into a temporary folder and renames it when complete, so a run killed mid-save leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxad.errors import UserError

_FIELDS = ("step", "params", "batch_stats", "opt_state", "extra", "loss_sum", "best")


class Checkpointer:
  """Saves and restores one training phase's `TrainState` under `directory`."""

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, state) -> None:
    self._manager.save(int(state.step), args=ocp.args.StandardSave({f: getattr(state, f) for f in _FIELDS}))

  def restore(self, state):
    """Returns `state` with every field replaced by the latest checkpoint's (same tree structure required)."""
    step = self.latest_step()
    target = {f: getattr(state, f) for f in _FIELDS}
    try:
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # orbax raises many kinds for a corrupt or mismatched checkpoint
      raise UserError(
          f"Could not restore checkpoint step {step} from {self.directory} ({type(e).__name__}: {e}). If it is "
          f"corrupt, move {self.directory}/{step} aside to resume from the previous checkpoint, or train into a new "
          "--workdir. Nothing was deleted.") from e
    return state.replace(**restored)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def save_output(directory: str, output) -> None:
  """Saves a phase's `Output` (variables and extra) as one orbax checkpoint; an existing one is replaced.

  Orbax writes into a temporary folder and renames it when complete, so a run killed mid-save leaves no half-written
  output (the phase is then simply redone).
  """
  tree = {"variables": jax.tree.map(np.asarray, dict(output.variables)), "extra": jax.tree.map(np.asarray,
                                                                                                output.extra)}
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(directory), tree, force=True)
    ckptr.wait_until_finished()


def output_exists(directory: str) -> bool:
  return os.path.isdir(directory)


def restore_output(directory: str):
  """The `Output` saved by `save_output` (host arrays), or a UserError naming the folder when it is unreadable."""
  from jaxad.methods.base import Output  # pylint: disable=g-import-not-at-top  (methods import this module)

  try:
    with ocp.StandardCheckpointer() as ckptr:
      tree = ckptr.restore(os.path.abspath(directory))
  except Exception as e:  # orbax raises many kinds for a corrupt or partial checkpoint
    raise UserError(f"Could not restore the phase output in {directory} ({type(e).__name__}: {e}). Move it aside "
                    "to redo that phase, or train into a new --workdir. Nothing was deleted.") from e
  to_host = lambda t: jax.tree.map(np.asarray, t)
  return Output(to_host(tree["variables"]), to_host(tree.get("extra", {})))
