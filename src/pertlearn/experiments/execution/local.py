"""The local executor: configurations in this process (one worker) or in a pool of spawned
worker processes that die with the driver; a configuration that kills its worker process is
found and fails alone (with one worker: when the sweep is resumed)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.process import BaseProcess

import torch

from pertlearn.experiments.execution.base import OutcomeHandler, unit_args
from pertlearn.experiments.execution.outcome import Outcome
from pertlearn.experiments.execution.worker import (
    StartMarks,
    execute_chunk,
    execute_marked,
    init_worker,
)
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point
from pertlearn.signals import sigint_held_back


@contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Start processes in this block with SIGINT ignored (inherited through exec), so that a
    Ctrl-C at the terminal, which reaches the whole process group, stops only the driver, which
    then stops its workers: no worker prints a traceback while it is still starting. SIGINT is
    blocked meanwhile, so a Ctrl-C in the block reaches this process when it ends (Linux keeps a
    blocked signal pending even while it is ignored). Outside the main thread: nothing."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    with sigint_held_back():
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)  # before a pending Ctrl-C arrives


def worker_processes(pool: ProcessPoolExecutor) -> list[BaseProcess]:
    """The pool's worker processes. Python 3.14 has ``pool.kill_workers()``, but no public way
    to reach the processes themselves: before ``shutdown`` they are ``_processes`` (pid →
    process; a broken pool keeps them there until then), afterwards none."""
    return list((getattr(pool, "_processes", None) or {}).values())


def kill_workers(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """SIGKILL the pool's worker processes and wait for them."""
    processes = worker_processes(pool)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout)


SIGNAL_HINTS = {
    signal.SIGKILL: "e.g. from the out-of-memory killer",
    signal.SIGSEGV: "a segmentation fault, e.g. in a native library",
}


def exit_text(code: int | None) -> str:
    """How a process ended, from its exit code (``-N``: killed by signal N, named)."""
    if code is None:
        return "exit code unknown"
    try:
        signum = signal.Signals(-code)
    except ValueError:  # an exit status, or a signal without a name
        return f"exit code {code}"
    hint = SIGNAL_HINTS.get(signum)
    return f"exit code {code}: killed by {signum.name}" + (f", {hint}" if hint else "")


def suspects(
    unfinished: Sequence[int], started: dict[int, int], exit_codes: dict[int | None, int | None]
) -> set[int]:
    """The units of a broken pool that may have killed their worker: of the ``unfinished``
    ones that ``started`` (unit → pid), those whose worker died by itself, that is, did not end
    with the SIGTERM by which the pool stops its other workers once one died (``exit_codes``:
    pid → exit code). If there are none (a worker that died by SIGTERM looks like one the pool
    stopped), every unfinished unit that started."""
    running = [i for i in unfinished if i in started]
    died = {i for i in running if exit_codes.get(started[i]) != -signal.SIGTERM}
    return died or set(running)


def worker_died(run_id: str, code: int | None) -> Outcome:
    """The ``failed`` outcome of a configuration whose worker process died (exit ``code``)
    even when it ran alone."""
    error = f"the worker process running this configuration died ({exit_text(code)})"
    note = "(again when it ran alone in a fresh worker; a process that dies leaves no traceback)"
    return Outcome(run_id, "failed", error=error, traceback=f"{error}\n{note}\n")


