"""The local executor's worker pool: when a worker process dies, the units the broken pool did
not finish run again alone, so the configuration that kills its worker fails with how the
worker died (recorded, skipped on a rerun, retried with ``retry_failed``) and the others
complete as in a sweep without it."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pertlearn.experiments.execution import run_sweep
from pertlearn.experiments.execution.local import exit_text
from pertlearn.experiments.execution.worker import execute_chunk
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point, parse_sweep
from sweep_support import run_metrics, tiny_spec

DEADLY_SEED = 1


def die_on_the_deadly_seed(
    configs_json: Sequence[dict[str, Any]],
    run_ids: Sequence[str],
    store_root: str | None,
    threads: int | None = None,
) -> list[Any]:
    """``execute_chunk``, but the worker process is SIGKILLed (as by the out-of-memory killer)
    when the chunk holds a configuration of seed ``DEADLY_SEED``. Module level: the pool pickles
    it by name and the spawned worker imports this module (the driver's ``sys.path`` goes with
    it)."""
    if any(config["seed"] == DEADLY_SEED for config in configs_json):
        os.kill(os.getpid(), signal.SIGKILL)
    return execute_chunk(configs_json, run_ids, store_root, threads)


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
    assert failed[deadly_id]["error"] == (
        "the worker process running this configuration died "
        "(exit code -9: killed by SIGKILL, e.g. from the out-of-memory killer)"
    )
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
