"""Validated experiment configs (pydantic), TOML loading and ``--set key=value`` overrides.

An :class:`ExperimentConfig` describes one perturbation-learning run completely: data, model,
training of f and of g, attack, target labels, scenario, controls, seed and device. Unknown
keys, wrong types and impossible values are rejected with a message naming the key.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pertlearn.attacks import ATTACKS
from pertlearn.experiments.image_config import ImageExperimentConfig
from pertlearn.training.trainer import TrainConfig


class ConfigError(ValueError):
    """A config is invalid; the message is one line naming the key and the fix."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Built-in synthetic data (spec §2): ``gauss``, ``shifted_gauss`` or ``uniform``; real
    images ``mnist``, ``fashion_mnist``, ``cifar10`` (see the image fields below); or the
    user's own binary data set ``file`` (``path``, see :mod:`pertlearn.data.files`)."""

    name: Literal[
        "gauss", "shifted_gauss", "uniform", "mnist", "fashion_mnist", "cifar10", "file"
    ] = "shifted_gauss"
    path: str | None = Field(
        None, description="file: a .safetensors file with x_train, y_train (±1) [, x_test, y_test]"
    )
    dim: int = Field(100, ge=1, description="input dimension d")
    n_train: int = Field(1000, ge=2, description="training samples N")
    n_test: int = Field(1000, ge=1, description="fresh test samples (agreement, test accuracy)")
    shift: float = Field(0.3, description="shifted_gauss: class means ±shift·1_d")
    n_noise: int = Field(
        1000, ge=1, description="iclr_artificial: noise samples N_noise that g is trained on"
    )
    # Real images (issue 5). n_train / n_test cap the two parts of the split.
    classes: list[int] | None = Field(
        None, description="images: classes used, relabeled in this order (binary: first is +1)"
    )
    data_dir: str | None = Field(
        None, description="images: data directory (default $PERTLEARN_DATA, else the cache)"
    )
    split: float = Field(0.2, gt=0, lt=1, description="images, file: test fraction of the split")
    center: bool = Field(
        True, description="images, binary pipeline: subtract the data set's mean pixel"
    )

    @model_validator(mode="before")
    @classmethod
    def _image_dim(cls, data: Any) -> Any:
        from pertlearn.data.catalogue import DATASETS

        if isinstance(data, dict) and data.get("name") in DATASETS and "dim" not in data:
            data = {**data, "dim": DATASETS[data["name"]].dim}
        if isinstance(data, dict) and data.get("name") == "file":
            from pertlearn.data.files import tensor_file_dim

            if not data.get("path"):
                raise ValueError("data.name = 'file' needs data.path (a .safetensors file)")
            # The file decides the dimension (a preset's data.dim does not apply to it).
            data = {**data, "dim": tensor_file_dim(data["path"])}
        return data

    @model_validator(mode="after")
    def _image_checks(self) -> DataConfig:
        from pertlearn.data.catalogue import DATASETS

        info = DATASETS.get(self.name)
        if info is not None and self.dim != info.dim:
            raise ValueError(
                f"{self.name} images have dimension {info.dim}; set data.dim = {info.dim} "
                "or leave it out"
            )
        if info is not None and self.classes is not None:
            bad = [c for c in self.classes if not 0 <= c < info.num_classes]
            if bad or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
                raise ValueError(
                    f"classes must be at least two distinct classes in 0..{info.num_classes - 1}"
                    f", got {self.classes}"
                )
        return self


class ModelConfig(StrictModel):
    """``two_layer`` (NeurIPS24, with bias) or ``one_hidden`` (ICLR24, no bias, even width)."""

    name: Literal[
        "two_layer", "one_hidden", "small_cnn", "iclr_resnet", "wide_resnet", "custom"
    ] = "two_layer"
    width: int = Field(100, ge=1, description="hidden width m")
    slope: float = Field(0.0, ge=0, lt=1, description="LeakyReLU slope γ (0 = ReLU)")
    init_std: float | None = Field(
        None, ge=0, description="one_hidden: std of the first-layer weights (default 1/√d)"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="image models: keyword arguments (width, depth, widen, dropout, factory)",
    )

    @model_validator(mode="after")
    def _even_width(self) -> ModelConfig:
        if self.name == "one_hidden" and self.width % 2:
            raise ValueError(
                f"one_hidden needs an even width (two fixed readout halves), got {self.width}"
            )
        return self