@dataclass
class LocalExecutor:
    """``workers = 1`` runs in this process with ``threads`` torch threads (``None``: this
    process's setting): a configuration that kills its process kills the sweep there, but the
    store keeps the unit it was running (:meth:`~SweepStore.mark_in_flight`), and the resumed
    sweep runs that unit apart, in a fresh pool of one worker (:meth:`_run_alone`), so that
    the configuration fails alone, with how its worker died, and the others go on. More
    workers are a pool of spawned processes with ``threads`` each (default
    ``cpu_count // workers``).

    When a worker process dies (out of memory, a crash in native code), the pool breaks. Each
    worker marks the unit it starts with its pid (:class:`~.worker.StartMarks`), so the unit
    whose worker died by itself is known (:func:`suspects`); the other units the pool had not
    finished go on in a fresh pool of ``workers``, and so on after each break. A suspect of
    several configurations goes on as one unit per configuration; a suspect of one runs again
    alone, in a fresh pool of one worker, once the pools are done, and fails with how its
    worker died if it kills that worker too. So every configuration ends once, done or failed,
    and the sweep keeps its parallelism."""

    workers: int = 1
    threads: int | None = None
    name: str = "local"

    def run(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> int:
        if self.workers <= 1:
            self._run_here(units, store, handle)
        else:
            self._run_pool(units, store, handle)
        return 0

    def _run_here(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> None:
        """Run ``units`` one after another in this process, each recorded in flight while it
        runs; a unit that a sweep process was running when it died (:meth:`~SweepStore.in_flight`)
        runs apart instead (:meth:`_run_alone`)."""
        died_in = store.in_flight()
        previous = torch.get_num_threads()
        try:
            for unit in units:
                store.mark_in_flight([point.run_id for point in unit])
                if died_in & {point.run_id for point in unit}:
                    self._run_alone(unit, store, handle)
                    continue
                outcomes = execute_chunk(*unit_args(unit), str(store.root), self.threads)
                for point, outcome in zip(unit, outcomes, strict=True):
                    handle(point, outcome)
        finally:  # not reached when the process dies: the record stays for the next sweep
            store.clear_in_flight()
            torch.set_num_threads(previous)

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        """A pool of ``workers`` spawned processes with the torch threads of this executor's
        workers (one worker's default: this process's, as when it runs here)."""
        default = torch.get_num_threads() if self.workers <= 1 else (os.cpu_count() or 1)
        threads = self.threads or max(1, default // max(1, self.workers))
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=init_worker,
            initargs=(threads, os.getpid()),
        )

    def _run_pool(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> None:
        """Run ``units`` in rounds of pools of ``workers``: when a worker dies and breaks the
        pool, the units it did not finish go on in a fresh pool, except its suspects
        (:func:`suspects`): a suspect of one configuration waits to run alone
        (:meth:`_run_alone`), the configurations of a suspect of several go on in the next
        pool one per unit. A break that no unit explains sends every unit left to run alone.
        Each break thus takes a configuration out of the pools or splits a unit for good, so a
        sweep of n configurations in u units breaks at most n + u pools."""
        parallel: list[Sequence[Point]] = list(units)
        alone: list[Sequence[Point]] = []
        broke = False
        while parallel:
            unfinished, suspected = self._run_round(parallel, store, handle)
            broke = broke or bool(unfinished)
            if unfinished and not suspected:
                alone += [parallel[i] for i in unfinished]
                break
            next_round: list[Sequence[Point]] = []
            for i in unfinished:
                unit = parallel[i]
                if i not in suspected:
                    next_round.append(unit)
                elif len(unit) > 1:
                    next_round += [[point] for point in unit]
                else:
                    alone.append(unit)
            parallel = next_round
        for unit in alone:
            self._run_alone(unit, store, handle)
        if broke:  # what the workers of broken pools left half-written; none runs now
            store.remove_partials()

    def _run_round(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> tuple[list[int], set[int]]:
        """Run ``units`` in a fresh pool of ``workers`` and handle their outcomes; if a worker
        dies, the pool breaks: the indices of the units it did not finish, and of its
        suspects among them."""
        unfinished: list[int] = []  # indices of the units a broken pool did not finish
        with StartMarks(len(units)) as marks:
            pool = self._pool(self.workers)
            try:
                futures: dict[Future[list[Outcome]], int] = {}
                with children_ignore_sigint():  # submit starts the worker processes
                    for i, unit in enumerate(units):
                        args = (*unit_args(unit), str(store.root))
                        try:
                            future = pool.submit(
                                execute_marked, marks.name, i, execute_chunk, *args
                            )
                        except BrokenProcessPool:  # a worker died before all were submitted
                            unfinished += range(i, len(units))  # never started: no suspects
                            break
                        futures[future] = i
                for future in as_completed(futures):
                    try:
                        outcomes = future.result()
                    except BrokenProcessPool:  # a worker died
                        unfinished.append(futures[future])
                        continue
                    for point, outcome in zip(units[futures[future]], outcomes, strict=True):
                        handle(point, outcome)
                processes = worker_processes(pool)  # before shutdown lets go of them
            except BaseException:
                kill_workers(pool)  # before the driver lets go of the lock
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # joins them: exit codes known
            exit_codes = {process.pid: process.exitcode for process in processes}
            return sorted(unfinished), suspects(unfinished, marks.started(), exit_codes)

    def _run_alone(self, unit: Sequence[Point], store: SweepStore, handle: OutcomeHandler) -> None:
        """Run ``unit`` in a fresh pool of one worker; if that worker dies, run a unit of several
        configurations again one by one, and fail a single one with how its worker died."""
        pool = self._pool(1)
        outcomes: list[Outcome] | None = None
        processes: list[BaseProcess] = []
        try:
            with children_ignore_sigint():
                future = pool.submit(execute_chunk, *unit_args(unit), str(store.root))
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                processes = worker_processes(pool)  # before shutdown lets go of them
        except BaseException:
            kill_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True)  # joins the dead worker: its exit code is known
        if outcomes is None and len(unit) > 1:
            for point in unit:
                self._run_alone([point], store, handle)
            return
        if outcomes is None:
            code = processes[0].exitcode if processes else None
            outcomes = [worker_died(unit[0].run_id, code)]
        for point, outcome in zip(unit, outcomes, strict=True):
            handle(point, outcome)
