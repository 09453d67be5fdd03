"""The local executor: configurations in this process (one worker) or in a pool of spawned
worker processes that die with the driver."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context

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


def kill_workers(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """SIGKILL the pool's worker processes and wait for them (Python 3.14 has
    ``pool.kill_workers()``; before, the processes are only reachable as ``_processes``)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout)


@dataclass
class LocalExecutor:
    """``workers = 1`` runs in this process with ``threads`` torch threads (``None``: this
    process's setting); more workers are spawned processes with ``threads`` each (default
    ``cpu_count // workers``)."""

    workers: int = 1
    threads: int | None = None
    name: str = "local"

    def run(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> int:
        if self.workers <= 1:
            self._run_here(units, store, handle)
            return 0
        return self._run_pool(units, store, handle)

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

    def _run_pool(
        self, units: Sequence[Sequence[Point]], store: SweepStore, handle: OutcomeHandler
    ) -> int:
        threads = self.threads or max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=get_context("spawn"),
            initializer=init_worker,
            initargs=(threads, os.getpid()),
        )
        not_run = 0
        try:
            futures: dict[Future[list[Outcome]], Sequence[Point]] = {}
            with children_ignore_sigint():  # submit starts the worker processes
                for unit in units:
                    futures[pool.submit(execute_chunk, *unit_args(unit), str(store.root))] = unit
            for future in as_completed(futures):
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    not_run += len(futures[future])
                    continue
                for point, outcome in zip(futures[future], outcomes, strict=True):
                    handle(point, outcome)
        except BaseException:
            kill_workers(pool)  # before the driver lets go of the lock
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return not_run
