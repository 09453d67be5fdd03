"""Named experiment presets at two scales: ``cpu`` (seconds to a minute on a laptop) and
``paper`` (the papers' sizes). A preset is a plain config tree; :func:`preset_config` validates
it. Later issues add presets by calling :func:`register_preset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pertlearn.experiments.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    deep_merge,
    read_toml,
)
from pertlearn.experiments.pipelines import validate_config

Scale = Literal["cpu", "paper"]
SCALES: tuple[Scale, ...] = ("cpu", "paper")


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    build: Callable[[Scale], dict[str, Any]]


PRESETS: dict[str, Preset] = {}


def register_preset(
    name: str, summary: str
) -> Callable[[Callable[[Scale], dict[str, Any]]], Preset]:
    """Decorator: register ``build(scale) -> config tree`` as preset ``name``."""

    def decorate(build: Callable[[Scale], dict[str, Any]]) -> Preset:
        preset = Preset(name, summary, build)
        PRESETS[name] = preset
        return preset

    return decorate


def preset_tree(name: str, scale: str = "cpu") -> dict[str, Any]:
    """The config tree of preset ``name`` at ``scale`` (unvalidated, ready for overrides)."""
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown preset {name!r}; {hint}run `pertlearn presets` to list them")
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    tree = PRESETS[name].build(scale)
    tree.setdefault("name", name)
    return tree


# ----------------------------------------------------------------- NeurIPS24 synthetic


def _neurips_synthetic(
    scale: Scale, data: str, scenario: str, eps_per_sqrt_dim: float, cpu_dim: int
) -> dict[str, Any]:
    """Spec §2: TwoLayerNet (ReLU), identity loss, SGD lr 1.0 momentum 0.9, 1000 full-batch
    epochs for f and g, ReduceLROnPlateau; ε = c·√d. Paper scale: d = N = 10000, m = 100."""
    dim, n_train = (cpu_dim, 1000) if scale == "cpu" else (10000, 10000)
    train = {"loss": "identity", "lr": 1.0, "momentum": 0.9, "epochs": 1000}
    return {
        "data": {"name": data, "dim": dim, "n_train": n_train, "n_test": 1000},
        "model": {"name": "two_layer", "width": 100, "slope": 0.0},
        "train_f": dict(train),
        "train_g": dict(train),
        "attack": {"name": "gradient_step", "eps_per_sqrt_dim": eps_per_sqrt_dim},
        "scenario": scenario,
    }


def _describe(tree: dict[str, Any], text: str) -> dict[str, Any]:
    tree["description"] = text
    return tree


@register_preset("quickstart", "neurips-shifted-gauss-a at cpu scale: d=100, m=100, N=1000, ε=0.01")
def _quickstart(scale: Scale) -> dict[str, Any]:
    tree = _neurips_synthetic("cpu", "shifted_gauss", "perturbation_only", 0.001, 100)
    return _describe(tree, "Quick perturbation-learning run on shifted Gaussians (scenario a)")


@register_preset(
    "neurips-shifted-gauss-a",
    "NeurIPS24 shifted Gaussians, g on perturbations only, ε=0.001·√d",
)
def _shifted_a(scale: Scale) -> dict[str, Any]:
    tree = _neurips_synthetic(scale, "shifted_gauss", "perturbation_only", 0.001, 100)
    return _describe(tree, "NeurIPS24 shifted Gaussians, scenario (a): x_adv = r")


@register_preset(
    "neurips-shifted-gauss-b",
    "NeurIPS24 shifted Gaussians, g on originals plus perturbations, ε=0.01·√d",
)
def _shifted_b(scale: Scale) -> dict[str, Any]:
    tree = _neurips_synthetic(scale, "shifted_gauss", "on_original", 0.01, 100)
    return _describe(tree, "NeurIPS24 shifted Gaussians, scenario (b): x_adv = x + r")


@register_preset(
    "neurips-gauss-a",
    "NeurIPS24 Gaussian noise with random labels, perturbations only, ε=0.001·√d (d=1000)",
)
def _gauss_a(scale: Scale) -> dict[str, Any]:
    tree = _neurips_synthetic(scale, "gauss", "perturbation_only", 0.001, 1000)
    return _describe(tree, "NeurIPS24 Gaussian inputs with random labels, scenario (a)")


@register_preset(
    "neurips-gauss-b",
    "NeurIPS24 Gaussian noise with random labels, originals plus perturbations, ε=0.1·√d",
)
def _gauss_b(scale: Scale) -> dict[str, Any]:
    tree = _neurips_synthetic(scale, "gauss", "on_original", 0.1, 1000)
    return _describe(tree, "NeurIPS24 Gaussian inputs with random labels, scenario (b)")


# ----------------------------------------------------------------------- loading


def load_config(
    source: str | Path | dict[str, Any] | None = None,
    *,
    preset: str | None = None,
    scale: str | None = None,
    overrides: Sequence[str] = (),
) -> ExperimentConfig:
    """Build a validated config, the way the CLI does.

    ``source`` is a TOML file path or a config tree. A tree (or file) may name a base
    ``preset`` and ``scale`` at its top; its other keys are merged over that preset. Without
    ``source`` and ``preset`` the ``quickstart`` preset is used. ``overrides`` are
    ``key=value`` strings applied last. Raises :class:`ConfigError` with a one-line message.
    """
    tree: dict[str, Any] = {}
    if source is not None:
        tree = read_toml(source) if isinstance(source, str | Path) else dict(source)
    base = tree.pop("preset", None)
    file_scale = tree.pop("scale", None)
    if preset is not None and base is not None and preset != base:
        raise ConfigError(f"the config file names preset {base!r} but --preset is {preset!r}")
    base = preset or base or (None if source is not None else "quickstart")
    if base is not None:
        tree = deep_merge(preset_tree(base, scale or file_scale or "cpu"), tree)
    elif scale is not None:
        raise ConfigError("--scale needs a preset: --preset NAME, or preset = NAME in the file")
    return validate_config(apply_overrides(tree, list(overrides)))


import pertlearn.experiments.presets_iclr  # noqa: E402  (ICLR24 artificial presets)
import pertlearn.experiments.presets_images  # noqa: E402, F401  (issue 5: image presets)
