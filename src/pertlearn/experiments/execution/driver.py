"""The sweep driver: validate, keep the store's books under its lock, run the rest with an
executor, and stop cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from tqdm.auto import tqdm

from pertlearn.attacks import make_attack
from pertlearn.errors import cli_worded
from pertlearn.experiments.config import AttackConfig, ConfigError
from pertlearn.experiments.execution.base import SweepExecutor
from pertlearn.experiments.execution.chunking import BATCH_SIZE, chunks
from pertlearn.experiments.execution.local import LocalExecutor
from pertlearn.experiments.execution.outcome import Outcome
from pertlearn.experiments.execution.ray_executor import RayExecutor, check_ray_address, require_ray
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point, Sweep

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[ExecutorName, ...] = ("local", "ray")


@dataclass
class SweepSummary:
    """What :func:`run_sweep` did."""

    out: Path
    total: int
    skipped_done: int
    skipped_failed: int
    ran: int = 0
    succeeded: int = 0
    failed: list[str] = field(default_factory=list)
    not_run: int = 0
    removed_partials: int = 0
    moved_corrupt: list[str] = field(default_factory=list)

    @property
    def complete(self) -> int:
        """Configurations with a complete run directory now."""
        return self.skipped_done + self.succeeded

    def line(self) -> str:
        parts = [
            f"{self.total} configurations",
            f"{self.skipped_done} already complete",
            f"{self.succeeded} ran now",
        ]
        if self.failed:
            parts.append(f"{len(self.failed)} failed now")
        if self.skipped_failed:
            parts.append(f"{self.skipped_failed} failed earlier (skipped; --retry-failed reruns)")
        if self.not_run:
            parts.append(f"{self.not_run} not run (worker pool broke; rerun to continue)")
        return ", ".join(parts)


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT or SIGTERM after its workers were stopped; finished runs are
    kept. ``summary`` says what the driver recorded (``None`` when nothing had started);
    ``complete`` how many of the ``total`` configurations have a complete run directory."""

    def __init__(
        self,
        signum: int,
        summary: SweepSummary | None = None,
        *,
        complete: int = 0,
        total: int = 0,
    ) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.summary = summary
        self.complete = complete
        self.total = total


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """While the block runs in the main thread, SIGINT and SIGTERM (unless ignored) raise
    :class:`SweepInterrupted` there, once: a second signal while the executor stops its workers
    is ignored. Yields the list of the signal that fired (a library such as Ray may turn the
    exception into a plain ``KeyboardInterrupt``). Elsewhere: nothing changes."""
    fired: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not fired:
            fired.append(signum)
            raise SweepInterrupted(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if current is not signal.SIG_IGN:
            previous[signum] = current
            signal.signal(signum, handler)
    try:
        yield fired
    finally:
        for signum, current in previous.items():
            signal.signal(signum, current if current is not None else signal.SIG_DFL)


def check_attacks(points: list[Point]) -> None:
    """Construct each distinct attack of ``points`` once at its resolved budget; a bad
    ``attack.options`` value is a :class:`ConfigError` naming its configuration (unknown keys
    are already refused when each config is validated)."""
    seen: set[str] = set()
    for point in points:
        attack = getattr(point.config, "attack", None)
        if not isinstance(attack, AttackConfig):  # a pipeline without an attack
            continue
        key = json.dumps([attack.name, point.config.eps, attack.options], default=repr)
        if key in seen:
            continue
        seen.add(key)
        try:
            make_attack(attack.name, point.config.eps, **attack.options)
        except (ValueError, TypeError) as err:
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"attack: {text} (configuration {point.describe()})") from None


