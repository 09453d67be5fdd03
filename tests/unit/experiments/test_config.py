import json
import math

import pytest

from pertlearn.experiments import ConfigError, load_config, preset_tree
from pertlearn.experiments.config import apply_overrides, parse_value, read_config_file
from pertlearn.experiments.pipelines import validate_config
from pertlearn.training import AdversarialConfig
from sweep_support import write_run_record


def test_quickstart_matches_the_issue():
    c = load_config()
    assert c.name == "quickstart" and c.seed == 0
    assert (c.data.name, c.data.dim, c.data.n_train) == ("shifted_gauss", 100, 1000)
    assert (c.model.name, c.model.width, c.model.slope) == ("two_layer", 100, 0.0)
    for t in (c.train_f, c.train_g):
        assert (t.loss, t.lr, t.momentum, t.epochs, t.batch_size) == (
            "identity",
            1.0,
            0.9,
            1000,
            None,
        )
    assert c.eps == pytest.approx(0.01)
    assert c.scenario == "perturbation_only"


def test_eps_scales_with_sqrt_dim():
    c = load_config(preset="neurips-gauss-a", overrides=["data.dim=1000"])
    assert c.eps == pytest.approx(0.001 * math.sqrt(1000))
    paper = load_config(preset="neurips-gauss-b", scale="paper")
    assert paper.eps == pytest.approx(0.1 * math.sqrt(10000))


def test_absolute_eps_override_replaces_the_rule():
    c = load_config(overrides=["attack.eps=0.5"])
    assert c.attack.eps_per_sqrt_dim is None and c.eps == 0.5


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("0.1") == 0.1
    assert parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("gauss") == "gauss"


def test_overrides_do_not_mutate_and_nest():
    tree = {"model": {"width": 3}}
    new = apply_overrides(tree, ["model.width=5", "train_g.lr=0.1"])
    assert tree == {"model": {"width": 3}}
    assert new == {"model": {"width": 5}, "train_g": {"lr": 0.1}}


def test_toml_file_with_base_preset(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('preset = "neurips-shifted-gauss-b"\nseed = 3\n[model]\nwidth = 40\n')
    c = load_config(path, overrides=["model.slope=0.5"])
    assert (c.name, c.seed, c.model.width, c.model.slope) == ("neurips-shifted-gauss-b", 3, 40, 0.5)
    assert c.scenario == "on_original"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.width=-3"], "model.width"),
        (["model.widht=3"], "model.widht: unknown key"),
        (["attack.eps=-0.1"], "attack.eps"),
        (["model.slope=1.5"], "model.slope"),
        (["model.name=one_hidden", "model.width=7"], "even width"),
        (["train_f.lr=abc"], "train_f.lr"),
        (["targets=sideways"], "targets"),
        (["attack.name=nope"], "unknown attack"),
        (["width"], "key=value"),
        (["model.width.x=1"], "not a table"),
        (["device=tpu"], "device"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(overrides=overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "preset, key",
    [("quickstart", "attack.name"), ("iclr-mnist-natural-rand-l2", "robust_eval")],
)
def test_an_unknown_attack_says_where_a_user_attack_is_known(preset, key):
    """A user attack is known in every process when a plug-in registers it, or in one Python
    process that imported its module: the message for an unknown name says both, wherever the
    config names an attack."""
    value = "'my_attack'" if key == "attack.name" else "{attack='my_attack', eps=1.0}"
    with pytest.raises(ConfigError, match=r"unknown attack 'my_attack'; choose one of") as info:
        load_config(preset=preset, overrides=[f"{key}={value}"])
    assert "a 'pertlearn.plugins' entry point of your installed package" in str(info.value)
    assert "import the module registering it before the config is loaded" in str(info.value)


def test_bad_files_and_presets(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="did you mean 'quickstart'"):
        preset_tree("quickstrat")
    with pytest.raises(ConfigError, match="unknown scale"):
        preset_tree("quickstart", "huge")


def test_config_files_are_read_as_toml_json_or_a_run_record(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "quickstart"\nseed = 3\n')
    plain = tmp_path / "c.JSON"
    plain.write_text(json.dumps({"preset": "quickstart", "seed": 3}))
    recorded = {"pipeline": "neurips", "seed": 3, "model_g": None}
    run_dir = write_run_record(tmp_path / "run", recorded)
    assert read_config_file(toml) == read_config_file(plain) == {"preset": "quickstart", "seed": 3}
    assert read_config_file(run_dir) == read_config_file(run_dir / "config.json")
    assert read_config_file(run_dir) == recorded
    # a JSON config that merely holds a "config" key is a config tree, not a run's record
    assert read_config_file(_json_file(tmp_path, {"config": {}})) == {"config": {}}


def _json_file(folder, tree):
    path = folder / "tree.json"
    path.write_text(json.dumps(tree))
    return path


def test_a_run_directory_reruns_to_its_own_config(tmp_path):
    config = load_config(overrides=["seed=4", "train_f.epochs=7"])
    run_dir = write_run_record(tmp_path / "run", config.model_dump(mode="json"))
    assert load_config(run_dir) == config
    assert load_config(run_dir, overrides=["seed=5"]).seed == 5


def test_a_directory_without_a_run_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"is a directory without config\.json"):
        read_config_file(tmp_path)


# ------------------------------------------------------------- assigning keys in Python


def test_a_refused_assignment_is_one_line_and_leaves_the_config_unchanged() -> None:
    config = load_config(preset="quickstart")
    before = config.model_dump()
    with pytest.raises(ConfigError) as caught:
        config.model.width = -1
    assert str(caught.value) == (
        "cannot set ModelConfig.width = -1: Input should be greater than or equal to 1; "
        "the config is unchanged"
    )
    with pytest.raises(ConfigError, match=r"^cannot set TrainConfig\.epochs = 5\.0: .*integer"):
        config.train_f.epochs = 5.0
    with pytest.raises(ConfigError, match=r"^NeuripsConfig has no key 'widht'; check its spelling"):
        config.widht = 3
    assert config.model_dump() == before
    config.model.width = 50
    assert config.model.width == 50


def test_a_value_a_check_of_the_whole_section_refuses_is_not_kept() -> None:
    """Pydantic stores the value before a section's own checks run; a refusal takes it back."""
    images = validate_config(
        {"pipeline": "images", "train_f": {"adversarial": {"eps": 1.0}}, "scenario": "robust"}
    )
    with pytest.raises(ConfigError, match="needs a robust f"):
        images.train_f = images.train_g  # no adversarial training: D_R refuses it
    assert images.train_f.adversarial is not None
    images.train_f.epochs = 3
    with pytest.raises(ConfigError, match=r"clean_epochs \(3\) must be below epochs \(3\)"):
        images.train_f.adversarial = AdversarialConfig(eps=1.0, clean_epochs=3)
    assert images.train_f.adversarial.clean_epochs == 0


def test_setting_one_attack_budget_clears_the_others_as_an_override_does() -> None:
    config = load_config(preset="quickstart")  # eps_per_sqrt_dim
    config.attack.eps = 0.1
    assert (config.attack.eps, config.attack.eps_per_sqrt_dim) == (0.1, None)
    assert config.eps == 0.1
    assert config == load_config(preset="quickstart", overrides=["attack.eps=0.1"])
    with pytest.raises(ConfigError, match=r"^cannot set AttackConfig\.eps_per_dim = 2\.0"):
        config.attack.eps_per_dim = 2.0  # above 1: refused, and eps is kept
    assert (config.attack.eps, config.attack.eps_per_dim) == (0.1, None)
