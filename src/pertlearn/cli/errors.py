"""How the command line reports the errors a user can cause: one line, exit status 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from pertlearn.errors import (
    ConfigError,
    MissingExtraError,
    PluginError,
    RunDirExistsError,
    TrainingDivergedError,
    cli_message,
)

F = TypeVar("F", bound=Callable[..., Any])
EXPECTED_ERRORS = (
    ConfigError,
    MissingExtraError,
    PluginError,
    RunDirExistsError,
    TrainingDivergedError,
    ValueError,
    OSError,
)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is torch's failure to allocate memory (CPU or CUDA)."""
    text = str(err).lower()
    return "can't allocate memory" in text or "out of memory" in text


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def friendly_errors(command: F) -> F:
    """Turn the errors a user can cause into one line and exit status 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # the reader went away (`pertlearn presets | head`): say nothing
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except EXPECTED_ERRORS as err:
            text = cli_message(err)
            fail(text.splitlines()[0] if text else type(err).__name__)
        except (MemoryError, RuntimeError) as err:
            if not isinstance(err, MemoryError) and not is_out_of_memory(err):
                raise
            fail(
                "not enough memory for this configuration; lower the sizes (data.n_train, "
                "data.n_test, data.dim, model.width) or the batch sizes"
            )

    return wrapper  # type: ignore[return-value]