def _check_arguments(
    executor: str,
    workers: int,
    batch_size: int,
    threads: int | None,
    cpus_per_task: float,
    gpus_per_task: float,
) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    # Python terms in the message, the command line's flags in its CLI wording.
    if workers < 1:
        message = f"must be at least 1, got {workers}"
        raise cli_worded(ConfigError(f"workers {message}"), f"--workers {message}")
    if batch_size < 1:
        message = f"must be at least 1, got {batch_size}"
        raise cli_worded(ConfigError(f"batch_size {message}"), f"--batch-size {message}")
    if threads is not None and threads < 1:
        message = f"must be at least 1, got {threads}"
        raise cli_worded(ConfigError(f"threads {message}"), f"--threads {message}")
    if cpus_per_task <= 0 or gpus_per_task < 0:
        raise cli_worded(
            ConfigError("cpus_per_task must be positive and gpus_per_task non-negative"),
            "--cpus-per-task must be positive and --gpus-per-task non-negative",
        )


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    *,
    executor: str = "local",
    workers: int = 1,
    threads: int | None = None,
    address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    shared_fs: bool = False,
    retry_failed: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run every configuration of ``sweep`` not yet complete into the sweep directory ``out``.

    Validates all configurations (their attacks included) and the directory first
    (:class:`ConfigError` / :class:`~pertlearn.experiments.store.SweepDirError`, nothing run),
    then, holding the directory's lock, moves unreadable runs and failure records into
    ``corrupt/`` (they run again) and runs the rest with ``executor``. ``threads``: torch
    threads of each local worker (default: this process's unchanged for one worker,
    ``cpu_count // workers`` for several); Ray tasks use ``cpus_per_task`` threads.
    ``batch_size``: at most this many configurations of equal shapes run as one batched
    computation (:func:`~.chunking.chunks`), with every executor; 1 runs each on its own.
    Configurations that failed before are skipped unless ``retry_failed``.

    SIGINT or SIGTERM stops the workers and raises :class:`SweepInterrupted` (a
    ``KeyboardInterrupt``) with the summary so far; finished runs are kept. Returns a
    :class:`SweepSummary`.
    """
    _check_arguments(executor, workers, batch_size, threads, cpus_per_task, gpus_per_task)
    say = echo or (lambda _message: None)
    points = sweep.points()
    check_attacks(points)
    runner: SweepExecutor
    if executor == "ray":  # fail before the sweep directory is touched
        require_ray()
        if address:
            check_ray_address(address)
        runner = RayExecutor(
            address=address,
            cpus_per_task=cpus_per_task,
            gpus_per_task=gpus_per_task,
            shared_fs=shared_fs,
            num_cpus=None if address else (workers if workers > 1 else None),
        )
    else:
        runner = LocalExecutor(workers=workers, threads=threads)
    store = SweepStore(out)
    store.check(sweep, points)
    summary: SweepSummary | None = None
    with store.lock(), stop_on_signals() as fired:
        try:
            store.check(sweep, points)
            removed = store.remove_partials()
            moved = store.quarantine_corrupt()
            for line in moved:
                say(f"warning: {line}")
            store.write_manifest(sweep, points)
            done = set(store.completed())
            failed_before = store.failed()
            for run_id in done & set(failed_before):
                store.clear_failure(run_id)
            skip_failed = set() if retry_failed else set(failed_before) - done
            todo = [p for p in points if p.run_id not in done and p.run_id not in skip_failed]
            summary = SweepSummary(
                out=Path(out),
                total=len(points),
                skipped_done=sum(p.run_id in done for p in points),
                skipped_failed=sum(p.run_id in skip_failed for p in points),
                removed_partials=removed,
                moved_corrupt=moved,
            )
            say(
                f"sweep {sweep.name}: {len(points)} configurations, {summary.skipped_done} "
                f"complete, {len(todo)} to run ({executor}) -> {out}"
            )
            desc = f"sweep {sweep.name}"
            _execute(runner, todo, store, summary, batch_size, progress and desc, say)
        except KeyboardInterrupt as err:
            signum = err.signum if isinstance(err, SweepInterrupted) else int(signal.SIGINT)
            signum = fired[0] if fired else signum
            store.remove_partials()  # of the stopped workers; nothing else writes (the lock)
            ids = {p.run_id for p in points}
            complete = len(ids & set(store.completed()))  # runs published but not yet reported
            raise SweepInterrupted(signum, summary, complete=complete, total=len(points)) from None
    assert summary is not None  # built before anything runs
    return summary


def _execute(
    runner: SweepExecutor,
    todo: list[Point],
    store: SweepStore,
    summary: SweepSummary,
    batch_size: int,
    progress: str | bool,
    say: Callable[[str], None],
) -> None:
    """Run ``todo`` with ``runner``, recording each outcome; ``progress``: the progress bar's
    title (or ``False``: none)."""
    bar = tqdm(total=len(todo), desc=progress or "", disable=not progress)

    def handle(point: Point, outcome: Outcome) -> None:
        summary.ran += 1
        if outcome.ok:
            summary.succeeded += 1
            store.clear_failure(point.run_id)
        else:
            summary.failed.append(point.run_id)
            store.record_failure(point, outcome.error, outcome.traceback)
            say(f"failed: {point.describe()}: {outcome.error}")
        bar.set_postfix(ok=summary.succeeded, failed=len(summary.failed), refresh=False)
        bar.update(1)  # its refresh shows the counts just set

    try:
        summary.not_run = runner.run(chunks(todo, batch_size), store, handle)
    finally:
        bar.close()
