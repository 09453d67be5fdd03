"""Presets as data: the TOML files reproduce the recorded preset trees and sweep specs, the
registry lists them all, every preset validates, users add presets through PERTLEARN_PRESETS,
bad files fail with one line naming the file, and a built wheel ships the files."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pertlearn.experiments.config import AttackConfig, ConfigError
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.presets import (
    ENV_VAR,
    PRESETS,
    SCALES,
    builtin_registry,
    load_config,
    preset_tree,
    presets,
    read_root,
    sweep_presets,
)
from pertlearn.experiments.sweeps import load_sweep

HERE = Path(__file__).parent
REPO = HERE.parents[2]
RECORDED = json.loads((HERE / "preset_trees_before.json").read_text(encoding="utf-8"))
"""Every preset tree and sweep spec at both scales, dumped from the Python builders before
the presets became TOML files (``{"presets"|"sweeps": {name: {summary, cpu, paper}}}``)."""

ADDED_SWEEPS = [
    "transfer-mnist-l2",
    "transfer-cifar10-l2",
    "band-limited-mnist-l2",
    "band-limited-cifar10-l2",
    "hit-repair-mnist-l2",
    "hit-repair-cifar10-l2",
]
"""Sweep presets added after the recording (feature studies of the images pipeline)."""

EPS_PER_DIM_IS_A_KEY = "eps_per_dim" in AttackConfig.model_fields


@pytest.fixture(autouse=True)
def _no_user_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def exact(value: Any) -> str:
    """Canonical JSON: equal only for equal values of equal types (1 differs from 1.0)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def resolve_eps_per_dim(tree: dict[str, Any]) -> dict[str, Any]:
    """The recorded trees hold the L0 budget k as ``attack.eps = max(1, round(c·d))``; the
    data files hold the rule ``attack.eps_per_dim = c``. Comparison only."""
    tree = copy.deepcopy(tree)
    attack = tree.get("attack", {})
    if "eps_per_dim" in attack:
        c = attack.pop("eps_per_dim")
        attack["eps"] = float(max(1, round(c * tree["data"]["dim"])))
    return tree


CONTROL_NAMES = {"neurips": "random_l2_noise", "iclr_artificial": "unperturbed_inputs"}


