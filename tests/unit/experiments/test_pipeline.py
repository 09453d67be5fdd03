"""End-to-end runs of the NeurIPS24 pipeline at the sizes the issue names."""

import statistics

import pytest
import torch
from safetensors.torch import load_file

from pertlearn import load_config, run
from pertlearn.experiments import build_model
from pertlearn.seeding import stage_generator


@pytest.fixture(scope="module")
def quickstart_results():
    return {seed: run(load_config(overrides=[f"seed={seed}"])) for seed in range(5)}


def test_quickstart_seed0_figures(quickstart_results):
    m = quickstart_results[0].metrics
    assert m["f_acc_train"] >= 0.99
    assert m["g_acc_test"] >= 0.90
    assert m["agreement"] >= 0.90
    assert m["control_g_acc_test"] <= 0.65
    assert m["g_degenerate"] is False


def test_quickstart_over_seeds(quickstart_results):
    g = [r.metrics["g_acc_test"] for r in quickstart_results.values()]
    control = [r.metrics["control_g_acc_test"] for r in quickstart_results.values()]
    assert statistics.median(g) >= 0.90
    assert min(g) >= 0.85
    assert not any(r.metrics["g_degenerate"] for r in quickstart_results.values())
    # The control learns a random direction: its accuracy scatters around chance.
    assert abs(statistics.median(control) - 0.5) <= 0.15


def test_metrics_contract(quickstart_results):
    keys = {
        "f_acc_train",
        "f_acc_test",
        "g_acc_train",
        "g_acc_test",
        "agreement",
        "control_g_acc_test",
        "fooling_rate",
        "seconds",
        "g_degenerate",
    }
    assert keys <= set(quickstart_results[0].metrics)


def test_same_config_and_seed_give_identical_metrics(quickstart_results):
    again = run(load_config(overrides=["seed=0"])).metrics
    first = dict(quickstart_results[0].metrics)
    first.pop("seconds"), again.pop("seconds")
    assert again == first


def test_stages_are_seeded_separately():
    # Changing the attack budget must not change f (its data and init come from other stages).
    base = run(load_config(overrides=["train_f.epochs=5", "train_g.epochs=5", "controls=[]"]))
    other = run(
        load_config(
            overrides=["train_f.epochs=5", "train_g.epochs=5", "controls=[]", "attack.eps=0.5"]
        )
    )
    assert torch.equal(base.models["f"].weight, other.models["f"].weight)
    assert not torch.equal(base.models["g"].weight, other.models["g"].weight)


def test_iid_targets_degenerate_flag_follows_majority_share():
    # i.i.d. targets are imbalanced; the flag is majority share above the threshold.
    config = load_config(overrides=["targets=random", "seed=5", "degenerate_threshold=0.6"])
    m = run(config).metrics
    assert m["g_degenerate"] == (m["g_majority_share"] > 0.6)
    balanced = run(load_config(overrides=["seed=5"])).metrics
    assert balanced["g_majority_share"] < m["g_majority_share"]


def test_scenario_b_and_flip_targets():
    config = load_config(
        preset="neurips-shifted-gauss-b",
        overrides=["targets=flip", "train_f.epochs=100", "train_g.epochs=100", "data.n_train=300"],
    )
    result = run(config)
    t = result.tensors
    assert torch.equal(t["y_adv"], -t["y_train"])
    assert torch.equal(t["g_inputs"], t["x_adv"])  # scenario (b): x + r
    r = t["x_adv"] - t["x_train"]
    assert torch.allclose(r.norm(dim=1), torch.full((300,), config.eps), rtol=1e-4)


def test_saved_weights_reload(tmp_path, quickstart_results):
    result = quickstart_results[0]
    out = result.save(tmp_path / "run")
    f = build_model(result.config.model, 100, stage_generator(9, "x"), torch.float32)
    f.load_state_dict(load_file(str(out / "f.safetensors")))
    x = result.tensors["x_test"]
    assert torch.equal(f(x), result.models["f"](x))


@pytest.mark.slow
def test_neurips_gauss_a_at_d1000():
    config = load_config(preset="neurips-gauss-a", overrides=["data.dim=1000"])
    assert config.eps == pytest.approx(0.031, abs=1e-3)
    assert (config.data.n_train, config.model.width) == (1000, 100)
    m = run(config).metrics
    assert m["g_acc_train"] >= 0.80
    assert m["agreement"] >= 0.90


def test_run_refuses_what_is_not_a_config_of_its_pipeline() -> None:
    from pertlearn import ExperimentConfig

    with pytest.raises(TypeError, match=r"^run\(\) takes a validated config, got dict; build"):
        run({"preset": "quickstart"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"of class NeuripsConfig, got ExperimentConfig; build"):
        run(ExperimentConfig())


def test_run_checks_a_config_changed_where_no_assignment_check_sees_it() -> None:
    """A list changed in place and ``model_copy(update=...)`` skip pydantic's checks; run
    validates the config again instead of running something else."""
    from pertlearn import ConfigError

    config = load_config(overrides=["data.dim=5", "data.n_train=10", "data.n_test=10"])
    config.controls.append("random_noise")
    with pytest.raises(ConfigError, match=r"^invalid config: controls\.1: Input should be"):
        run(config)
    config.controls.pop()
    with pytest.raises(ConfigError, match=r"^invalid config: seed: "):
        run(config.model_copy(update={"seed": -1}))
