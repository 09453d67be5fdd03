"""How the command line reports the errors a user can cause: one line, exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from pertlearn.errors import ConfigError, RunDirExistsError, TrainingDivergedError

F = TypeVar("F", bound=Callable[..., Any])
EXPECTED_ERRORS = (ConfigError, RunDirExistsError, TrainingDivergedError, ValueError, OSError)


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
        except EXPECTED_ERRORS as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)

    return wrapper  # type: ignore[return-value]
