"""Run a sweep's configurations into its :class:`~pertlearn.experiments.store.SweepStore`.

Executors:

- ``local`` (default): ``workers = 1`` runs in this process; more workers use a
  :class:`concurrent.futures.ProcessPoolExecutor` (spawned processes), each limited to
  ``cpu_count // workers`` torch threads.
- ``ray``: one Ray task per chunk of configurations (``pip install 'pertlearn[ray]'``), on an
  existing cluster (``address``) or on a local Ray instance started for the sweep, with per-task
  CPU and GPU requests. Workers return the run directory's files to the driver, which publishes them
  in the store (no shared filesystem needed); with ``shared_fs`` they write into the store
  themselves (the sweep directory must then be at the same path on every node).

Both run batchable configurations of equal shapes (``neurips`` pipeline: learning rates, seeds,
ε, targets may differ) in chunks of at most ``batch_size`` as one batched computation
(:mod:`pertlearn.experiments.batched`), each configuration saved and recorded on its own as
if it had run alone; ``batch_size = 1`` (``--no-batch``) runs them one at a time.

Completed configurations are skipped; failed ones (recorded under ``failed/``) too, unless
``retry_failed``. Every configuration is validated before anything runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Point, Sweep

Executor = Literal["local", "ray"]
EXECUTORS: tuple[Executor, ...] = ("local", "ray")


def _limit_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))


def _outcome(result: Any, run_id: str, store_root: str | None) -> dict[str, Any]:
    """The ``done`` outcome of one finished :class:`~pertlearn.experiments.runner.Result`:
    published into the store at ``store_root`` (atomic run directory), or its files returned."""
    outcome: dict[str, Any] = {"run_id": run_id, "status": "done", "metrics": result.metrics}
    if store_root is not None:
        store = SweepStore(store_root)
        staging = store.staging_dir(run_id)
        try:
            result.save(staging / "run")
            outcome["published"] = store.publish(run_id, staging / "run")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        with tempfile.TemporaryDirectory(prefix="pertlearn-run-") as tmp:
            written = result.save(Path(tmp) / "run")
            outcome["files"] = {p.name: p.read_bytes() for p in sorted(written.iterdir())}
    return outcome


def _failure(run_id: str, err: BaseException) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__)),
    }


def execute_config(
    config_json: dict[str, Any], run_id: str, store_root: str | None, threads: int | None = None
) -> dict[str, Any]:
    """Run one configuration (this is what a worker executes).

    With ``store_root`` the run directory is published into that store; without, its files
    come back in the outcome as ``files`` (name → bytes). Returns ``{"run_id", "status":
    "done" | "failed", ...}``; an exception in the experiment becomes a ``failed`` outcome
    with ``error`` and ``traceback``.
    """
    from pertlearn.experiments.pipelines import run, validate_config

    _limit_threads(threads)
    try:
        config = validate_config(config_json)
        return _outcome(run(config), run_id, store_root)
    except Exception as err:
        return _failure(run_id, err)


def execute_chunk(
    configs_json: Sequence[dict[str, Any]],
    run_ids: Sequence[str],
    store_root: str | None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Run several configurations as one batched computation
    (:func:`pertlearn.experiments.batched.run_each`) and return one outcome per configuration,
    in order, each exactly as :func:`execute_config` makes it (a failing configuration fails
    alone). One configuration goes through :func:`execute_config`."""
    if len(configs_json) == 1:
        return [execute_config(configs_json[0], run_ids[0], store_root, threads)]
    from pertlearn.experiments.batched import run_each
    from pertlearn.experiments.pipelines import validate_config

    _limit_threads(threads)
    try:
        configs = [validate_config(c) for c in configs_json]
        results = run_each(configs)
    except Exception as err:
        return [_failure(run_id, err) for run_id in run_ids]
    outcomes = []
    for run_id, result in zip(run_ids, results, strict=True):
        if isinstance(result, Exception):
            outcomes.append(_failure(run_id, result))
            continue
        try:
            outcomes.append(_outcome(result, run_id, store_root))
        except Exception as err:
            outcomes.append(_failure(run_id, err))
    return outcomes


