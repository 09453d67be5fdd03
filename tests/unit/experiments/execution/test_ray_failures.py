"""The Ray executor when a task dies, with a stand-in for Ray (an optional extra, not needed
here): a chunk whose task dies runs again one configuration per task, and a configuration
whose own task dies runs once more, so only the configuration that kills its worker fails.
And when the driver is stopped while Ray starts."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pertlearn.experiments.execution import SweepInterrupted, run_sweep
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import parse_sweep
from sweep_support import tiny_spec

DEADLY_SEED = 1


class WorkerCrashedError(Exception):
    """Ray's error for a task whose worker process died."""


class FakeRay:
    """The part of the ``ray`` module the executor uses. A task runs in this process when the
    driver asks for its result, and fails as if its worker had died when it holds a
    configuration of seed ``DEADLY_SEED``. ``tasks``: the run ids of each task submitted, in
    order."""

    def __init__(self) -> None:
        self.tasks: list[list[str]] = []
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def is_initialized(self) -> bool:
        return True  # as if connected already: the executor neither starts nor stops Ray

    def remote(self, function: Callable[..., Any]) -> FakeTask:
        return FakeTask(self, function)

    def submit(self, function: Callable[..., Any], args: tuple[Any, ...]) -> int:
        self.tasks.append(list(args[1]))
        self._calls.append((function, args))
        return len(self._calls) - 1

    def wait(self, refs: list[int], num_returns: int) -> tuple[list[int], list[int]]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: int) -> Any:
        function, args = self._calls[ref]
        if any(config["seed"] == DEADLY_SEED for config in args[0]):
            raise WorkerCrashedError("The worker died unexpectedly while executing this task.")
        return function(*args)

    def cancel(self, ref: int, force: bool) -> None:
        pass


class FakeTask:
    """``ray.remote(function)``: ``options`` keeps it, ``remote`` submits a call."""

    def __init__(self, ray: FakeRay, function: Callable[..., Any]) -> None:
        self.ray, self.function = ray, function

    def options(self, **_options: Any) -> FakeTask:
        return self

    def remote(self, *args: Any) -> int:
        return self.ray.submit(self.function, args)


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    return ray


CRASHED = "WorkerCrashedError: The worker died unexpectedly while executing this task."


def test_a_chunk_whose_task_dies_runs_again_one_configuration_per_task(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    sweep = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={}, seeds=[0, 1, 2]))
    ids = [p.run_id for p in sweep.points()]  # in the order of their seeds, as in their chunk
    deadly_id = ids[DEADLY_SEED]
    out = tmp_path / "out"
    summary = run_sweep(sweep, out, executor="ray", batch_size=10)
    assert fake_ray.tasks == [ids, [ids[0]], [ids[1]], [ids[2]]]
    assert (summary.succeeded, summary.failed, summary.not_run) == (2, [deadly_id], 0)
    assert SweepStore(out).failed()[deadly_id]["error"] == CRASHED
    assert sorted(SweepStore(out).completed()) == sorted([ids[0], ids[2]])


def test_a_task_of_one_configuration_that_dies_twice_fails_it(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    sweep = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={}, seeds=[0, 1]))
    ids = [p.run_id for p in sweep.points()]
    summary = run_sweep(sweep, tmp_path / "out", executor="ray", batch_size=1)
    assert fake_ray.tasks == [[ids[0]], [ids[1]], [ids[1]]]  # the dead one runs once more
    assert (summary.succeeded, summary.failed) == (1, [ids[DEADLY_SEED]])
    assert SweepStore(tmp_path / "out").failed()[ids[DEADLY_SEED]]["error"] == CRASHED


class OnceDeadlyRay(FakeRay):
    """A worker dies under the first task holding a configuration of seed ``DEADLY_SEED`` (a
    lost node, another task's memory), not under the next."""

    def __init__(self) -> None:
        super().__init__()
        self.died = False

    def get(self, ref: int) -> Any:
        function, args = self._calls[ref]
        if not self.died and any(config["seed"] == DEADLY_SEED for config in args[0]):
            self.died = True
            raise WorkerCrashedError("The worker died unexpectedly while executing this task.")
        return function(*args)


@pytest.mark.parametrize("batch_size", [1, 10])
def test_a_configuration_whose_worker_died_once_finishes_on_its_next_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    ray = OnceDeadlyRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    sweep = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={}, seeds=[0, 1]))
    ids = [p.run_id for p in sweep.points()]
    summary = run_sweep(sweep, tmp_path / "out", executor="ray", batch_size=batch_size)
    assert (summary.succeeded, summary.failed) == (2, [])
    assert sorted(SweepStore(tmp_path / "out").completed()) == sorted(ids)
    again = [[ids[DEADLY_SEED]]] if batch_size == 1 else [[ids[0]], [ids[1]]]
    assert ray.tasks[-len(again) :] == again


class StartingRay(FakeRay):
    """Ray not started yet: ``init`` installs a SIGTERM handler that exits the process, as
    ``ray.init`` does, and a SIGTERM arrives while the local instance starts."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **_options: Any) -> None:
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(signum))
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the SIGTERM did not stop ray.init")

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_sigterm_while_ray_starts_stops_the_sweep_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not Ray's exit (status 15 or 1, no message; the CLI's 1 means failed configurations):
    the driver's stop, as for a SIGTERM a moment later, with what Ray started shut down."""
    ray = StartingRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    before = signal.getsignal(signal.SIGTERM)
    sweep = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={}, seeds=[0]))
    with pytest.raises(SweepInterrupted) as stopped:
        run_sweep(sweep, tmp_path / "out", executor="ray")
    assert stopped.value.signum == signal.SIGTERM
    assert (stopped.value.complete, stopped.value.total) == (0, 1)
    assert ray.shutdowns == 1 and ray.tasks == []
    assert signal.getsignal(signal.SIGTERM) is before
