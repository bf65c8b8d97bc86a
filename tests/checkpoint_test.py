"""Checkpoints are verified on restore: corrupt steps are moved aside (never deleted) and the previous one is used."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxad import checkpoint
from jaxad.checkpoint import MANIFEST, Checkpointer, restore_output, save_output
from jaxad.errors import UserError
from jaxad.methods.base import Output
from jaxad.train import TrainState


def make_state(step, seed=0):
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.standard_normal((64, 32)), jnp.float32),
            "b": jnp.asarray(rng.standard_normal((32,)), jnp.float32)}
  tx = optax.sgd(0.1)
  return TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                    batch_stats={"mean": jnp.asarray(rng.standard_normal((32,)), jnp.float32)},
                    opt_state=tx.init(params), extra={"c": jnp.asarray(rng.standard_normal((8,)), jnp.float32)},
                    loss_sum=jnp.asarray(rng.standard_normal(), jnp.float32),
                    best=jnp.asarray(rng.standard_normal(), jnp.float32), tx=tx)


def assert_same(a, b):
  for f in checkpoint._FIELDS:  # pylint: disable=protected-access
    la, lb = jax.tree.leaves(getattr(a, f)), jax.tree.leaves(getattr(b, f))
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
      x, y = np.asarray(x), np.asarray(y)
      assert x.dtype == y.dtype and x.shape == y.shape
      assert x.tobytes() == y.tobytes()


def save_steps(directory, steps=(1, 2)):
  ckpt = Checkpointer(directory, max_to_keep=5)
  for s in steps:
    ckpt.save(make_state(s, seed=s))
  ckpt.close()


def step_files(step_dir):
  out = []
  for root, _, names in os.walk(step_dir):
    out += [os.path.join(root, n) for n in names if n != MANIFEST]
  return out


def largest_file(step_dir):
  return max(step_files(step_dir), key=os.path.getsize)


def restore_fresh(directory):
  ckpt = Checkpointer(directory, max_to_keep=5)
  try:
    return ckpt, ckpt.restore(make_state(0, seed=99))
  finally:
    ckpt.close()


def test_round_trip_is_bit_identical_and_has_manifest(tmp_path, capfd):
  d = str(tmp_path / "steps")
  save_steps(d)
  manifest = json.load(open(os.path.join(d, "2", MANIFEST)))
  assert manifest["algorithm"] == "sha256" and manifest["files"]
  assert set(manifest["files"]) == {os.path.relpath(p, os.path.join(d, "2")).replace(os.sep, "/")
                                    for p in step_files(os.path.join(d, "2"))}
  ckpt, restored = restore_fresh(d)
  assert ckpt.latest_step() == 2
  assert_same(restored, make_state(2, seed=2))
  assert "corrupt" not in capfd.readouterr().err


def test_manifest_is_written_for_async_saves_before_restore(tmp_path):
  d = str(tmp_path / "steps")
  ckpt = Checkpointer(d, max_to_keep=5)
  ckpt.save(make_state(1, seed=1))
  restored = ckpt.restore(make_state(0, seed=99))  # same Checkpointer: waits for the save, then writes the manifest
  assert os.path.isfile(os.path.join(d, "1", MANIFEST))
  assert_same(restored, make_state(1, seed=1))
  ckpt.close()


def flip_byte(step_dir):
  path = largest_file(step_dir)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    b = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([b[0] ^ 0xFF]))


def truncate(step_dir):
  path = largest_file(step_dir)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def delete_file(step_dir):
  os.remove(largest_file(step_dir))


def delete_metadata(step_dir):
  for p in step_files(step_dir):
    if os.path.basename(p) == "_METADATA":
      os.remove(p)
      return
  raise AssertionError("no _METADATA")


def delete_array_dir(step_dir):
  for root, dirs, _ in os.walk(step_dir):
    for name in dirs:
      if name in ("array_metadatas", "ocdbt.process_0", "d"):
        shutil.rmtree(os.path.join(root, name))
        return
  raise AssertionError("no array dir")


def drop_manifest(step_dir):
  os.remove(os.path.join(step_dir, MANIFEST))


def assert_one_line(err, text):
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1, err
  assert text in lines[0]
  assert "Traceback" not in err


@pytest.mark.parametrize("corrupt,legacy", [
    (flip_byte, False), (truncate, False), (delete_file, False), (delete_metadata, False), (delete_array_dir, False),
    # Written by an older jaxad (no manifest): orbax's own read errors count. Orbax does not checksum array bytes, so
    # a flipped byte there goes unnoticed without a manifest.
    (delete_file, True), (delete_metadata, True), (delete_array_dir, True)])
def test_corrupt_newest_step_falls_back_to_previous(tmp_path, capfd, corrupt, legacy):
  d = str(tmp_path / "steps")
  save_steps(d)
  if legacy:  # written by an older jaxad: only orbax's own read errors can tell
    drop_manifest(os.path.join(d, "1"))
    drop_manifest(os.path.join(d, "2"))
  corrupt(os.path.join(d, "2"))
  capfd.readouterr()
  ckpt, restored = restore_fresh(d)
  assert_same(restored, make_state(1, seed=1))
  assert ckpt.latest_step() == 1
  assert not os.path.exists(os.path.join(d, "2"))
  assert os.path.isdir(os.path.join(d, "corrupt-2"))
  assert_one_line(capfd.readouterr().err, os.path.join(d, "corrupt-2"))
  # The moved step is gone for good: the next Checkpointer sees step 1 too, and saves go on from there.
  ckpt = Checkpointer(d, max_to_keep=5)
  assert ckpt.latest_step() == 1
  ckpt.save(make_state(2, seed=22))
  ckpt.close()
  _, restored = restore_fresh(d)
  assert_same(restored, make_state(2, seed=22))
  assert os.path.isdir(os.path.join(d, "corrupt-2"))


def test_moved_aside_name_gets_a_suffix_when_taken(tmp_path, capfd):
  d = str(tmp_path / "steps")
  save_steps(d)
  os.makedirs(os.path.join(d, "corrupt-2"))
  flip_byte(os.path.join(d, "2"))
  _, restored = restore_fresh(d)
  assert_same(restored, make_state(1, seed=1))
  assert os.path.isdir(os.path.join(d, "corrupt-2-2"))
  assert_one_line(capfd.readouterr().err, os.path.join(d, "corrupt-2-2"))


def test_all_steps_corrupt_raises_and_deletes_nothing(tmp_path, capfd):
  d = str(tmp_path / "steps")
  save_steps(d)
  flip_byte(os.path.join(d, "2"))
  truncate(os.path.join(d, "1"))
  capfd.readouterr()
  ckpt = Checkpointer(d, max_to_keep=5)
  with pytest.raises(UserError) as e:
    ckpt.restore(make_state(0, seed=99))
  ckpt.close()
  msg = str(e.value)
  assert d in msg and "--workdir" in msg and "corrupt-1" in msg and "corrupt-2" in msg
  assert os.path.isdir(os.path.join(d, "corrupt-1")) and os.path.isdir(os.path.join(d, "corrupt-2"))
  assert step_files(os.path.join(d, "corrupt-1")) and step_files(os.path.join(d, "corrupt-2"))
  err = capfd.readouterr().err
  assert len([l for l in err.splitlines() if l.strip()]) == 2 and "Traceback" not in err


def test_intact_step_that_does_not_fit_is_not_moved(tmp_path, capfd):
  d = str(tmp_path / "steps")
  save_steps(d)
  other = make_state(0).replace(params={"w": jnp.zeros((3, 3))})
  other = other.replace(opt_state=other.tx.init(other.params))
  ckpt = Checkpointer(d, max_to_keep=5)
  with pytest.raises(UserError, match="config"):
    ckpt.restore(other)
  ckpt.close()
  assert os.path.isdir(os.path.join(d, "2")) and not os.path.exists(os.path.join(d, "corrupt-2"))
  assert "Traceback" not in capfd.readouterr().err


def make_output(seed=0):
  rng = np.random.default_rng(seed)
  return Output({"params": {"w": rng.standard_normal((64, 16)).astype(np.float32)}, "batch_stats": {}},
                {"c": rng.standard_normal((4,)).astype(np.float32)})


def test_output_round_trip(tmp_path):
  d = str(tmp_path / "output")
  save_output(d, make_output())
  assert os.path.isfile(os.path.join(d, MANIFEST))
  out = restore_output(d)
  want = make_output()
  assert out.variables["params"]["w"].tobytes() == want.variables["params"]["w"].tobytes()
  assert out.extra["c"].tobytes() == want.extra["c"].tobytes()
  save_output(d, make_output(1))  # replaced, with a fresh manifest
  assert restore_output(d).extra["c"].tobytes() == make_output(1).extra["c"].tobytes()


@pytest.mark.parametrize("corrupt", [flip_byte, truncate, delete_file, delete_metadata])
def test_corrupt_output_is_moved_aside(tmp_path, capfd, corrupt):
  d = str(tmp_path / "output")
  save_output(d, make_output())
  corrupt(d)
  capfd.readouterr()
  with pytest.raises(UserError, match="redone") as e:
    restore_output(d)
  assert d in str(e.value)
  assert not os.path.exists(d) and os.path.isdir(d + "-corrupt")
  assert not checkpoint.output_exists(d)  # the next run redoes the phase
  assert_one_line(capfd.readouterr().err, d + "-corrupt")
  save_output(d, make_output())  # a second corruption gets a suffix
  flip_byte(d)
  with pytest.raises(UserError):
    restore_output(d)
  assert os.path.isdir(d + "-corrupt-2")
