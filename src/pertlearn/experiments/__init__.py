"""Experiments: configs, presets, the pipeline runner and the run directory."""

from pertlearn.experiments.config import (
    AttackConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
)
from pertlearn.experiments.presets import PRESETS, load_config, preset_tree, sweep_presets
from pertlearn.experiments.rundir import RunDirExistsError, read_metrics, read_tensors
from pertlearn.experiments.runner import Result, build_model, run

__all__ = [
    "PRESETS",
    "AttackConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "Result",
    "RunDirExistsError",
    "build_model",
    "load_config",
    "preset_tree",
    "read_metrics",
    "read_tensors",
    "run",
    "sweep_presets",
]
