"""The pipeline contract and the registry that ``pipeline = NAME`` in a config looks up.

A pipeline is a config class (a subclass of :class:`ExperimentConfig` whose ``pipeline`` field
is its name) and a function ``run(config, *, progress) -> Result``. The built-in ones are
``neurips``, ``iclr_artificial`` and ``images``, registered by
:mod:`pertlearn.experiments.pipelines` (which also holds ``validate_config`` and ``run``); add
your own with :func:`register_pipeline`, no package file edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pertlearn.experiments.config import ConfigError, ExperimentConfig
from pertlearn.experiments.result import Result


class RunFunction(Protocol):
    def __call__(self, config: Any, *, progress: bool = False) -> Result: ...


@dataclass(frozen=True)
class Pipeline:
    """One experiment family: its ``name`` (the config's ``pipeline`` value), its validated
    ``config_class`` and its ``run`` function."""

    name: str
    config_class: type[ExperimentConfig]
    run: RunFunction
    summary: str = ""


PIPELINES: dict[str, Pipeline] = {}
"""``pipeline`` name → :class:`Pipeline` (filled by :func:`register_pipeline`)."""


def register_pipeline(pipeline: Pipeline) -> Pipeline:
    """Make ``pipeline`` available to configs as ``pipeline = "<name>"`` (replacing a
    registered pipeline of the same name)."""
    field = pipeline.config_class.model_fields["pipeline"]
    if field.default != pipeline.name:
        raise ValueError(
            f"{pipeline.config_class.__name__}.pipeline must default to {pipeline.name!r}"
        )
    PIPELINES[pipeline.name] = pipeline
    return pipeline


def pipeline_of(name: str) -> Pipeline:
    """The registered pipeline ``name``; :class:`ConfigError` naming the choices otherwise."""
    if name not in PIPELINES:
        raise ConfigError(
            f"unknown pipeline {name!r}; choose one of {', '.join(sorted(PIPELINES))}"
        )
    return PIPELINES[name]
