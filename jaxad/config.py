"""Helpers for config files: `get_config(arg)` receives the text after ':' in `--config=FILE:k=v,flag`."""

from __future__ import annotations

import os
from collections.abc import Mapping

import ml_collections

from jaxad.errors import ConfigError, UserError


# Keys that may change between a run and its resumption: where the data is, logging and checkpoint cadence, and
# recomputing activations (the same arithmetic, less memory).
RESUMABLE_KEYS = frozenset({"data.data_dir", "data.source", "multihost", "log_every_steps",
                            "checkpoint_every_epochs", "eval.batch_size", "model.remat"})
# `config.sweep` of every config (configs/common.py); a sweep's tasks are written with it (jaxad.sweep).
SWEEP_DEFAULTS = dict(enabled=False, seeds=(), strategy="auto")


def flat_dict(d: Mapping, prefix: str = "") -> dict:
  """`{'a.b': v}` for a nested dict `{'a': {'b': v}}`."""
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(flat_dict(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_diff(before: Mapping, now: Mapping) -> list[str]:
  """The dotted keys whose values differ between a run's saved config and the config it is resumed with.

  Keys in `RESUMABLE_KEYS` may differ. A key missing from `before` was added to jaxad after that run was made: it
  is tolerated, so that upgrading jaxad does not strand old workdirs (the run behaved as the key's default did).
  """
  before, now = flat_dict(before), flat_dict(now)
  diff = sorted(k for k in now if k in before and before[k] != now[k] and k not in RESUMABLE_KEYS)
  return diff + sorted(k for k in before if k not in now)


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
  try:
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (a mistake in the config file, located below)
    message = describe_load_error(e, path)
    if message is None:
      raise
    raise ConfigError(message) from e


def describe_load_error(error: BaseException, config_file: str) -> str | None:
  """One line naming the file and line where loading the config file `config_file` (or its get_config) failed.

  Covers a syntax error (in the file or a sibling it imports), an exception raised while the file is imported or
  while its `get_config` runs (the innermost line of the traceback in the config file's folder), and a file without
  `get_config`. Returns None for an error that did not come from the config file, and for a `UserError`, whose
  message already says what to fix.
  """
  config_file = os.path.abspath(config_file)
  folder = os.path.dirname(config_file)
  chain, seen = [], set()
  err = error
  while err is not None and id(err) not in seen:  # absl and ml_collections wrap the config file's own error
    seen.add(id(err))
    chain.append(err)
    err = err.__cause__ or err.__context__
  if any(isinstance(e, UserError) for e in chain):
    return None
  for e in chain:
    if isinstance(e, SyntaxError) and e.filename and os.path.dirname(os.path.abspath(e.filename)) == folder:
      where = f"{e.filename}:{e.lineno}"
      also = "" if os.path.abspath(e.filename) == config_file else f" (imported by config file {config_file})"
      return f"config file {where}: {type(e).__name__}: {e.msg}{also}; fix the file."
    module = getattr(e, "obj", None)
    if (isinstance(e, AttributeError) and getattr(e, "name", None) == "get_config"
        and os.path.abspath(getattr(module, "__file__", "") or "") == config_file):
      return (f"config file {config_file} defines no get_config; a config file must define "
              "`def get_config(arg=None)` returning an ml_collections.ConfigDict (see configs/quickstart.py).")
  for e in chain:
    frames = [f for f in _traceback_frames(e.__traceback__) if os.path.dirname(os.path.abspath(f[0])) == folder]
    if frames:
      filename, lineno = frames[-1]
      text = " ".join(str(e).split()) or "(no message)"
      also = "" if os.path.abspath(filename) == config_file else f" (called from config file {config_file})"
      return f"config file {filename}:{lineno}: {type(e).__name__}: {text}{also}; fix the file or its arguments."
  return None


def _traceback_frames(tb) -> list[tuple[str, int]]:
  """(file, line) of each frame of a traceback, outermost first."""
  out = []
  while tb is not None:
    out.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
    tb = tb.tb_next
  return out


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
