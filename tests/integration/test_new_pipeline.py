"""A new experiment family added through the public API only (no package file edited),
validated, run end to end from a config, written as a run directory and loaded back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from pydantic import Field
from torch import nn

import pertlearn
from pertlearn.attacks import make_attack
from pertlearn.errors import RunDirError
from pertlearn.experiments import (
    AttackConfig,
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    Pipeline,
    Result,
    register_pipeline,
    validate_config,
)
from pertlearn.experiments.config import StrictModel
from pertlearn.experiments.stages import binary_networks, binary_targets, craft, train_fresh
from pertlearn.metrics import accuracy
from pertlearn.seeding import stage_generator
from pertlearn.training import TrainConfig


class ToyData(StrictModel):
    dim: int = Field(20, ge=1)
    n_train: int = Field(200, ge=2)


class ToyConfig(ExperimentConfig):
    """Points on two sides of a hyperplane; g learns from perturbations with random targets."""

    pipeline: Literal["toy_halfspace"] = "toy_halfspace"
    data: ToyData = Field(default_factory=ToyData)
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(width=20))
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=100, lr=0.5))
    attack: AttackConfig = Field(default_factory=lambda: AttackConfig(eps=0.5))


def run_toy(config: ToyConfig, *, progress: bool = False) -> Result:
    gen = stage_generator(config.seed, "data_train")
    x = torch.randn(config.data.n_train, config.data.dim, generator=gen)
    y = torch.where(x[:, 0] > 0, 1.0, -1.0)
    device = torch.device("cpu")
    f, f_history = train_fresh(
        "f", config.model, x, y, config.train, seed=config.seed, device=device
    )
    y_adv = binary_targets("balanced", x.shape[0], config.seed, x.dtype)
    x_adv = craft(make_attack(config.attack.name, config.eps), f, x, y_adv, config.seed)
    g, g_history = train_fresh(
        "g", config.model, x_adv - x, y_adv, config.train, seed=config.seed, device=device
    )
    metrics: dict[str, Any] = {"f_acc_train": accuracy(f, x, y), "g_acc_train": accuracy(g, x, y)}
    return Result(config, metrics, {"f": f, "g": g}, {"f": f_history, "g": g_history})


def toy_networks(
    config: ToyConfig, metrics: dict[str, Any], *, model_factory: Any = None
) -> dict[str, nn.Module]:
    """f and g untrained, as ``run_toy`` builds them (``train_fresh`` seeds ``init_NAME``)."""
    return binary_networks(
        config.model,
        config.model,
        config.data.dim,
        seed=config.seed,
        dtype=torch.float32,
        stages={"f": "f", "g": "g"},
    )


@pytest.fixture
def toy_pipeline() -> Any:
    pipeline = register_pipeline(
        Pipeline("toy_halfspace", ToyConfig, run_toy, "a toy family", networks=toy_networks)
    )
    yield pipeline
    pertlearn.experiments.PIPELINES.pop("toy_halfspace")


def test_a_toy_family_runs_end_to_end(toy_pipeline: Pipeline, tmp_path: Path) -> None:
    config = pertlearn.load_config(
        {"pipeline": "toy_halfspace", "seed": 1}, overrides=["data.dim=10"]
    )
    assert isinstance(config, ToyConfig) and config.data.dim == 10
    result = pertlearn.run(config)
    assert result.metrics["f_acc_train"] > 0.9
    assert result.metrics["g_acc_train"] > 0.5  # g learns f's half-space from perturbations
    out = result.save(tmp_path / "run")
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["pipeline"] == "toy_halfspace" and set(saved) >= {"data", "train", "attack"}
    loaded = Result.load(out)
    assert isinstance(loaded.config, ToyConfig) and loaded.metrics == result.metrics
    z = torch.randn(7, 10, generator=torch.Generator().manual_seed(0))
    for name in ("f", "g"):
        assert torch.equal(loaded.models[name](z), result.models[name](z))
    register_pipeline(Pipeline("toy_halfspace", ToyConfig, run_toy))  # without networks
    with pytest.raises(RunDirError, match="'toy_halfspace' registers no networks function"):
        Result.load(out)


def test_a_toy_family_rejects_keys_of_other_pipelines(toy_pipeline: Pipeline) -> None:
    with pytest.raises(ConfigError, match="scenario: unknown key for the toy_halfspace pipeline"):
        validate_config({"pipeline": "toy_halfspace", "scenario": "on_original"})


def test_an_unknown_pipeline_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown pipeline 'nope'; choose one of .*neurips"):
        validate_config({"pipeline": "nope"})


def test_a_pipeline_name_is_not_given_to_another_pipeline(toy_pipeline: Pipeline) -> None:
    """Registering the same pipeline again (as a plug-in's module reloaded would) is harmless;
    another config class or run function under a taken name is refused, naming the holder."""
    assert register_pipeline(toy_pipeline) is toy_pipeline
    assert register_pipeline(Pipeline("toy_halfspace", ToyConfig, run_toy)).summary == ""

    class OtherToyConfig(ToyConfig):
        pipeline: Literal["toy_halfspace"] = "toy_halfspace"

    with pytest.raises(ValueError, match=r"pipeline name 'toy_halfspace' is taken by .*run_toy"):
        register_pipeline(Pipeline("toy_halfspace", OtherToyConfig, run_toy))
    with pytest.raises(ValueError, match=r"pipeline name 'neurips' is taken"):
        register_pipeline(Pipeline("neurips", pertlearn.experiments.NeuripsConfig, run_toy))
    assert pertlearn.experiments.PIPELINES["neurips"].run is not run_toy
