"""Multi-host for real: two JAX processes on this machine (gloo collectives) against one process, same config.

`launch/cpu_processes.sh` starts the processes exactly as launch/README.md documents; a `sitecustomize` module on
PYTHONPATH (written below into tmp_path) records, in each process, the example indices every `Source.batch` call
reads (keyed by training phase and step, or by evaluation pass and batch) and every file the process writes into the
workdir. The recording wraps the real functions and changes nothing they do.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from helpers import REPO, flip_byte  # pylint: disable=g-bad-import-order

CONFIG = "configs/quickstart.py:normal_class=0,runlocal"  # digits class 0: 2 + 2 epochs of 2 steps, batch 32
EVERY_EPOCH = "--config.checkpoint_every_epochs=1"  # two steps kept per phase: a damaged newest one has a fallback
COORDINATES = ("JAX_COORDINATOR_ADDRESS", "JAXAD_NUM_PROCESSES", "JAXAD_PROCESS_ID")

# sitecustomize.py for the Pythons the test starts (PYTHONPATH): in `python -m jaxad.main` processes only (not the
# launcher's port picker), before jaxad.main runs, it wraps the real functions to record what they read and write,
# and saves the record at exit.
_SITECUSTOMIZE = '''
import atexit, builtins, json, os, sys, threading


def _install():
  from jaxad import xla_flags
  xla_flags.apply_cpu_defaults()  # as jaxad.main does, before jax is imported
  from jaxad.data import examples, pipeline

  out = os.environ["JAXAD_TEST_RECORD"].format(os.environ.get("JAXAD_PROCESS_ID", "single"))
  workdir = os.path.realpath(os.environ["JAXAD_TEST_WORKDIR"])
  local, count = threading.local(), {"train": 0, "eval": 0}
  record = {"reads": [], "writes": [], "process": None}

  def note_process():
    if record["process"] is None:
      import jax
      record["process"] = [jax.process_index(), jax.process_count()]
      record["collectives"] = jax.config.jax_cpu_collectives_implementation

  real_batch = examples.Source.batch
  def batch(self, indices):
    ctx = getattr(local, "ctx", None)
    key = None
    if ctx is not None:  # [kind, ordinal, step or batch, n-th source read within it]
      key = list(ctx)
      ctx[3] += 1
    record["reads"].append([key, len(self), [int(i) for i in indices]])
    return real_batch(self, indices)
  examples.Source.batch = batch

  real_init, real_make = pipeline.TrainBatches.__init__, pipeline.TrainBatches._make
  def init(self, *args, **kwargs):
    self.test_ordinal = count["train"]
    count["train"] += 1
    real_init(self, *args, **kwargs)
  def make(self, step):
    note_process()
    local.ctx = ["train", self.test_ordinal, int(step), 0]
    try:
      return real_make(self, step)
    finally:
      local.ctx = None
  pipeline.TrainBatches.__init__, pipeline.TrainBatches._make = init, make

  real_eval_batches = pipeline.eval_batches
  def eval_batches(source, global_batch_size):
    ordinal, b = count["eval"], 0
    count["eval"] += 1
    it = real_eval_batches(source, global_batch_size)
    while True:
      local.ctx = ["eval", ordinal, b, 0]
      try:
        item = next(it)
      except StopIteration:
        return
      finally:
        local.ctx = None
      yield item
      b += 1
  pipeline.eval_batches = eval_batches

  def written(path):
    if isinstance(path, int):  # a file descriptor
      return
    path = os.path.realpath(os.fspath(path))
    if path.startswith(workdir + os.sep):
      record["writes"].append(os.path.relpath(path, workdir))

  real_open, real_replace, real_rename = builtins.open, os.replace, os.rename
  def open_(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+"):
      written(file)
    return real_open(file, mode, *args, **kwargs)
  def replace(src, dst, *args, **kwargs):
    written(dst)
    return real_replace(src, dst, *args, **kwargs)
  def rename(src, dst, *args, **kwargs):
    written(dst)
    return real_rename(src, dst, *args, **kwargs)
  builtins.open, os.replace, os.rename = open_, replace, rename

  @atexit.register
  def save():
    with real_open(out, "w") as f:
      json.dump(record, f)


def _fail_at_save():
  # JAXAD_TEST_FAIL_AT_SAVE="P:N": process P raises in its N-th checkpoint save, while the others go on to a step
  # that needs it.
  process, nth = os.environ["JAXAD_TEST_FAIL_AT_SAVE"].split(":")
  if os.environ.get("JAXAD_PROCESS_ID") != process:
    return
  from jaxad import checkpoint
  real_save, saves = checkpoint.Checkpointer.save, [0]
  def save(self, state):
    saves[0] += 1
    if saves[0] == int(nth):
      raise RuntimeError("injected failure")
    return real_save(self, state)
  checkpoint.Checkpointer.save = save


if sys.orig_argv[1:3] == ["-m", "jaxad.main"]:
  _install()
  if "JAXAD_TEST_FAIL_AT_SAVE" in os.environ:
    _fail_at_save()
'''


def _env(tmp_path, workdir, data_dir):
  hooks = tmp_path / "hooks"
  hooks.mkdir(exist_ok=True)
  (hooks / "sitecustomize.py").write_text(textwrap.dedent(_SITECUSTOMIZE))
  env = {k: v for k, v in os.environ.items() if k not in COORDINATES}
  env.update(PYTHONPATH=os.pathsep.join([str(hooks), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
             JAXAD_DATA_DIR=data_dir, JAXAD_TEST_WORKDIR=str(workdir),
             JAXAD_TEST_RECORD=str(tmp_path / "record_{}.json"),  # {} = the process id, or "single"
             PYTHON=sys.executable)
  return env


def _run(cmd, env, timeout=300, expect=0):  # a guard against a hang, far above the ~15 s of CPU a run takes
  """Runs `cmd` in its own process group; on a timeout the whole group (every JAX process) is killed."""
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate()
    pytest.fail(f"{cmd} did not finish in {timeout} s:\n{err[-3000:]}")
  assert proc.returncode == expect, err[-5000:]
  return out, err


def _reads(record):
  """{(kind, ordinal, step or batch, n-th source): [(source length, indices), ...]} and the reads outside those."""
  keyed, other = {}, []
  for key, n, idx in record["reads"]:
    if key is None:
      other.append((n, idx))
    else:  # a training step can be read more than once (step 0 also gives the sample that initialises the model)
      keyed.setdefault(tuple(key), []).append((n, np.asarray(idx, np.int64)))
  return keyed, other


def _outputs(workdir):
  from jaxad.checkpoint import restore_output  # pylint: disable=g-import-not-at-top
  root = workdir / "checkpoints"
  return {p.name: restore_output(str(p / "output")) for p in sorted(root.iterdir())}


def test_two_processes_read_their_own_rows_and_match_one_process(tmp_path, data_dir):
  t0 = time.perf_counter()
  single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
  _run([sys.executable, "-m", "jaxad.main", f"--config={CONFIG}", f"--workdir={single_dir}", EVERY_EPOCH],
       _env(tmp_path, single_dir, data_dir))
  t_single = time.perf_counter() - t0
  # The command launch/README.md documents: 2 processes, --config.multihost=True, the coordinator on a free port.
  _run(["bash", "launch/cpu_processes.sh", "2", CONFIG, str(multi_dir), EVERY_EPOCH],
       _env(tmp_path, multi_dir, data_dir))
  print(f"one process {t_single:.1f} s, two processes {time.perf_counter() - t0 - t_single:.1f} s")

  records = {name: json.loads((tmp_path / f"record_{name}.json").read_text()) for name in ("single", "0", "1")}
  assert [records[k]["process"] for k in ("single", "0", "1")] == [[0, 1], [0, 2], [1, 2]]
  assert records["0"]["collectives"] == records["1"]["collectives"] == "gloo"
  single, single_other = _reads(records["single"])
  parts = [_reads(records[k]) for k in ("0", "1")]
  # Every read of the one-process run happens in both processes (same phase, step, source; evaluation pass, batch).
  assert set(parts[0][0]) == set(parts[1][0]) == set(single)
  train_keys = [k for k in single if k[0] == "train"]
  assert len(train_keys) == 8 and len({k[1] for k in train_keys}) == 2  # pretrain and train: 4 steps of 1 source
  assert len([k for k in single if k[0] == "eval"]) >= 4  # the center, the threshold, scoring 899 test images
  for key, reads in single.items():
    assert len(parts[0][0][key]) == len(parts[1][0][key]) == len(reads), key
    for (n, want), (n0, a), (n1, b) in zip(reads, parts[0][0][key], parts[1][0][key]):
      assert n0 == n1 == n
      # Each process reads its own half of the global batch: process 0 the first half, process 1 the second.
      assert len(a) == len(b) == len(want) // 2
      np.testing.assert_array_equal(np.concatenate([a, b]), want, err_msg=str(key))
      if key[0] == "train":  # no training row is read by both (evaluation pads its last batch with repeats)
        assert not set(a.tolist()) & set(b.tolist()), key
  assert parts[0][1] == parts[1][1] == single_other  # reads outside steps and batches: the same everywhere

  # Only process 0 writes into the workdir; process 1 only its own part of orbax's coordinated checkpoint saves.
  assert all(re.fullmatch(r"checkpoints/\w+/steps/\d+\S*/process_1", w)
             for w in records["1"]["writes"]), records["1"]["writes"]
  written = set(records["0"]["writes"])
  assert {"summary.json", "scores.npz", "threshold.json", "metrics.jsonl", "roc.png", "config.json"} <= written
  assert written == set(records["single"]["writes"])

  def files(d):  # orbax names its data files by content hashes
    return {re.sub(r"/[0-9a-f]{32}$", "/<hash>", str(p.relative_to(d))) for p in d.rglob("*") if p.is_file()}
  assert files(single_dir) == {f for f in files(multi_dir) if "process_1" not in f}

  # The same results as one process, to 1e-5.
  s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (single_dir, multi_dir))
  assert s1.keys() == s2.keys() and all(s2[k] == pytest.approx(v, abs=1e-5) for k, v in s1.items()), (s1, s2)
  z1, z2 = np.load(single_dir / "scores.npz"), np.load(multi_dir / "scores.npz")
  assert z1.files == z2.files
  for k in z1.files:
    np.testing.assert_allclose(z2[k], z1[k], rtol=1e-5, atol=1e-6, err_msg=k)
  o1, o2 = _outputs(single_dir), _outputs(multi_dir)
  assert list(o1) == list(o2) == ["center", "pretrain", "train"]
  for phase in o1:
    for (path, x), (_, y) in zip(*(_leaves((o[phase].variables, o[phase].extra)) for o in (o1, o2)), strict=True):
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6, err_msg=f"{phase} {path}")
  m1, m2 = ([json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()] for d in (single_dir, multi_dir))
  assert [(r["stage"], r["step"]) for r in m1] == [(r["stage"], r["step"]) for r in m2]
  for r1, r2 in zip(m1, m2):  # the loss and the other metrics of every logged step (as the scores: 1e-5, floor
    assert r1.keys() == r2.keys()  # 1e-6); not the throughput
    assert all(r2[k] == pytest.approx(v, rel=1e-5, abs=1e-6) for k, v in r1.items() if k not in ("stage", "img_per_s")), (r1, r2)

  # Damage the finished run: the train phase's output and its newest step. Both processes find the damage; process 0
  # alone moves each folder aside, once, and the run resumes from the step before to the same results.
  train_dir = multi_dir / "checkpoints" / "train"
  steps = sorted(int(p.name) for p in (train_dir / "steps").iterdir() if p.name.isdigit())
  assert len(steps) == 2, steps
  flip_byte(str(train_dir / "output"))
  flip_byte(str(train_dir / "steps" / str(steps[-1])))
  _, err = _run(["bash", "launch/cpu_processes.sh", "2", CONFIG, str(multi_dir), EVERY_EPOCH],
                _env(tmp_path, multi_dir, data_dir))
  assert err.count("moved it aside") == 2, err[-3000:]  # one line each, from process 0
  assert sorted(p.name for p in train_dir.iterdir()) == ["output", "output-corrupt", "steps"]
  assert sorted(p.name for p in (train_dir / "steps").iterdir() if not p.name.isdigit()) == [f"corrupt-{steps[-1]}"]
  moves = [w for w in json.loads((tmp_path / "record_1.json").read_text())["writes"] if "corrupt" in w]
  assert moves == [], moves  # process 1 renamed nothing
  assert json.loads((multi_dir / "summary.json").read_text()) == s2


def _leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [(jax.tree_util.keystr(p), np.asarray(x)) for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def test_a_failed_process_ends_the_job_at_once(tmp_path, data_dir):
  # Process 1 raises in its second checkpoint save; process 0 waits for it in the next collective. JAX's exit barrier
  # would hold process 1 for 5 minutes; jaxad.main ends it at once, so the launcher stops process 0 and returns.
  workdir = tmp_path / "w"
  env = {**_env(tmp_path, workdir, data_dir), "JAXAD_TEST_FAIL_AT_SAVE": "1:2"}
  t0 = time.perf_counter()
  _, err = _run(["bash", "launch/cpu_processes.sh", "2", CONFIG, str(workdir), EVERY_EPOCH], env, expect=1)
  assert "RuntimeError: injected failure" in err
  assert time.perf_counter() - t0 < 120  # the whole run takes ~20 s; JAX's barrier alone would be 300 s
  steps = [p.name for p in (workdir / "checkpoints" / "pretrain" / "steps").iterdir() if p.name.isdigit()]
  assert steps == ["2"], steps  # the first save is kept


@pytest.mark.parametrize("env,message", [
    ({"JAXAD_NUM_PROCESSES": "2", "JAXAD_PROCESS_ID": "2", "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"},
     "JAXAD_PROCESS_ID=2 must be in 0..JAXAD_NUM_PROCESSES-1"),
    ({"JAXAD_NUM_PROCESSES": "2"}, "JAXAD_NUM_PROCESSES is set but JAXAD_PROCESS_ID is not"),
    ({"JAXAD_NUM_PROCESSES": "2", "JAXAD_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS is not"),
    ({"JAXAD_NUM_PROCESSES": "two", "JAXAD_PROCESS_ID": "0"}, "JAXAD_NUM_PROCESSES='two' is not an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1"}, "has no port"),
])
def test_inconsistent_coordinates_are_named(env, message, monkeypatch):
  from jaxad import parallel  # pylint: disable=g-import-not-at-top
  from jaxad.errors import ConfigError  # pylint: disable=g-import-not-at-top
  assert (parallel.COORDINATOR_ENV, parallel.NUM_PROCESSES_ENV, parallel.PROCESS_ID_ENV) == COORDINATES
  for k in COORDINATES:
    monkeypatch.delenv(k, raising=False)
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  with pytest.raises(ConfigError, match=re.escape(message)):
    parallel.distributed_env()


def test_coordinates_without_multihost_are_refused(monkeypatch):
  # Two processes started without --config.multihost=True would each train alone into the same workdir.
  from jaxad import parallel  # pylint: disable=g-import-not-at-top
  from jaxad.errors import ConfigError  # pylint: disable=g-import-not-at-top
  for k, v in zip(COORDINATES, ("127.0.0.1:1", "2", "1")):
    monkeypatch.setenv(k, v)
  with pytest.raises(ConfigError, match="JAXAD_NUM_PROCESSES=2 is set but --config.multihost is False"):
    parallel.initialize(False)
  monkeypatch.setenv("JAXAD_NUM_PROCESSES", "1")
  monkeypatch.setenv("JAXAD_PROCESS_ID", "0")
  parallel.initialize(False)  # one process: nothing to join


def test_multihost_on_a_plain_machine_is_one_line_naming_the_fix(tmp_path, data_dir):
  # A fresh process: jax.distributed.initialize must come before any backend use, which this test process may have.
  env = {k: v for k, v in os.environ.items() if k not in COORDINATES}
  out = subprocess.run([sys.executable, "-m", "jaxad.main", f"--config={CONFIG}", f"--workdir={tmp_path / 'w'}",
                        "--config.multihost=True"], cwd=REPO, env={**env, "JAXAD_DATA_DIR": data_dir},
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
  assert "jaxad: error: --config.multihost=True but no multi-host job was found" in out.stderr, out.stderr
  assert "set JAX_COORDINATOR_ADDRESS=HOST:PORT" in out.stderr and "JAXAD_PROCESS_ID=0..N-1" in out.stderr
  assert not (tmp_path / "w").exists()


def test_launcher_stops_the_others_when_one_process_fails(tmp_path):
  # Process 1 dies at once; process 0 would wait for it in jax.distributed.initialize (300 s) or, later, in a
  # collective. The launcher must stop process 0 and return process 1's exit code.
  python = tmp_path / "python"
  python.write_text(f"""#!/bin/sh
[ -n "$JAXAD_PROCESS_ID" ] && echo $$ > {tmp_path}/pid_$JAXAD_PROCESS_ID
if [ "$JAXAD_PROCESS_ID" = 1 ]; then  # once process 0 has started
  while [ ! -e {tmp_path}/pid_0 ]; do sleep 0.05; done
  sleep 2  # process 0 is in Python by now: importing, or waiting for process 1 in jax.distributed.initialize
  exit 3
fi
exec {sys.executable} "$@"
""")
  python.chmod(0o755)
  env = {k: v for k, v in os.environ.items() if k not in COORDINATES}
  t0 = time.perf_counter()
  proc = subprocess.run(["bash", "launch/cpu_processes.sh", "2", CONFIG, str(tmp_path / "w")], cwd=REPO,
                        env={**env, "PYTHON": str(python)}, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 3, proc.stderr
  assert time.perf_counter() - t0 < 60
  pid0 = int((tmp_path / "pid_0").read_text())
  with pytest.raises(ProcessLookupError):  # stopped and reaped, not left waiting
    os.kill(pid0, 0)
