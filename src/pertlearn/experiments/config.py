"""Validated experiment configs: the sections every pipeline shares, the base config, and the
one merge / override / TOML path that ``run``, ``sweep`` and the Python API use.

Each pipeline defines its own config class (a subclass of :class:`ExperimentConfig` with
``pipeline`` fixed to its name, in ``pertlearn.experiments.pipelines``); a key that the chosen
pipeline does not use is an error naming the key and the pipeline. Unknown keys, wrong types
and impossible values are rejected with one line naming the key.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pertlearn.attacks import attack_class, attack_options, make_attack
from pertlearn.errors import ConfigError
from pertlearn.experiments.config_tree import (
    ATTACK_BUDGETS,
    MAX_CONFIG_BYTES,
    apply_overrides,
    deep_merge,
    parse_value,
    read_config_file,
    read_toml,
    set_key,
)
from pertlearn.training.config import StrictConfig

__all__ = [
    "DEVICE_KINDS",
    "MAX_CONFIG_BYTES",
    "AttackConfig",
    "ConfigError",
    "ExperimentConfig",
    "ModelConfig",
    "PathSetting",
    "StrictModel",
    "apply_overrides",
    "deep_merge",
    "format_validation_error",
    "parse_value",
    "read_config_file",
    "read_toml",
    "set_key",
]


class StrictModel(StrictConfig):
    """A config section: unknown keys, wrong types (no coercion of ``true`` to ``1``) and
    non-finite floats are rejected when it is built and when a key is assigned; a refused
    assignment leaves it as it was (:class:`~pertlearn.training.config.StrictConfig`)."""


def _absolute(path: str | None) -> str | None:
    """``path`` (``~`` expanded) made absolute against the current directory, normalised
    (``..`` removed, symbolic links kept)."""
    return None if path is None else os.path.abspath(os.path.expanduser(path))


PathSetting = Annotated[str | None, AfterValidator(_absolute)]
"""A config value naming a file or folder (:data:`~.config_tree.PATH_KEYS`), held absolute:
a relative one is read relative to the current directory (a config file's relative paths were
already joined onto its folder), so the config names the same file from any directory."""


class ModelConfig(StrictModel):
    """Binary networks: ``two_layer`` (NeurIPS24, with bias) or ``one_hidden`` (ICLR24, no
    bias, even width)."""

    name: Literal["two_layer", "one_hidden"] = "two_layer"
    width: int = Field(100, ge=1, le=1_000_000, description="hidden width m")
    slope: float = Field(0.0, ge=0, lt=1, description="LeakyReLU slope γ (0 = ReLU)")
    init_std: float | None = Field(
        None, ge=0, description="one_hidden: std of the first-layer weights (default 1/√d)"
    )

    @model_validator(mode="after")
    def _even_width(self) -> ModelConfig:
        if self.name == "one_hidden" and self.width % 2:
            raise ValueError(
                f"one_hidden needs an even width (two fixed readout halves), got {self.width}"
            )
        return self


class AttackConfig(StrictModel):
    """The attack that crafts the adversarial set. Give the budget absolutely (``eps``), as
    ``eps_per_sqrt_dim`` (ε = c·√d, the papers' scaling of L2 budgets with the input dimension)
    or as ``eps_per_dim`` (ε = round(c·d), e.g. an L0 budget of 5% of the coordinates)."""

    name: str = "gradient_step"
    eps: float | None = Field(None, ge=0)
    eps_per_sqrt_dim: float | None = Field(None, ge=0)
    eps_per_dim: float | None = Field(None, ge=0, le=1)
    options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of the attack class"
    )

    def __setattr__(self, name: str, value: Any) -> None:
        """Setting one budget (``eps``, ``eps_per_sqrt_dim``, ``eps_per_dim``) to a number
        clears the others, as ``overrides=["attack.eps=0.1"]`` does."""
        if name not in ATTACK_BUDGETS or value is None:
            super().__setattr__(name, value)
            return
        before = dict(self.__dict__)
        for other in ATTACK_BUDGETS:
            if other != name:
                self.__dict__[other] = None
        try:
            super().__setattr__(name, value)
        except ConfigError:
            self.__dict__.update(before)
            raise

    @field_validator("name")
    @classmethod
    def _known_attack(cls, name: str) -> str:
        attack_class(name)  # ValueError naming the registered attacks
        return name

    @field_validator("eps", mode="before")
    @classmethod
    def _eps_number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_budget(self) -> AttackConfig:
        given = [v for v in (self.eps, self.eps_per_sqrt_dim, self.eps_per_dim) if v is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of attack.eps, attack.eps_per_sqrt_dim and attack.eps_per_dim"
            )
        self._check_options()
        return self

    def _check_options(self) -> None:
        """Build the attack once, so that a misspelt option or an impossible value is an error
        of the config, not of the run after f is trained. A budget given per dimension stands
        in as 1 (its sign is what the attacks check; the dimension is not known here)."""
        if self.eps is not None:
            eps = self.eps
        elif self.eps_per_dim is not None:
            eps = 1.0  # resolve_eps: at least one coordinate
        else:
            eps = 1.0 if self.eps_per_sqrt_dim else 0.0
        known = attack_options(self.name)
        unknown = [key for key in self.options if known is not None and key not in known]
        if unknown:
            raise ValueError(
                f"attack.options.{unknown[0]} is not an option of attack {self.name!r} (it "
                f"takes: {', '.join(known or []) or 'none'}); fix or remove it (attack.options "
                "= {} drops the options a preset set for its own attack)"
            )
        make_attack(self.name, eps, **self.options)

    def resolve_eps(self, dim: int) -> float:
        """The budget ε for inputs of dimension ``dim``."""
        if self.eps is not None:
            return self.eps
        if self.eps_per_dim is not None:
            return float(max(1, round(self.eps_per_dim * dim)))
        assert self.eps_per_sqrt_dim is not None
        return self.eps_per_sqrt_dim * math.sqrt(dim)


DEVICE_KINDS = ("cpu", "cuda")


class ExperimentConfig(StrictModel):
    """What every experiment config holds; each pipeline's config class adds its sections
    (``data``, ``model``, ``train_f``, ``train_g``, ``attack``, ``controls``, ...)."""

    name: str = "custom"
    description: str = ""
    pipeline: str = "neurips"
    seed: int = Field(0, ge=0, lt=2**63)
    device: str = Field(
        "auto",
        description="auto (CUDA when available, else CPU), cpu, cuda or cuda:N; run ids and "
        "config.json use the resolved device",
    )
    dtype: Literal["float32", "float64"] = "float32"
    save_tensors: bool = Field(True, description="write data and crafted inputs to the run dir")

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        kind, _, index = device.partition(":")
        if device == "auto" or (
            kind in DEVICE_KINDS and (not index or (kind == "cuda" and index.isdigit()))
        ):
            return device
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")

    @property
    def eps(self) -> float:
        """The resolved attack budget ε (pipelines with an attack and a data dimension)."""
        attack: AttackConfig = getattr(self, "attack")  # noqa: B009
        return attack.resolve_eps(getattr(self, "data").dim)  # noqa: B009

    @property
    def crafts_with_attack(self) -> bool:
        """Whether the run crafts its training set for g with ``attack`` (so that :attr:`eps`
        is the budget of what g learns from); the constructed image scenarios do not."""
        return True


def format_validation_error(err: ValidationError, pipeline: str | None = None) -> str:
    """The first problem of ``err`` as one line naming its key (and the count of the rest)."""
    first = err.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "config"
    given = ""
    if first["type"] == "extra_forbidden":
        where = f"the {pipeline} pipeline" if pipeline else "this config"
        message = (
            f"unknown key for {where}; check its spelling and the pipeline's keys "
            "(`pertlearn presets --show NAME`, docs/config-reference.md)"
        )
    else:
        message = first["msg"].removeprefix("Value error, ")
        if not isinstance(first.get("input"), dict):
            text = repr(first.get("input"))
            given = f" (got {text[:80]}{'...' if len(text) > 80 else ''})"
    more = f" [and {err.error_count() - 1} more]" if err.error_count() > 1 else ""
    return f"invalid config: {location}: {message}{given}{more}"