def per_pipeline_shape(recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded trees predate per-pipeline configs: the images pipeline's ``images`` table
    became top-level keys (``batch_size`` → ``craft_batch_size``) and the control
    ``control_random`` is named by what it is. Presets no longer set ``device``: every config
    defaults to ``"auto"`` (CUDA when available, else the CPU). Comparison only."""
    tree = copy.deepcopy(recorded)
    tree.pop("device", None)
    pipeline = tree.get("pipeline", "neurips")
    images = tree.pop("images", None)
    if images is not None:
        if "batch_size" in images:
            images["craft_batch_size"] = images.pop("batch_size")
        tree.update(images)
    if "controls" in tree:
        name = CONTROL_NAMES.get(pipeline, "unperturbed_inputs")
        tree["controls"] = [name if c == "control_random" else c for c in tree["controls"]]
    return tree


# ------------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", list(RECORDED["presets"]))
def test_preset_equals_the_recorded_tree(name: str, scale: str) -> None:
    tree = preset_tree(name, scale)
    recorded = per_pipeline_shape(RECORDED["presets"][name][scale])
    assert exact(resolve_eps_per_dim(tree)) == exact(recorded)
    assert presets()[name].summary == RECORDED["presets"][name]["summary"]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", list(RECORDED["sweeps"]))
def test_sweep_preset_equals_the_recorded_spec(name: str, scale: str) -> None:
    preset = sweep_presets()[name]
    spec, recorded = preset.build(scale), RECORDED["sweeps"][name][scale]
    assert exact(spec) == exact(recorded)
    for table in ("grid", "zip"):  # the axis order decides the point order and fingerprint
        assert list(spec.get(table, {})) == list(recorded.get(table, {}))
    assert preset.summary == RECORDED["sweeps"][name]["summary"]


def test_no_preset_hard_codes_a_device() -> None:
    for name in presets():
        for scale in SCALES:
            assert "device" not in preset_tree(name, scale), (name, scale)


def test_the_l0_budget_is_a_rule_in_the_data() -> None:
    for name in ("iclr-artificial-l0-uniform", "iclr-artificial-l0-gauss"):
        for scale in SCALES:
            assert preset_tree(name, scale)["attack"] == {"name": "pgd_l0", "eps_per_dim": 0.05}


ADDED_PRESETS = [
    f"ilyas-{data}-{name}"
    for data in ("mnist", "cifar10")
    for name in ("robust-f", "d-r", "d-nr", "d-det", "d-rand")
]
"""Presets added after the recording (Ilyas et al. arXiv:1905.02175: robust f, D_R, D_NR,
D_det and D_rand with the leakage control); validated by the common tests below."""


def test_the_listing_is_complete() -> None:
    assert sorted(presets()) == sorted([*RECORDED["presets"], *ADDED_PRESETS])
    assert sorted(sweep_presets()) == sorted([*RECORDED["sweeps"], *ADDED_SWEEPS])
    assert list(PRESETS) == list(presets()) and len(PRESETS) == 42 + len(ADDED_PRESETS)
    assert next(iter(PRESETS)) == "quickstart"  # root folder first
    assert not any(name.startswith("_") for name in PRESETS)


def test_a_base_is_not_a_preset() -> None:
    assert "_iclr-images" in builtin_registry().presets
    with pytest.raises(ConfigError, match="is a base of other presets"):
        preset_tree("_iclr-images")


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'quickstart'"):
        preset_tree("quickstar")
    with pytest.raises(ConfigError, match="unknown scale 'gpu'"):
        preset_tree("quickstart", "gpu")
    with pytest.raises(ConfigError, match="did you mean 'neurips-gauss-a-dim'"):
        load_sweep("neurips-gauss-a-dimm")


# ------------------------------------------------------------- every preset validates


def _validation_cases() -> list[Any]:
    cases = []
    for name in presets():
        for scale in SCALES:
            needs_key = "eps_per_dim" in preset_tree(name, scale).get("attack", {})
            mark = pytest.mark.xfail(
                needs_key and not EPS_PER_DIM_IS_A_KEY,
                reason="attack.eps_per_dim (ε = c·d) is not an AttackConfig key yet",
                raises=ConfigError,
                strict=True,
            )
            cases.append(pytest.param(name, scale, marks=mark, id=f"{name}-{scale}"))
    return cases


@pytest.mark.parametrize(("name", "scale"), _validation_cases())
def test_every_preset_validates(name: str, scale: str) -> None:
    config = validate_config(preset_tree(name, scale))
    assert config.name == name
    assert load_config(preset=name, scale=scale) == config


# ---------------------------------------------------------------------- user presets


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


USER_PRESET = """
summary = "quickstart with a wider network"
preset = "quickstart"
description = "mine"

[model]
width = 200

[scale.paper]
data.n_train = 4000
"""

USER_SWEEP = """
summary = "my width sweep"
preset = "my-wide"
seeds = [0, 1]

[grid]
"model.width" = [10, 20]

[scale.paper.base]
save_tensors = false
"""


def test_a_user_directory_adds_a_preset_and_a_sweep_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one / "mine" / "my-wide.toml", USER_PRESET)
    write(one / "sweeps" / "my-sweep.toml", USER_SWEEP)
    write(two / "my-other.toml", 'summary = "other"\npreset = "neurips-gauss-a"\n')
    monkeypatch.setenv(ENV_VAR, f"{one}{os.pathsep}{two}")

    assert list(presets())[-2:] == ["my-wide", "my-other"]  # after the built-in ones
    assert presets()["my-wide"].summary == "quickstart with a wider network"
    cpu, paper = load_config(preset="my-wide"), load_config(preset="my-wide", scale="paper")
    assert (cpu.name, cpu.model.width, cpu.data.n_train, cpu.description) == (
        "my-wide",
        200,
        1000,
        "mine",
    )
    assert paper.data.n_train == 4000 and paper.data.dim == 100  # quickstart: cpu sizes
    assert load_config(preset="my-other").data.name == "gauss"

    assert list(sweep_presets())[-1] == "my-sweep"
    spec = sweep_presets()["my-sweep"].build("paper")
    assert spec["scale"] == "paper" and spec["base"] == {"save_tensors": False}
    points = load_sweep("my-sweep").points()
    assert [(p.config.model.width, p.seed) for p in points] == [(10, 0), (10, 1), (20, 0), (20, 1)]
    assert all(p.config.save_tensors for p in points)  # [scale.paper] only
    assert not any(p.config.save_tensors for p in load_sweep("my-sweep", scale="paper").points())


def test_user_presets_are_read_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert "late" not in PRESETS
    write(tmp_path / "late.toml", 'summary = "added later"\npreset = "quickstart"\n')
    assert "late" in PRESETS and preset_tree("late")["name"] == "late"


BAD_FILES = {
    "not TOML": ("bad.toml", "summary = \n", "is not valid TOML"),
    "no summary": ("bad.toml", 'preset = "quickstart"\n', "add a one-line summary"),
    "scale not a table": ("bad.toml", 'summary = "x"\nscale = "cpu"\n', "scale must hold only"),
    "unknown scale": ("bad.toml", 'summary = "x"\n[scale.gpu]\nseed = 1\n', "[scale.cpu]"),
    "built-in name": ("quickstart.toml", 'summary = "x"\n', 'inherit it: preset = "quickstart"'),
    "sweep without summary": ("sweeps/bad.toml", 'preset = "quickstart"\n', "summary"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_user_file_is_one_line_naming_it(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative, text, fragment = BAD_FILES[case]
    path = write(tmp_path / relative, text)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(ConfigError) as info:
        list(PRESETS)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and fragment in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('summary = "x"\npreset = "quickstrat"\n', "base preset 'quickstrat' does not exist"),
        ('summary = "x"\npreset = "bad"\n', "inherit in a cycle (bad -> bad)"),
        ('summary = "x"\npreset = "quickstart"\n[model]\nwidht = 3\n', "model.widht: unknown key"),
    ],
)
def test_a_bad_user_preset_fails_at_load_naming_its_file(
    text: str, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "bad.toml", text)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(preset="bad")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and fragment in message


def test_an_override_error_does_not_blame_the_preset() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(preset="quickstart", overrides=["model.widht=3"])
    assert "model.widht" in str(info.value) and ".toml" not in str(info.value)


def test_a_missing_user_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=f"{ENV_VAR} names .*nowhere.*not a directory"):
        presets()


def test_two_built_in_files_with_one_name_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a" / "same.toml", 'summary = "a"\n')
    write(tmp_path / "b" / "same.toml", 'summary = "b"\n')
    with pytest.raises(ConfigError, match="repeats the name 'same'"):
        read_root(tmp_path)


# ------------------------------------------------------------------------------ wheel


@pytest.mark.slow
def test_a_built_wheel_ships_every_preset_file(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info next to it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(tmp_path / "wheel"), str(source)], check=True)
    (wheel,) = (tmp_path / "wheel").glob("pertlearn-*.whl")

    package = REPO / "src" / "pertlearn"
    expected = {p.relative_to(package.parent).as_posix() for p in package.glob("presets/**/*.toml")}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("pertlearn/presets/")}
        assert expected and shipped == expected
        from_wheel = read_root(zipfile.Path(archive, "pertlearn/presets/"))  # as from a zip
        assert list(from_wheel.presets) == list(builtin_registry().presets)
        assert list(from_wheel.sweeps) == list(builtin_registry().sweeps)


def test_an_empty_table_in_a_file_over_a_preset_drops_the_presets_table(tmp_path: Path) -> None:
    """A config file switching a preset's attack writes ``options = {}`` to drop the options
    the preset set for its own attack (``steps`` and ``batch_size`` of ``pgd_linf``); the
    empty table replaces the preset's, as it does on the command line. A non-empty table still
    merges key by key."""
    file = tmp_path / "mine.toml"
    file.write_text(
        'preset = "iclr-mnist-natural-rand-linf"\n'
        '[attack]\nname = "pgd_l2"\neps = 1.0\noptions = {}\n'
        "[model]\noptions = {}\n"
    )
    config = load_config(file)
    assert config.attack.options == {}
    assert config.model.options == {}
    file.write_text('preset = "iclr-mnist-natural-rand-linf"\n[attack.options]\nsteps = 3\n')
    assert load_config(file).attack.options == {"batch_size": 500, "steps": 3}


def test_an_option_a_preset_set_for_another_attack_says_how_to_drop_it() -> None:
    with pytest.raises(ConfigError, match=r"batch_size is not an option .*attack\.options = \{\}"):
        load_config(preset="iclr-mnist-natural-rand-linf", overrides=["attack.name='random_l2'"])


def test_a_preset_name_passed_as_a_config_file_says_to_pass_it_as_preset() -> None:
    from pertlearn.errors import cli_message

    with pytest.raises(ConfigError) as caught:
        load_config("quickstart")
    assert str(caught.value) == (
        "config file 'quickstart' does not exist; 'quickstart' is a preset: "
        "load_config(preset='quickstart')"
    )
    assert cli_message(caught.value).endswith("is a preset: --preset quickstart")


@pytest.mark.parametrize("overrides", ["seed=3", {"seed": 3}, [("seed", 3)]])
def test_overrides_that_are_not_a_list_of_strings_are_one_clear_error(overrides: Any) -> None:
    with pytest.raises(ConfigError, match=r"^overrides must be a list of 'key=value' strings"):
        load_config(preset="quickstart", overrides=overrides)
