"""Export finished runs to experiment trackers: TensorBoard event files and MLflow runs.

Everything is read from the run directory (:func:`~pertlearn.experiments.rundir.read_run`), so a
run can be exported right after it ran (``pertlearn run --log tensorboard``) or any time later
(``pertlearn export RUN_DIR --to mlflow``). Each export holds:

* the resolved config, flattened to dotted keys (``train_f.lr``), plus ``resolved.eps``,
  ``resolved.device`` and ``resolved.device_requested``: TensorBoard hparams / MLflow params;
* the per-epoch curves of every network in ``curves.json`` (``f/loss``, ``g/loss``,
  ``random_l2_noise/loss``; image runs also ``*/train_acc``, ``*/val_acc``, ``*/lr``), at steps
  1..epochs_run;
* the final metrics of ``metrics.json`` (numbers and booleans, nested ones flattened, e.g.
  ``fooling_rate_per_class.3`` and ``stage_seconds.train_f``), under ``metrics/`` in TensorBoard.

Both trackers are optional extras (``pip install 'pertlearn[tensorboard]'``,
``'pertlearn[mlflow]'``), imported only when used; a missing one raises
:class:`~pertlearn.errors.MissingExtraError` with one line naming the install command.

Layout under ``log_dir``: ``tensorboard/<name>/events.out.tfevents.*`` (view with
``tensorboard --logdir LOG_DIR/tensorboard``) and the MLflow file store ``mlruns/``. Exporting a
run again replaces its TensorBoard events and leaves its MLflow run as it is (one MLflow run per
run directory and creation time).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pertlearn.errors import MissingExtraError
from pertlearn.experiments.config_tree import RUN_CONFIG_FILE
from pertlearn.experiments.rundir import is_run_dir, read_json_object, read_run
from pertlearn.experiments.store import SweepStore

Tracker = Literal["tensorboard", "mlflow"]
TRACKERS: tuple[Tracker, ...] = ("tensorboard", "mlflow")
"""The trackers a run can be exported to (``--log NAME``)."""

MLFLOW_PARAM_LENGTH = 6000
"""MLflow's limit on the length of a param value; longer values are cut."""

MLFLOW_BATCH = 1000
"""Metrics per MLflow ``log_batch`` call (MLflow accepts at most 1000)."""

MLFLOW_PARAM_BATCH = 100
"""Params per MLflow ``log_batch`` call (MLflow accepts at most 100)."""

_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
"""The module each tracker needs (``mlflow`` comes with ``mlflow-skinny``)."""


def check_trackers(names: str | Sequence[str]) -> list[Tracker]:
    """``names`` (one tracker's name, or several) without repeats, each a known tracker whose
    package is installed. Raises ``ValueError`` for an unknown name and
    :class:`MissingExtraError` for a missing package, before anything runs."""
    chosen: list[Tracker] = []
    for name in [names] if isinstance(names, str) else names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}; choose one of {', '.join(TRACKERS)}")
        if name not in chosen:
            chosen.append(name)
    for name in chosen:
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise MissingExtraError(
                f"exporting to {name} needs the {_PACKAGES[name]} package: "
                f"pip install 'pertlearn[{name}]'"
            )
    return chosen


