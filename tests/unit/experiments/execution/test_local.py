"""The local executor's worker pool: when a worker process dies, the unit it was running is
suspected and the others the broken pool did not finish go on in a fresh pool of the same
width, so the configuration that kills its worker, run again alone, fails with how the worker
died (recorded, skipped on a rerun, retried with ``retry_failed``) and the others complete as
in a sweep without it."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import pytest

from pertlearn.experiments.execution import run_sweep
from pertlearn.experiments.execution.local import LocalExecutor, exit_text, suspects
from pertlearn.experiments.execution.outcome import Outcome
from pertlearn.experiments.execution.worker import StartMarks, execute_chunk, execute_marked
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point, parse_sweep
from sweep_support import run_file_hashes, run_metrics, tiny_spec

DEADLY_SEED = 1
SECOND_DEADLY_SEED = 2


def die_on_the_deadly_seed(
    configs_json: Sequence[dict[str, Any]],
    run_ids: Sequence[str],
    store_root: str | None,
    threads: int | None = None,
) -> list[Any]:
    """``execute_chunk``, but the worker process is SIGKILLed (as by the out-of-memory killer)
    when the chunk holds a configuration of seed ``DEADLY_SEED`` or ``SECOND_DEADLY_SEED``.
    Module level: the pool pickles it by name and the spawned worker imports this module (the
    driver's ``sys.path`` goes with it)."""
    if any(config["seed"] in (DEADLY_SEED, SECOND_DEADLY_SEED) for config in configs_json):
        os.kill(os.getpid(), signal.SIGKILL)
    return execute_chunk(configs_json, run_ids, store_root, threads)


def die_in_a_worker_on_the_deadly_seed(
    configs_json: Sequence[dict[str, Any]],
    run_ids: Sequence[str],
    store_root: str | None,
    threads: int | None = None,
) -> list[Any]:
    """:func:`die_on_the_deadly_seed` in a worker process; in the test's own process (a sweep
    of one worker runs there) a deadly chunk raises instead, so a test under it can run
    ``workers=1`` and see where the deadly configuration ran."""
    deadly = any(config["seed"] == DEADLY_SEED for config in configs_json)
    if deadly and multiprocessing.parent_process() is None:
        raise RuntimeError("the deadly configuration ran in the driver process")
    return die_on_the_deadly_seed(configs_json, run_ids, store_root, threads)


def _spec(seeds: list[int]) -> dict[str, Any]:
    return tiny_spec(zip={"data.dim": [5]}, grid={}, seeds=seeds)


@pytest.fixture
def deadly(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Workers die on the deadly seed (never run ``workers=1`` under it: that is this
    process). ``undo()`` ends it."""
    monkeypatch.setattr(
        "pertlearn.experiments.execution.local.execute_chunk", die_on_the_deadly_seed
    )
    return monkeypatch


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What the executor started: ``widths``, the number of workers of each pool in order, and
    ``alone``, the run ids of each unit it ran alone (in a pool of one worker)."""
    seen: dict[str, list[Any]] = {"widths": [], "alone": []}
    make_pool, run_alone = LocalExecutor._pool, LocalExecutor._run_alone

    def recording_pool(self: LocalExecutor, workers: int) -> Any:
        seen["widths"].append(workers)
        return make_pool(self, workers)

    def recording_run_alone(self: LocalExecutor, unit: Sequence[Point], *args: Any) -> None:
        seen["alone"].append([point.run_id for point in unit])
        run_alone(self, unit, *args)

    monkeypatch.setattr(LocalExecutor, "_pool", recording_pool)
    monkeypatch.setattr(LocalExecutor, "_run_alone", recording_run_alone)
    return seen


KILLED_TEXT = (
    "the worker process running this configuration died "
    "(exit code -9: killed by SIGKILL, e.g. from the out-of-memory killer)"
)


def _deadly_sweep() -> tuple[dict[str, Any], list[Point], str]:
    """A two-seed sweep spec, its points and the run id of the one that kills its worker."""
    spec = _spec(seeds=[0, DEADLY_SEED])
    points = parse_sweep(spec).points()
    return spec, points, next(p.run_id for p in points if p.seed == DEADLY_SEED)


def test_exit_codes_name_the_signal() -> None:
    assert exit_text(-9) == "exit code -9: killed by SIGKILL, e.g. from the out-of-memory killer"
    assert exit_text(-11).startswith("exit code -11: killed by SIGSEGV, a segmentation fault")
    assert exit_text(-15) == "exit code -15: killed by SIGTERM"
    assert exit_text(3) == "exit code 3"
    assert exit_text(0) == "exit code 0"
    assert exit_text(None) == "exit code unknown"


def test_a_configuration_that_kills_its_worker_fails_alone(
    tmp_path: Path, deadly: pytest.MonkeyPatch
) -> None:
    spec, _, deadly_id = _deadly_sweep()
    out = tmp_path / "out"
    summary = run_sweep(parse_sweep(spec), out, workers=2, threads=1, batch_size=1)
    assert (summary.succeeded, summary.failed, summary.not_run) == (1, [deadly_id], 0)
    assert "1 failed now" in summary.line() and "not run" not in summary.line()
    failed = SweepStore(out).failed()
    assert list(failed) == [deadly_id]
    assert failed[deadly_id]["error"] == KILLED_TEXT
    again = run_sweep(parse_sweep(spec), out, workers=2, threads=1, batch_size=1)
    assert (again.ran, again.skipped_done, again.skipped_failed) == (0, 1, 1)

    deadly.undo()  # the configuration no longer kills its worker: retried, it completes
    retried = run_sweep(parse_sweep(spec), out, threads=1, retry_failed=True)
    assert (retried.ran, retried.succeeded, retried.failed) == (1, 1, [])
    assert SweepStore(out).failed() == {}
    reference = run_sweep(parse_sweep(spec), tmp_path / "reference", threads=1, batch_size=1)
    assert reference.succeeded == 2
    assert run_metrics(out) == run_metrics(tmp_path / "reference")


def test_in_a_batched_chunk_only_the_deadly_configuration_is_blamed(
    tmp_path: Path, deadly: pytest.MonkeyPatch
) -> None:
    spec, points, deadly_id = _deadly_sweep()
    out = tmp_path / "out"
    summary = run_sweep(parse_sweep(spec), out, workers=2, threads=1, batch_size=10)
    assert (summary.succeeded, summary.failed, summary.not_run) == (1, [deadly_id], 0)
    assert list(SweepStore(out).failed()) == [deadly_id]
    assert sorted(SweepStore(out).completed()) == sorted(
        p.run_id for p in points if p.seed != DEADLY_SEED
    )


def test_after_a_worker_dies_the_others_go_on_in_a_pool_of_the_same_width(
    tmp_path: Path, deadly: pytest.MonkeyPatch, pools: dict[str, list[Any]]
) -> None:
    """The deadly configuration comes first, so its worker dies while the others are still
    queued: they go on in a second pool of two workers (unless, on a loaded machine, the other
    worker finished them all before the break was seen), and only the culprit runs alone."""
    spec = _spec(seeds=[DEADLY_SEED, 0, 3, 4, 5, 6])
    points = parse_sweep(spec).points()
    deadly_id = points[0].run_id
    out = tmp_path / "out"
    summary = run_sweep(parse_sweep(spec), out, workers=2, threads=1, batch_size=1)
    assert (summary.succeeded, summary.failed, summary.not_run) == (5, [deadly_id], 0)
    assert SweepStore(out).failed()[deadly_id]["error"] == KILLED_TEXT
    assert sorted(SweepStore(out).completed()) == sorted(p.run_id for p in points[1:])
    assert pools["alone"] == [[deadly_id]]
    # the broken pool, the fresh one (if anything was left), the culprit alone
    assert pools["widths"] in ([2, 2, 1], [2, 1])


def test_a_worker_that_dies_while_the_units_are_submitted_breaks_the_pool_like_any_other(
    tmp_path: Path,
    deadly: pytest.MonkeyPatch,
    pools: dict[str, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first pool's second unit is submitted only once the first unit's worker has died
    (as on a loaded machine, or with many units to submit): submitting into the broken pool
    raises, and the units not submitted go on in the next pool like those not finished."""
    spec = _spec(seeds=[DEADLY_SEED, 0, 3])
    points = parse_sweep(spec).points()
    deadly_id = points[0].run_id
    make_pool = LocalExecutor._pool
    started: list[int] = []

    def pool_that_breaks_while_submitting(self: LocalExecutor, workers: int) -> Any:
        pool = make_pool(self, workers)
        started.append(workers)
        if len(started) > 1:
            return pool
        submit, submitted = pool.submit, []

        def submit_after_the_break(*args: Any) -> Any:
            if submitted:
                submitted[0].exception()  # returns once the pool broke
            submitted.append(submit(*args))
            return submitted[-1]

        pool.submit = submit_after_the_break  # type: ignore[method-assign]
        return pool

    monkeypatch.setattr(LocalExecutor, "_pool", pool_that_breaks_while_submitting)
    out = tmp_path / "out"
    summary = run_sweep(parse_sweep(spec), out, workers=2, threads=1, batch_size=1)
    assert (summary.succeeded, summary.failed, summary.not_run) == (2, [deadly_id], 0)
    assert SweepStore(out).failed()[deadly_id]["error"] == KILLED_TEXT
    assert pools["alone"] == [[deadly_id]]
    assert started == [2, 2, 1]
    assert sorted(SweepStore(out).completed()) == sorted(p.run_id for p in points[1:])


def test_two_deadly_configurations_each_fail_alone(
    tmp_path: Path, deadly: pytest.MonkeyPatch, pools: dict[str, list[Any]]
) -> None:
    """Both may die in the first pool, or the second in the next one: either way each break
    takes a culprit out of the pools (so at most three pools of two), the innocent
    configurations never run alone, and each culprit does, once."""
    spec = _spec(seeds=[DEADLY_SEED, SECOND_DEADLY_SEED, 0, 3, 4, 5])
    points = parse_sweep(spec).points()
    deadly_ids = [p.run_id for p in points[:2]]
    out = tmp_path / "out"
    summary = run_sweep(parse_sweep(spec), out, workers=2, threads=1, batch_size=1)
    assert (summary.succeeded, sorted(summary.failed), summary.not_run) == (
        4,
        sorted(deadly_ids),
        0,
    )
    failed = SweepStore(out).failed()
    assert sorted(failed) == sorted(deadly_ids)
    assert {record["error"] for record in failed.values()} == {KILLED_TEXT}
    assert sorted(SweepStore(out).completed()) == sorted(p.run_id for p in points[2:])
    assert sorted(pools["alone"]) == sorted([run_id] for run_id in deadly_ids)
    assert pools["widths"][-2:] == [1, 1]
    assert pools["widths"][:-2] in ([2, 2], [2, 2, 2])


def test_a_chunk_that_kills_its_worker_goes_on_one_configuration_per_unit_in_the_pool(
    tmp_path: Path, deadly: pytest.MonkeyPatch, pools: dict[str, list[Any]]
) -> None:
    """One chunk of five: it breaks the first pool; its configurations go on one per unit in a
    pool of two, where the deadly one (second by seed) breaks it again; what that pool had not
    finished goes on in a third pool of two (none, when the other worker finished them all
    before the break was seen), and only the culprit runs alone."""
    spec = _spec(seeds=[0, DEADLY_SEED, 3, 4, 5])
    points = parse_sweep(spec).points()
    deadly_id = points[1].run_id
    out = tmp_path / "out"
    summary = run_sweep(parse_sweep(spec), out, workers=2, threads=1, batch_size=10)
    assert (summary.succeeded, summary.failed, summary.not_run) == (4, [deadly_id], 0)
    assert SweepStore(out).failed()[deadly_id]["error"] == KILLED_TEXT
    assert pools["alone"] == [[deadly_id]]
    assert pools["widths"] in ([2, 2, 2, 1], [2, 2, 1])


def test_one_worker_records_the_unit_it_runs_in_flight_and_clears_it_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is what a sweep process that dies leaves behind: it names the unit being run
    at every moment, and a sweep that ends (here by an exception) clears it."""
    spec = _spec(seeds=[0, 3, 4])
    points = parse_sweep(spec).points()
    seen: list[set[str]] = []

    def recording(configs_json: Any, run_ids: Sequence[str], store_root: str, *args: Any) -> Any:
        seen.append(SweepStore(store_root).in_flight())
        if len(seen) == 3:
            raise KeyboardInterrupt  # as a Ctrl-C in the last unit: the record goes too
        return execute_chunk(configs_json, run_ids, store_root, *args)

    monkeypatch.setattr("pertlearn.experiments.execution.local.execute_chunk", recording)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(parse_sweep(spec), out, workers=1, threads=1, batch_size=1)
    assert seen == [{p.run_id} for p in points]
    assert SweepStore(out).in_flight() == set()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".lock"]


def test_with_one_worker_what_a_dead_sweep_process_was_running_runs_apart_and_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pools: dict[str, list[Any]]
) -> None:
    """A sweep of one worker runs in its driver process, so a configuration that kills its
    process kills the sweep, leaving its in-flight record behind (as here). The resumed sweep
    runs that configuration apart, in a pool of one worker, where it fails with how the worker
    died; the others run in the driver process as before, and the record is cleared."""
    spec = _spec(seeds=[0, DEADLY_SEED, 3])
    points = parse_sweep(spec).points()
    deadly_id = next(p.run_id for p in points if p.seed == DEADLY_SEED)
    out = tmp_path / "out"
    SweepStore(out).mark_in_flight([deadly_id])  # what the driver it killed left
    monkeypatch.setattr(
        "pertlearn.experiments.execution.local.execute_chunk", die_in_a_worker_on_the_deadly_seed
    )
    summary = run_sweep(parse_sweep(spec), out, workers=1, threads=1, batch_size=1)
    assert (summary.succeeded, summary.failed, summary.not_run) == (2, [deadly_id], 0)
    assert SweepStore(out).failed()[deadly_id]["error"] == KILLED_TEXT
    assert pools["alone"] == [[deadly_id]]
    assert SweepStore(out).in_flight() == set()
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        p.run_id for p in points if p.run_id != deadly_id
    )


def test_a_chunk_a_dead_sweep_process_was_running_splits_apart_and_only_the_culprit_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pools: dict[str, list[Any]]
) -> None:
    spec = _spec(seeds=[0, DEADLY_SEED])
    points = parse_sweep(spec).points()
    deadly_id = next(p.run_id for p in points if p.seed == DEADLY_SEED)
    out = tmp_path / "out"
    SweepStore(out).mark_in_flight([p.run_id for p in points])  # the whole chunk was running
    monkeypatch.setattr(
        "pertlearn.experiments.execution.local.execute_chunk", die_in_a_worker_on_the_deadly_seed
    )
    summary = run_sweep(parse_sweep(spec), out, workers=1, threads=1, batch_size=10)
    assert (summary.succeeded, summary.failed, summary.not_run) == (1, [deadly_id], 0)
    assert SweepStore(out).failed()[deadly_id]["error"] == KILLED_TEXT
    assert pools["alone"][0] == sorted((p.run_id for p in points), key=_seed_of(points))
    assert sorted(pools["alone"][1:]) == sorted([p.run_id] for p in points)


