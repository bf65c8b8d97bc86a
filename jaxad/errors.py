"""Errors that describe a user's mistake (config, data, weights, checkpoints).

`jaxad.main` prints these as one clear message instead of a traceback; anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
  """Base class: the message names the problem and says how to fix it."""


class ConfigError(UserError, ValueError):
  """A config key, value or type is wrong."""


class DataError(UserError, FileNotFoundError):
  """A dataset is missing or malformed."""


class TrainingError(UserError, RuntimeError):
  """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class Preempted(Exception):
  """Training stopped at a step boundary on SIGTERM / SIGINT / a preemption notice, after saving a checkpoint.

  `jaxad.main` exits with the conventional code 128 + the signal number (143 for SIGTERM, 130 for SIGINT).
  """

  def __init__(self, signum: int):
    super().__init__(f"stopped by signal {signum}")
    self.signum = signum
