"""The fault catalogue: every kind of bad input or failure a user can meet ends in one clear line and loses nothing.

Each kind is one test case, run in this process where possible (the CLI through `jaxad_main_in_process`, the library
directly). A CLI case passes when the run exits with the expected code, prints exactly one `jaxad: error:` line
holding the expected words and no traceback, and leaves no workdir behind unless it holds trained checkpoints.
`test_the_catalogue_is_complete` keeps the count of kinds at 40 or more. Kill/resume bit-identity with real signals
is in main_test.py and `benchmarks/fault_injection.py` (20 SIGKILL + 20 SIGTERM trials, 5 corruptions, a full disk).
"""

from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pytest

from helpers import CORRUPTIONS, REPO, flip_byte, jaxad_main_in_process, truncate

QUICK = "--config=configs/quickstart.py:normal_class=0,runlocal=True"
CIFAR = "--config=configs/mocca_cifar10.py:normal_class=3,runlocal=True"
KINDS: list[str] = []  # every kind below registers itself, for the completeness check


def kinds(*names):
  KINDS.extend(names)
  return names


def assert_one_error_line(code, stderr, words, *, expected_code=2):
  assert code == expected_code, stderr[-2000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  errors = [l for l in stderr.splitlines() if l.startswith("jaxad: error:")]
  assert len(errors) == 1, stderr[-2000:]
  for w in words:
    assert w in errors[0], errors[0]


# --- config values and config files -----------------------------------------------------------------------------

CONFIG_CASES = {
    "epochs_zero": (["--config.train.epochs=0"], ["train.epochs=0", "int >= 1"]),
    "epochs_negative": (["--config.train.epochs=-1"], ["train.epochs=-1"]),
    "batch_size_zero": (["--config.train.batch_size=0"], ["train.batch_size=0"]),
    "eval_batch_size_zero": (["--config.eval.batch_size=0"], ["eval.batch_size=0"]),
    "log_every_zero": (["--config.log_every_steps=0"], ["log_every_steps=0"]),
    "checkpoint_every_zero": (["--config.checkpoint_every_epochs=0"], ["checkpoint_every_epochs=0"]),
    "lr_nan": (["--config.train.lr=nan"], ["train.lr=nan"]),
    "soft_warmup_too_long": (["--config.objective.boundary=soft", "--config.objective.warmup_epochs=2"],
                             ["warmup_epochs", "train.epochs"]),
    "unknown_key": (["--config.train.epoch=3"], ["unknown config key", "epoch"]),
    "unknown_method": (["--config.method=svdd"], ["method", "svdd"]),
}
kinds(*CONFIG_CASES)


@pytest.mark.parametrize("kind", sorted(CONFIG_CASES))
def test_bad_config_value_is_one_line_before_any_data(kind, tmp_path):
  overrides, words = CONFIG_CASES[kind]
  code, stderr = jaxad_main_in_process(QUICK, f"--workdir={tmp_path / 'w'}", *overrides)
  assert_one_error_line(code, stderr, words)
  assert not (tmp_path / "w").exists()


CONFIG_FILES = {
    "config_syntax_error": ("def get_config(:\n  pass\n", ["bad.py:1"]),
    "config_get_config_raises": ("def get_config():\n  raise ValueError('boom')\n", ["bad.py:2", "boom"]),
    "config_without_get_config": ("x = 1\n", ["bad.py", "get_config"]),
    "config_returns_dict": ("def get_config():\n  return {}\n", ["ConfigDict"]),
}
kinds(*CONFIG_FILES, "config_file_missing")


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES))
def test_broken_config_file_is_one_line_with_file_and_line(kind, tmp_path):
  text, words = CONFIG_FILES[kind]
  (tmp_path / "bad.py").write_text(text)
  code, stderr = jaxad_main_in_process(f"--config={tmp_path / 'bad.py'}", f"--workdir={tmp_path / 'w'}")
  assert_one_error_line(code, stderr, words)
  assert not (tmp_path / "w").exists()