@dataclass(frozen=True)
class TrackedRun:
    """What an export writes for one run directory: ``params`` (dotted config keys → scalar),
    ``curves`` (``network/curve`` → per-epoch values, epoch 1 first), ``metrics`` (flattened
    final metrics → float) and the run's ``path``, ``created`` time (ISO 8601) and
    ``pipeline``."""

    path: Path
    created: str
    pipeline: str
    params: dict[str, str | int | float | bool]
    curves: dict[str, list[float]]
    metrics: dict[str, float]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _param(value: Any) -> str | int | float | bool:
    """A config value as a tracker accepts it: scalars as they are, anything else as JSON."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def _number(value: Any) -> float | None:
    """A metric value as a float (booleans 0/1); ``None`` for text, ``null`` and NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def tracked_run(run_dir: str | Path) -> TrackedRun:
    """Read the run directory ``run_dir`` into a :class:`TrackedRun`
    (:class:`~pertlearn.errors.RunDirError` naming the file when it is incomplete)."""
    record = read_run(run_dir)
    saved = read_json_object(record.path / RUN_CONFIG_FILE)
    params = {key: _param(value) for key, value in _flatten(record.config).items()}
    for key in ("eps", "device", "device_requested"):
        if key in record.resolved:
            params[f"resolved.{key}"] = _param(record.resolved[key])
    metrics = {
        key: number
        for key, value in _flatten(record.metrics).items()
        if (number := _number(value)) is not None
    }
    curves: dict[str, list[float]] = {}
    for network, payload in (record.curves() or {}).items():
        if not isinstance(payload, dict):
            continue
        for curve, values in payload.items():
            if isinstance(values, list) and values:
                points = [_number(v) for v in values]
                curves[f"{network}/{curve}"] = [math.nan if p is None else p for p in points]
    return TrackedRun(
        path=Path(os.path.abspath(record.path)),
        created=str(saved.get("created", "")),
        pipeline=record.pipeline,
        params=params,
        curves=curves,
        metrics=metrics,
    )


# ------------------------------------------------------------------------ TensorBoard


def export_tensorboard(run: TrackedRun, log_dir: str | Path, name: str) -> Path:
    """Write ``run`` as TensorBoard events into ``log_dir/tensorboard/name`` (replacing events
    written there before) and return that folder: the curves as scalars at their epochs, the
    params and final metrics (``metrics/KEY``) in the HParams dashboard."""
    # lazy: tensorboard is an optional extra; torch's writer needs it installed
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(log_dir) / "tensorboard" / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()
    wall = _timestamp(run.created)
    with SummaryWriter(log_dir=str(folder)) as writer:
        for tag, values in run.curves.items():
            for epoch, value in enumerate(values, start=1):
                writer.add_scalar(tag, value, global_step=epoch, walltime=wall)
        writer.add_hparams(
            dict(run.params),
            {f"metrics/{key}": value for key, value in run.metrics.items()},
            run_name=".",  # the same folder as the curves: one run in TensorBoard
        )
    return folder


def _timestamp(created: str) -> float | None:
    """``created`` (ISO 8601) as seconds since the epoch; ``None`` when it is not a time."""
    try:
        return datetime.fromisoformat(created).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------------ MLflow


@contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set; set it while
    exporting to a ``file:`` store (and only then), as it was before afterwards."""
    if not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def mlflow_uri(log_dir: str | Path) -> str:
    """The tracking URI of the MLflow file store under ``log_dir`` (``log_dir/mlruns``)."""
    return (Path(os.path.abspath(log_dir)) / "mlruns").as_uri()


def export_mlflow(
    run: TrackedRun,
    *,
    experiment: str,
    name: str,
    tracking_uri: str,
) -> str:
    """Log ``run`` as one MLflow run named ``name`` in ``experiment`` of the tracking store
    ``tracking_uri`` (created when missing) and return its MLflow run id. A run already
    exported from the same run directory and creation time is left as it is."""
    # lazy: mlflow is an optional extra and slow to import
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    with _file_store_allowed(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = (
            client.create_experiment(experiment) if found is None else found.experiment_id
        )
        source = {"pertlearn.run_dir": str(run.path), "pertlearn.created": run.created}
        query = " and ".join(f"tags.`{key}` = '{_quote(value)}'" for key, value in source.items())
        previous = client.search_runs([experiment_id], filter_string=query, max_results=1)
        if previous:
            return str(previous[0].info.run_id)
        tags = {**source, "pertlearn.pipeline": run.pipeline}
        mlflow_run = client.create_run(experiment_id, run_name=name, tags=tags)
        run_id = mlflow_run.info.run_id
        millis = int((_timestamp(run.created) or 0.0) * 1000)
        params = [Param(key, str(value)[:MLFLOW_PARAM_LENGTH]) for key, value in run.params.items()]
        for start in range(0, len(params), MLFLOW_PARAM_BATCH):
            client.log_batch(run_id, params=params[start : start + MLFLOW_PARAM_BATCH])
        metrics = [
            Metric(tag, value, millis, epoch)
            for tag, values in run.curves.items()
            for epoch, value in enumerate(values, start=1)
        ]
        metrics += [Metric(key, value, millis, 0) for key, value in run.metrics.items()]
        for start in range(0, len(metrics), MLFLOW_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + MLFLOW_BATCH])
        client.log_batch(run_id, tags=[RunTag("pertlearn.exported", "true")])
        client.set_terminated(run_id)
        return str(run_id)


def _quote(value: str) -> str:
    """``value`` inside single quotes of an MLflow filter string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


