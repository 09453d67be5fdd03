"""The exceptions a user can cause, in one module that imports nothing heavy.

Each is also importable from the module that raises it (``ConfigError`` from
:mod:`pertlearn.experiments.config`, ``DataError`` from :mod:`pertlearn.data.errors`, ...); they
live here so that the command line can catch them without importing torch.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config is invalid; the message is one line naming the key and the fix."""


class RunDirExistsError(FileExistsError):
    """The target run directory already exists."""


class RunDirError(ValueError):
    """A run directory is missing, incomplete or corrupt; the message names the file."""


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite, or the weights overflowed
    (:data:`pertlearn.training.divergence.WEIGHT_BOUND`)."""


class DataError(ValueError):
    """A data set is missing, corrupt or refused; the message is one line naming the file."""


class MissingExtraError(ImportError):
    """An optional feature needs a package that is not installed; the message is one line
    naming the ``pip install 'pertlearn[EXTRA]'`` command."""


__all__ = [
    "ConfigError",
    "DataError",
    "MissingExtraError",
    "RunDirError",
    "RunDirExistsError",
    "TrainingDivergedError",
]
