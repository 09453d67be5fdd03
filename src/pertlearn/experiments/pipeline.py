"""The pipeline contract and the registry that ``pipeline = NAME`` in a config looks up.

A pipeline is a config class (a subclass of :class:`ExperimentConfig` whose ``pipeline`` field
is its name) and a function ``run(config, *, progress) -> Result``. The built-in ones are
``neurips``, ``iclr_artificial`` and ``images``, registered by
:mod:`pertlearn.experiments.pipelines` (which also holds ``validate_config`` and ``run``); add
your own with :func:`register_pipeline`, no package file edited (in a plug-in,
:mod:`pertlearn.plugins`, every process knows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pertlearn.experiments.config import ConfigError, ExperimentConfig
from pertlearn.experiments.result import Result
from pertlearn.plugins import load_plugins, note_registered


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
"""``pipeline`` name → :class:`Pipeline` (filled by :func:`register_pipeline`): the pipelines
registered so far; :func:`pipeline_of` and :func:`pipeline_names` load the plug-ins first."""


def register_pipeline(pipeline: Pipeline) -> Pipeline:
    """Make ``pipeline`` available to configs as ``pipeline = "<name>"``. A name another
    pipeline holds raises ValueError; registering the same pipeline again (the same object,
    or the same config class and run function, as when its module is reloaded) replaces it."""
    field = pipeline.config_class.model_fields["pipeline"]
    if field.default != pipeline.name:
        raise ValueError(
            f"{pipeline.config_class.__name__}.pipeline must default to {pipeline.name!r}"
        )
    existing = PIPELINES.get(pipeline.name)
    if existing is not None and _code_of(existing) != _code_of(pipeline):
        raise ValueError(
            f"pipeline name {pipeline.name!r} is taken by {_code_of(existing)[1]}; give "
            f"{pipeline.config_class.__name__} a pipeline name of its own"
        )
    PIPELINES[pipeline.name] = pipeline
    note_registered("pipeline", pipeline.name, pipeline.config_class.__module__)
    return pipeline


def _code_of(pipeline: Pipeline) -> tuple[str, str]:
    """The qualified names of a pipeline's config class and run function."""
    cls, run = pipeline.config_class, pipeline.run
    run_name = getattr(run, "__qualname__", type(run).__qualname__)
    return (f"{cls.__module__}.{cls.__qualname__}", f"{run.__module__}.{run_name}")


def pipeline_names() -> list[str]:
    """The names of the registered pipelines, built-in and from plug-ins, sorted."""
    load_plugins()
    return sorted(PIPELINES)


def pipeline_of(name: str) -> Pipeline:
    """The registered pipeline ``name`` (plug-ins loaded first); :class:`ConfigError` naming
    the choices otherwise."""
    names = pipeline_names()
    if name not in names:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of {', '.join(names)}")
    return PIPELINES[name]
