"""Helpers for config files: `get_config(arg)` receives the text after ':' in `--config=FILE:k=v,flag`."""

from __future__ import annotations

import os

import ml_collections

from jaxad.errors import ConfigError


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses 'k=v,flag' into a locked ConfigDict typed by `defaults`; unknown keys and bad values raise ConfigError.

  >>> parse_arg('normal_class=3,runlocal', normal_class=0, seed=1, runlocal=False).normal_class
  3
  """
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, has_value, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"Unknown config argument {key!r}; valid: {sorted(defaults)}.")
    default = defaults[key]
    if not has_value:
      if not isinstance(default, bool):
        raise ConfigError(f"Config argument {key!r} needs a value, e.g. {key}={default!r}.")
      out[key] = True
      continue
    try:
      if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
          raise ValueError(value)
        out[key] = value.lower() in ("true", "1")
      else:
        out[key] = type(default)(value)
    except ValueError:
      raise ConfigError(f"Config argument {key}={value!r} is not a valid {type(default).__name__}.") from None
  out.lock()
  return out


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads 'path/to/config.py[:args]' as `--config` does, for scripts and notebooks."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("jaxad_config_file", path)
  if module_spec is None or not os.path.exists(path):
    raise ConfigError(f"No config file at {path!r}.")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def import_sibling(config_file: str, name: str):
  """The module `<name>.py` beside a config file, e.g. `common = import_sibling(__file__, "common")`.

  Config files are loaded by path (`--config=configs/x.py`), so their folder is not importable as a package; this
  loads a sibling module once per process and caches it under 'jaxad_configs.<name>'.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  key = f"jaxad_configs.{name}"
  if key not in sys.modules:
    path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
  return sys.modules[key]
