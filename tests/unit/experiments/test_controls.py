"""Controls named by what g' learns from, in the neurips pipeline."""

from __future__ import annotations

import pytest
import torch

import pertlearn
from pertlearn.experiments import ConfigError, validate_config
from pertlearn.experiments.batched import can_batch, run_many

SMALL = ["train_f.epochs=60", "train_g.epochs=60", "data.n_train=200", "data.n_test=200"]


def test_mislabeled_clean_trains_on_clean_inputs_with_target_labels() -> None:
    config = pertlearn.load_config(
        preset="quickstart", overrides=[*SMALL, "controls=['random_l2_noise', 'mislabeled_clean']"]
    )
    result = pertlearn.run(config)
    assert set(result.models) == {"f", "g", "random_l2_noise", "mislabeled_clean"}
    m = result.metrics
    for key in (
        "mislabeled_clean_acc_train",
        "mislabeled_clean_acc_test",
        "mislabeled_clean_fit_acc",
    ):
        assert 0.0 <= m[key] <= 1.0
    # g' fits the target labels of clean inputs better than chance (it memorizes them)
    assert m["mislabeled_clean_fit_acc"] > 0.55
    assert not can_batch(config)  # runs through the pipeline, not the batched runner
    assert (
        run_many([config])[0].metrics["mislabeled_clean_acc_test"] == m["mislabeled_clean_acc_test"]
    )


def test_a_control_of_another_pipeline_is_refused() -> None:
    with pytest.raises(ConfigError, match="controls"):
        validate_config({"controls": ["unperturbed_inputs"]})
    with pytest.raises(ConfigError, match="controls"):
        validate_config({"pipeline": "iclr_artificial", "controls": ["random_l2_noise"]})


def test_adversarial_training_names_a_known_attack() -> None:
    tree = {"pipeline": "images", "train_f": {"adversarial": {"attack": "nope", "eps": 1.0}}}
    with pytest.raises(ConfigError, match=r"train_f\.adversarial\.attack: unknown attack"):
        validate_config(tree)


ARTIFICIAL_SMALL = [
    "data.dim=100",
    "data.n_train=40",
    "data.n_noise=200",
    "data.n_test=200",
    "train_f.epochs=200",
    "train_g.epochs=200",
]


def test_mislabeled_clean_in_the_artificial_pipeline_is_the_clean_noise_with_targets() -> None:
    config = pertlearn.load_config(
        preset="iclr-artificial-l2-uniform",
        overrides=[*ARTIFICIAL_SMALL, "controls=['unperturbed_inputs', 'mislabeled_clean']"],
    )
    result = pertlearn.run(config)
    m, t = result.metrics, result.tensors
    assert set(result.models) == {"f", "g", "unperturbed_inputs", "mislabeled_clean"}
    leak = result.models["mislabeled_clean"]
    with torch.no_grad():
        fit = (torch.sign(leak(t["x_noise"])) == t["y_adv"]).double().mean().item()
    # its training set: the noise before the attack, labelled with the targets
    assert fit == pytest.approx(m["mislabeled_clean_fit_acc"])
    for key in ("mislabeled_clean_acc_train", "mislabeled_clean_agreement"):
        assert 0.0 <= m[key] <= 1.0
    keys = list(m)
    assert keys.index("control_agreement") < keys.index("mislabeled_clean_acc_train")
    # the same set as unperturbed_inputs, from another initialization
    control = result.models["unperturbed_inputs"]
    assert not torch.equal(next(leak.parameters()), next(control.parameters()))
