r"""Command line: `python -m jaxad.main --config=configs/mocca_cifar10.py:normal_class=3,seed=1 --workdir=DIR`.

Config values can be overridden with `--config.train.epochs=10`; `--mode=eval` re-scores a trained workdir.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxad.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file, optionally ':args'.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (resumes if possible) or eval only.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint write at INFO
  from jaxad import parallel, train  # pylint: disable=g-import-not-at-top  (after flag parsing: fast --help)
  try:
    parallel.initialize(_CONFIG.value.get("multihost", False))
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, mode=_MODE.value)
  except UserError as e:
    print(f"jaxad: error: {e}", file=sys.stderr)
    sys.exit(2)


def run():
  try:
    app.run(main)
  except UserError as e:  # raised while a config file is loaded, before main()
    print(f"jaxad: error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  run()
