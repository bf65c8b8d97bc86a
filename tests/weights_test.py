"""Tests for jaxad.models.weights (save / load / merge_params) and the converter's command-line safety checks."""

import gc
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from jaxad.errors import ConfigError, DataError
from jaxad.models import weights
from jaxad.models.resnet26 import ResNet26

REPO = pathlib.Path(__file__).resolve().parents[1]
CONVERTER = REPO / "third_party_weights" / "convert_resnet26_torch.py"
HEAD, ADAPTERS = r"^params/head/", r"(^|/)adapter\d*/"


def _variables(seed=0):
  rng = np.random.default_rng(seed)
  return {
      "params": {"conv": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)},
                 "head": {"kernel": rng.normal(size=(4, 10)).astype(np.float32),
                          "bias": rng.normal(size=(10,)).astype(np.float32)},
                 "bf16": rng.normal(size=(5,)).astype(ml_dtypes.bfloat16),
                 "scalar": np.float32(rng.normal())},
      "batch_stats": {"bn": {"mean": rng.normal(size=(4,)), "var": rng.uniform(size=(4,))}},  # float64
      "extra": {"step": np.array([7, 8], np.int32), "empty": {}},
  }


def _assert_identical(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, path
    assert np.asarray(x).tobytes() == y.tobytes(), path  # bit for bit


def _resnet_init(num_classes=1, adapters=False, seed=0):
  model = ResNet26(num_classes=num_classes, adapters=adapters)
  return model.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 3)), train=False)


# ---------------------------------------------------------------------------------------------------------------
# flatten / unflatten / save / load.


def test_flatten_unflatten_names_and_round_trip():
  tree = _variables()
  flat = weights.flatten(tree)
  assert "params/conv/kernel" in flat and "batch_stats/bn/var" in flat and "extra/step" in flat
  assert not any("empty" in k for k in flat)  # empty dicts have no leaves
  assert weights.flatten(flat).keys() == flat.keys()  # a flat dict flattens to itself
  back = weights.unflatten(flat)
  assert back["params"]["head"]["bias"] is flat["params/head/bias"]
  del tree["extra"]["empty"]
  _assert_identical(jax.tree.map(np.asarray, tree), back)
  with pytest.raises(ValueError, match="both a leaf and a prefix"):
    weights.unflatten({"a/b": 1, "a": 2})


def test_save_load_round_trip_is_bit_identical(tmp_path):
  tree = _variables()
  path = weights.save(tmp_path / "ckpt", tree)
  assert path == str((tmp_path / "ckpt").resolve()) and os.path.isabs(path)
  loaded = weights.load(path)
  _assert_identical(jax.tree.map(np.asarray, tree), loaded)
  assert loaded["extra"]["empty"] == {}  # empty subtrees survive (batch_stats of a model without BN)
  assert loaded["batch_stats"]["bn"]["mean"].dtype == np.float64
  assert loaded["params"]["bf16"].dtype == ml_dtypes.bfloat16


def test_save_takes_jax_arrays_and_load_gives_numpy(tmp_path):
  variables = _resnet_init()
  loaded = weights.load(weights.save(tmp_path / "r", variables))
  _assert_identical(jax.tree.map(np.asarray, variables), loaded)


def test_save_refuses_an_existing_path_without_force_and_leaves_it_intact(tmp_path):
  path = tmp_path / "ckpt"
  weights.save(path, _variables(0))
  files = sorted(p.relative_to(path) for p in path.rglob("*"))
  with pytest.raises(ConfigError, match=f"{re.escape(str(path))}: it already exists.*force=True.*another path"):
    weights.save(path, _variables(1))
  assert sorted(p.relative_to(path) for p in path.rglob("*")) == files
  _assert_identical(jax.tree.map(np.asarray, _variables(0)), weights.load(path))
  # force replaces a checkpoint ...
  weights.save(path, _variables(1), force=True)
  _assert_identical(jax.tree.map(np.asarray, _variables(1)), weights.load(path))
  # ... but never deletes something that is not one.
  other = tmp_path / "mine"
  other.mkdir()
  (other / "notes.txt").write_text("keep me")
  afile = tmp_path / "resnet26.pth"
  afile.write_bytes(b"not a directory")
  for target in (other, afile):
    for force in (False, True):
      with pytest.raises(ConfigError, match=f"{re.escape(str(target))}.*not an Orbax checkpoint"):
        weights.save(target, _variables(), force=force)
  assert (other / "notes.txt").read_text() == "keep me" and afile.read_bytes() == b"not a directory"


