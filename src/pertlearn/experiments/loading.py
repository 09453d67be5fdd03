"""A run directory read back into Python: :func:`load_run`, the inverse of
:meth:`Result.save <pertlearn.experiments.result.Result.save>` (also
:meth:`Result.load <pertlearn.experiments.result.Result.load>` and ``pertlearn.load_run``).

The config is validated by its pipeline's config class; the networks are rebuilt by the
pipeline's ``networks`` function (:class:`~pertlearn.experiments.pipeline.NetworksFunction`:
exactly as the run built them before training) and their weights loaded from
``NAME.safetensors``; curves, tensors, metrics and stage timings are read as
:func:`~pertlearn.experiments.rundir.write_run_dir` wrote them. Every problem is one
:class:`~pertlearn.errors.RunDirError` line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pertlearn.errors import ConfigError, RunDirError
from pertlearn.experiments.config import ExperimentConfig
from pertlearn.experiments.config_tree import RUN_CONFIG_FILE
from pertlearn.experiments.pipeline import NetworksFunction, pipeline_names, pipeline_of
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.result import Result
from pertlearn.experiments.rundir import (
    CorruptFileError,
    RunRecord,
    read_curves,
    read_run,
)
from pertlearn.experiments.trained_f import state_mismatches
from pertlearn.seeding import resolve_device

LOSS_WEIGHTS_PREFIX = "loss_weights_"
"""Prefix of the per-sample loss weights of network ``NAME`` in ``tensors.safetensors``
(``loss_weights_NAME``), which :func:`load_run` hands back in ``curves[NAME].loss_weights``."""


def loaded_device(device: str | torch.device | None) -> torch.device:
    """The device :func:`load_run` puts a run on: ``None`` is the CPU (a run from a GPU machine
    loads anywhere), ``"auto"`` CUDA when available; ``ValueError`` for another name or an
    unavailable CUDA."""
    name = "cpu" if device is None else str(device)
    try:
        return resolve_device(name)
    except RuntimeError:  # torch's own words for a malformed name span several lines
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}"
        ) from None


def saved_config(record: RunRecord) -> ExperimentConfig:
    """The config in the ``config.json`` of the run ``record``, validated by the config class of
    its pipeline; :class:`RunDirError` naming the file for a pipeline not registered in this
    process or a config its pipeline refuses (as after an edit by hand)."""
    file = record.path / RUN_CONFIG_FILE
    name = record.config.get("pipeline")
    known = pipeline_names()  # built-in and plug-in pipelines
    if isinstance(name, str) and name not in known:
        raise RunDirError(
            f"{str(file)!r}: the run's pipeline {name!r} is not registered in this process (known: "
            f"{', '.join(known)}); import the module that registers it "
            "(register_pipeline) before loading the run"
        )
    try:
        return validate_config(record.config)
    except ConfigError as err:
        raise RunDirError(
            f"{str(file)!r}: {err}; restore the config the run was written with"
        ) from None


def _networks_function(record: RunRecord, config: ExperimentConfig) -> NetworksFunction:
    networks = pipeline_of(config.pipeline).networks
    if networks is None:
        raise RunDirError(
            f"run {str(record.path)!r}: its pipeline {config.pipeline!r} registers no networks "
            "function, so its networks cannot be rebuilt; register it with "
            "Pipeline(..., networks=...)"
        )
    return networks


def _check_factory(record: RunRecord, model_factory: Any) -> None:
    """A run built with a ``model_factory`` from Python (its metric ``model_factory``) needs
    it again; a run built from its config takes none."""
    recorded = record.metrics.get("model_factory")
    if isinstance(recorded, str) and model_factory is None:
        raise RunDirError(
            f"run {str(record.path)!r} built its networks with model_factory={recorded} passed "
            "from Python, which its config.json cannot record; pass it again: "
            f"load_run({str(record.path)!r}, model_factory={recorded.rsplit('.', 1)[-1]})"
        )
    if model_factory is not None and not isinstance(recorded, str):
        raise ValueError(
            f"run {str(record.path)!r} built its networks from its config, not with a "
            "model_factory; leave model_factory out"
        )


def _with_weights(
    record: RunRecord, name: str, network: nn.Module, device: torch.device
) -> nn.Module:
    """``network`` with the weights of ``NAME.safetensors``, on ``device``, in eval mode."""
    state = record.tensors(name)
    problem = state_mismatches(state, network)
    if problem:
        raise RunDirError(
            f"{str(record.path / f'{name}.safetensors')!r} does not fit the network that "
            f"config.json builds ({problem}); restore the run's config.json or weights"
        )
    network.load_state_dict(state)
    return network.to(device).eval()


def _stage_seconds(record: RunRecord, metrics: dict[str, Any]) -> dict[str, float]:
    """``stage_seconds`` taken out of ``metrics`` (``{}`` when the run recorded none)."""
    seconds = metrics.pop("stage_seconds", {})
    if not isinstance(seconds, dict) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in seconds.values()
    ):
        raise CorruptFileError(
            record.path / "metrics.json", "stage_seconds is not a table of seconds per stage"
        )
    return {str(stage): float(value) for stage, value in seconds.items()}


def load_run(
    run_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    model_factory: Any = None,
) -> Result:
    """The :class:`Result` of the run directory ``run_dir`` (written by
    :meth:`Result.save`, or a run of a sweep; its ``config.json`` names it too), the inverse
    of that method:

    - ``config``: ``config.json``'s config, validated by its pipeline's config class (``device``
      is the device the run used);
    - ``metrics``: ``metrics.json`` without ``stage_seconds``, which is ``stage_seconds``;
    - ``models``: f, g and every other network the run trained (each control, the
      ``transfer_eval`` model), rebuilt from the config as the pipeline builds them, with the
      weights of ``NAME.safetensors``, in eval mode on ``device``;
    - ``curves``: ``curves.json`` as :class:`~pertlearn.training.TrainResult` (image runs:
      ``MinibatchResult``) per network, with the per-sample ``loss_weights`` ``(N,)`` when
      ``tensors.safetensors`` holds them (``final_lr`` is NaN from run directories written
      before ``curves.json`` recorded it);
    - ``tensors``: ``tensors.safetensors`` on ``device`` (``x_train`` ``(N, ...)``, ``y_adv``,
      ``x_adv``, ...: docs/metrics.md), empty for a run saved without them;
    - ``device``: the device of the models and tensors.

    ``device``: ``None`` (the CPU), ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. A run
    built with a ``model_factory`` from Python (its metric ``model_factory`` names it) needs
    the same factory again as ``model_factory``. A run on an image data file needs the file
    where its config names it (its config is validated against it).

    Raises :class:`~pertlearn.errors.RunDirError` (one line naming the file) when ``run_dir``
    is not a run directory, a file is missing (a network's weights) or corrupt, or its config is
    one this process cannot validate (e.g. of a pipeline not registered here).
    """
    target = loaded_device(device)
    path = Path(run_dir)
    if path.name == RUN_CONFIG_FILE and path.is_file():  # as `pertlearn run RUN_DIR/config.json`
        path = path.parent
    record = read_run(path)
    config = saved_config(record)
    networks = _networks_function(record, config)
    _check_factory(record, model_factory)
    try:
        fresh = networks(config, record.metrics, model_factory=model_factory)
    except RunDirError:
        raise
    except ValueError as err:
        raise RunDirError(f"run {str(record.path)!r}: cannot rebuild its networks: {err}") from None
    models = {name: _with_weights(record, name, net, target) for name, net in fresh.items()}
    tensors = record.tensors() if record.has_tensors() else {}
    loss_weights = {
        key.removeprefix(LOSS_WEIGHTS_PREFIX): tensors.pop(key).to(target)
        for key in list(tensors)
        if key.startswith(LOSS_WEIGHTS_PREFIX)
    }
    metrics = dict(record.metrics)
    stage_seconds = _stage_seconds(record, metrics)
    return Result(
        config,
        metrics,
        models,
        read_curves(record.path, loss_weights),
        {key: tensor.to(target) for key, tensor in tensors.items()},
        device=str(target),
        stage_seconds=stage_seconds,
        class_names=record.class_names,
    )
