"""What running one configuration gave: a typed :class:`Outcome` instead of a result dict."""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["done", "failed"]


@dataclass
class Outcome:
    """The outcome of one configuration of a sweep.

    ``status`` is ``done`` (the run directory was published into the store, ``published``
    tells whether it was new, or its ``files`` came back by value: file name → bytes, for the
    driver to publish) or ``failed`` (``error``: one line ``Type: message``; ``traceback``: the
    full text)."""

    run_id: str
    status: Status
    error: str = ""
    traceback: str = ""
    files: dict[str, bytes] | None = field(default=None, repr=False)
    published: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @classmethod
    def done(
        cls, run_id: str, *, files: dict[str, bytes] | None = None, published: bool | None = None
    ) -> Outcome:
        return cls(run_id, "done", files=files, published=published)

    @classmethod
    def failure(cls, run_id: str, err: BaseException) -> Outcome:
        """A ``failed`` outcome for the exception ``err`` (its first line and traceback)."""
        lines = str(err).splitlines()
        error = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
        return cls(
            run_id,
            "failed",
            error=error,
            traceback="".join(tb.format_exception(type(err), err, err.__traceback__)),
        )
