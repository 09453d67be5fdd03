"""Paths in configs (``data.path``, ``data.data_dir``, ``f_weights``, ``checkpoint_dir``): a
relative one in a config file (a run config, a preset file, a sweep spec) is read relative to
that file's folder, one given by ``--set`` or from Python relative to the current directory;
the config holds it absolute, so the run directory's ``config.json`` reruns the same file from
any directory, and a sweep resumed from the same place keeps its fingerprint and run ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from pertlearn import load_config
from pertlearn.cli.main import cli
from pertlearn.experiments.config_tree import read_config_file
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.presets import ENV_VAR
from pertlearn.experiments.sweeps import load_sweep

FAST_IMAGES = """
pipeline = "images"
data.name = "file"
data.path = "{path}"
model.name = "mlp"
model.options = {{hidden = 8}}
attack = {{name = "pgd_l2", eps = 1.0, options = {{steps = 1}}}}
train_f = {{epochs = 1, batch_size = 16}}
train_g = {{epochs = 1, batch_size = 16}}
"""
"""A config file of a run on the image file ``path`` that takes about a second."""


def write_images(path: Path, seed: int = 0) -> Path:
    """30 random images ``(1, 8, 8)`` of 3 classes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((30, 1, 8, 8), generator=gen)
    save_file({"x_train": x, "y_train": torch.arange(30) % 3}, str(path))
    return path


def write_binary(path: Path) -> Path:
    """40 samples ``(40, 3)`` with ±1 labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y = torch.tensor([1.0, -1.0]).repeat(20)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) + y[:, None]
    save_file({"x_train": x, "y_train": y}, str(path))
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current directory: an empty folder away from the config files."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("pipeline", ["images", "neurips"])
def test_a_relative_data_path_in_a_config_file_is_read_from_its_folder(
    tmp_path: Path, elsewhere: Path, pipeline: str
) -> None:
    write = write_images if pipeline == "images" else write_binary
    data = write(tmp_path / "project" / "data" / "d.safetensors")
    config_file = tmp_path / "project" / "conf" / "run.toml"
    config_file.parent.mkdir()
    config_file.write_text(
        f'pipeline = "{pipeline}"\ndata.name = "file"\ndata.path = "../data/d.safetensors"\n'
    )
    for source in (config_file, Path("..") / "project" / "conf" / "run.toml"):
        assert load_config(source).data.path == str(data)
    as_json = config_file.with_suffix(".json")
    as_json.write_text(
        json.dumps(
            {"pipeline": pipeline, "data": {"name": "file", "path": "../data/d.safetensors"}}
        )
    )
    assert load_config(as_json).data.path == str(data)


def test_every_path_key_of_a_config_file_is_read_from_its_folder(
    tmp_path: Path, elsewhere: Path
) -> None:
    config_file = tmp_path / "conf" / "run.toml"
    config_file.parent.mkdir()
    config_file.write_text(
        'pipeline = "images"\ndata.data_dir = "data"\ncheckpoint_dir = "ckpt"\n'
        'f_weights = "runs/f"\n'
    )
    config = load_config(config_file)
    folder = tmp_path / "conf"
    assert (config.data.data_dir, config.checkpoint_dir, config.f_weights) == (
        str(folder / "data"),
        str(folder / "ckpt"),
        str(folder / "runs" / "f"),
    )
    absolute = load_config(config_file, overrides=[f"checkpoint_dir='{tmp_path}'"])
    assert absolute.checkpoint_dir == str(tmp_path)  # an absolute path stays as it is


def test_set_and_python_paths_are_read_from_the_current_directory(
    tmp_path: Path, elsewhere: Path
) -> None:
    data = write_images(elsewhere / "img.safetensors")
    config_file = tmp_path / "conf" / "run.toml"
    config_file.parent.mkdir()
    config_file.write_text(FAST_IMAGES.format(path="unused.safetensors"))
    overridden = load_config(config_file, overrides=["data.path=img.safetensors"])
    assert overridden.data.path == str(data)
    tree = {"pipeline": "images", "data": {"name": "file", "path": "img.safetensors"}}
    assert validate_config(tree).data.path == str(data)
    assert load_config(tree).data.path == str(data)
    dotted = tree | {"data": {"name": "file", "path": "./img.safetensors"}}
    assert validate_config(dotted).data.path == str(data)  # normalised


def test_a_rerun_from_another_directory_reads_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_dir, other_dir = tmp_path / "first", tmp_path / "other"
    data = write_images(first_dir / "img.safetensors")
    write_images(other_dir / "img.safetensors", seed=1)  # a file of the same name elsewhere
    (first_dir / "run.toml").write_text(FAST_IMAGES.format(path="unused.safetensors"))
    runner = CliRunner()
    monkeypatch.chdir(first_dir)
    args = ["run", "-q", "run.toml", "--set", "data.path=img.safetensors", "--out", "a"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    recorded = json.loads((first_dir / "a" / "config.json").read_text())["config"]
    assert recorded["data"]["path"] == str(data)

    monkeypatch.chdir(other_dir)
    again = runner.invoke(cli, ["run", "-q", str(first_dir / "a"), "--out", "b"])
    assert again.exit_code == 0, again.output
    assert "changed since run" not in again.output
    a, b = (
        json.loads(p.read_text())
        for p in (first_dir / "a" / "metrics.json", other_dir / "b" / "metrics.json")
    )
    for timing in ("seconds", "stage_seconds"):
        a.pop(timing), b.pop(timing)
    assert a == b


def test_a_run_record_keeps_the_paths_it_recorded(tmp_path: Path) -> None:
    """A record written before paths were recorded absolute keeps its relative path, read
    relative to the current directory as it was then."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tree = {"pipeline": "images", "data": {"name": "file", "path": "img.safetensors"}}
    (run_dir / "config.json").write_text(json.dumps({"config": tree, "resolved": {}}))
    assert read_config_file(run_dir)["data"]["path"] == "img.safetensors"