def test_missing_config_file(tmp_path):
  code, stderr = jaxad_main_in_process(f"--config={tmp_path / 'nope.py'}", f"--workdir={tmp_path / 'w'}")
  assert_one_error_line(code, stderr, ["nope.py"])


# --- data files ------------------------------------------------------------------------------------------------

def cifar_like(ntr=3000, nte=300, seed=0):
  rng = np.random.default_rng(seed)
  return dict(x_train=rng.integers(0, 256, (ntr, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 10, ntr),
              x_test=rng.integers(0, 256, (nte, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 10, nte))


def _with(**changes):
  def make():
    a = cifar_like()
    for key, fn in changes.items():
      a[key] = fn(a)
    return a
  return make


def _set(key, index, value):
  def fn(a):
    y = a[key].copy()
    y[index] = value
    return y
  return fn


DATA_CASES = {
    "label_above_range": (_with(y_train=_set("y_train", 5, 200)), ["y_train", "outside 0..9", "200"]),
    "label_negative": (_with(y_test=_set("y_test", 7, -3)), ["y_test", "-3"]),
    "empty_normal_class": (_with(y_train=lambda a: np.where(a["y_train"] == 3, 4, a["y_train"])),
                           ["No normal training images of class 3", "data.normal_class"]),
    "empty_test_split": (_with(x_test=lambda a: a["x_test"][:0], y_test=lambda a: a["y_test"][:0]),
                         ["x_test is empty"]),
    "test_only_normal": (_with(y_test=lambda a: np.full_like(a["y_test"], 3)), ["only normal images", "AUROC"]),
    "test_only_anomalies": (_with(y_test=lambda a: np.full_like(a["y_test"], 5)), ["only anomalies", "AUROC"]),
    "all_zero_images": (_with(x_train=lambda a: np.zeros_like(a["x_train"])), ["single value 0", "x_train"]),
    "float_images": (_with(x_train=lambda a: a["x_train"].astype(np.float32)), ["dtype float32", "uint8"]),
    "wrong_channels": (_with(x_train=lambda a: a["x_train"][..., :1]), ["(32, 32, 1)", "(32, 32, 3)"]),
    "float_labels": (_with(y_train=lambda a: a["y_train"].astype(np.float32)), ["integer labels"]),
    "label_count_mismatch": (_with(y_train=lambda a: a["y_train"][:-1]), ["y_train has shape (2999,)"]),
    "missing_array": (lambda: {k: v for k, v in cifar_like().items() if k != "y_test"}, ["missing arrays", "y_test"]),
}
FILE_CASES = {
    "npy_renamed_npz": (lambda p: (np.save(p + ".npy", np.zeros(3)), os.rename(p + ".npy", p)), ["single .npy"]),
    "truncated_npz": (lambda p: (np.savez(p, **cifar_like()), open(p, "r+b").truncate(5000)), ["not a readable"]),
    "empty_npz_file": (lambda p: open(p, "w").close(), ["not a readable"]),
    "npz_is_a_folder": (lambda p: os.makedirs(p), ["is a folder"]),
}
kinds(*DATA_CASES, *FILE_CASES, "batch_larger_than_class")


@pytest.mark.parametrize("kind", sorted(DATA_CASES) + sorted(FILE_CASES))
def test_bad_data_is_one_line_naming_file_key_and_fix(kind, tmp_path):
  path = str(tmp_path / "cifar10.npz")
  if kind in DATA_CASES:
    make, words = DATA_CASES[kind]
    np.savez(path, **make())
  else:
    write, words = FILE_CASES[kind]
    write(path)
  code, stderr = jaxad_main_in_process(CIFAR, f"--workdir={tmp_path / 'w'}", "--config.data.source=npz",
                                       data_dir=str(tmp_path))
  assert_one_error_line(code, stderr, words)
  if kind in DATA_CASES and kind not in ("empty_normal_class", "test_only_normal", "test_only_anomalies"):
    assert path in stderr  # file-level problems name the file
  assert not (tmp_path / "w").exists()


def test_batch_larger_than_the_normal_class_names_the_key(tmp_path):
  np.savez(tmp_path / "cifar10.npz", **cifar_like())
  code, stderr = jaxad_main_in_process(CIFAR, f"--workdir={tmp_path / 'w'}", "--config.data.source=npz",
                                       "--config.train.batch_size=1000", data_dir=str(tmp_path))
  assert_one_error_line(code, stderr, ["fewer than one batch of 1000", "--config.train.batch_size"])
  assert not (tmp_path / "w").exists()


# --- workdirs and modes ----------------------------------------------------------------------------------------

kinds("workdir_is_file", "workdir_below_file", "workdir_not_writable", "eval_without_workdir",
      "predict_without_workdir", "predict_without_images")


def test_workdir_that_is_a_file_or_below_one(tmp_path):
  (tmp_path / "f").write_text("keep me")
  for workdir, words in ((tmp_path / "f", ["is a file"]), (tmp_path / "f" / "sub", ["is below the file"])):
    code, stderr = jaxad_main_in_process(QUICK, f"--workdir={workdir}")
    assert_one_error_line(code, stderr, words)
  assert (tmp_path / "f").read_text() == "keep me"


def test_workdir_not_writable(tmp_path, monkeypatch):
  target = str(tmp_path / "ro")
  os.makedirs(target)
  real_access = os.access
  # Root ignores permission bits, so the denial is injected where jaxad asks the OS.
  monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.path.abspath(p) == target else
                      real_access(p, mode, **kw))
  code, stderr = jaxad_main_in_process(QUICK, f"--workdir={target}/w")
  assert_one_error_line(code, stderr, ["not writable", "errno 13"])


@pytest.mark.parametrize("args,words", [
    (["--mode=eval", QUICK], ["does not exist; train into it first"]),
    (["--mode=predict", "--images=/nowhere"], ["does not exist"]),
    (["--mode=predict"], ["needs --images"]),
])
def test_eval_and_predict_never_create_a_workdir(args, words, tmp_path):
  code, stderr = jaxad_main_in_process(*args, f"--workdir={tmp_path / 'w'}")
  assert_one_error_line(code, stderr, words)
  assert not (tmp_path / "w").exists()


# --- training runs: checkpoints, resumes, NaN, signals, disk ----------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished quickstart run with a checkpoint at every epoch (2 per phase kept), and its summary."""
  workdir = tmp_path_factory.mktemp("trained") / "w"
  code, stderr = jaxad_main_in_process(QUICK, f"--workdir={workdir}", "--config.checkpoint_every_epochs=1")
  assert code == 0, stderr[-3000:]
  return workdir, json.loads((workdir / "summary.json").read_text())


def copy_run(trained, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(trained[0], workdir)
  (workdir / "summary.json").unlink()
  return workdir


def rerun(workdir, *extra):
  return jaxad_main_in_process(QUICK, f"--workdir={workdir}", "--config.checkpoint_every_epochs=1", *extra)


def steps_of(workdir, phase="train"):
  d = workdir / "checkpoints" / phase / "steps"
  return d, sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())


kinds(*(f"corrupt_latest_step_{k}" for k in CORRUPTIONS), "corrupt_phase_output", "corrupt_best_weights",
      "all_steps_corrupt")


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_latest_step_is_moved_aside_and_the_run_resumes_identically(corruption, trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "train" / "output")  # the train phase must resume from its steps
  steps_dir, steps = steps_of(workdir)
  assert len(steps) == 2  # the newest is corrupted; the run falls back to the one before
  CORRUPTIONS[corruption](str(steps_dir / str(steps[-1])))
  code, stderr = rerun(workdir)
  assert code == 0, stderr[-3000:]
  assert f"corrupt-{steps[-1]}" in stderr and "Traceback" not in stderr
  assert (steps_dir / f"corrupt-{steps[-1]}").is_dir()  # moved aside, never deleted
  assert json.loads((workdir / "summary.json").read_text()) == trained[1]


def test_corrupt_phase_output_is_redone_from_its_steps(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  flip_byte(str(workdir / "checkpoints" / "pretrain" / "output"))
  code, stderr = rerun(workdir)
  assert code == 0, stderr[-3000:]
  assert (workdir / "checkpoints" / "pretrain" / "output-corrupt").is_dir()
  assert json.loads((workdir / "summary.json").read_text()) == trained[1]


def test_all_steps_corrupt_is_one_line_and_nothing_is_deleted(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "train" / "output")
  steps_dir, steps = steps_of(workdir)
  for s in steps:
    truncate(str(steps_dir / str(s)))
  code, stderr = rerun(workdir)
  assert_one_error_line(code, stderr, ["No intact checkpoint", "new --workdir"])
  assert all((steps_dir / f"corrupt-{s}").is_dir() for s in steps)


def test_corrupt_best_weights_retrain_the_phase(tmp_path, capfd):
  """keep='min_loss': the best epoch's weights cannot be rebuilt from the steps, so the phase is trained again."""
  import chex  # pylint: disable=g-import-not-at-top
  from helpers import hypersphere_config, random_images, run_method, sources_of  # pylint: disable=g-import-not-at-top
  from jaxad.methods.base import Method, Scorer  # pylint: disable=g-import-not-at-top
  from train_test import noisy_phase  # pylint: disable=g-import-not-at-top
  x, config, phase = random_images(8, shape=(2, 2, 1)), hypersphere_config(), noisy_phase(keep="min_loss")
  method = Method([phase], {"s": Scorer(lambda v, e, b: phase.model.apply(v, b["image"], train=False)[0], "fit")})
  want = run_method(config, method, sources_of(x), tmp_path)["fit"]
  shutil.rmtree(tmp_path / "checkpoints" / "fit" / "output")
  flip_byte(str(tmp_path / "checkpoints" / "fit" / "best"))
  capfd.readouterr()
  got = run_method(config, method, sources_of(x), tmp_path)["fit"]
  chex.assert_trees_all_equal(got.variables, want.variables)
  assert (tmp_path / "checkpoints" / "fit" / "best-corrupt").is_dir()
  assert (tmp_path / "checkpoints" / "fit" / "steps-without-best").is_dir()
  assert "trains the phase again" in capfd.readouterr().err


kinds("nan_weights_in_checkpoint", "nan_after_restore", "nan_during_training", "resume_with_other_config",
      "resume_other_config_without_config_json")


def test_checkpoint_with_nan_weights_is_moved_aside(tmp_path, capfd):
  from checkpoint_test import make_state  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxad.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  d = str(tmp_path / "steps")
  ckpt = Checkpointer(d, max_to_keep=5)
  ckpt.save(make_state(1))
  bad = make_state(2)
  ckpt.save(bad.replace(params={k: jnp.full_like(v, jnp.nan) for k, v in bad.params.items()}))
  ckpt.close()
  ckpt = Checkpointer(d, max_to_keep=5)
  restored = ckpt.restore(make_state(0, seed=9))
  ckpt.close()
  assert int(restored.step) == 1 and os.path.isdir(os.path.join(d, "corrupt-2"))
  assert "NaN/inf" in capfd.readouterr().err


def test_nan_right_after_a_restore_blames_the_checkpoint(trained, tmp_path, monkeypatch):
  from jaxad import train  # pylint: disable=g-import-not-at-top
  workdir = copy_run(trained, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "train")
  shutil.copytree(trained[0] / "checkpoints" / "train" / "steps", workdir / "checkpoints" / "train" / "steps")
  steps_dir, steps = steps_of(workdir)
  shutil.rmtree(steps_dir / str(steps[-1]))  # resume mid-phase, from the epoch-1 step
  real_restore = train.Checkpointer.restore

  def damaged(self, state):  # damage that slipped past the checks (they move a NaN step aside: see the test above)
    import jax  # pylint: disable=g-import-not-at-top
    out = real_restore(self, state)
    return out.replace(params=jax.tree.map(lambda p: p * np.nan, out.params))

  monkeypatch.setattr(train.Checkpointer, "restore", damaged)
  code, stderr = rerun(workdir)
  assert_one_error_line(code, stderr, ["right after resuming from checkpoint step", "suspect", "aside"])
  assert (steps_dir / str(steps[0])).is_dir()


def test_nan_during_training_names_the_lr_and_leaves_no_empty_workdir(tmp_path):
  code, stderr = jaxad_main_in_process(QUICK, f"--workdir={tmp_path / 'w'}", "--config.pretrain.lr=1e30")
  assert_one_error_line(code, stderr, ["non-finite", "pretrain.lr", "No checkpoint of this phase was written yet"])
  assert not (tmp_path / "w").exists()


def test_resume_with_another_config_is_refused(trained, tmp_path):
  workdir = copy_run(trained, tmp_path)
  code, stderr = rerun(workdir, "--config.train.lr=0.5")
  assert_one_error_line(code, stderr, ["different config", "train.lr"])
  (workdir / "config.json").unlink()  # lost: the config stored in the checkpoints still guards the run
  code, stderr = rerun(workdir, "--config.train.lr=0.5")
  assert_one_error_line(code, stderr, ["different config", "train.lr", "jaxad_config.json"])
  assert not (workdir / "config.json").exists()  # not rewritten with the other config
  code, stderr = rerun(workdir)  # the original config resumes (and writes config.json back)
  assert code == 0, stderr[-3000:]
  assert json.loads((workdir / "summary.json").read_text()) == trained[1]
  assert (workdir / "config.json").exists()


kinds("sigint_in_process", "sigterm_between_loops", "full_disk")


def test_sigint_saves_says_where_and_resumes_identically(tmp_path, monkeypatch):
  args = [QUICK, "--config.checkpoint_every_epochs=1", "--config.pretrain.epochs=6"]
  code, stderr = jaxad_main_in_process(*args, f"--workdir={tmp_path / 'ref'}")
  assert code == 0, stderr[-3000:]
  from jaxad import train  # pylint: disable=g-import-not-at-top
  real_save = train.Checkpointer.save

  def save_then_ctrl_c(self, state):  # Ctrl-C arrives while the first epoch checkpoint is written
    real_save(self, state)
    if int(state.step) == 2:
      signal.raise_signal(signal.SIGINT)

  monkeypatch.setattr(train.Checkpointer, "save", save_then_ctrl_c)
  code, stderr = jaxad_main_in_process(*args, f"--workdir={tmp_path / 'w'}")
  monkeypatch.undo()
  assert code == 130 and "Traceback" not in stderr, stderr[-3000:]
  assert "pretrain: stopped by SIGINT at step 3 of 12; saved" in stderr, stderr[-2000:]
  code, stderr = jaxad_main_in_process(*args, f"--workdir={tmp_path / 'w'}")
  assert code == 0 and "resumed from step 3 of 12" in stderr, stderr[-3000:]
  assert json.loads((tmp_path / "w" / "summary.json").read_text()) == json.loads(
      (tmp_path / "ref" / "summary.json").read_text())
  records = [json.loads(l) for l in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
  keys = [(r["stage"], r["step"]) for r in records]
  assert len(keys) == len(set(keys))  # each step once after the resume


def test_signal_between_training_loops_is_not_lost(trained, tmp_path, monkeypatch):
  """SIGTERM while a fit phase runs (no training loop active): the phase's output is the save; exit 143; resume."""
  from jaxad import train  # pylint: disable=g-import-not-at-top
  real_fit = train.Runner.fit_phase

  def fit_then_sigterm(self, phase, index, previous):
    signal.raise_signal(signal.SIGTERM)  # handled by the run's StopRequests: only a request
    return real_fit(self, phase, index, previous)

  monkeypatch.setattr(train.Runner, "fit_phase", fit_then_sigterm)
  code, stderr = rerun(tmp_path / "w")
  monkeypatch.undo()
  assert code == 143 and "Traceback" not in stderr, stderr[-3000:]
  assert "center: stopped by SIGTERM after the phase finished; saved" in stderr
  code, stderr = rerun(tmp_path / "w")
  assert code == 0, stderr[-3000:]
  assert json.loads((tmp_path / "w" / "summary.json").read_text()) == trained[1]


def test_full_disk_is_one_line_and_resumes_after_space_is_freed(trained, tmp_path, monkeypatch):
  """The disk has room for the config and data files but not for the next checkpoint (free space reported by the
  OS is replaced by 100 kB: no test can fill a real disk without root; benchmarks/fault_injection.py uses a tmpfs)."""
  workdir = copy_run(trained, tmp_path)
  shutil.rmtree(workdir / "checkpoints" / "train")
  real_usage = shutil.disk_usage
  monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=100_000))
  code, stderr = rerun(workdir)
  assert_one_error_line(code, stderr, ["Cannot write checkpoint step 2", "0.1 MiB free", "errno 28", "resumes"])
  assert not any(".orbax-checkpoint-tmp" in d for _, ds, _ in os.walk(workdir) for d in ds)
  assert (workdir / "checkpoints" / "pretrain" / "output").is_dir()  # earlier work kept
  monkeypatch.undo()
  code, stderr = rerun(workdir)
  assert code == 0, stderr[-3000:]
  assert json.loads((workdir / "summary.json").read_text()) == trained[1]


def test_disk_errors_are_recognised_in_orbax_messages():
  from jaxad import files  # pylint: disable=g-import-not-at-top
  orbax = ValueError('RESOURCE_EXHAUSTED: Error writing "x" in OCDBT database at local file "/w/ckpt/": Failed to '
                     "write 347 bytes to file 11: No space left on device [os_error_code='28']")
  assert files.disk_errno(orbax) == (28, "/w/ckpt/")
  try:
    try:
      raise OSError(30, "Read-only file system", "/w/summary.json")
    except OSError as e:
      raise RuntimeError("wrapped") from e
  except RuntimeError as wrapped:
    message = files.disk_error_message(wrapped, "/w")
  assert "errno 30" in message and "/w/summary.json" in message and "read-only" in message
  assert files.disk_error_message(ValueError("no disk problem here"), "/w") is None


# --- converters and the library ---------------------------------------------------------------------------------

kinds("converter_output_is_input", "converter_output_exists", "converter_output_inside_input",
      "converter_input_missing")


def test_converter_refuses_to_touch_its_input(tmp_path):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("conv", os.path.join(REPO, "third_party_weights",
                                                                     "convert_resnet26_torch.py"))
  conv = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(conv)
  pth = tmp_path / "resnet26.pth"
  pth.write_bytes(b"original")
  (tmp_path / "exists").mkdir()
  for output, code in ((pth, 2), (tmp_path / "exists", 2), (pth / "sub", 2)):
    assert conv.main(["--input", str(pth), "--output", str(output)]) == code
  assert conv.main(["--input", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "o")]) == 1
  assert pth.read_bytes() == b"original" and not (tmp_path / "o").exists()


