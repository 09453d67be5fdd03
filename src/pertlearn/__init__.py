"""pertlearn: perturbation learning, from the papers' settings to your own data and models.

Quick use::

    import pertlearn
    config = pertlearn.load_config(preset="quickstart", overrides=["seed=3"])
    result = pertlearn.run(config)
    print(result.metrics["g_acc_test"], result.metrics["agreement"])
    result.save("runs/my-run")
    again = pertlearn.load_run("runs/my-run")  # the same Result, networks and all
    pertlearn.export_run("runs/my-run", to=["tensorboard"])  # needs pertlearn[tensorboard]

Sweeps from Python: ``pertlearn.run_sweep(pertlearn.load_sweep("neurips-shifted-gauss-a-dim"),
"runs/dim", workers=2)``; runs side by side: ``pertlearn.compare_runs(["runs/a", "runs/b"])``.

The names of ``__all__`` other than the two errors are loaded on first use (PEP 562), so that
``import pertlearn`` and the command line's help and listings do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pertlearn.errors import ConfigError, TrainingDivergedError

if TYPE_CHECKING:
    from pertlearn.experiments import (
        ExperimentConfig,
        Result,
        load_config,
        load_run,
        load_sweep,
        run,
        run_sweep,
    )
    from pertlearn.reports.compare import compare_runs
    from pertlearn.reports.tracking import export_run, export_sweep
    from pertlearn.training import TrainConfig

    __version__: str

_LAZY = {
    "ExperimentConfig": "pertlearn.experiments",
    "Result": "pertlearn.experiments",
    "load_config": "pertlearn.experiments",
    "load_run": "pertlearn.experiments",
    "run": "pertlearn.experiments",
    "load_sweep": "pertlearn.experiments",
    "run_sweep": "pertlearn.experiments",
    "compare_runs": "pertlearn.reports.compare",
    "export_run": "pertlearn.reports.tracking",
    "export_sweep": "pertlearn.reports.tracking",
    "TrainConfig": "pertlearn.training",
}

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "Result",
    "TrainConfig",
    "TrainingDivergedError",
    "__version__",
    "compare_runs",
    "export_run",
    "export_sweep",
    "load_config",
    "load_run",
    "load_sweep",
    "run",
    "run_sweep",
]


def _package_version() -> str:
    # lazy: importlib.metadata costs a noticeable share of a CLI start; only --version needs it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pertlearn")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _package_version()
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pertlearn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
