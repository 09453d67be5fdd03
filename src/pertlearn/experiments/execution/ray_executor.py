"""The Ray executor: one Ray task per unit of configurations (``pip install 'pertlearn[ray]'``),
on an existing cluster (``address``) or on a local Ray instance started for the sweep and shut
down when the sweep ends, fails or is interrupted.

Workers return the run directory's files to the driver, which publishes them in the store (no
shared filesystem needed); with ``shared_fs`` they write into the store themselves (the sweep
directory must then be at the same path on every node)."""

from __future__ import annotations

import signal
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pertlearn.errors import cli_worded
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.execution.base import OutcomeHandler, unit_args
from pertlearn.experiments.execution.outcome import Outcome
from pertlearn.experiments.execution.worker import execute_chunk
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point

RAY_MISSING = "needs Ray: pip install 'pertlearn[ray]' (or scripts/setup.sh ray)"
"""Why the Ray executor cannot run (after ``executor='ray'`` / ``--executor ray``)."""


def ray_missing() -> ConfigError:
    """The error for a missing Ray, in Python terms and in the command line's."""
    return cli_worded(ConfigError(f"executor='ray' {RAY_MISSING}"), f"--executor ray {RAY_MISSING}")


def require_ray() -> None:
    """Raise :class:`ConfigError` unless Ray can be imported."""
    try:
        import ray  # noqa: F401  (an optional extra)
    except ImportError:
        raise ray_missing() from None


def check_ray_address(address: str, timeout: float = 10.0) -> None:
    """Fail fast with :class:`ConfigError` when ``host:port`` (or ``ray://host:port``) does not
    accept connections (Ray itself retries for minutes). ``auto`` is left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        problem = (
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            "`ray start --head` or fix"
        )
        raise cli_worded(ConfigError(f"{problem} address"), f"{problem} --address") from None


@contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Put back the handlers of SIGINT and SIGTERM that the block replaced: ``ray.init``
    installs its own, which exit or abort the process, where the driver's stop the sweep
    cleanly (and shut the local Ray instance down). A SIGTERM that one of Ray's handlers
    turned into ``SystemExit`` while the block ran (``ray.init`` exits only so) goes to the
    SIGTERM handler the block replaced, when that is a function, as if Ray had not been there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except SystemExit:
        handler = saved[signal.SIGTERM]
        if callable(handler):
            handler(signal.SIGTERM, None)  # the driver's raises: the sweep stops cleanly
        raise
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _first_line(err: BaseException, default: str = "") -> str:
    text = str(err)
    return text.splitlines()[0] if text else default


MAX_DEATHS = 2
"""A configuration fails when this many Ray tasks holding it have died, the last of them a
task of its own (:class:`RayExecutor`)."""


@dataclass
class RayExecutor:
    """Ray tasks of ``cpus_per_task`` CPUs (and torch threads) and ``gpus_per_task`` GPUs, on
    the cluster at ``address`` or on a local instance of ``num_cpus`` CPUs (``None``: all).

    A task that fails as a whole (its worker died, e.g. out of memory, or Ray failed it) is
    run again: a task of several configurations as one task per configuration, so that only
    the one that kills its worker fails; a task of one configuration once more, since a lost
    node or another task's memory can kill a worker too. A configuration fails when a task of
    its own dies and a task holding it has died before (MAX_DEATHS)."""

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    shared_fs: bool = False
    num_cpus: int | None = None
    name: str = "ray"

    def _connect(self) -> bool:
        """Connect to Ray (or start a local instance); whether this call started the
        connection (and so must shut it down)."""
        try:
            import ray  # an optional extra
        except ImportError:
            raise ray_missing() from None
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"log_to_driver": False}
        if self.address:
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as err:
                problem = f"Ray: {_first_line(err, 'cannot connect')}; check"
                advice = (
                    "and for a cluster with token authentication set RAY_AUTH_MODE=token and "
                    "its token (README, Sweeps)"
                )
                raise cli_worded(
                    ConfigError(f"{problem} address, {advice}"),
                    f"{problem} --address, {advice}",
                ) from None
        else:
            try:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, **options)
            except BaseException:  # e.g. stopped by a signal while the instance started
                ray.shutdown()  # what it started of the local instance
                raise
        return True

    def run(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> int:
        import ray  # an optional extra, checked by _connect

        with keep_signal_handlers():
            started = self._connect()
        pending: dict[Any, Sequence[Point]] = {}
        try:
            task = ray.remote(execute_chunk).options(
                num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=0
            )
            threads = max(1, int(self.cpus_per_task))
            root = str(store.root.resolve()) if self.shared_fs else None

            def submit(unit: Sequence[Point]) -> None:
                pending[task.remote(*unit_args(unit), root, threads)] = unit

            for unit in units:
                submit(unit)
            deaths: Counter[str] = Counter()  # run id -> tasks holding it that died
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                unit = pending.pop(ready[0])
                try:
                    outcomes: list[Outcome] = ray.get(ready[0])
                except Exception as err:  # the worker died or Ray failed the task
                    deaths.update(point.run_id for point in unit)
                    if len(unit) > 1:  # which configuration did is unknown: each on its own
                        for point in unit:
                            submit([point])
                        continue
                    if deaths[unit[0].run_id] < MAX_DEATHS:
                        submit(unit)
                        continue
                    outcomes = [
                        Outcome(
                            p.run_id,
                            "failed",
                            error=f"{type(err).__name__}: {_first_line(err)}",
                            traceback=str(err),
                        )
                        for p in unit
                    ]
                for point, outcome in zip(unit, outcomes, strict=True):
                    if outcome.ok and outcome.files is not None:
                        outcome.published = store.install_files(point.run_id, outcome.files)
                        outcome.files = None
                    handle(point, outcome)
        except BaseException:
            for ref in pending:  # on a cluster that outlives the sweep, stop its tasks
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass
            raise
        finally:
            if started:
                ray.shutdown()
        return 0