def test_load_missing_path_names_it_and_the_hint(tmp_path):
  missing = tmp_path / "nope"
  hint = "Make it with: python third_party_weights/convert_resnet26_torch.py"
  with pytest.raises(DataError, match=f"^Weights {re.escape(str(missing))} do not exist. {re.escape(hint)}$"):
    weights.load(missing, hint=hint)
  with pytest.raises(DataError, match=f"^Source weights {re.escape(str(missing))} do not exist.$"):
    weights.load(str(missing), what="Source weights")
  afile = tmp_path / "file.npz"
  afile.write_bytes(b"x")
  with pytest.raises(DataError, match=f"{re.escape(str(afile))} are a file, not a checkpoint directory"):
    weights.load(afile)


@pytest.mark.parametrize("contents", [
    {},
    {"garbage.bin": b"\x00\x01garbage"},
    {"_METADATA": b"{not json", "_CHECKPOINT_METADATA": b"\xff\xfe", "manifest.ocdbt": b"junk"},
])
def test_load_corrupt_directory_is_a_data_error_naming_it(tmp_path, contents):
  path = tmp_path / "corrupt"
  path.mkdir()
  for name, data in contents.items():
    (path / name).write_bytes(data)
  with pytest.raises(DataError, match=f"{re.escape(str(path))} are not a readable Orbax checkpoint.*re-make it"):
    weights.load(path, hint="re-make it")


# Orbax leaves tensorstore callbacks behind when reading a damaged checkpoint fails; they end in an "Event loop is
# closed" unraisable exception, flushed here (sleep + gc) so that no later test reports it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["truncate", "remove_data"])
def test_load_damaged_checkpoint_is_a_data_error_with_the_reason(tmp_path, damage):
  path = pathlib.Path(weights.save(tmp_path / "ckpt", _variables()))
  if damage == "truncate":  # e.g. an interrupted copy: every array file and the manifest emptied
    for p in path.rglob("*"):
      if p.is_file() and not p.name.startswith("_"):
        p.write_bytes(b"")
  else:
    shutil.rmtree(path / "d")
  with pytest.raises(DataError, match=f"{re.escape(str(path))} are not a readable Orbax checkpoint \\(ValueError: "
                     r"[A-Z_]+: Error opening \"zarr\" driver.*\)\. Hint\.$") as info:
    weights.load(path, hint="Hint.")
  assert "tensorstore_spec" not in str(info.value)
  time.sleep(0.5)
  gc.collect()


# ---------------------------------------------------------------------------------------------------------------
# merge_params.


def test_merge_loads_everything_but_dont_load_and_casts_dtypes():
  init = _variables(0)
  loaded = _variables(1)
  loaded["params"]["head"]["kernel"] = np.zeros((4, 1000), np.float32)  # a source head of another size: ignored
  loaded["params"]["conv"]["kernel"] = loaded["params"]["conv"]["kernel"].astype(np.float64)
  init["batch_stats"] = jax.tree.map(lambda a: a.astype(np.float32), init["batch_stats"])
  out = weights.merge_params(loaded, init, dont_load=[HEAD])
  assert jax.tree.structure(out) == jax.tree.structure(init)
  assert out["extra"]["empty"] == {}
  flat, flat_init, flat_loaded = weights.flatten(out), weights.flatten(init), weights.flatten(loaded)
  for name, value in flat.items():
    assert value.dtype == flat_init[name].dtype, name
    expected = flat_init[name] if name.startswith("params/head/") else flat_loaded[name].astype(value.dtype)
    np.testing.assert_array_equal(value, expected, err_msg=name)
  assert flat["batch_stats/bn/mean"].dtype == np.float32  # float64 loaded, float32 initialised
  assert flat["params/conv/kernel"].dtype == np.float32
  assert not np.shares_memory(flat["params/head/kernel"], flat_init["params/head/kernel"])


def test_merge_accepts_jax_arrays_and_flat_loaded_dicts():
  init = jax.tree.map(jnp.asarray, _variables(0))
  loaded = weights.flatten(_variables(1))
  out = weights.flatten(weights.merge_params(loaded, init))
  flat_init = weights.flatten(init)
  assert out.keys() == flat_init.keys() == loaded.keys()
  for name, value in out.items():
    assert isinstance(value, np.ndarray) and value.dtype == flat_init[name].dtype, name
    np.testing.assert_array_equal(value, loaded[name].astype(value.dtype), err_msg=name)
  assert out["batch_stats/bn/mean"].dtype == np.float32  # jnp made the float64 init float32


