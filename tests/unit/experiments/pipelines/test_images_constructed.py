"""The images pipeline's D_R / D_NR scenarios (Ilyas et al. arXiv:1905.02175, Sec. 3.1) and its
mislabeled_clean control: config validation, tiny end-to-end runs on the in-repo MNIST subset,
the control's training set, and the construction lowering the representation distance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import pertlearn
from pertlearn.experiments import ConfigError, validate_config
from pertlearn.experiments.pipelines.images import construct_set
from pertlearn.experiments.pipelines.images_config import ConstructConfig
from pertlearn.features.constructed import representation
from pertlearn.models import SmallCNN

DATA = str(Path(__file__).parents[3] / "data")
ROBUST_F = {"attack": "pgd_l2", "eps": 1.0, "steps": 2}


def tiny(**extra: Any) -> dict[str, Any]:
    train = {"lr": 0.05, "epochs": 1, "batch_size": 32, "plateau_patience": None}
    tree: dict[str, Any] = {
        "pipeline": "images",
        "data": {"name": "mnist", "classes": [0, 1], "n_train": 64, "n_test": 32, "data_dir": DATA},
        "model": {"name": "small_cnn", "options": {"width": 4, "hidden": 16}},
        "scenario": "non_robust",
        "construction": {"steps": 3, "step_size": 0.5, "batch_size": 40},
        "train_f": train,
        "train_g": train,
        "robust_eval": {"attack": "pgd_l2", "eps": 1.0, "steps": 2, "n_test": 16},
    }
    tree.update(extra)
    return tree


def with_robust_f(tree: dict[str, Any]) -> dict[str, Any]:
    tree["train_f"] = {**tree["train_f"], "adversarial": ROBUST_F}
    return tree


# ------------------------------------------------------------------------ validation


def test_the_construction_defaults_in_for_the_constructed_scenarios() -> None:
    tree = tiny()
    del tree["construction"]
    config = validate_config(tree)
    assert config.construction == ConstructConfig()
    assert validate_config(tiny(scenario="natural_det", construction=None)).construction is None


def test_only_the_attacked_scenarios_craft_with_the_attack() -> None:
    assert not validate_config(tiny()).crafts_with_attack
    assert not validate_config(with_robust_f(tiny(scenario="robust"))).crafts_with_attack
    assert validate_config(tiny(scenario="natural_det", construction=None)).crafts_with_attack


def test_the_run_line_of_a_constructed_scenario_names_no_unused_budget(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from pertlearn.cli.main import cli

    config_file = tmp_path / "d_nr.json"
    config_file.write_text(json.dumps(tiny(robust_eval=None)))
    result = CliRunner().invoke(cli, ["run", str(config_file), "-q", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "(seed 0, constructed set) ->" in result.output
    assert "ε =" not in result.output


def test_construction_keys_only_with_the_constructed_scenarios() -> None:
    for scenario in ("natural_rand", "natural_det", "uniform"):
        with pytest.raises(ConfigError, match="construction: only for scenario"):
            validate_config(tiny(scenario=scenario))
    with pytest.raises(ConfigError, match="construction"):
        validate_config(tiny(construction={"steps": 3, "stride": 2}))
    with pytest.raises(ConfigError, match="construction"):
        validate_config(tiny(construction={"start": "elsewhere"}))
    with pytest.raises(ConfigError, match="construction"):
        validate_config(tiny(construction={"step_size": 0}))


def test_the_scenario_names_the_robustness_of_f() -> None:
    with pytest.raises(ConfigError, match=r"'robust' .*needs a robust f"):
        validate_config(tiny(scenario="robust"))
    with pytest.raises(ConfigError, match=r"'non_robust' .*needs a standard f"):
        validate_config(with_robust_f(tiny()))
    assert validate_config(with_robust_f(tiny(scenario="robust"))).scenario == "robust"


def test_mislabeled_clean_needs_clean_images() -> None:
    with pytest.raises(ConfigError, match="mislabeled_clean needs clean images"):
        validate_config(tiny(scenario="uniform", construction=None, controls=["mislabeled_clean"]))
    noise_start = {"steps": 3, "step_size": 0.5, "start": "noise"}
    with pytest.raises(ConfigError, match="mislabeled_clean needs clean start images"):
        validate_config(tiny(construction=noise_start, controls=["mislabeled_clean"]))
    # unperturbed_inputs (the start points, here noise) stays allowed
    validate_config(tiny(construction=noise_start, controls=["unperturbed_inputs"]))


# ------------------------------------------------------------------------ runs


@pytest.mark.parametrize("scenario", ["robust", "non_robust"])
def test_a_constructed_scenario_runs_end_to_end(scenario: str) -> None:
    tree = tiny(scenario=scenario, controls=["unperturbed_inputs", "mislabeled_clean"])
    if scenario == "robust":
        tree = with_robust_f(tree)
    result = pertlearn.run(validate_config(tree))
    m, t = result.metrics, result.tensors
    assert m["scenario"] == scenario and m["n_adv"] == 64
    for key in ("g_acc_test", "g_robust_acc", "f_robust_acc", "fooling_rate"):
        assert 0.0 <= m[key] <= 1.0
    assert m["construct_distance_final"] < m["construct_distance_start"]
    # D_R / D_NR keep the labels of the images they match; the crafted set is saved
    assert torch.equal(t["y_adv"], t["y_train"])
    assert t["x_adv"].shape == t["x_start"].shape == t["x_train"].shape
    assert not torch.equal(t["x_adv"], t["x_start"])
    assert 0.0 <= t["x_adv"].min() and t["x_adv"].max() <= 1.0
    # both controls train on the start images (other training images) with g's labels
    assert set(result.models) == {"f", "g", "unperturbed_inputs", "mislabeled_clean"}
    start_rows = {tuple(row.flatten().tolist()) for row in t["x_start"]}
    assert start_rows <= {tuple(row.flatten().tolist()) for row in t["x_train"]}
    leak = result.models["mislabeled_clean"]
    with torch.no_grad():
        fit = (leak(t["x_start"]).argmax(1) == t["y_adv"]).double().mean().item()
    assert fit == pytest.approx(m["mislabeled_clean_fit_acc"])


def test_mislabeled_clean_on_natural_images_is_clean_images_with_targets() -> None:
    tree = tiny(scenario="natural_det", construction=None, controls=["mislabeled_clean"])
    tree["attack"] = {"name": "pgd_l2", "eps": 2.0, "options": {"steps": 2}}
    result = pertlearn.run(validate_config(tree))
    m, t = result.metrics, result.tensors
    assert torch.equal(t["y_adv"], (t["y_train"] + 1) % 2)  # the natural_det targets
    leak = result.models["mislabeled_clean"]
    with torch.no_grad():
        on_clean = (leak(t["x_train"]).argmax(1) == t["y_adv"]).double().mean().item()
    # its fit accuracy is measured on the clean training images against the targets
    assert on_clean == pytest.approx(m["mislabeled_clean_fit_acc"])
    assert m["mislabeled_clean_acc_train"] == pytest.approx(1.0 - on_clean)  # two classes
    assert "x_start" not in t
    assert list(m).index("mislabeled_clean_acc_test") > list(m).index("g_acc_test")


# ------------------------------------------------------------------------ construction


def test_construct_set_lowers_the_representation_distance() -> None:
    gen = torch.Generator().manual_seed(0)
    f = SmallCNN((1, 12, 12), 3, width=4, hidden=16, generator=gen).eval()
    x = torch.rand(24, 1, 12, 12, generator=gen)
    y = torch.arange(24) % 3
    config = ConstructConfig(steps=30, step_size=0.2, start="other_class", batch_size=10)
    built = construct_set(f, x, y, config, torch.Generator().manual_seed(1), progress=False)
    assert built["x"].shape == built["x_start"].shape == x.shape
    with torch.no_grad():
        before = (representation(f, built["x_start"]) - representation(f, x)).norm(dim=1)
        after = (representation(f, built["x"]) - representation(f, x)).norm(dim=1)
    assert built["distance_start"] == pytest.approx(before.double().mean().item(), rel=1e-5)
    assert built["distance_final"] == pytest.approx(after.double().mean().item(), rel=1e-5)
    assert (after <= before).all() and after.mean() < 0.5 * before.mean()
    # the start points are drawn from the generator: same seed, same set
    again = construct_set(f, x, y, config, torch.Generator().manual_seed(1), progress=False)
    assert torch.equal(again["x"], built["x"])


def test_keep_fooled_trains_g_and_the_controls_on_the_hits_only() -> None:
    tree = tiny(
        scenario="natural_det",
        construction=None,
        keep="fooled",
        controls=["unperturbed_inputs", "mislabeled_clean"],
        robust_eval=None,
    )
    tree["attack"] = {"name": "pgd_l2", "eps": 3.0, "options": {"steps": 5}}
    result = pertlearn.run(validate_config(tree))
    m, t = result.metrics, result.tensors
    kept = t["kept"]
    f = result.models["f"]
    with torch.no_grad():
        hits = f(t["x_adv"]).argmax(1) == t["y_adv"]
    # the kept rows are exactly the adversarial inputs f assigns to their target
    assert torch.equal(kept, hits.nonzero().squeeze(1))
    assert 0 < m["n_kept"] == kept.numel() < m["n_adv"]
    assert m["kept_share"] == pytest.approx(m["fooling_rate"])
    g = result.models["g"]
    with torch.no_grad():
        fit = (g(t["x_adv"][kept]).argmax(1) == t["y_adv"][kept]).double().mean().item()
    assert m["g_fit_acc"] == pytest.approx(fit)  # g's own training set is the kept rows
    leak = result.models["mislabeled_clean"]
    with torch.no_grad():
        leak_fit = (leak(t["x_train"][kept]).argmax(1) == t["y_adv"][kept]).double().mean()
    assert m["mislabeled_clean_fit_acc"] == pytest.approx(leak_fit.item())


def test_keep_fooled_with_no_hit_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pertlearn.experiments.pipelines import images

    def no_class(model: torch.nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
        return torch.full((x.shape[0],), -1, dtype=torch.long)  # f hits no target

    monkeypatch.setattr(images, "predictions", no_class)
    tree = tiny(scenario="natural_det", construction=None, keep="fooled", robust_eval=None)
    tree["attack"] = {"name": "pgd_l2", "eps": 1.0, "options": {"steps": 1}}
    with pytest.raises(ValueError, match="keep = 'fooled' kept no example"):
        pertlearn.run(validate_config(tree))


class _NoRepresentation(torch.nn.Module):
    """A user network with no penultimate method and not an ``nn.Sequential``."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 8))
        self.out = torch.nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.body(x)))


def test_a_network_without_a_representation_is_refused_before_f_is_trained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D_R / D_NR are constructed from f's penultimate representation: a user network the
    pipeline cannot find one in fails before f is trained, saying what to give it (not after
    training, suggesting a ``layer=`` argument no config key reaches)."""
    from pertlearn.experiments.pipelines import images

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("f was trained before the representation was checked")

    monkeypatch.setattr(images, "train_or_load_f", no_training)
    config = validate_config(tiny())
    factory = lambda shape, k, generator: _NoRepresentation(shape, k)  # noqa: E731
    message = r"scenario 'non_robust' .* _NoRepresentation has none .* penultimate\(x\) method"
    with pytest.raises(ValueError, match=message):
        images.run_images(config, model_factory=factory)
