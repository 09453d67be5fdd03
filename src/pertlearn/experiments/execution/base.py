"""The common interface of the sweep executors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pertlearn.experiments.execution.outcome import Outcome
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point

OutcomeHandler = Callable[[Point, Outcome], None]
"""Called by an executor in the driver process for each configuration as it finishes."""


class SweepExecutor(Protocol):
    """Runs units of configurations (see :func:`~.chunking.chunks`) and hands every outcome to
    ``handle`` in the driver process. ``run`` returns how many configurations it could not run
    (0 for the executors here: a configuration whose worker process dies fails); on any
    exception (an interrupt included) it stops its workers before it returns, so that nothing
    writes into the store once the driver lets go of its lock."""

    name: str

    def run(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> int: ...


def unit_args(unit: Sequence[Point]) -> tuple[list[dict[str, Any]], list[str]]:
    """The picklable arguments of :func:`~.worker.execute_chunk` for one unit."""
    return [p.config.model_dump(mode="json") for p in unit], [p.run_id for p in unit]
