"""The images pipeline with a PGD adversarially trained f and robust accuracy of f and g."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pertlearn
from pertlearn.experiments import ConfigError, validate_config

DATA = str(Path(__file__).parents[1] / "data")


def tiny(**extra: Any) -> dict[str, Any]:
    train = {"lr": 0.05, "epochs": 1, "batch_size": 32, "plateau_patience": None}
    tree: dict[str, Any] = {
        "pipeline": "images",
        "data": {"name": "mnist", "classes": [0, 1], "n_train": 96, "n_test": 40, "data_dir": DATA},
        "model": {"name": "small_cnn", "options": {"width": 4, "hidden": 16}},
        "attack": {"name": "pgd_l2", "eps": 3.0, "options": {"steps": 2}},
        "scenario": "natural_det",
        "train_f": train,
        "train_g": train,
        "robust_eval": {"attack": "pgd_l2", "eps": 1.5, "steps": 3, "n_test": 20},
    }
    tree.update(extra)
    return tree


def test_robust_accuracy_is_reported_for_f_and_g() -> None:
    result = pertlearn.run(validate_config(tiny()))
    for key in ("f_robust_acc", "g_robust_acc"):
        assert 0.0 <= result.metrics[key] <= 1.0
    # an attack can only lower the accuracy on the attacked images
    assert result.metrics["f_robust_acc"] <= result.metrics["f_acc_test"] + 0.5


def test_adversarial_training_of_f_changes_f() -> None:
    plain = pertlearn.run(validate_config(tiny()))
    adversarial = {"attack": "pgd_l2", "eps": 1.5, "steps": 2}
    tree = tiny()
    tree["train_f"] = {**tree["train_f"], "adversarial": adversarial}
    robust = pertlearn.run(validate_config(tree))
    assert robust.curves["f"].losses != plain.curves["f"].losses
    assert robust.curves["g"].losses != []


def test_robust_eval_needs_a_positive_budget() -> None:
    with pytest.raises(ConfigError, match=r"robust_eval\.eps"):
        validate_config(tiny(robust_eval={"eps": 0}))
