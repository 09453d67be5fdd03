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
    ``config.json``'s ``resolved`` for the reports."""

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
        ``overwrite`` is true and ``out`` is a run directory pertlearn wrote."""
        return write_run_dir(self, Path(out), overwrite=overwrite)