def test_a_preset_file_reads_its_relative_paths_from_its_folder(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    presets = tmp_path / "presets"
    data = write_images(presets / "images" / "img.safetensors")
    (presets / "mine.toml").write_text(
        'summary = "my images"\npreset = "iclr-mnist-natural-rand-l2"\n'
        'data.name = "file"\n[scale.cpu]\ndata.path = "images/img.safetensors"\n'
    )
    monkeypatch.setenv(ENV_VAR, str(presets))
    assert load_config(preset="mine").data.path == str(data)


def sweep_spec(folder: Path, grid: str) -> Path:
    """A sweep spec ``folder/sweep.toml`` whose base runs on ``img.safetensors`` (a path
    relative to the spec), with the axes ``grid``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "sweep.toml"
    spec.write_text(
        'name = "files"\n[base]' + FAST_IMAGES.format(path="img.safetensors") + f"[grid]\n{grid}\n"
    )
    return spec


def test_a_sweep_reads_the_relative_paths_of_its_spec_from_the_spec_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = sweep_spec(tmp_path / "project", '"data.path" = ["a.safetensors", "b.safetensors"]')
    for name in ("img", "a", "b"):
        write_images(tmp_path / "project" / f"{name}.safetensors")
    seen = []
    for cwd in (tmp_path, tmp_path / "project"):
        monkeypatch.chdir(cwd)
        sweep = load_sweep(spec)
        points = sweep.points()
        assert [p.config.data.path for p in points] == [
            str(tmp_path / "project" / f"{name}.safetensors") for name in "ab"
        ]
        assert sweep.base_config().data.path == str(tmp_path / "project" / "img.safetensors")
        seen.append((sweep.fingerprint, [p.run_id for p in points]))
    assert seen[0] == seen[1]  # the same sweep from any directory


def test_a_relative_set_path_of_a_sweep_is_read_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint holds the ``--set`` as written; the run ids the file it names from
    where the sweep runs, so resuming it elsewhere does not mix two files' runs."""
    spec = sweep_spec(tmp_path / "project", 'scenario = ["natural_rand"]')
    seen = []
    for cwd in (tmp_path / "one", tmp_path / "two"):
        write_images(cwd / "mine.safetensors")
        monkeypatch.chdir(cwd)
        sweep = load_sweep(spec, overrides=["data.path=mine.safetensors"])
        (point,) = sweep.points()
        assert point.config.data.path == str(cwd / "mine.safetensors")
        seen.append((sweep.fingerprint, point.run_id))
    assert seen[0][0] == seen[1][0] and seen[0][1] != seen[1][1]


def test_a_sweep_on_a_file_resumes_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = sweep_spec(tmp_path / "project", 'scenario = ["natural_rand", "natural_det"]')
    data = write_images(tmp_path / "project" / "img.safetensors")
    out = tmp_path / "project" / "out"
    runner = CliRunner()
    outputs = []
    for cwd in (tmp_path / "one", tmp_path / "two"):
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        result = runner.invoke(cli, ["sweep", str(spec), "--workers", "1", "--out", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "2 already complete" in outputs[1], outputs
    configs = [json.loads(p.read_text()) for p in out.glob("runs/*/config.json")]
    assert [c["config"]["data"]["path"] for c in configs] == [str(data)] * 2
