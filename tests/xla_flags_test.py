"""jaxad.xla_flags: each model family's CPU flags, the user's own flags first, and flags set once a config is loaded
(jax imported, no computation yet) reaching XLA, which is when `jaxad.main` sets them."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp

from jaxad import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_each_family_gets_its_flags():
  assert xla_flags.cpu_flags("resnet26_transferad") == ("--xla_cpu_experimental_ynn_fusion_type=individual_dot,"
                                                       "eltwise,reduce",)
  assert xla_flags.cpu_flags("resnet26_rebuffi") == xla_flags.cpu_flags("resnet26_transferad")
  assert xla_flags.cpu_flags("wide_resnet") == xla_flags.cpu_flags("resnet26_transferad")
  for name in ("lenet_cifar10", "lenet_mnist", "mocca_mvtec", ""):  # eltwise,reduce slows LeNet: the default
    assert xla_flags.cpu_flags(name) == ("--xla_cpu_experimental_ynn_fusion_type=individual_dot",)


def test_the_users_flags_win_and_a_started_backend_is_left_alone(monkeypatch):
  jnp.zeros(1).block_until_ready()  # this process's backend has started: XLA has read its flags
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
  xla_flags.apply_cpu_defaults("resnet26_transferad")
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=true"  # too late to matter: nothing added


def test_flags_set_after_a_config_is_loaded_reach_xla(tmp_path):
  """In a fresh process, as jaxad.main: load the config (which imports jax), then set the model family's flags and
  a dump folder; the first computation must honour both (XLA reads XLA_FLAGS when its backend starts)."""
  dump = tmp_path / "dump"
  code = f"""
import os, sys
sys.path.insert(0, {REPO!r})
from jaxad.config import load_config
config = load_config({os.path.join(REPO, "configs", "adib_cifar10.py")!r})
assert "jax" in sys.modules
os.environ["XLA_FLAGS"] = "--xla_dump_to={dump}"
from jaxad import xla_flags
xla_flags.apply_cpu_defaults(config.model.name)
import jax
jax.jit(lambda x: x + 1)(1.0).block_until_ready()
print(os.environ["XLA_FLAGS"])
"""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXAD_XLA_CPU_DEFAULTS")}
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
  assert out.stdout.split() == [f"--xla_dump_to={dump}",
                                "--xla_cpu_experimental_ynn_fusion_type=individual_dot,eltwise,reduce"]
  assert any(name.startswith("module_") for name in os.listdir(dump))  # XLA read the flags set after the import


def test_predict_mode_takes_the_flags_of_the_trained_model(tmp_path):
  """--mode=predict has no --config: the family comes from the config.json training left in the workdir."""
  from jaxad import main  # pylint: disable=g-import-not-at-top

  (tmp_path / "config.json").write_text(json.dumps({"method": "transfer", "model": {"name": "resnet26_transferad"}}))
  assert main.trained_model_name(str(tmp_path)) == "resnet26_transferad"
  assert xla_flags.cpu_flags(main.trained_model_name(str(tmp_path))) == xla_flags.FAMILY_FLAGS["resnet26"]
  for broken in ("{not json", json.dumps({"model": {}}), json.dumps([1])):  # predict itself reports these
    (tmp_path / "config.json").write_text(broken)
    assert main.trained_model_name(str(tmp_path)) == ""
  assert main.trained_model_name(str(tmp_path / "missing")) == main.trained_model_name(None) == ""