def _seed_of(points: Sequence[Point]) -> Any:
    seeds = {p.run_id: p.seed for p in points}
    return lambda run_id: seeds[run_id]


def test_start_marks_removed_early_are_no_error() -> None:
    """A worker's own resource tracker (one it starts when the driver's was killed) removes
    the block of start marks when the worker exits: the units go on unmarked and the driver
    ends the block without an error."""
    with StartMarks(2) as marks:
        StartMarks.mark(marks.name, 0)
        SharedMemory(marks.name).unlink()  # as that tracker does
        assert execute_marked(marks.name, 1, lambda *args: list(args), "ran") == ["ran"]
        assert marks.started() == {0: os.getpid()}


def test_suspects_are_the_units_whose_worker_died_by_itself() -> None:
    unfinished = [0, 1, 2, 3]
    started = {0: 100, 1: 101, 3: 103}  # unit 2 never started: never a suspect
    killed, stopped = -signal.SIGKILL, -signal.SIGTERM  # stopped: by the broken pool
    assert suspects(unfinished, started, {100: stopped, 101: killed, 103: stopped}) == {1}
    assert suspects(unfinished, started, {100: killed, 101: 3, 103: stopped}) == {0, 1}
    assert suspects(unfinished, started, {100: stopped, 101: stopped}) == {3}  # 103 unknown
    # Every worker ended by SIGTERM: the one that died by itself cannot be told apart.
    everyone_stopped = {100: stopped, 101: stopped, 103: stopped}
    assert suspects(unfinished, started, everyone_stopped) == {0, 1, 3}
    assert suspects([1, 2], started, {101: killed}) == {1}  # unit 0 finished: not a suspect
    assert suspects([2], started, {}) == set()  # nothing that started: no suspect


