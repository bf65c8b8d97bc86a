"""Test set-up: 8 fake CPU devices (set before jax is imported) and the real datasets folder."""

import os
import subprocess
import sys

# Multi-device code paths are tested on 8 host-platform CPU devices; this must precede any jax import.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.join(os.path.dirname(REPO), "shared", "datasets")


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
      subprocess.run([sys.executable, codec, "export", path], check=True)
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