def test_merge_lists_missing_unexpected_and_misshaped():
  init = _variables(0)
  loaded = _variables(1)
  del loaded["batch_stats"]["bn"]["var"]
  loaded["params"]["conv"]["kernel"] = np.zeros((1, 1, 2, 4), np.float32)
  loaded["params"]["layer4"] = {"kernel": np.zeros(3)}
  hint = "Re-make them with: convert.py --input x.pth"
  with pytest.raises(DataError) as info:
    weights.merge_params(loaded, init, what="source weights /tmp/w", hint=hint)
  message = str(info.value)
  assert message.startswith("Source weights /tmp/w do not fit the model: 1 missing, 1 unexpected, 1 mis-shaped")
  assert "Missing (1): batch_stats/bn/var\n" in message
  assert "Unexpected (1): params/layer4/kernel\n" in message
  assert "Mis-shaped (1): params/conv/kernel (1, 1, 2, 4) vs (3, 3, 2, 4)\n" in message
  assert message.endswith(hint)
  assert isinstance(info.value, weights.MergeError)
  report = info.value.report
  assert report == weights.MergeReport(["batch_stats/bn/var"], ["params/layer4/kernel"],
                                       ["params/conv/kernel (1, 1, 2, 4) vs (3, 3, 2, 4)"])
  assert report == weights.compare(loaded, init) and not report.ok and weights.compare(init, init).ok
  for pattern in (r"Missing \(1\): batch_stats/bn/var", r"Unexpected \(1\): params/layer4/kernel",
                  r"Mis-shaped \(1\): params/conv/kernel \(1, 1, 2, 4\) vs \(3, 3, 2, 4\)"):
    with pytest.raises(DataError, match=pattern):
      weights.merge_params(loaded, init)


def test_merge_names_only_a_few_of_many_with_counts():
  init = {"params": {f"w{i:02d}": np.zeros(2) for i in range(12)}}
  with pytest.raises(DataError) as info:
    weights.merge_params({"params": {f"x{i:02d}": np.zeros(2) for i in range(8)}}, init)
  message = str(info.value)
  assert "12 missing, 8 unexpected, 0 mis-shaped" in message
  assert "Missing (12): params/w00, params/w01, params/w02, params/w03, params/w04, ... (7 more)" in message
  assert "Unexpected (8): params/x00, params/x01, params/x02, params/x03, params/x04, ... (3 more)" in message
  assert "params/w05" not in message
  assert "w05" in info.value.report.describe(limit=None)


def test_merge_strict_false_drops_unexpected_but_still_refuses_missing_and_misshaped():
  init = _variables(0)
  loaded = _variables(1)
  loaded["params"]["adapter"] = {"kernel": np.ones(3)}
  out = weights.merge_params(loaded, init, strict=False)
  assert "adapter" not in out["params"]
  np.testing.assert_array_equal(out["params"]["conv"]["kernel"], loaded["params"]["conv"]["kernel"])
  with pytest.raises(DataError, match="Unexpected"):
    weights.merge_params(loaded, init)
  del loaded["params"]["conv"]
  with pytest.raises(DataError, match=r"1 missing, 0 mis-shaped.*\nMissing \(1\): params/conv/kernel$") as info:
    weights.merge_params(loaded, init, strict=False)
  assert "Unexpected" not in str(info.value)  # not a problem when strict=False
  loaded["params"]["conv"] = {"kernel": np.zeros(5, np.float32)}
  with pytest.raises(DataError, match=r"Mis-shaped \(1\): params/conv/kernel \(5,\) vs \(3, 3, 2, 4\)"):
    weights.merge_params(loaded, init, strict=False)


def test_merge_bad_regex_is_a_config_error():
  with pytest.raises(ConfigError, match="dont_load.*not a valid regex"):
    weights.merge_params(_variables(), _variables(), dont_load=["adapter("])