class AttackConfig(StrictModel):
    """The attack that crafts the adversarial set. Give the budget either absolutely (``eps``)
    or as ``eps_per_sqrt_dim`` (ε = c·√d, the papers' scaling with input dimension)."""

    name: str = "gradient_step"
    eps: float | None = Field(None, ge=0)
    eps_per_sqrt_dim: float | None = Field(None, ge=0)
    options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of the attack class"
    )

    @field_validator("name")
    @classmethod
    def _known_attack(cls, name: str) -> str:
        if name not in ATTACKS:
            raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(sorted(ATTACKS))}")
        return name

    @model_validator(mode="after")
    def _one_budget(self) -> AttackConfig:
        if (self.eps is None) == (self.eps_per_sqrt_dim is None):
            raise ValueError("give exactly one of attack.eps and attack.eps_per_sqrt_dim")
        return self

    def resolve_eps(self, dim: int) -> float:
        """The budget ε for inputs of dimension ``dim``."""
        if self.eps is not None:
            return self.eps
        assert self.eps_per_sqrt_dim is not None
        return self.eps_per_sqrt_dim * math.sqrt(dim)


Scenario = Literal["perturbation_only", "on_original"]
Targets = Literal["balanced", "random", "flip"]
Control = Literal["control_random"]


class ExperimentConfig(StrictModel):
    """One perturbation-learning experiment (spec §1–2).

    ``targets``: ``balanced`` draws uniformly random ±1 target labels with exactly half of each
    sign (the default, see the README on degenerate g); ``random`` draws them i.i.d. (the
    papers' setting); ``flip`` uses ``-y``. ``scenario``: ``perturbation_only`` trains g on
    ``r_n`` alone (a), ``on_original`` on ``x_n + r_n`` (b).
    """

    name: str = "custom"
    description: str = ""
    pipeline: Literal["neurips", "iclr_artificial", "images"] = Field(
        "neurips", description="which experiment pipeline runs this config (see runner.PIPELINES)"
    )
    seed: int = Field(0, ge=0)
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    model_g: ModelConfig | None = Field(None, description="g's architecture; None: same as f")
    train_f: TrainConfig = Field(default_factory=TrainConfig)
    train_g: TrainConfig = Field(default_factory=TrainConfig)
    attack: AttackConfig = Field(default_factory=lambda: AttackConfig(eps=0.01))
    targets: Targets = "balanced"
    scenario: Scenario = "perturbation_only"
    controls: list[Control] = Field(default_factory=lambda: ["control_random"])  # type: ignore[arg-type]
    degenerate_threshold: float = Field(
        0.95, gt=0.5, le=1, description="g is degenerate when one sign exceeds this share"
    )
    save_tensors: bool = Field(True, description="write data and crafted inputs to the run dir")
    images: ImageExperimentConfig = Field(
        default_factory=ImageExperimentConfig,
        description="images pipeline: scenario, noise count, mini-batch training of f and g",
    )

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        if device != "auto" and device.split(":")[0] not in {"cpu", "cuda", "mps"}:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        return device

    @property
    def eps(self) -> float:
        """The resolved attack budget ε."""
        return self.attack.resolve_eps(self.data.dim)


# --------------------------------------------------------------------------- loading


_EXCLUSIVE = {"attack.eps": "attack.eps_per_sqrt_dim", "attack.eps_per_sqrt_dim": "attack.eps"}


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``3``, ``0.1``, ``true``, ``"x"``, ``[1, 2]``), else the raw
    string (so ``--set data.name=gauss`` needs no quotes)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def set_key(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree[a][b] = value`` for ``dotted = "a.b"``, creating tables on the way. Setting
    one of ``attack.eps`` / ``attack.eps_per_sqrt_dim`` clears the other."""
    if not dotted or any(not part for part in dotted.split(".")):
        raise ConfigError(f"invalid key {dotted!r}: use dotted names like model.width")
    *parents, last = dotted.split(".")
    node = tree
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {'.'.join(parents[: i + 1])} is not a table")
        node = child
    node[last] = value
    other = _EXCLUSIVE.get(dotted)
    if other is not None:
        node.pop(other.rsplit(".", 1)[1], None)


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``tree`` with each ``key=value`` of ``overrides`` applied in order."""
    tree = copy.deepcopy(tree)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. model.width=1000)"
            )
        set_key(tree, key.strip(), parse_value(text.strip()))
    return tree


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively by ``update`` (tables merge, other values replace)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def format_validation_error(err: ValidationError) -> str:
    """The first problem of ``err`` as one line naming its key (and the count of the rest)."""
    first = err.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "config"
    given = ""
    if first["type"] == "extra_forbidden":
        message = "unknown key; check its spelling (see `pertlearn presets --show NAME`)"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if not isinstance(first.get("input"), dict):
            given = f" (got {first.get('input')!r})"
    more = f" [and {err.error_count() - 1} more]" if err.error_count() > 1 else ""
    return f"invalid config: {location}: {message}{given}{more}"


def validate_config(tree: dict[str, Any]) -> ExperimentConfig:
    """Validate a config tree; raise :class:`ConfigError` with a one-line message."""
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or a syntax error raises :class:`ConfigError`."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
