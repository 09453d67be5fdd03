"""The results store of a sweep: one run directory per configuration, resumable.

Layout of a sweep directory::

    sweep.json            the sweep's spec, fingerprint and configurations (run id, values, seed)
    .in-flight.json       the run ids a sweep process is running in itself (``--workers 1``);
                          left behind only when that process died, so a resume runs them apart
    runs/<run id>/        one complete run directory per finished configuration
                          (see :mod:`pertlearn.experiments.rundir`); <run id> is the
                          stable hash of the resolved config (:func:`sweeps.config_hash`)
    runs/.<run id>.*.tmp  a run being written (hidden; removed when a sweep restarts, like the
                          hidden temporary files of sweep.json and failure records)
    failed/<run id>.json  error, traceback and config of a configuration that failed
    corrupt/              what a sweep moved aside because it could not be read (a run with a
                          corrupt metrics.json, an unreadable failure record); never deleted
    results.csv, results.parquet   the aggregated table (``pertlearn results``)
    report.html           the report (``pertlearn report``)

A run directory appears by one ``rename`` of a fully written directory, so a sweep killed at
any moment leaves only complete runs visible; a rerun skips them. A lock file keeps two sweep
processes out of one directory.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pertlearn.atomic import (
    atomic_path,
    left_temporaries,
    sync_dir,
    sync_tree,
    temporary_dir,
    write_bytes,
    write_json,
)
from pertlearn.errors import cli_worded
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.config_tree import RUN_CONFIG_FILE
from pertlearn.experiments.rundir import (
    FIGURES_DIR,
    RUN_DIR_FILES,
    CorruptFileError,
    check_safetensors,
    read_json_object,
    read_run,
)
from pertlearn.experiments.sweeps import Point, Sweep

SWEEP_FILE = "sweep.json"
IN_FLIGHT_FILE = ".in-flight.json"
CORRUPT_DIR = "corrupt"
RESULT_FILES = ("results.csv", "results.parquet")
REPORT_FILES = ("report.html", FIGURES_DIR)
"""What ``pertlearn results`` and ``pertlearn report`` write into a sweep directory."""


class SweepDirError(ConfigError):
    """The sweep directory cannot be used for this sweep."""


class SweepStore:
    """The directory ``root`` of one sweep."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.failures = self.root / "failed"
        self.corrupt = self.root / CORRUPT_DIR

    # ---------------------------------------------------------------- identity

    def read_manifest(self) -> dict[str, Any] | None:
        """``sweep.json``, or ``None`` when there is none; :class:`CorruptFileError` (naming
        the file) when it cannot be read."""
        path = self.root / SWEEP_FILE
        if not path.exists():
            return None
        return read_json_object(path)

    def check(self, sweep: Sweep, points: list[Point] | None = None) -> None:
        """Raise :class:`SweepDirError` if ``root`` holds something other than this sweep: the
        runs of another fingerprint, or (given ``points``) runs or readable failure records of
        none of ``points`` (the same spec resolving to other configs).

        A corrupt ``sweep.json`` is accepted when ``points`` are given and every run and
        failure record in the directory is one of theirs (:meth:`write_manifest` then moves it
        into ``corrupt/`` and writes it anew); otherwise the error names the file. A deleted
        one is accepted when the directory holds only what a sweep of ``points`` writes."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            problem = f"sweep directory {str(self.root)!r} is a file"
            raise cli_worded(
                SweepDirError(f"{problem}; choose another sweep directory"),
                f"{problem}; choose another --out",
            )
        try:
            manifest = self.read_manifest()
        except CorruptFileError as err:
            if points is not None and self._holds_only(points):
                return
            problem = f"{err}; it names the sweep this directory holds: restore it, or choose"
            raise cli_worded(
                SweepDirError(f"{problem} another sweep directory"), f"{problem} another --out"
            ) from None
        if manifest is None:
            if points is not None and self._only_this_sweeps(points):
                return  # sweep.json deleted: write_manifest writes it anew
            if any(not p.name.startswith(".") for p in self.root.iterdir()):
                problem = f"{str(self.root)!r} is not empty and holds no {SWEEP_FILE}"
                raise cli_worded(
                    SweepDirError(f"{problem}; choose a new or empty sweep directory"),
                    f"{problem}; choose a new or empty --out directory",
                )
            return
        if manifest.get("fingerprint") != sweep.fingerprint:
            problem = (
                f"sweep directory {str(self.root)!r} holds the runs of another sweep "
                f"({manifest.get('name')!r}, fingerprint {manifest.get('fingerprint')}; this one "
                f"is {sweep.name!r}, {sweep.fingerprint})"
            )
            raise cli_worded(
                SweepDirError(f"{problem}; choose another sweep directory"),
                f"{problem}; choose another --out",
            )
        foreign = self._foreign(points) if points is not None else []
        if foreign:
            # Same spec, other configs: a preset or base file edited since, another pertlearn
            # version or another device, or a relative --set path resolved from another folder.
            # Running on would mix two sets of runs in one table.
            problem = (
                f"sweep directory {str(self.root)!r} holds {len(foreign)} run(s) or failure "
                f"record(s) of configurations that sweep {sweep.name!r} no longer resolves to "
                f"(e.g. {foreign[0]}): its presets, config file, pertlearn version or device "
                "changed since they ran, or a relative path given by --set now names another "
                "file"
            )
            raise cli_worded(
                SweepDirError(f"{problem}; choose another sweep directory"),
                f"{problem}; choose another --out",
            )

    def _foreign(self, points: list[Point]) -> list[str]:
        """The visible run directories and readable failure records that belong to none of
        ``points`` (paths relative to the sweep directory; unreadable records are moved into
        ``corrupt/`` by a sweep anyway)."""
        ids = {p.run_id for p in points}
        found = [f"runs/{p.name}" for p in self._visible(self.runs) if p.name not in ids]
        found += [f"failed/{run_id}.json" for run_id in self.failed() if run_id not in ids]
        return found

    def _only_this_sweeps(self, points: list[Point]) -> bool:
        """Whether ``root`` holds only what a sweep of ``points`` writes (its runs and failure
        records, ``corrupt/``, the results table and the report) and at least one run."""
        own = {self.runs.name, self.failures.name, CORRUPT_DIR, *RESULT_FILES, *REPORT_FILES}
        names = {p.name for p in self.root.iterdir() if not p.name.startswith(".")}
        has_runs = self.runs.is_dir() and bool(self._visible(self.runs))
        return has_runs and names <= own and self._holds_only(points)

    def _holds_only(self, points: list[Point]) -> bool:
        """Whether every visible run directory and failure record belongs to ``points``."""
        ids = {p.run_id for p in points}
        found = [p.name for p in self._visible(self.runs)]
        found += [p.stem for p in self._visible(self.failures) if p.suffix == ".json"]
        return all(run_id in ids for run_id in found)

    def write_manifest(self, sweep: Sweep, points: list[Point]) -> None:
        """Write ``sweep.json`` (keeping the creation time of the one there; a corrupt one is
        first moved into ``corrupt/``)."""
        try:
            previous = self.read_manifest() or {}
        except CorruptFileError:
            self.quarantine(self.root / SWEEP_FILE)
            previous = {}
        write_json(
            self.root / SWEEP_FILE,
            {
                "name": sweep.name,
                "description": sweep.description,
                "fingerprint": sweep.fingerprint,
                "created": previous.get("created", datetime.now(UTC).isoformat(timespec="seconds")),
                "spec": sweep.spec,
                "axes": [{"kind": a.kind, "keys": list(a.keys)} for a in sweep.axes],
                "swept_keys": sweep.swept_keys,
                "report_x": sweep.report_x,
                "points": [
                    {"run_id": p.run_id, "values": p.values, "seed": p.seed} for p in points
                ],
            },
        )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the directory (released when the process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = (self.root / ".lock").open("w")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SweepDirError(
                    f"another sweep process is running in {str(self.root)!r}; wait for it or "
                    "stop it first"
                ) from None
            yield
        finally:
            handle.close()

    # -------------------------------------------------------------------- runs

    @staticmethod
    def _visible(folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def run_problem(self, run_id: str) -> str | None:
        """Why ``runs/<run_id>`` is not a complete run (one line naming the file), or ``None``
        when it is: a directory whose ``config.json`` (with its ``config``), ``metrics.json``
        and ``curves.json`` are JSON objects and whose ``.safetensors`` files are whole (a
        missing one is not a problem: weights and tensors may be deleted to save space)."""
        run = self.run_dir(run_id)
        if not run.is_dir():
            return f"{run}: not a run directory"
        try:
            for name in RUN_DIR_FILES:
                payload = read_json_object(run / name)
                if name == RUN_CONFIG_FILE and not isinstance(payload.get("config"), dict):
                    return f"{run / name}: holds no 'config' object"
            for weights in sorted(run.glob("*.safetensors")):
                check_safetensors(weights)
        except CorruptFileError as err:
            return str(err)
        return None

    def completed(self) -> list[str]:
        """Run ids with a complete run directory (see :meth:`run_problem`)."""
        return [p.name for p in self._visible(self.runs) if self.run_problem(p.name) is None]

    def broken_runs(self) -> dict[str, str]:
        """``run id → problem`` of the visible entries of ``runs/`` that are not complete runs
        (a corrupt or missing ``metrics.json``, say)."""
        problems = {p.name: self.run_problem(p.name) for p in self._visible(self.runs)}
        return {run_id: problem for run_id, problem in problems.items() if problem is not None}

    def quarantine(self, path: Path) -> Path:
        """Move ``path`` (a file or directory of the sweep) into a fresh folder under
        ``corrupt/``; return its new path. Nothing is deleted."""
        self.corrupt.mkdir(parents=True, exist_ok=True)
        relative = path.relative_to(self.root)
        tag = "-".join(relative.parts)
        folder = Path(tempfile.mkdtemp(dir=self.corrupt, prefix=f"{tag}."))
        target = folder / path.name
        os.rename(path, target)
        return target

    def quarantine_corrupt(self) -> list[str]:
        """Move every broken run (:meth:`broken_runs`) and unreadable failure record into
        ``corrupt/``, so that their configurations run again; one line per moved item."""
        moved = []
        for run_id, problem in self.broken_runs().items():
            target = self.quarantine(self.run_dir(run_id))
            moved.append(f"{problem}; moved the run to {target} and it runs again")
        for path, problem in self.corrupt_failures().items():
            target = self.quarantine(path)
            moved.append(f"{problem}; moved the record to {target}")
        return moved

    def remove_partials(self) -> int:
        """Remove what a killed sweep left half-written (call it holding :meth:`lock`): hidden
        run directories in ``runs/``, and the hidden temporary files of ``sweep.json`` and of
        failure records and of the in-flight record; the number of run directories removed."""
        stale_files = left_temporaries(self.root, SWEEP_FILE)
        stale_files += left_temporaries(self.root, IN_FLIGHT_FILE)
        if self.failures.exists():
            stale_files += left_temporaries(self.failures, "*.json")
        for path in stale_files:
            path.unlink(missing_ok=True)
        if not self.runs.exists():
            return 0
        stale = [p for p in self.runs.iterdir() if p.name.startswith(".") and p.is_dir()]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)

    def staging_dir(self, run_id: str) -> Path:
        """A fresh hidden directory in ``runs/`` to write a run into before :meth:`publish`."""
        self.runs.mkdir(parents=True, exist_ok=True)
        return temporary_dir(self.runs, run_id)

    def publish(self, run_id: str, written: Path) -> bool:
        """Move the complete run directory ``written`` (inside a staging dir) to
        ``runs/<run_id>`` with one rename. ``False`` (and ``written`` discarded) if that run
        already exists: a finished run is never replaced."""
        target = self.run_dir(run_id)
        sync_tree(written)
        try:
            os.rename(written, target)
            sync_dir(self.runs)
            return True
        except OSError:
            if target.exists():
                return False
            raise

    def install_files(self, run_id: str, files: dict[str, bytes]) -> bool:
        """Write a run directory received as ``{file name: bytes}`` (e.g. from a Ray worker)
        and publish it atomically."""
        staging = self.staging_dir(run_id)
        try:
            run = staging / "run"
            run.mkdir()
            for name, data in files.items():
                if "/" in name or name.startswith("."):
                    raise ValueError(f"unexpected file name {name!r} in a returned run")
                write_bytes(run / name, data)
            return self.publish(run_id, run)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # ------------------------------------------------------------ in flight

    def mark_in_flight(self, run_ids: Sequence[str]) -> None:
        """Record that this process now runs the configurations ``run_ids`` in itself (call it
        holding :meth:`lock`), replacing the previous record. A process that dies meanwhile
        (out of memory, a crash in native code, SIGKILL) leaves the record behind for the next
        sweep to read with :meth:`in_flight`."""
        write_json(self.root / IN_FLIGHT_FILE, {"run_ids": list(run_ids)})

    def in_flight(self) -> set[str]:
        """The run ids of the last :meth:`mark_in_flight` that was not cleared: what a sweep
        process was running in itself when it died (empty when none, or unreadable)."""
        try:
            record = read_json_object(self.root / IN_FLIGHT_FILE)
        except CorruptFileError:  # a missing record included
            return set()
        run_ids = record.get("run_ids")
        return {r for r in run_ids if isinstance(r, str)} if isinstance(run_ids, list) else set()

    def clear_in_flight(self) -> None:
        """Remove the record of :meth:`mark_in_flight`: nothing runs in this process now."""
        (self.root / IN_FLIGHT_FILE).unlink(missing_ok=True)

    # ----------------------------------------------------------------- failures

    def _failure_records(self) -> tuple[dict[str, dict[str, Any]], dict[Path, str]]:
        records: dict[str, dict[str, Any]] = {}
        corrupt: dict[Path, str] = {}
        for path in self._visible(self.failures):
            if path.suffix != ".json":
                continue
            try:
                records[path.stem] = read_json_object(path)
            except CorruptFileError as err:
                corrupt[path] = str(err)
        return records, corrupt

    def failed(self) -> dict[str, dict[str, Any]]:
        """``run id → failure record`` of the configurations that failed (unreadable records
        are left out: see :meth:`corrupt_failures`)."""
        return self._failure_records()[0]

    def failed_unfinished(self, completed: Collection[str]) -> dict[str, dict[str, Any]]:
        """:meth:`failed` without the ``completed`` run ids (:meth:`completed`, or the rows of
        :func:`collect_results`): a record left beside a run that finished on a retry, when the
        sweep was killed before it cleared the record (the next sweep clears it)."""
        done = set(completed)
        return {run_id: record for run_id, record in self.failed().items() if run_id not in done}

    def corrupt_failures(self) -> dict[Path, str]:
        """``path → problem`` of the failure records that cannot be read."""
        return self._failure_records()[1]

    def record_failure(self, point: Point, error: str, traceback: str) -> None:
        write_json(
            self.failures / f"{point.run_id}.json",
            {
                "run_id": point.run_id,
                "values": point.values,
                "seed": point.seed,
                "error": error,
                "traceback": traceback,
                "config": point.config.model_dump(mode="json"),
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )

    def clear_failure(self, run_id: str) -> None:
        (self.failures / f"{run_id}.json").unlink(missing_ok=True)


# ---------------------------------------------------------------------- results table


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _scalar(value: Any) -> Any:
    """Table cells are scalars; lists and tables become JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def flat_scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``metrics`` (or a config) with nested tables flattened to dotted keys (``a.b``) and every
    value a table cell (:func:`_scalar`)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flat_scalars(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _scalar(value)
    return flat


def collect_results(root: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (one per complete run: ``run_id``, the swept keys, ``seed``, every metric) and the
    swept keys, read from the sweep directory ``root``."""
    store = SweepStore(root)
    manifest = store.read_manifest()
    if manifest is None:
        raise SweepDirError(f"{str(root)!r} is not a sweep directory (no {SWEEP_FILE})")
    swept: list[str] = list(manifest.get("swept_keys", []))
    order = {
        p.get("run_id"): i for i, p in enumerate(manifest.get("points", [])) if isinstance(p, dict)
    }
    rows = []
    for run_id in sorted(store.completed(), key=lambda r: (order.get(r, len(order)), r)):
        record = read_run(store.run_dir(run_id))
        config, metrics = record.config, record.metrics
        row: dict[str, Any] = {"run_id": run_id}
        for key in swept:
            row[key] = _scalar(_get(config, key))
        row["seed"] = config["seed"]
        row.update(flat_scalars(metrics))
        rows.append(row)
    return rows, swept


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """The union of the rows' keys, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def write_results(root: str | Path) -> tuple[list[dict[str, Any]], list[str], list[Path]]:
    """Write ``results.csv`` and ``results.parquet`` (atomically) into the sweep directory;
    return the rows, the swept keys and the written paths."""
    # lazy: pyarrow is heavy and only the parquet file needs it
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    rows, swept = collect_results(root)
    columns = columns_of(rows) or ["run_id", *swept, "seed"]
    csv_path, parquet_path = (root / name for name in RESULT_FILES)

    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)

    arrays = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
            arrays[name] = pa.array([None if v is None else str(v) for v in values])
    table = pa.table(arrays) if arrays else pa.table({})
    with atomic_path(parquet_path) as tmp:
        pq.write_table(table, str(tmp))
    return rows, swept, [csv_path, parquet_path]


HEADLINE_METRICS = (
    "f_acc_train",
    "f_acc_test",
    "g_acc_train",
    "g_acc_test",
    "agreement",
    "control_g_acc_test",
)


def format_cell(value: Any) -> str:
    """A table cell: empty for None, lower-case booleans, floats to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """``rows`` as an aligned text table of ``columns``."""
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def display_columns(rows: list[dict[str, Any]], swept: list[str]) -> list[str]:
    """The columns ``pertlearn results`` prints: swept keys, seed and the headline metrics
    present (every column is in the written files)."""
    present = set(columns_of(rows))
    metrics = [m for m in HEADLINE_METRICS if m in present]
    if not metrics:
        metrics = [c for c in columns_of(rows) if c not in {"run_id", *swept, "seed"}][:6]
    return [*swept, "seed", *metrics]