def test_resnet26_source_with_1000_way_head_and_adapters(tmp_path):
  """transfer.load_source's case: a source with a 1000-way head and adapters into a fresh 1-output (ADRA) net."""
  source = _resnet_init(num_classes=1000, adapters=True, seed=1)
  path = weights.save(tmp_path / "source", source)
  read = weights.load(path)
  flat_src = weights.flatten(read)
  for adapters in (False, True):
    init = _resnet_init(num_classes=1, adapters=adapters, seed=2)
    with pytest.raises(DataError, match=r"Mis-shaped \(2\): .*params/head/bias \(1000,\) vs \(1,\)"):
      weights.merge_params(read, init)  # without dont_load the 1000-way head does not fit
    out = weights.merge_params(read, init, dont_load=[HEAD, ADAPTERS], strict=True)
    assert jax.tree.structure(out) == jax.tree.structure(jax.tree.map(np.asarray, init))
    flat_init = weights.flatten(init)
    n_fresh = 0
    for name, value in weights.flatten(out).items():
      fresh = name.startswith("params/head/") or "/adapter" in name
      n_fresh += fresh
      np.testing.assert_array_equal(value, flat_init[name] if fresh else flat_src[name], err_msg=name)
    assert n_fresh == 2 + 25 * adapters
  # keep_head: only the adapters are fresh; the head must fit.
  init = _resnet_init(num_classes=1000, adapters=True, seed=2)
  out = weights.flatten(weights.merge_params(read, init, dont_load=[ADAPTERS]))
  np.testing.assert_array_equal(out["params/head/kernel"], flat_src["params/head/kernel"])
  np.testing.assert_array_equal(out["params/layer2_0/adapter1/kernel"],
                                weights.flatten(init)["params/layer2_0/adapter1/kernel"])
  with pytest.raises(DataError, match=r"Mis-shaped \(2\): .*params/head/bias \(1000,\) vs \(10,\)"):
    weights.merge_params(read, _resnet_init(num_classes=10), dont_load=[ADAPTERS])
  # A source without BN statistics: all 52 are listed as missing by count, the first few by name.
  del read["batch_stats"]
  with pytest.raises(DataError, match=r"52 missing.*\nMissing \(52\): batch_stats/stem/bn/mean, "):
    weights.merge_params(read, _resnet_init(), dont_load=[HEAD, ADAPTERS])


# ---------------------------------------------------------------------------------------------------------------
# Converter command line: --output checks happen before anything is read or written.


def _converter():
  spec = importlib.util.spec_from_file_location("convert_resnet26_torch_cli", CONVERTER)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run_converter(*args):
  return subprocess.run([sys.executable, str(CONVERTER), *map(str, args)], capture_output=True, text=True,
                        timeout=300, check=False)


def test_converter_refuses_output_equal_to_input(tmp_path, capsys):
  conv = _converter()
  pth = tmp_path / "resnet26.pth"
  pth.write_bytes(b"state dict bytes")
  stat = pth.stat()
  for output in (pth, tmp_path / "." / "resnet26.pth", tmp_path / "resnet26.pth" / "ckpt", tmp_path):
    for force in ([], ["--force"]):
      assert conv.main(["--input", str(pth), "--output", str(output), *force]) == 2, output
      err = capsys.readouterr().err
      assert len(err.strip().splitlines()) == 1 and err.startswith("error: --output"), err
      assert str(pth) in err
  assert pth.read_bytes() == b"state dict bytes" and pth.stat().st_mtime_ns == stat.st_mtime_ns
  assert sorted(os.listdir(tmp_path)) == ["resnet26.pth"]
  # The same from the shell: one line, exit 2, no traceback.
  out = _run_converter("--input", pth, "--output", pth, "--force")
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  assert out.stderr.strip() == f"error: --output {pth} is the --input file; choose another --output (a new directory)."
  assert pth.read_bytes() == b"state dict bytes"


def test_converter_refuses_existing_output_without_force(tmp_path):
  pth = tmp_path / "resnet26.pth"
  pth.write_bytes(b"not read: the output check comes first")
  out_dir = pathlib.Path(weights.save(tmp_path / "ckpt", _variables()))
  before = sorted((p.relative_to(out_dir), p.stat().st_mtime_ns) for p in out_dir.rglob("*"))
  out = _run_converter("--input", pth, "--output", out_dir)
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  assert out.stderr.strip().splitlines() == [
      f"error: --output {out_dir} already exists; pass --force to replace it, or choose another --output."]
  assert sorted((p.relative_to(out_dir), p.stat().st_mtime_ns) for p in out_dir.rglob("*")) == before


def test_converter_reads_weights_only(tmp_path, capsys):
  """A .pth whose pickle would run code is refused by torch.load(weights_only=True): exit 1, nothing ran."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    pytest.fail("PyTorch is required for the converter tests: pip install torch==2.13.0")
  marker = tmp_path / "pwned"

  class Payload:

    def __reduce__(self):
      return (open, (str(marker), "w"))

  pth = tmp_path / "evil.pth"
  torch.save({"pre_conv.weight": torch.zeros(64, 3, 3, 3), "x": Payload()}, pth)
  assert not marker.exists()
  conv = _converter()
  assert conv.main(["--input", str(pth), "--output", str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err
  assert "weights-only" in err and "Traceback" not in err
  assert not marker.exists() and not (tmp_path / "out").exists()
