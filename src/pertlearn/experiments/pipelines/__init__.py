"""The built-in pipelines, registered under their config's ``pipeline`` name.

==================  ==========================================  ==============================
``neurips``         :mod:`.neurips` (NeurIPS24, binary data)     :class:`NeuripsConfig`
``iclr_artificial`` :mod:`.iclr_artificial` (ICLR24, artificial)  :class:`IclrArtificialConfig`
``images``          :mod:`.images` (ICLR24 images, D_rand/D_det)  :class:`ImagesConfig`
==================  ==========================================  ==============================
"""

from typing import Any

from pydantic import ValidationError

from pertlearn.experiments.config import ConfigError, ExperimentConfig, format_validation_error
from pertlearn.experiments.pipeline import Pipeline, pipeline_of, register_pipeline
from pertlearn.experiments.pipelines.iclr_artificial import (
    IclrArtificialConfig,
    iclr_artificial_networks,
    run_iclr_artificial,
)
from pertlearn.experiments.pipelines.images import ImagesConfig, images_networks, run_images
from pertlearn.experiments.pipelines.neurips import NeuripsConfig, neurips_networks, run_neurips
from pertlearn.experiments.result import Result

register_pipeline(
    Pipeline(
        "neurips",
        NeuripsConfig,
        run_neurips,
        "NeurIPS24: two-layer nets, binary data",
        networks=neurips_networks,
    )
)
register_pipeline(
    Pipeline(
        "iclr_artificial",
        IclrArtificialConfig,
        run_iclr_artificial,
        "ICLR24: one-hidden-layer nets, learning from perturbed noise",
        networks=iclr_artificial_networks,
    )
)
register_pipeline(
    Pipeline(
        "images",
        ImagesConfig,
        run_images,
        "ICLR24 / Ilyas et al.: CNNs on images",
        networks=images_networks,
    )
)


def validate_config(tree: dict[str, Any]) -> ExperimentConfig:
    """Validate a config tree with the config class of its ``pipeline`` (default ``neurips``);
    raise :class:`ConfigError` with a one-line message naming the key."""
    name = tree.get("pipeline", "neurips")
    if not isinstance(name, str):
        raise ConfigError(f"invalid config: pipeline must be a string, got {name!r}")
    pipeline = pipeline_of(name)
    try:
        return pipeline.config_class.model_validate({**tree, "pipeline": name})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, name)) from None
    except RecursionError:
        raise ConfigError("invalid config: nested too deeply") from None


def run(config: ExperimentConfig, *, progress: bool = False) -> Result:
    """Run one experiment with the pipeline ``config.pipeline`` and return its :class:`Result`
    (``progress``: bars on stderr).

    ``config`` is a config of its pipeline's class (from :func:`pertlearn.load_config`, or e.g.
    ``NeuripsConfig(...)``); a dict, a file name or the bare :class:`ExperimentConfig` is a
    ``TypeError``. It is validated again first, so that a change no assignment check saw
    (``config.controls.append(...)``, ``config.model_copy(update=...)``, a section's key set
    to a value the whole config refuses) is a :class:`ConfigError` and not a run of another
    experiment."""
    if not isinstance(config, ExperimentConfig):
        raise TypeError(
            f"run() takes a validated config, got {type(config).__name__}; build one with "
            "pertlearn.load_config(...)"
        )
    pipeline = pipeline_of(config.pipeline)
    if not isinstance(config, pipeline.config_class):
        name = pipeline.config_class.__name__
        raise TypeError(
            f"run() takes a {config.pipeline} pipeline config of class {name}, got "
            f"{type(config).__name__}; build one with pertlearn.load_config(...) or {name}(...)"
        )
    validate_config(config.model_dump(mode="json"))
    return pipeline.run(config, progress=progress)


__all__ = [
    "IclrArtificialConfig",
    "ImagesConfig",
    "NeuripsConfig",
    "run",
    "run_iclr_artificial",
    "run_images",
    "run_neurips",
    "validate_config",
]
