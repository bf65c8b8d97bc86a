"""Test set-up: fixtures for the real datasets folder and float64.

Tests run on one CPU device; the test about devices (tests/train_test.py) starts its own process with eight
(`helpers.run_python(..., devices=8)`). Shared helpers live in tests/helpers.py.
"""

import os
import subprocess
import sys
import tempfile

import pytest

from helpers import SHARED_DATASETS  # pylint: disable=g-bad-import-order

# Many tests start the command line in a fresh process (train, then --mode=eval; kill, then resume) that compiles
# the same programs again: JAX's persistent compilation cache lets the later ones load them. Set before jax is
# imported, in this process and (through the environment) in every process the tests start.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"jaxad-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


@pytest.fixture(scope="session")
def data_dir() -> str:
  """The folder with cifar10.npz / cifar100.npz / mnist.npz.

  $JAXAD_DATA_DIR when set (CI sets it); otherwise the archives are exported once from ../shared/datasets into
  ~/.cache/jaxad/datasets. With neither, the tests that need real data fail with instructions: they never skip.
  """
  path = os.environ.get("JAXAD_DATA_DIR")
  if not path:
    path = os.path.expanduser("~/.cache/jaxad/datasets")
    if not os.path.exists(os.path.join(path, "cifar10.npz")):
      codec = os.path.join(SHARED_DATASETS, "imgcodec.py")
      if not os.path.exists(codec):
        pytest.fail("Real datasets are needed: set JAXAD_DATA_DIR to a folder with cifar10.npz (etc.), e.g. made by "
                    "`python3 ../shared/datasets/imgcodec.py export DIR`.")
      # Export beside the cache and move into place: parallel test workers never see a half-written archive.
      os.makedirs(os.path.dirname(path), exist_ok=True)
      partial = tempfile.mkdtemp(prefix="export-", dir=os.path.dirname(path))
      subprocess.run([sys.executable, codec, "export", partial], check=True)
      os.makedirs(path, exist_ok=True)
      for name in sorted(os.listdir(partial), key=lambda n: n == "cifar10.npz"):  # the file checked above last
        os.replace(os.path.join(partial, name), os.path.join(path, name))
      os.rmdir(partial)
  for name in ("cifar10", "cifar100", "mnist"):
    if not os.path.exists(os.path.join(path, f"{name}.npz")):
      pytest.fail(f"JAXAD_DATA_DIR={path} has no {name}.npz; make it with "
                  "`python3 ../shared/datasets/imgcodec.py export DIR`.")
  return path


@pytest.fixture
def x64():
  """Float64 for one test (finite-difference gradient checks need it); the flag stays local to the test."""
  import jax  # pylint: disable=g-import-not-at-top  (after XLA_FLAGS is set above)
  with jax.enable_x64(True):
    yield
