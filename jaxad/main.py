r"""Command line: `python -m jaxad.main --config=configs/mocca_cifar10.py:normal_class=3,seed=1 --workdir=DIR`.

Config values can be overridden with `--config.train.epochs=10`; `--mode=eval` re-scores a trained workdir;
`--mode=predict --workdir=DIR --images=PATH` scores new images (a folder, one image file or an .npz) with it and
writes DIR/predictions.csv (`jaxad.predict`).
Mistakes in the config, the data or a checkpoint end with one `jaxad: error: ...` line and exit code 2.
"""

import json
import os
import re
import sys
import traceback

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxad import config as jaxad_config
from jaxad import xla_flags
from jaxad.errors import Preempted, UserError


_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file, optionally ':args'.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "predict"],
                          "train (resumes if possible), eval (re-score the trained model) or predict (score --images).")
_IMAGES = flags.DEFINE_string("images", None, "--mode=predict: a folder of images, one image file or an .npz.")
flags.mark_flags_as_required(["workdir"])

_USAGE = ("Usage: python -m jaxad.main --config=configs/NAME.py[:k=v,...] --workdir=DIR [--mode=train|eval] "
          "[--config.KEY=VALUE]\n       python -m jaxad.main --mode=predict --workdir=DIR --images=PATH")


def _fail(message: str):
  print(f"jaxad: error: {message}\n{_USAGE}", file=sys.stderr)
  sys.exit(2)


def _describe(e: BaseException) -> str:
  """The most useful line of an exception raised while a config file is loaded or overridden."""
  root = e
  while root.__cause__ or root.__context__:  # the config file's own error, if any, says it best
    root = root.__cause__ or root.__context__
  if isinstance(root, UserError):
    return str(root)
  text = str(e).strip()
  if isinstance(e, (AttributeError, KeyError)):  # ml_collections: unknown key, with a "Did you mean" hint
    return "unknown config key " + text.strip("'\"").encode().decode("unicode_escape").replace("\n", " ")
  lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("  File")]
  return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1] if lines else repr(e))


def trained_model_name(workdir: str | None) -> str:
  """`model.name` in the config.json a training run left in `workdir`, so that --mode=predict gets the family's XLA
  flags; '' where it cannot be read (predict then says what is missing)."""
  if not workdir:
    return ""
  try:
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      return str(json.load(f)["model"]["name"] or "")
  except (OSError, ValueError, KeyError, TypeError):
    return ""


def _config_file(argv) -> str | None:
  """The file of `--config=FILE[:args]` (or `--config FILE[:args]`) in `argv`, if given."""
  for i, arg in enumerate(argv):
    if arg.startswith(("--config=", "-config=")):
      return arg.split("=", 1)[1].split(":", 1)[0]
    if arg in ("--config", "-config") and i + 1 < len(argv):
      return argv[i + 1].split(":", 1)[0]
  return None


def _parse_flags(argv):
  # config_flags loads the file as module 'config_config' with the deprecated `load_module`, which re-executes a file
  # into an existing module of that name: a second parse in one process (tests, notebooks) would keep the previous
  # file's get_config when the new file has none. Start from a fresh module every time.
  sys.modules.pop(f"{_CONFIG.name}_config", None)
  # It also defines one flag per `--config.KEY=VALUE` override it finds; drop the previous parse's, which would
  # otherwise be "defined twice".
  for name in [n for n in flags.FLAGS if n.startswith(f"{_CONFIG.name}.")]:
    delattr(flags.FLAGS, name)
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    # config_flags imports the config file and runs its get_config while parsing: a mistake there (a syntax error,
    # an exception, no get_config) is one line with its file and line; anything else that is not a flag error is a
    # bug and keeps its traceback.
    config_file = _config_file(argv)
    message = jaxad_config.describe_load_error(e, config_file) if config_file else None
    if message:
      _fail(message)
    if isinstance(e, (flags.Error, AttributeError, KeyError, TypeError, ValueError)):
      _fail(_describe(e))
    raise


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint write at INFO
  if _MODE.value == "predict":  # the trained workdir holds the config; --config is not needed
    xla_flags.apply_cpu_defaults(trained_model_name(_WORKDIR.value))
    if not _IMAGES.value:
      _fail("--mode=predict needs --images=PATH (a folder of images, one image file or an .npz).")
    from jaxad import predict  # pylint: disable=g-import-not-at-top
    try:
      predict.predict(_WORKDIR.value, _IMAGES.value)
    except UserError as e:
      _fail(str(e))
    print(f"wrote {_WORKDIR.value}/predictions.csv")
    return
  if flags.FLAGS["config"].value is None and not flags.FLAGS["config"].present:
    _fail("--config is required for --mode=train and --mode=eval.")
  config_file = flags.FLAGS["config"].config_filename
  try:
    config = _CONFIG.value
    getattr(config, "keys", None)  # a file that failed to load is a proxy that raises its OSError on first use
  except OSError as e:  # config_flags defers a missing/unloadable file (or an OSError of get_config) to first use
    _fail(jaxad_config.describe_load_error(e, config_file.split(":", 1)[0])
          or f"cannot load --config={config_file}: " + _describe(e.__cause__ or e))
  if not isinstance(config, ml_collections.ConfigDict):
    _fail(f"config file {config_file.split(':', 1)[0]}: get_config returned {type(config).__name__}, not an "
          "ml_collections.ConfigDict; end it with `return config`.")
  # The model family's XLA flags, before the first computation (loading the config imported jax, which is fine).
  xla_flags.apply_cpu_defaults(str(config.get("model", {}).get("name", "") or ""))
  from jaxad import parallel, train  # pylint: disable=g-import-not-at-top  (after flag parsing: fast --help)
  try:
    parallel.initialize(config.get("multihost", False))
    train.train_and_evaluate(config, _WORKDIR.value, mode=_MODE.value)
  except UserError as e:
    _fail(str(e))
  except Preempted as e:  # the checkpoint is saved and the trainer said where: exit as the signal would
    sys.exit(128 + e.signum)
  except KeyboardInterrupt:  # Ctrl-C outside a training loop (loading data, scoring): nothing half-saved
    print("jaxad: interrupted; the same command resumes from the last checkpoint.", file=sys.stderr)
    sys.exit(130)


def run():
  try:
    app.run(main, flags_parser=_parse_flags)
  except BaseException as e:  # pylint: disable=broad-except
    _exit_now_if_failed_multihost(e)
    raise


def _exit_now_if_failed_multihost(e: BaseException) -> None:
  """Ends a failed process of a multi-host job at once, without JAX's exit barrier.

  At exit JAX waits up to 5 minutes for every process to shut down together, while the others sit in a collective
  that needs this process. Exiting at once lets the launcher (launch/cpu_processes.sh, a cluster manager) see the
  failure and stop the rest; as after a SIGKILL, the last finished checkpoint resumes the job. A stop on a signal
  (exit 128 + signum) is agreed by every process at one step, so it keeps the normal exit.
  """
  code = e.code if isinstance(e, SystemExit) else 1
  if code in (0, None) or (isinstance(code, int) and code >= 128) or "jax" not in sys.modules:
    return
  import jax  # pylint: disable=g-import-not-at-top  (already imported: see above)
  if not jax.distributed.is_initialized():
    return
  if not isinstance(e, SystemExit):
    traceback.print_exc()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code if isinstance(code, int) else 1)  # pylint: disable=protected-access


if __name__ == "__main__":
  run()