# ------------------------------------------------------------------------ runs and sweeps


def export_run(
    run_dir: str | Path,
    to: str | Sequence[str],
    *,
    log_dir: str | Path | None = None,
    name: str | None = None,
    experiment: str | None = None,
    mlflow_tracking_uri: str | None = None,
) -> dict[str, str]:
    """Export the run directory ``run_dir`` to each tracker in ``to`` (``"tensorboard"``,
    ``"mlflow"`` or a list of both) and return, per tracker, where it went (the TensorBoard
    folder, the MLflow run id).

    ``log_dir`` (default: ``run_dir``) holds ``tensorboard/`` and the MLflow file store
    ``mlruns/`` (or ``mlflow_tracking_uri``, e.g. ``sqlite:///mlflow.db``); ``name`` (default:
    the folder name of ``run_dir``) names the run in both, ``experiment`` (default: the config's
    ``name``) the MLflow experiment."""
    trackers = check_trackers(to)
    run = tracked_run(run_dir)
    run_name = name or run.path.name
    where: dict[str, str] = {}
    base = Path(log_dir) if log_dir is not None else run.path
    for tracker in trackers:
        if tracker == "tensorboard":
            where[tracker] = str(export_tensorboard(run, base, run_name))
        else:
            where[tracker] = export_mlflow(
                run,
                experiment=experiment or str(run.params.get("name", "pertlearn")),
                name=run_name,
                tracking_uri=mlflow_tracking_uri or mlflow_uri(base),
            )
    return where


def export_sweep(
    sweep_dir: str | Path,
    to: str | Sequence[str],
    *,
    log_dir: str | Path | None = None,
    experiment: str | None = None,
    mlflow_tracking_uri: str | None = None,
) -> int:
    """Export every complete run of the sweep directory ``sweep_dir`` (named by its run id)
    like :func:`export_run`; ``log_dir`` defaults to ``sweep_dir``, ``experiment`` to the
    sweep's name. Returns the number of runs exported."""
    check_trackers(to)
    store = SweepStore(sweep_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise ValueError(f"{str(sweep_dir)!r} is not a sweep directory (no sweep.json)")
    sweep_name = str(manifest.get("name") or Path(sweep_dir).name)
    run_ids = store.completed()
    for run_id in run_ids:
        export_run(
            store.run_dir(run_id),
            to,
            log_dir=log_dir if log_dir is not None else sweep_dir,
            name=run_id,
            experiment=experiment or sweep_name,
            mlflow_tracking_uri=mlflow_tracking_uri,
        )
    return len(run_ids)


def export_any(
    path: str | Path,
    to: str | Sequence[str],
    *,
    log_dir: str | Path | None = None,
    mlflow_tracking_uri: str | None = None,
) -> int:
    """Export ``path``, a run directory or a sweep directory; the number of runs exported."""
    if is_run_dir(Path(path)):
        export_run(path, to, log_dir=log_dir, mlflow_tracking_uri=mlflow_tracking_uri)
        return 1
    return export_sweep(path, to, log_dir=log_dir, mlflow_tracking_uri=mlflow_tracking_uri)
