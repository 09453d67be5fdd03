"""Combinations of images-pipeline options that cannot run are refused when the config is
validated, in one line naming the key, before any network is trained."""

from __future__ import annotations

from typing import Any

import pytest

from image_data_support import tiny_images
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.pipelines import validate_config


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"robust_eval": {"attack": "gradient_step", "eps": 1.0, "steps": 2}},
            r"robust_eval\.attack: attack 'gradient_step' takes no steps, clip.*pgd_l2",
        ),
        (
            {"robust_eval": {"attack": "random_l2", "eps": 1.0}},
            r"robust_eval\.attack: attack 'random_l2' takes no steps",
        ),
        (
            {"robust_eval": {"attack": "pgd_l0", "eps": 1.5}},
            r"robust_eval: pgd_l0: eps .* whole number",
        ),
        (
            {
                "train_f": {
                    "lr": 0.05,
                    "epochs": 2,
                    "adversarial": {"attack": "gradient_step", "eps": 1.0},
                }
            },
            r"train_f\.adversarial\.attack: attack 'gradient_step' takes no steps",
        ),
        (
            {"train_g": {"epochs": 2, "adversarial": {"attack": "pgd_l0", "eps": 2.5}}},
            r"train_g\.adversarial: pgd_l0: eps .* whole number",
        ),
    ],
)
def test_an_untargeted_attack_the_run_cannot_build_is_refused(
    extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        validate_config(tiny_images(**extra))
    assert "\n" not in str(caught.value)


def test_the_untargeted_attacks_the_run_builds_are_accepted() -> None:
    config = validate_config(
        tiny_images(
            robust_eval={"attack": "pgd_linf", "eps": 0.1, "steps": 2, "n_test": 5},
            train_f={"epochs": 2, "adversarial": {"attack": "pgd_l0", "eps": 3.0, "steps": 1}},
        )
    )
    assert config.robust_eval is not None and config.robust_eval.attack == "pgd_linf"


@pytest.mark.parametrize("attack", ["gradient_step", "random_l2"])
def test_a_crafting_attack_that_cannot_clip_to_the_pixels_is_refused(attack: str) -> None:
    tree = tiny_images(attack={"name": attack, "eps": 1.0})
    with pytest.raises(ConfigError, match=rf"attack\.name: attack '{attack}' takes no clip"):
        validate_config(tree)


@pytest.mark.parametrize("scenario", ["robust", "non_robust"])
def test_a_perturbation_filter_of_a_constructed_scenario_is_refused(scenario: str) -> None:
    tree = tiny_images(
        scenario, perturbation_filter={"kind": "low_pass", "cutoff": 3.0}, construction={"steps": 2}
    )
    if scenario == "robust":
        tree["train_f"] = {**tree["train_f"], "adversarial": {"eps": 1.0, "steps": 1}}
    with pytest.raises(ConfigError, match=r"perturbation_filter: only for the attacked scenarios"):
        validate_config(tree)


@pytest.mark.parametrize("key", ["model", "model_g"])
def test_an_option_the_network_does_not_take_is_refused(key: str) -> None:
    tree = tiny_images(**{key: {"name": "mlp", "options": {"width": 8}}})
    message = rf"{key}: options\.width is not an option of model 'mlp' \(it takes: hidden, depth\)"
    with pytest.raises(ConfigError, match=message):
        validate_config(tree)


def test_every_option_of_a_built_in_network_and_any_of_a_custom_one_are_accepted() -> None:
    config = validate_config(
        tiny_images(
            model={"name": "small_cnn", "options": {"width": 4, "hidden": 8}},
            model_g={"name": "custom", "options": {"factory": "m:f", "anything": 1}},
        )
    )
    assert config.model.options == {"width": 4, "hidden": 8}


def test_the_names_a_config_accepts_are_the_registered_networks_and_data_sets() -> None:
    """``data.name`` is a literal written out in the config class; it must list exactly the
    built-in data sets (:data:`DATASETS`, plus ``file``), so a data set added to one is not
    missing in the other. ``model.name`` is checked against the networks themselves: every
    built-in one (:data:`IMAGE_MODELS`) and ``custom`` validate, another name is refused
    naming them."""
    from typing import get_args

    from pertlearn.data.catalogue import DATASETS
    from pertlearn.experiments.pipelines.images_config import ImageDataConfig, ImageModelConfig
    from pertlearn.models.cnn import IMAGE_MODELS

    for name in [*IMAGE_MODELS, "custom"]:
        assert ImageModelConfig(name=name).name == name
    with pytest.raises(ValueError, match="unknown image model 'resnet9000'") as info:
        ImageModelConfig(name="resnet9000")
    assert f"{', '.join(IMAGE_MODELS)}, custom (built in)" in str(info.value)
    data_names = get_args(ImageDataConfig.model_fields["name"].annotation)
    assert sorted(data_names) == sorted([*DATASETS, "file"])