BATCH_SIZE = 10
"""Default number of configurations one batched computation runs (``--batch-size``): large
enough to share the work, small enough that a killed sweep loses little and progress moves."""


def _batch_key(point: Point) -> Hashable:
    """Configurations with equal keys have networks of equal shapes (what
    :func:`~pertlearn.experiments.batched.run_many` trains together); learning rates, seeds,
    ε, targets and the like may differ."""
    c: Any = point.config  # a neurips config when batchable; others get their own chunk
    return (
        c.pipeline,
        c.device,
        c.dtype,
        c.data.model_dump_json(exclude={"shift"}),
        c.model.model_dump_json(),
        c.model_g.model_dump_json() if c.model_g is not None else None,
        c.train_f.loss,
        c.train_g.loss,
    )


def chunks(todo: Sequence[Point], batch_size: int) -> list[list[Point]]:
    """Split ``todo`` into the units one worker runs: configurations that
    :func:`~pertlearn.experiments.batched.can_batch` grouped by :func:`_batch_key`, ordered by
    seed (so a chunk holds configurations that share data, f or the control, which
    :func:`~pertlearn.experiments.batched.run_many` trains once), in chunks of at most
    ``batch_size``; every other configuration alone. Units in order of first appearance."""
    from pertlearn.experiments.batched import can_batch

    if batch_size <= 1:
        return [[point] for point in todo]
    groups: dict[Hashable, list[Point]] = {}
    order: list[Point | tuple[Hashable]] = []  # a point alone, or (key,) of a group
    for point in todo:
        if not can_batch(point.config):
            order.append(point)
            continue
        key = _batch_key(point)
        if key not in groups:
            order.append((key,))
        groups.setdefault(key, []).append(point)
    out: list[list[Point]] = []
    for item in order:
        if isinstance(item, Point):
            out.append([item])
            continue
        group = sorted(groups[item[0]], key=lambda p: p.config.seed)  # stable
        out += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return out


def _chunk_args(chunk: Sequence[Point]) -> tuple[list[dict[str, Any]], list[str]]:
    return [p.config.model_dump(mode="json") for p in chunk], [p.run_id for p in chunk]


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


OutcomeHandler = Callable[[Point, dict[str, Any]], None]


def _run_local(
    todo: Sequence[Point],
    store: SweepStore,
    handle: OutcomeHandler,
    workers: int,
    threads: int | None,
    batch_size: int = 1,
) -> int:
    """Run ``todo`` locally, in chunks of batchable configurations (:func:`chunks`); return
    how many could not run (broken pool)."""
    root = str(store.root)
    units = chunks(todo, batch_size)
    if workers <= 1:
        import torch

        previous = torch.get_num_threads()
        try:
            for chunk in units:
                for point, outcome in zip(
                    chunk, execute_chunk(*_chunk_args(chunk), root, threads), strict=True
                ):
                    handle(point, outcome)
        finally:
            torch.set_num_threads(previous)
        return 0
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    not_run = 0
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_limit_threads,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(execute_chunk, *_chunk_args(chunk), root): chunk for chunk in units}
        for future in as_completed(futures):
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                not_run += len(futures[future])
                continue
            for point, outcome in zip(futures[future], outcomes, strict=True):
                handle(point, outcome)
    return not_run


