"""Experiments: per-pipeline configs, the pipelines, presets, sweeps and the run directory.

The names below are loaded on first use (PEP 562): presets and config trees import no torch,
so the command line lists presets without it; the pipelines import torch when first needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pertlearn.errors import ConfigError, RunDirExistsError
from pertlearn.experiments.presets import PRESETS, load_config, preset_tree, sweep_presets

if TYPE_CHECKING:
    from pertlearn.experiments.config import AttackConfig, ExperimentConfig, ModelConfig
    from pertlearn.experiments.execution import run_sweep
    from pertlearn.experiments.loading import load_run
    from pertlearn.experiments.pipeline import PIPELINES, Pipeline, register_pipeline
    from pertlearn.experiments.pipelines import (
        IclrArtificialConfig,
        ImagesConfig,
        NeuripsConfig,
        run,
        validate_config,
    )
    from pertlearn.experiments.result import Result
    from pertlearn.experiments.rundir import read_metrics, read_tensors
    from pertlearn.experiments.stages import build_model
    from pertlearn.experiments.store import collect_results, write_results
    from pertlearn.experiments.sweeps import load_sweep

_LAZY = {
    "AttackConfig": "pertlearn.experiments.config",
    "ExperimentConfig": "pertlearn.experiments.config",
    "ModelConfig": "pertlearn.experiments.config",
    "PIPELINES": "pertlearn.experiments.pipeline",
    "Pipeline": "pertlearn.experiments.pipeline",
    "register_pipeline": "pertlearn.experiments.pipeline",
    "IclrArtificialConfig": "pertlearn.experiments.pipelines",
    "ImagesConfig": "pertlearn.experiments.pipelines",
    "NeuripsConfig": "pertlearn.experiments.pipelines",
    "run": "pertlearn.experiments.pipelines",
    "validate_config": "pertlearn.experiments.pipelines",
    "Result": "pertlearn.experiments.result",
    "load_run": "pertlearn.experiments.loading",
    "read_metrics": "pertlearn.experiments.rundir",
    "read_tensors": "pertlearn.experiments.rundir",
    "build_model": "pertlearn.experiments.stages",
    "collect_results": "pertlearn.experiments.store",
    "write_results": "pertlearn.experiments.store",
    "load_sweep": "pertlearn.experiments.sweeps",
    "run_sweep": "pertlearn.experiments.execution",
}

__all__ = [
    "PIPELINES",
    "PRESETS",
    "AttackConfig",
    "ConfigError",
    "ExperimentConfig",
    "IclrArtificialConfig",
    "ImagesConfig",
    "ModelConfig",
    "NeuripsConfig",
    "Pipeline",
    "Result",
    "RunDirExistsError",
    "build_model",
    "collect_results",
    "load_config",
    "load_run",
    "load_sweep",
    "preset_tree",
    "read_metrics",
    "read_tensors",
    "register_pipeline",
    "run",
    "run_sweep",
    "sweep_presets",
    "validate_config",
    "write_results",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pertlearn.experiments' has no attribute {name!r}")
    # the built-in pipelines register themselves on import: the registry is complete before
    # any of these names is handed out
    importlib.import_module("pertlearn.experiments.pipelines")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
