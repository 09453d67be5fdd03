"""Experiments: per-pipeline configs, the pipelines, presets, sweeps and the run directory."""

from pertlearn.experiments.config import (
    AttackConfig,
    ConfigError,
    ExperimentConfig,
    ModelConfig,
)
from pertlearn.experiments.pipeline import PIPELINES, Pipeline, register_pipeline
from pertlearn.experiments.pipelines import (
    IclrArtificialConfig,
    ImagesConfig,
    NeuripsConfig,
    run,
    validate_config,
)
from pertlearn.experiments.presets import PRESETS, load_config, preset_tree, sweep_presets
from pertlearn.experiments.result import Result
from pertlearn.experiments.rundir import RunDirExistsError, read_metrics, read_tensors
from pertlearn.experiments.stages import build_model

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
    "load_config",
    "preset_tree",
    "read_metrics",
    "read_tensors",
    "register_pipeline",
    "run",
    "sweep_presets",
    "validate_config",
]
