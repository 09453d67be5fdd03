"""pertlearn: perturbation learning, from the papers' settings to your own data and models.

Quick use::

    import pertlearn
    config = pertlearn.load_config(preset="quickstart", overrides=["seed=3"])
    result = pertlearn.run(config)
    print(result.metrics["g_acc_test"], result.metrics["agreement"])
    result.save("runs/my-run")
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pertlearn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from pertlearn.experiments import (
    ConfigError,
    ExperimentConfig,
    Result,
    load_config,
    run,
)
from pertlearn.training import TrainConfig, TrainingDivergedError

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "Result",
    "TrainConfig",
    "TrainingDivergedError",
    "__version__",
    "load_config",
    "run",
]
