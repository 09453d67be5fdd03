"""Common checks run over every built-in preset (the scikit-learn way: one contract, every
estimator): each preset, shrunk to a few seconds, runs end to end, writes a run directory that
follows the metrics contract (docs/metrics.md), loads back (``Result.load``) to networks that
compute what the trained ones do, and its saved config reruns to the same numbers.

Shrinking keeps what makes a preset itself (pipeline, scenario, data set, model, attack and its
norm, controls, adversarial training, robust evaluation, filters) and cuts only sizes: images,
epochs, attack steps, widths. Image data sets come from :func:`every_dataset_dir` (the in-repo
MNIST digits; random images in the official Fashion-MNIST and CIFAR-10 file formats), so the
checks run in a clone with nothing beside it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from image_data_support import every_dataset_dir
from pertlearn import Result, load_config, run
from pertlearn.experiments import ExperimentConfig
from pertlearn.experiments.presets import presets
from pertlearn.experiments.rundir import read_run

BINARY_KEYS = {
    "f_acc_train",
    "g_acc_train",
    "agreement",
    "fooling_rate",
    "g_fit_acc",
    "g_majority_share",
    "g_degenerate",
    "eps",
    "seconds",
}
"""Metrics of every binary run (``neurips``, ``iclr_artificial``), docs/metrics.md."""

NEURIPS_KEYS = {"f_acc_test", "g_acc_test"}
"""Test accuracies, which only ``neurips`` has (``iclr_artificial``'s labels are random)."""

IMAGES_KEYS = {
    "f_acc_train",
    "f_acc_test",
    "g_acc_train",
    "g_acc_test",
    "agreement",
    "fooling_rate",
    "fooling_rate_per_class",
    "g_best_acc_test",
    "g_best_epoch",
    "chance",
    "n_train",
    "n_test",
    "n_adv",
    "scenario",
    "num_classes",
    "eps",
    "seconds",
}
"""Metrics of every ``images`` run, docs/metrics.md."""

SHARE_WORDS = ("acc", "rate", "share", "agreement", "chance")
"""A metric whose name holds one of these is a share of samples: in [0, 1]."""


PAPER_NETWORKS_SHRUNK = {
    "small_cnn": ["model.options.width=4"],
    "mlp": ["model.options.hidden=16"],
    "wide_resnet": ["model.options.depth=10", "model.options.widen=1"],
    "iclr_resnet": [],  # one residual block per stage already (its paper size)
}
"""Per image network: overrides that keep its class and shrink its size."""


def shrink(name: str, data_dir: Path, scale: str = "cpu") -> list[str]:
    """Overrides that cut preset ``name`` at ``scale`` down to a few seconds of work."""
    config = load_config(preset=name, scale=scale)
    if config.pipeline == "neurips":
        sizes = ["data.n_train=80", "data.n_test=60", "model.width=16"]
        if config.data.name in ("gauss", "shifted_gauss"):
            sizes.append("data.dim=50")
        else:
            sizes.append(f"data.data_dir={data_dir}")
        return [*sizes, "train_f.epochs=20", "train_g.epochs=20"]
    if config.pipeline == "iclr_artificial":
        return [
            "data.dim=200",
            "data.n_train=20",
            "data.n_noise=40",
            "data.n_test=60",
            "model.width=16",
            "train_f.epochs=30",
            "train_g.epochs=30",
        ]
    assert config.pipeline == "images", config.pipeline
    # at paper scale the residual networks cost far more per image: fewer images still
    n_train, n_test, n_noise, batch, n_robust = (60, 40, 60, 32, 20)
    if scale == "paper":
        n_train, n_test, n_noise, batch, n_robust = (20, 10, 20, 10, 10)
    overrides = [
        f"data.data_dir={data_dir}",
        f"data.n_train={n_train}",
        f"data.n_test={n_test}",
        f"data.n_noise={n_noise}",
        *PAPER_NETWORKS_SHRUNK[config.model.name],
        "train_f.epochs=2",
        "train_g.epochs=1",
        f"train_f.batch_size={batch}",
        f"train_g.batch_size={batch}",
        "attack.options.steps=2",
    ]
    if config.scenario in ("robust", "non_robust"):
        overrides.append("construction.steps=2")
    if config.train_f.adversarial is not None:
        overrides.append("train_f.adversarial.steps=1")
    if config.robust_eval is not None:
        overrides += [f"robust_eval.n_test={n_robust}", "robust_eval.steps=2"]
    return overrides


def expected_keys(config: ExperimentConfig) -> set[str]:
    """The metric keys docs/metrics.md promises for ``config``."""
    own_file = {"data_sha256"} if config.data.name == "file" else set()
    if config.pipeline != "images":
        keys = set(BINARY_KEYS) | own_file
        for control in config.controls:
            keys.add(f"{control_prefix(control)}_acc_train")
        if config.pipeline == "neurips":
            keys |= NEURIPS_KEYS
            keys |= {f"{control_prefix(control)}_acc_test" for control in config.controls}
        return keys
    keys = set(IMAGES_KEYS) | own_file
    for control in config.controls:
        keys |= {f"{control_prefix(control)}_acc_test", f"{control_prefix(control)}_best_acc_test"}
    if config.robust_eval is not None:
        keys |= {"f_robust_acc", "g_robust_acc"}
    if config.scenario in ("robust", "non_robust"):
        keys |= {"construct_distance_start", "construct_distance_final"}
    return keys


def control_prefix(control: str) -> str:
    """The metric prefix of a control: ``control_g`` for the pipeline's noise control, its
    own name for ``mislabeled_clean``."""
    return "mislabeled_clean" if control == "mislabeled_clean" else "control_g"


def check_values(metrics: dict[str, Any]) -> None:
    """Every number is finite; every share of samples lies in [0, 1]."""
    for key, value in metrics.items():
        values = value.values() if isinstance(value, dict) else [value]
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            assert math.isfinite(item), (key, item)
            if any(word in key for word in SHARE_WORDS):
                assert 0.0 <= item <= 1.0, (key, item)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return every_dataset_dir(tmp_path_factory.mktemp("data"))


def paper_scale_kinds() -> list[str]:
    """One preset per kind of paper-scale run: pipeline, data set, network, scenario, and
    whether f is trained adversarially and the training set constructed. The presets of a kind
    differ in the attack's norm and budget, which the cpu-scale checks run for every preset."""
    kinds: dict[tuple[Any, ...], str] = {}
    for name in presets():
        config = load_config(preset=name, scale="paper")
        kind = (
            config.pipeline,
            config.data.name,
            config.model.name,
            getattr(config, "scenario", None),
            getattr(config.train_f, "adversarial", None) is None,
            getattr(config, "construction", None) is None,
        )
        kinds.setdefault(kind, name)
    return list(kinds.values())


@pytest.mark.parametrize("name", paper_scale_kinds())
def test_every_kind_of_paper_scale_run_runs_with_its_settings(name: str, data_dir: Path) -> None:
    """The paper-scale settings (augmentation, dropout, adversarial training, the residual
    networks, the papers' budgets and controls) run end to end at a tiny size: only sizes,
    epochs, steps and the networks' depth and width are cut, the network class is kept."""
    paper = load_config(preset=name, scale="paper")
    config = load_config(preset=name, scale="paper", overrides=shrink(name, data_dir, "paper"))
    assert config.model.name == paper.model.name
    if config.pipeline != "images":
        assert config.attack.name == paper.attack.name
    else:
        assert (config.scenario, config.attack.name, config.attack.eps, config.controls) == (
            paper.scenario,
            paper.attack.name,
            paper.attack.eps,
            paper.controls,
        )
        assert (config.train_f.augment, config.train_f.adversarial is None) == (
            paper.train_f.augment,
            paper.train_f.adversarial is None,
        )
    metrics = dict(run(config).metrics)
    missing = expected_keys(config) - set(metrics)
    assert not missing, f"{name}: metrics lack {sorted(missing)}"
    check_values(metrics)


@pytest.mark.parametrize("name", list(presets()))
def test_every_preset_runs_and_reruns_from_its_run_directory(
    name: str, data_dir: Path, tmp_path: Path
) -> None:
    config = load_config(preset=name, overrides=shrink(name, data_dir))
    result = run(config)

    metrics = dict(result.metrics)
    missing = expected_keys(config) - set(metrics)
    assert not missing, f"{name}: metrics lack {sorted(missing)}"
    check_values(metrics)

    saved = read_run(result.save(tmp_path / "run"))
    assert {key: saved.metrics.get(key) for key in metrics} == metrics
    for network in ("f", "g"):
        assert (saved.path / f"{network}.safetensors").is_file()
    assert (saved.path / "tensors.safetensors").is_file() == config.save_tensors

    loaded = Result.load(saved.path)  # the run back in Python: its networks compute the same
    assert loaded.metrics == metrics
    with torch.no_grad():
        for network in ("f", "g"):
            trained = result.models[network].eval()
            for key in ("x_train", "x_test"):
                x = result.tensors[key]
                assert torch.equal(loaded.models[network](x), trained(x)), (name, network, key)

    again = run(load_config(saved.path)).metrics  # as `pertlearn run RUN_DIR` does
    metrics.pop("seconds"), again.pop("seconds")
    assert again == metrics, f"{name}: the saved config reran to other numbers"


@pytest.mark.parametrize("preset", ["quickstart", "iclr-mnist-natural-rand-l2"])
def test_a_run_on_an_own_data_file_follows_the_contract(preset: str, tmp_path: Path) -> None:
    """Both pipelines that read a data file (``data.name = "file"``) record its SHA-256."""
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "own.safetensors"
    if preset == "quickstart":
        y = torch.tensor([1.0, -1.0]).repeat(30)
        save_file({"x_train": torch.randn(60, 8, generator=gen), "y_train": y}, str(path))
        sizes = ["model.width=16", "train_f.epochs=5", "train_g.epochs=5"]
    else:
        x = torch.randint(0, 256, (60, 1, 8, 8), generator=gen, dtype=torch.uint8)
        save_file({"x_train": x, "y_train": torch.arange(60) % 3}, str(path))
        sizes = [*PAPER_NETWORKS_SHRUNK["small_cnn"], "train_f.epochs=1", "train_g.epochs=1"]
        sizes += ["attack.options.steps=2"]
    overrides = ["data.name='file'", f"data.path={json.dumps(str(path))}", *sizes]
    config = load_config(preset=preset, overrides=overrides)
    metrics = dict(run(config).metrics)
    missing = expected_keys(config) - set(metrics)
    assert not missing, f"{preset} on a file: metrics lack {sorted(missing)}"
    check_values(metrics)
