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
