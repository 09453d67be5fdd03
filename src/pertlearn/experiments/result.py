"""What one run produces: :class:`Result` (metrics, trained networks, curves, tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pertlearn.experiments.config import ExperimentConfig
from pertlearn.experiments.rundir import write_run_dir
from pertlearn.training import TrainResult


@dataclass
class Result:
    """Everything one run produced. ``metrics`` follows the metrics contract
    (docs/metrics.md); ``models`` and ``curves`` are keyed by network (``f``, ``g`` and each
    control); ``tensors`` holds the data and the crafted inputs; ``stage_seconds`` the wall
    time of each stage (``data``, ``train_f``, ``craft``, ``train_g``, ``controls``,
    ``evaluate``), written into ``metrics.json`` beside the metrics, not part of them;
    ``class_names`` (image runs) the name of each class ``0..K-1`` of the run, recorded in
    ``config.json``'s ``resolved`` for the reports; ``device`` the device of the networks and
    tensors. :meth:`save` writes a run directory, :meth:`load` reads one back."""

    config: ExperimentConfig
    metrics: dict[str, Any]
    models: dict[str, nn.Module]
    curves: dict[str, TrainResult]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    device: str = "cpu"
    stage_seconds: dict[str, float] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None

    def save(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the run directory ``out`` atomically (:func:`write_run_dir`); an existing
        ``out`` raises :class:`~pertlearn.experiments.rundir.RunDirExistsError` unless
        ``overwrite`` is true and ``out`` is a run directory pertlearn wrote. :meth:`load`
        reads it back."""
        return write_run_dir(self, Path(out), overwrite=overwrite)

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        *,
        device: str | torch.device | None = None,
        model_factory: Any = None,
    ) -> Result:
        """The :class:`Result` a run directory holds, the inverse of :meth:`save`: the
        validated config, the metrics and ``stage_seconds``, every trained network rebuilt
        from the config with its saved weights (eval mode, on ``device``: ``None`` is the
        CPU, ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``), the training curves and the
        saved tensors. A run built with a Python ``model_factory`` needs it again. Details
        and errors (one :class:`~pertlearn.errors.RunDirError` line naming the file):
        :func:`pertlearn.experiments.loading.load_run`, also ``pertlearn.load_run``."""
        # through the package, which registers the built-in pipelines before handing it out
        from pertlearn.experiments import load_run

        return load_run(run_dir, device=device, model_factory=model_factory)