LIBRARY_CASES = {
    "center_of_empty_batch": ("losses.hypersphere_center(np.zeros((0, 4)))", "embeddings"),
    "oe_bce_label_2": ("losses.outlier_exposure_bce(np.zeros(3), np.array([0, 1, 2]))", "labels"),
    "deep_sad_label_5": ("losses.deep_sad(np.zeros((2, 3)), np.zeros(3), np.array([0, 5]))", "semi_targets"),
    "radius_of_nothing": ("losses.radius_from_distances(np.zeros(0), nu=0.1)", "sq_distances"),
    "reconstruction_shape_mismatch": ("losses.reconstruction(np.zeros((2, 4)), np.zeros((2, 5)))", "x_hat"),
    "auroc_empty": ("metrics.auroc(np.zeros(0), np.zeros(0))", "labels"),
    "auroc_length_mismatch": ("metrics.auroc(np.array([0, 1, 1]), np.zeros(2))", "scores"),
}
kinds(*LIBRARY_CASES)


@pytest.mark.parametrize("kind", sorted(LIBRARY_CASES))
def test_library_inputs_are_checked(kind):
  from jaxad import losses, metrics  # pylint: disable=g-import-not-at-top
  call, argument = LIBRARY_CASES[kind]
  with pytest.raises(ValueError, match=argument):
    eval(call, {"losses": losses, "metrics": metrics, "np": np})  # pylint: disable=eval-used


def test_the_catalogue_is_complete():
  assert len(KINDS) == len(set(KINDS)) and len(KINDS) >= 40, len(KINDS)
