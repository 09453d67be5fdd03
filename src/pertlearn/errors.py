"""The exceptions a user can cause, in one module that imports nothing heavy.

Each is also importable from the module that raises it (``ConfigError`` from
:mod:`pertlearn.experiments.config`, ``DataError`` from :mod:`pertlearn.data.errors`, ...); they
live here so that the command line can catch them without importing torch.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


def cli_worded(err: E, message: str) -> E:
    """``err`` carrying the command line's wording of its message (flags such as ``--out``
    where ``str(err)`` names keyword arguments such as ``out=``); the CLI prints
    ``cli_message(err)``, Python callers see ``str(err)``."""
    err.cli_message = message  # type: ignore[attr-defined]
    return err


def cli_message(err: BaseException) -> str:
    """The message the command line prints for ``err``: its CLI wording when it has one."""
    return str(getattr(err, "cli_message", None) or err)


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


class PluginError(ImportError):
    """An installed plug-in (entry point of the group ``pertlearn.plugins``) failed to load;
    the message is one line naming the entry point, its distribution and the exception."""


class MissingExtraError(ImportError):
    """An optional feature needs a package that is not installed; the message is one line
    naming the ``pip install 'pertlearn[EXTRA]'`` command."""


__all__ = [
    "ConfigError",
    "DataError",
    "MissingExtraError",
    "PluginError",
    "RunDirError",
    "RunDirExistsError",
    "TrainingDivergedError",
    "cli_message",
    "cli_worded",
]
