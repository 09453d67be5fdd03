"""``f_weights``: an images run loads a trained f (a run directory or a weights file) instead
of training one, after checking that the run that trained it used the same images and network."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file, save_file

import pertlearn
from image_data_support import tiny_images
from pertlearn.experiments import ConfigError, validate_config

ROBUST_F = {"attack": "pgd_l2", "eps": 1.0, "steps": 1}
CONSTRUCTION = {"steps": 2, "step_size": 0.5, "batch_size": 64}


def tree(**extra: Any) -> dict[str, Any]:
    """A tiny images config (3 MNIST classes, 1 epoch each)."""
    base = tiny_images(**extra)
    for key in ("train_f", "train_g"):
        if key not in extra:
            base[key] = {**base[key], "epochs": 1}
    return base


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A natural_rand run whose f was trained normally, saved."""
    result = pertlearn.run(validate_config(tree()))
    path = result.save(tmp_path_factory.mktemp("runs") / "standard")
    return path, result.metrics


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose f was trained adversarially, saved."""
    train_f = {**tree()["train_f"], "adversarial": ROBUST_F}
    result = pertlearn.run(validate_config(tree(train_f=train_f)))
    return result.save(tmp_path_factory.mktemp("runs") / "robust")


def test_a_loaded_f_is_the_source_runs_f(standard_run: tuple[Path, dict[str, Any]]) -> None:
    source, source_metrics = standard_run
    result = pertlearn.run(validate_config(tree(scenario="natural_det", f_weights=str(source))))
    for key in ("f_acc_train", "f_acc_test"):
        assert result.metrics[key] == source_metrics[key]
    loaded = result.models["f"].state_dict()
    for name, tensor in load_file(str(source / "f.safetensors")).items():
        assert loaded[name].equal(tensor), name
    assert result.curves["f"].epochs_run == 0  # loaded, not trained
    expected = hashlib.sha256((source / "f.safetensors").read_bytes()).hexdigest()
    assert result.metrics["f_weights_sha256"] == expected


def test_the_source_run_must_share_images_seed_and_network(
    standard_run: tuple[Path, dict[str, Any]],
) -> None:
    source, _ = standard_run
    for change, named in (
        ({"seed": 1}, "seed: 0 there, 1 here"),
        ({"data": {**tree()["data"], "n_train": 100}}, "data.n_train: 150 there, 100 here"),
        ({"model": {"name": "small_cnn", "options": {"width": 8, "hidden": 16}}}, "model:"),
    ):
        with pytest.raises(
            ConfigError, match=r"f_weights: .*other images or another network"
        ) as err:
            pertlearn.run(validate_config(tree(f_weights=str(source), **change)))
        assert named in str(err.value)


def test_a_weights_file_is_loaded_unchecked_but_must_fit_the_network(
    standard_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, source_metrics = standard_run
    weights = str(source / "f.safetensors")
    same = pertlearn.run(validate_config(tree(f_weights=weights))).metrics
    assert same["f_acc_test"] == source_metrics["f_acc_test"]
    # a bare file is not checked against any run: another seed (other images) loads too
    assert pertlearn.run(validate_config(tree(f_weights=weights, seed=1))).metrics[
        "f_weights_sha256"
    ]
    wider = {"name": "small_cnn", "options": {"width": 8, "hidden": 16}}
    with pytest.raises(ConfigError, match=r"f_weights: .*does not fit the configured network"):
        pertlearn.run(validate_config(tree(f_weights=weights, model=wider)))
    state = load_file(weights)
    state.pop(next(iter(state)))
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ConfigError, match="missing"):
        pertlearn.run(validate_config(tree(f_weights=str(tmp_path / "partial.safetensors"))))
    (tmp_path / "cut.safetensors").write_bytes((source / "f.safetensors").read_bytes()[:200])
    with pytest.raises(ConfigError, match="corrupt or truncated"):
        pertlearn.run(validate_config(tree(f_weights=str(tmp_path / "cut.safetensors"))))
    with pytest.raises(ConfigError, match="does not exist"):
        pertlearn.run(validate_config(tree(f_weights=str(tmp_path / "nothing"))))


def test_d_r_needs_a_source_that_trained_f_adversarially(
    standard_run: tuple[Path, dict[str, Any]], robust_run: Path
) -> None:
    standard, _ = standard_run
    # without train_f.adversarial: the loaded f answers for its robustness
    d_r = {"scenario": "robust", "construction": CONSTRUCTION}
    validate_config(tree(f_weights=str(robust_run), **d_r))
    with pytest.raises(ConfigError, match="needs a robust f"):
        pertlearn.run(validate_config(tree(f_weights=str(standard), **d_r)))
    d_nr = {"scenario": "non_robust", "construction": CONSTRUCTION}
    with pytest.raises(ConfigError, match="needs a standard f"):
        pertlearn.run(validate_config(tree(f_weights=str(robust_run), **d_nr)))
    result = pertlearn.run(validate_config(tree(f_weights=str(robust_run), **d_r)))
    assert result.metrics["scenario"] == "robust"


def test_a_run_that_loaded_its_f_passes_on_its_robustness(robust_run: Path, tmp_path: Path) -> None:
    relay = pertlearn.run(validate_config(tree(f_weights=str(robust_run)))).save(tmp_path / "relay")
    d_nr = {"scenario": "non_robust", "construction": CONSTRUCTION}
    with pytest.raises(ConfigError, match="needs a standard f"):
        pertlearn.run(validate_config(tree(f_weights=str(relay), **d_nr)))


def test_a_bad_source_fails_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=r"f_weights: .*not a run directory"):
        pertlearn.run(validate_config(tree(f_weights=str(tmp_path / "folder"))))
    quickstart = pertlearn.run(
        pertlearn.load_config(overrides=["train_f.epochs=2", "train_g.epochs=2"])
    ).save(tmp_path / "binary")
    with pytest.raises(ConfigError, match="is a 'neurips' run"):
        pertlearn.run(validate_config(tree(f_weights=str(quickstart))))