def check_ray_address(address: str, timeout: float = 10.0) -> None:
    """Fail fast with :class:`ConfigError` when ``host:port`` (or ``ray://host:port``) does not
    accept connections (Ray itself retries for minutes). ``auto`` is left to Ray."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start one with "
            "`ray start --head` or fix --address"
        ) from None


def _run_ray(
    todo: Sequence[Point],
    store: SweepStore,
    handle: OutcomeHandler,
    *,
    address: str | None,
    cpus_per_task: float,
    gpus_per_task: float,
    shared_fs: bool,
    num_cpus: int | None,
    batch_size: int = 1,
) -> int:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray: pip install 'pertlearn[ray]' (or scripts/setup.sh ray)"
        ) from None
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"log_to_driver": False}
        if address:
            try:
                ray.init(address=address, **options)
            except ConnectionError as err:
                first = str(err).splitlines()[0] if str(err) else "cannot connect"
                raise ConfigError(
                    f"Ray: {first}; check --address, and for a cluster with token "
                    "authentication set RAY_AUTH_MODE=token and its token (README, Sweeps)"
                ) from None
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **options)
        started = True
    try:
        task = ray.remote(execute_chunk).options(
            num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0
        )
        threads = max(1, int(cpus_per_task))
        root = str(store.root.resolve()) if shared_fs else None
        pending = {
            task.remote(*_chunk_args(chunk), root, threads): chunk
            for chunk in chunks(todo, batch_size)
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            chunk = pending.pop(ref)
            try:
                outcomes = ray.get(ref)
            except Exception as err:  # the worker died or Ray failed the task
                first = str(err).splitlines()[0] if str(err) else ""
                outcomes = [
                    {
                        "run_id": point.run_id,
                        "status": "failed",
                        "error": f"{type(err).__name__}: {first}",
                        "traceback": str(err),
                    }
                    for point in chunk
                ]
            for point, outcome in zip(chunk, outcomes, strict=True):
                if outcome["status"] == "done" and "files" in outcome:
                    outcome["published"] = store.install_files(point.run_id, outcome.pop("files"))
                handle(point, outcome)
    finally:
        if started:
            ray.shutdown()
    return 0


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

    Validates all configurations and the directory first (:class:`ConfigError` /
    :class:`~pertlearn.experiments.store.SweepDirError`, nothing run), then runs the rest with
    ``executor``. ``threads``: torch threads of each local worker (default: this process's
    unchanged for one worker, ``cpu_count // workers`` for several); Ray tasks use
    ``cpus_per_task`` threads. ``batch_size``: at most this many configurations of equal
    shapes run as one batched computation (:func:`chunks`, :func:`execute_chunk`), with every
    executor; 1 runs each configuration on its own. Returns a :class:`SweepSummary`.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    if cpus_per_task <= 0 or gpus_per_task < 0:
        raise ConfigError("--cpus-per-task must be positive and --gpus-per-task non-negative")
    say = echo or (lambda _message: None)
    points = sweep.points()
    if executor == "ray":  # fail before the sweep directory is touched
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--executor ray needs Ray: pip install 'pertlearn[ray]' (or scripts/setup.sh ray)"
            ) from None
        if address:
            check_ray_address(address)
    store = SweepStore(out)
    store.check(sweep)
    with store.lock():
        store.check(sweep)
        removed = store.remove_partials()
        store.write_manifest(sweep, points)
        done = set(store.completed())
        failed_before = store.failed()
        for run_id in done & set(failed_before):
            store.clear_failure(run_id)
        todo = [
            p
            for p in points
            if p.run_id not in done and (retry_failed or p.run_id not in failed_before)
        ]
        summary = SweepSummary(
            out=Path(out),
            total=len(points),
            skipped_done=sum(p.run_id in done for p in points),
            skipped_failed=sum(
                p.run_id not in done and p.run_id in failed_before and not retry_failed
                for p in points
            ),
            removed_partials=removed,
        )
        say(
            f"sweep {sweep.name}: {len(points)} configurations, {summary.skipped_done} complete, "
            f"{len(todo)} to run ({executor}) -> {out}"
        )
        bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", disable=not progress)

        def handle(point: Point, outcome: dict[str, Any]) -> None:
            summary.ran += 1
            if outcome["status"] == "done":
                summary.succeeded += 1
                store.clear_failure(point.run_id)
            else:
                summary.failed.append(point.run_id)
                store.record_failure(point, outcome["error"], outcome.get("traceback", ""))
                say(f"failed: {point.describe()}: {outcome['error']}")
            bar.update(1)
            bar.set_postfix(ok=summary.succeeded, failed=len(summary.failed), refresh=False)

        try:
            if executor == "local":
                summary.not_run = _run_local(todo, store, handle, workers, threads, batch_size)
            else:
                summary.not_run = _run_ray(
                    todo,
                    store,
                    handle,
                    address=address,
                    cpus_per_task=cpus_per_task,
                    gpus_per_task=gpus_per_task,
                    shared_fs=shared_fs,
                    num_cpus=None if address else (workers if workers > 1 else None),
                    batch_size=batch_size,
                )
        finally:
            bar.close()
    return summary
