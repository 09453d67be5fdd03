"""Run a sweep's configurations into its :class:`~pertlearn.experiments.store.SweepStore`.

- :mod:`.driver`: :func:`run_sweep` validates every configuration (its attack included) and the
  directory, keeps the store's books under its lock (corrupt runs and failure records moved
  into ``corrupt/`` and rerun, failures recorded), runs the rest with an executor and stops
  cleanly on SIGINT/SIGTERM (:class:`SweepInterrupted`).
- :mod:`.local`: ``local`` (default): one worker runs in this process (what it was running
  when the process died runs apart on a resume); more use spawned worker processes, each
  limited to ``cpu_count // workers`` torch threads, that die with the driver; a configuration
  that kills its worker fails alone while the others go on in parallel.
- :mod:`.ray_executor`: ``ray``: one Ray task per unit, on a cluster (``address``) or on a
  local Ray instance started for the sweep and shut down with it; a unit of several
  configurations whose task dies runs again one configuration per task.
- :mod:`.worker`: what a worker runs; :mod:`.outcome`: the typed :class:`Outcome`.

Both executors run batchable configurations of equal shapes (``neurips`` pipeline: learning
rates, seeds, ε, targets may differ) in chunks of at most ``batch_size`` as one batched
computation (:mod:`pertlearn.experiments.batched`), each configuration saved and recorded on
its own as if it had run alone; ``batch_size = 1`` (``--no-batch``) runs them one at a time.
"""

from pertlearn.experiments.execution.base import OutcomeHandler, SweepExecutor
from pertlearn.experiments.execution.chunking import BATCH_SIZE, batch_key, chunks
from pertlearn.experiments.execution.driver import (
    EXECUTORS,
    SweepInterrupted,
    SweepSummary,
    check_attacks,
    run_sweep,
)
from pertlearn.experiments.execution.local import LocalExecutor
from pertlearn.experiments.execution.outcome import Outcome
from pertlearn.experiments.execution.ray_executor import RayExecutor, check_ray_address
from pertlearn.experiments.execution.worker import execute_chunk, execute_config

__all__ = [
    "BATCH_SIZE",
    "EXECUTORS",
    "LocalExecutor",
    "Outcome",
    "OutcomeHandler",
    "RayExecutor",
    "SweepExecutor",
    "SweepInterrupted",
    "SweepSummary",
    "batch_key",
    "check_attacks",
    "check_ray_address",
    "chunks",
    "execute_chunk",
    "execute_config",
    "run_sweep",
]
