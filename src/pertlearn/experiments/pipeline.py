"""The pipeline contract and the registry that ``pipeline = NAME`` in a config looks up.

A pipeline is a config class (a subclass of :class:`ExperimentConfig` whose ``pipeline`` field
is its name), a function ``run(config, *, progress) -> Result`` and, for
:meth:`Result.load <pertlearn.experiments.result.Result.load>` to read its run directories back,
a function ``networks(config, metrics, *, model_factory) -> {name: nn.Module}`` building the
untrained networks of a run as ``run`` builds them. The built-in ones are
``neurips``, ``iclr_artificial`` and ``images``, registered by
:mod:`pertlearn.experiments.pipelines` (which also holds ``validate_config`` and ``run``); add
your own with :func:`register_pipeline`, no package file edited (in a plug-in,
:mod:`pertlearn.plugins`, every process knows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from pertlearn.experiments.config import ConfigError, ExperimentConfig
from pertlearn.experiments.result import Result
from pertlearn.plugins import load_plugins, note_registered, qualified_name


class RunFunction(Protocol):
    def __call__(self, config: Any, *, progress: bool = False) -> Result: ...


class NetworksFunction(Protocol):
    """``networks(config, metrics, *, model_factory)``: every network a run of ``config``
    trained (``f``, ``g``, each control, ...), keyed by the name its weights are saved under
    (``NAME.safetensors``), freshly built on the CPU exactly as the pipeline builds it before
    training; ``metrics`` are the run's (what the config does not say, e.g. the number of
    classes of a data file), ``model_factory`` the Python factory a run was built with."""

    def __call__(
        self, config: Any, metrics: dict[str, Any], *, model_factory: Any = None
    ) -> dict[str, nn.Module]: ...


@dataclass(frozen=True)
class Pipeline:
    """One experiment family: its ``name`` (the config's ``pipeline`` value), its validated
    ``config_class``, its ``run`` function and its ``networks`` function (``None``: its run
    directories are not loaded back with their networks)."""

    name: str
    config_class: type[ExperimentConfig]
    run: RunFunction
    summary: str = ""
    networks: NetworksFunction | None = None


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
    return qualified_name(pipeline.config_class), qualified_name(pipeline.run)


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
