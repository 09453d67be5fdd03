"""The pipeline contract and the registry that ``pipeline = NAME`` in a config looks up.

A pipeline is a config class (a subclass of :class:`ExperimentConfig` whose ``pipeline`` field
is its name), a function ``run(config, *, progress) -> Result`` and, for
:meth:`Result.load <pertlearn.experiments.result.Result.load>` to read its run directories back,
a function ``networks(config, metrics, *, model_factory) -> {name: nn.Module}`` building the
untrained networks of a run as ``run`` builds them. The built-in ones are
``neurips``, ``iclr_artificial`` and ``images``, registered by
:mod:`pertlearn.experiments.pipelines` (which also holds ``validate_config`` and ``run``); add
your own with :func:`register_pipeline`, no package file edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from pertlearn.experiments.config import ConfigError, ExperimentConfig
from pertlearn.experiments.result import Result


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