@pytest.mark.parametrize("explained", [True, False])
def test_each_broken_pool_takes_a_configuration_out_or_splits_a_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, explained: bool
) -> None:
    """The rounds of :meth:`LocalExecutor._run_pool` with pools that break as badly as they
    can (nothing finishes in a pool that breaks): every configuration ends exactly once, and a
    sweep of n configurations in u units breaks at most n + u pools. A break that no unit
    explains sends every unit left to run alone."""
    points = parse_sweep(_spec(seeds=list(range(12)))).points()
    deadly_ids = {p.run_id for p in points if p.seed in (DEADLY_SEED, SECOND_DEADLY_SEED, 7)}
    units = [points[0:5], points[5:9], points[9:10], points[10:12]]
    rounds: list[int] = []
    alone: list[list[str]] = []

    def fake_round(
        self: LocalExecutor, units: Sequence[Sequence[Point]], store: Any, handle: Any
    ) -> tuple[list[int], set[int]]:
        rounds.append(len(units))
        deadly = [i for i, unit in enumerate(units) if deadly_ids & {p.run_id for p in unit}]
        if not deadly:
            for point in (point for unit in units for point in unit):
                handle(point, Outcome(point.run_id, "done"))
            return [], set()
        return list(range(len(units))), ({deadly[-1]} if explained else set())

    def fake_alone(self: LocalExecutor, unit: Sequence[Point], store: Any, handle: Any) -> None:
        alone.append([point.run_id for point in unit])
        for point in unit:
            handle(point, Outcome(point.run_id, "failed" if point.run_id in deadly_ids else "done"))

    monkeypatch.setattr(LocalExecutor, "_run_round", fake_round)
    monkeypatch.setattr(LocalExecutor, "_run_alone", fake_alone)
    ended: list[tuple[str, str]] = []
    executor = LocalExecutor(workers=2)
    executor.run(units, SweepStore(tmp_path), lambda p, o: ended.append((p.run_id, o.status)))

    assert sorted(ended) == sorted(
        (p.run_id, "failed" if p.run_id in deadly_ids else "done") for p in points
    )
    if explained:
        assert len(rounds) - 1 <= len(points) + len(units)  # the last round did not break
        assert sorted(alone) == sorted([run_id] for run_id in deadly_ids)
    else:
        assert rounds == [len(units)] and alone == [[p.run_id for p in u] for u in units]


def test_a_pool_of_workers_computes_the_bits_of_the_driver_process(tmp_path: Path) -> None:
    spec = tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [4, 8]})
    here = run_sweep(parse_sweep(spec), tmp_path / "here", workers=1, threads=1, batch_size=1)
    pool = run_sweep(parse_sweep(spec), tmp_path / "pool", workers=2, threads=1, batch_size=1)
    assert here.succeeded == pool.succeeded == 2
    assert run_metrics(tmp_path / "pool") == run_metrics(tmp_path / "here")
    assert run_file_hashes(tmp_path / "pool") == run_file_hashes(tmp_path / "here")
