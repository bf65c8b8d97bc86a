"""Helpers shared by the test modules (test modules never import each other)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.join(os.path.dirname(REPO), "shared", "datasets")


def jaxad_main(*args, data_dir=None, timeout=600, **popen):
  """Runs the CLI; `data_dir` sets $JAXAD_DATA_DIR, '' removes it. Popen kwargs start it in the background."""
  env = dict(os.environ)
  if data_dir is not None:
    env["JAXAD_DATA_DIR"] = data_dir
  if data_dir == "":
    env.pop("JAXAD_DATA_DIR", None)
  cmd = [sys.executable, "-m", "jaxad.main", *args]
  if popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def run_python(code: str, *, devices: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh Python with `devices` host-platform CPU devices (the tests themselves use one)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)


def config_file(name: str) -> str:
  return os.path.join(REPO, "configs", name)


def hypersphere_config(**objective) -> ml_collections.ConfigDict:
  """MOCCA (soft boundary, three layers) on the MNIST LeNet with tiny budgets: 2 AE epochs, 3 encoder epochs."""
  from jaxad.config import import_sibling  # pylint: disable=g-import-not-at-top
  common = import_sibling(config_file("common.py"), "common")
  c = common.hypersphere()
  c.method = "mocca"
  c.model.update(name="lenet_mnist", rep_dim=32)
  c.pretrain.update(epochs=2, batch_size=16, lr=1e-3, **common.step_decay(1))
  c.train.update(epochs=3, batch_size=16, lr=1e-3, **common.step_decay(2))
  c.objective.update({"boundary": "soft", "layers": ("conv1", "conv2", "code"), "warmup_epochs": 1, **objective})
  c.eval.batch_size = 16
  c.log_every_steps = 1
  return c


def set_dotted(tree: dict, key: str, value, *, sep: str = ".") -> None:
  """Sets `tree[a][b][c] = value` for `key='a.b.c'` (nested dicts, e.g. a config's `to_dict()` or config.json)."""
  *parents, leaf = key.split(sep)
  for p in parents:
    tree = tree[p]
  tree[leaf] = value


def random_images(n=64, seed=0, shape=(28, 28, 1)) -> np.ndarray:
  return np.random.default_rng(seed).uniform(size=(n, *shape)).astype(np.float32)


def sources_of(normal: np.ndarray, test: np.ndarray | None = None, test_labels: np.ndarray | None = None, **named):
  """Named `Source`s over float arrays that are already network inputs (no preprocessing).

  'test' defaults to the normal images followed by as many flipped ones labelled anomalous.
  """
  from jaxad.data import Source  # pylint: disable=g-import-not-at-top
  if test is None:
    test = np.concatenate([normal, normal[:, ::-1]])
    test_labels = np.repeat(np.array([0, 1], np.int32), len(normal))
  out = {"normal": Source.of(normal), "test": Source.of(test, label=np.asarray(test_labels, np.int32))}
  out.update({k: v if hasattr(v, "examples") else Source.of(v) for k, v in named.items()})
  return out


def run_method(config, method, sources, workdir, mesh=None):
  """Runs a method's phases on given sources into `workdir`; returns their outputs by name."""
  from jaxad import parallel, train  # pylint: disable=g-import-not-at-top
  runner = train.Runner(config, str(workdir), method, sources, mesh or parallel.make_mesh())
  return runner.run()


def jaxad_main_in_process(*args, data_dir=None) -> tuple[int, str]:
  """Runs the CLI's flag parsing and `main` in this process: (exit code, stderr). For fast user-error tests.

  `data_dir` sets $JAXAD_DATA_DIR for the call, '' removes it; the environment is restored afterwards.
  """
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from jaxad import main  # pylint: disable=g-import-not-at-top

  saved = os.environ.get("JAXAD_DATA_DIR")
  if data_dir is not None:
    os.environ["JAXAD_DATA_DIR"] = data_dir
  if data_dir == "":
    os.environ.pop("JAXAD_DATA_DIR", None)
  err = io.StringIO()
  cwd, argv = os.getcwd(), sys.argv
  try:
    os.chdir(REPO)
    # config_flags finds the `--config.KEY=VALUE` overrides it must define in sys.argv, not in the parsed list.
    sys.argv = ["jaxad.main", *args]
    flags.FLAGS.unparse_flags()
    with contextlib.redirect_stderr(err):
      try:
        main.main(main._parse_flags(sys.argv))  # pylint: disable=protected-access
        code = 0
      except SystemExit as e:
        code = e.code
  finally:
    os.chdir(cwd)
    sys.argv = argv
    flags.FLAGS.unparse_flags()
    if saved is None:
      os.environ.pop("JAXAD_DATA_DIR", None)
    else:
      os.environ["JAXAD_DATA_DIR"] = saved
  return code, err.getvalue()


def moving_square(n, *, seed=0, h=24, w=48, side=6, speed=3, noise=2.0):
  """A video of a square moving over a textured background (the background and video tests):
  uint8 [n, h, w, 3] frames, the square's true mask bool [n, h, w] and the background float [h, w, 3]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  background = np.stack([(yy * 13 + xx * 7) % 120 + 40, (yy * 5 + xx * 11) % 100 + 60,
                         (xx * 3 + yy * 17) % 140 + 50], axis=-1).astype(np.float64)
  per_row = (w - side) // speed + 1
  truth = np.zeros((n, h, w), bool)
  for t in range(n):  # left to right along a row, then the next row down: no pixel is covered twice apart
    x0, y0 = (t % per_row) * speed, (t // per_row) * side % (h - side + 1)
    truth[t, y0:y0 + side, x0:x0 + side] = True
  frames = background + rng.normal(0, noise, (n, h, w, 3))
  frames[truth] = (250, 250, 40)
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8), truth, background


# --- damage to a checkpoint folder (tests/faults_test.py, tests/multihost_test.py, benchmarks/fault_injection.py) ---

def biggest_file(folder: str) -> str:
  """The largest data file under `folder` (jaxad's own manifest and config files excluded)."""
  files = [os.path.join(r, n) for r, _, ns in os.walk(folder) for n in ns if not n.startswith("jaxad_")]
  return max(files, key=os.path.getsize)


def flip_byte(folder: str) -> None:
  path = biggest_file(folder)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0xFF]))


def truncate(folder: str) -> None:
  path = biggest_file(folder)
  os.truncate(path, os.path.getsize(path) // 2)


def delete_file(folder: str) -> None:
  os.remove(biggest_file(folder))


def delete_array_folder(folder: str) -> None:
  shutil.rmtree(next(os.path.join(folder, d) for d in sorted(os.listdir(folder))
                     if os.path.isdir(os.path.join(folder, d))))


def garble_manifest(folder: str) -> None:
  with open(os.path.join(folder, "jaxad_manifest.json"), "r+b") as f:
    f.write(b"\x00garbage")


CORRUPTIONS = {"flipped_byte": flip_byte, "truncated_file": truncate, "deleted_file": delete_file,
               "deleted_array_folder": delete_array_folder, "garbled_manifest": garble_manifest}
