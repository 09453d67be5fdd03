"""The local executor: configurations in this process (one worker) or in a pool of spawned
worker processes that die with the driver; a configuration that kills its worker process is
found and fails alone."""

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
from pertlearn.experiments.execution.worker import execute_chunk, init_worker
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point


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
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


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


def worker_died(run_id: str, code: int | None) -> Outcome:
    """The ``failed`` outcome of a configuration whose worker process died (exit ``code``)
    even when it ran alone."""
    error = f"the worker process running this configuration died ({exit_text(code)})"
    note = "(again when it ran alone in a fresh worker; a process that dies leaves no traceback)"
    return Outcome(run_id, "failed", error=error, traceback=f"{error}\n{note}\n")


@dataclass
class LocalExecutor:
    """``workers = 1`` runs in this process with ``threads`` torch threads (``None``: this
    process's setting): a configuration that kills its process kills the sweep there. More
    workers are a pool of spawned processes with ``threads`` each (default
    ``cpu_count // workers``). When a worker process dies (out of memory, a crash in native
    code), the pool breaks and every unit it had not finished runs again alone, one at a time,
    each in a fresh pool of one worker: a unit of several configurations that kills that worker
    too runs again one configuration at a time, and a configuration that kills its worker alone
    fails with how the worker died, so every configuration ends done or failed."""

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
        previous = torch.get_num_threads()
        try:
            for unit in units:
                outcomes = execute_chunk(*unit_args(unit), str(store.root), self.threads)
                for point, outcome in zip(unit, outcomes, strict=True):
                    handle(point, outcome)
        finally:
            torch.set_num_threads(previous)

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        threads = self.threads or max(1, (os.cpu_count() or 1) // self.workers)
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=init_worker,
            initargs=(threads, os.getpid()),
        )

    def _run_pool(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> None:
        pool = self._pool(self.workers)
        unfinished: list[int] = []  # indices of the units a broken pool did not finish
        try:
            futures: dict[Future[list[Outcome]], int] = {}
            with children_ignore_sigint():  # submit starts the worker processes
                for i, unit in enumerate(units):
                    futures[pool.submit(execute_chunk, *unit_args(unit), str(store.root))] = i
            for future in as_completed(futures):
                try:
                    outcomes = future.result()
                except BrokenProcessPool:  # a worker died: which unit killed it is unknown
                    unfinished.append(futures[future])
                    continue
                for point, outcome in zip(units[futures[future]], outcomes, strict=True):
                    handle(point, outcome)
        except BaseException:
            kill_workers(pool)  # before the driver lets go of the lock
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for i in sorted(unfinished):
            self._run_alone(units[i], store, handle)

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
