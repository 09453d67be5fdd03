"""What a worker executes: run configurations, publish or return their run directories, and
(in a local worker process) die with the driver and say which unit it starts."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from tqdm.std import tqdm

from pertlearn.experiments import batched
from pertlearn.experiments.execution.outcome import Outcome
from pertlearn.experiments.pipelines import run, validate_config
from pertlearn.experiments.result import Result
from pertlearn.experiments.store import SweepStore

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def limit_threads(threads: int | None) -> None:
    """Let torch use ``threads`` threads (``None``: leave it)."""
    if threads is not None:
        torch.set_num_threads(max(1, threads))


def die_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
    ``False`` where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def init_worker(threads: int | None, parent: int, interval: float = 1.0) -> None:
    """Initializer of a local worker process started by the driver ``parent``: die with it
    (parent-death signal, and a thread that exits once the parent pid changes, for a driver that
    died before this ran and for systems without the signal), leave SIGINT to the driver, and
    limit torch's threads."""
    die_with_parent()
    if os.getppid() != parent:  # the driver died while this process started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, interval), daemon=True).start()
    # The driver started this process with SIGINT ignored and blocked (a Ctrl-C at the terminal
    # reaches the whole process group; the driver stops the workers itself): drop the block.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # tqdm would otherwise make a multiprocessing lock (a named semaphore) that a killed worker
    # never releases, and the resource tracker then warns about it; a worker needs no such lock.
    tqdm.set_lock(threading.RLock())
    limit_threads(threads)


def _buffer(memory: SharedMemory) -> memoryview:
    buffer = memory.buf
    assert buffer is not None  # None only once closed
    return buffer


class StartMarks:
    """Which worker process started which unit of a pool, in a named block of shared memory
    (``/dev/shm``, not the sweep directory) with one slot per unit: a worker writes its pid into
    the slot of a unit before it runs it (:func:`execute_marked`). The write is a plain store
    into memory shared with the driver, so it holds even if the worker is killed the next
    instant, and takes no lock that a killed worker could leave held. The driver creates the
    block for one pool and removes it when the block ends.

    The marks are a hint: a block removed early is no error. A resource tracker removes the
    blocks registered with it when the processes using it end, and before Python 3.13 a worker
    that opens the block registers it with its own; that is the driver's tracker, unless that
    tracker was killed, and then each worker starts one of its own, which removes the block
    once its worker exits. A unit whose mark cannot be written then runs unmarked."""

    SLOT = struct.Struct("q")

    def __init__(self, units: int) -> None:
        self.units = units
        self._memory = SharedMemory(create=True, size=max(1, units) * self.SLOT.size)

    @property
    def name(self) -> str:
        """What a worker passes to :meth:`mark`."""
        return self._memory.name

    @classmethod
    def mark(cls, name: str, index: int) -> None:
        """In a worker: record that this process starts unit ``index`` of the block ``name``."""
        memory = SharedMemory(name)
        try:
            cls.SLOT.pack_into(_buffer(memory), index * cls.SLOT.size, os.getpid())
        finally:
            memory.close()

    def started(self) -> dict[int, int]:
        """Unit index → pid of the worker that started it, for the units that started."""
        pids = (
            self.SLOT.unpack_from(_buffer(self._memory), i * self.SLOT.size)[0]
            for i in range(self.units)
        )
        return {i: pid for i, pid in enumerate(pids) if pid}

    def __enter__(self) -> StartMarks:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._memory.close()
        try:
            self._memory.unlink()
        except FileNotFoundError:  # removed already (see the class)
            pass


def execute_marked(
    marks: str, index: int, execute: Callable[..., list[Outcome]], *args: Any
) -> list[Outcome]:
    """In a pool's worker: :meth:`StartMarks.mark` unit ``index`` started, then run it as
    ``execute(*args)`` (:func:`execute_chunk`); without the mark when the block is gone."""
    try:
        StartMarks.mark(marks, index)
    except FileNotFoundError:  # removed early (see StartMarks): the unit runs unmarked
        pass
    return execute(*args)


def _publish(result: Result, run_id: str, store_root: str | None) -> Outcome:
    """The ``done`` outcome of a finished run: published into the store at ``store_root``
    (atomic run directory), or its files returned by value."""
    if store_root is not None:
        store = SweepStore(store_root)
        staging = store.staging_dir(run_id)
        try:
            result.save(staging / "run")
            return Outcome.done(run_id, published=store.publish(run_id, staging / "run"))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="pertlearn-run-") as tmp:
        written = result.save(Path(tmp) / "run")
        files = {p.name: p.read_bytes() for p in sorted(written.iterdir())}
    return Outcome.done(run_id, files=files)


def execute_config(
    config_json: dict[str, Any], run_id: str, store_root: str | None, threads: int | None = None
) -> Outcome:
    """Run one configuration. With ``store_root`` the run directory is published into that
    store; without, its files come back in the outcome. An exception in the experiment becomes
    a ``failed`` outcome."""
    limit_threads(threads)
    try:
        config = validate_config(config_json)
        return _publish(run(config), run_id, store_root)
    except Exception as err:
        return Outcome.failure(run_id, err)


def execute_chunk(
    configs_json: Sequence[dict[str, Any]],
    run_ids: Sequence[str],
    store_root: str | None,
    threads: int | None = None,
) -> list[Outcome]:
    """Run several configurations as one batched computation
    (:func:`~pertlearn.experiments.batched.run_each`): one outcome per configuration, in
    order, each as :func:`execute_config` makes it (a failing configuration fails alone)."""
    if len(configs_json) == 1:
        return [execute_config(configs_json[0], run_ids[0], store_root, threads)]
    limit_threads(threads)
    try:
        results = batched.run_each([validate_config(c) for c in configs_json])
    except Exception as err:
        return [Outcome.failure(run_id, err) for run_id in run_ids]
    outcomes = []
    for run_id, result in zip(run_ids, results, strict=True):
        if isinstance(result, Exception):
            outcomes.append(Outcome.failure(run_id, result))
            continue
        try:
            outcomes.append(_publish(result, run_id, store_root))
        except Exception as err:
            outcomes.append(Outcome.failure(run_id, err))
    return outcomes
