"""The run directory records the device the run used (``device = "auto"`` resolved), the
requested one beside it, and the stage timings beside the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import pertlearn
from pertlearn.errors import RunDirExistsError, cli_message
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.sweeps import config_hash
from pertlearn.seeding import resolved_device_name

SMALL = ["data.dim=6", "data.n_train=30", "data.n_test=30", "model.width=6"]
SMALL += ["train_f.epochs=10", "train_g.epochs=10"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[pertlearn.Result, Path]:
    result = pertlearn.run(pertlearn.load_config(preset="quickstart", overrides=SMALL))
    out = tmp_path_factory.mktemp("rundir") / "run"
    result.save(out)
    return result, out


def test_config_json_holds_the_resolved_device_and_reruns_to_the_same_run_id(
    saved: tuple[pertlearn.Result, Path],
) -> None:
    result, out = saved
    assert result.config.device == "auto"
    payload = json.loads((out / "config.json").read_text())
    here = resolved_device_name("auto")
    assert payload["config"]["device"] == here == result.device
    assert payload["resolved"]["device"] == here
    assert payload["resolved"]["device_requested"] == "auto"
    rerun = validate_config(payload["config"])
    assert config_hash(rerun) == config_hash(result.config)
    assert pertlearn.run(rerun).metrics["g_acc_test"] == result.metrics["g_acc_test"]


def test_metrics_json_holds_the_stage_timings_beside_the_metrics(
    saved: tuple[pertlearn.Result, Path],
) -> None:
    result, out = saved
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stage_seconds"] == pytest.approx(result.stage_seconds)
    assert {k: v for k, v in metrics.items() if k != "stage_seconds"} == pytest.approx(
        result.metrics
    )


def test_saving_over_a_run_speaks_python_and_the_cli_speaks_flags(
    saved: tuple[pertlearn.Result, Path],
) -> None:
    result, out = saved
    with pytest.raises(RunDirExistsError) as caught:
        result.save(out)
    assert "overwrite=True" in str(caught.value) and "--" not in str(caught.value)
    assert cli_message(caught.value).endswith("choose another --out or pass --overwrite")


def test_run_ids_hash_the_device_this_machine_resolves_auto_to() -> None:
    auto = pertlearn.load_config(preset="quickstart", overrides=SMALL)
    explicit = pertlearn.load_config(
        preset="quickstart", overrides=[*SMALL, f"device={resolved_device_name('auto')!r}"]
    )
    assert config_hash(auto) == config_hash(explicit)


def small_network(
    in_shape: tuple[int, int, int], num_classes: int, generator: object
) -> torch.nn.Module:
    """A model_factory of the images pipeline: a linear classifier on the flat pixels."""
    channels, height, width = in_shape
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(channels * height * width, num_classes)
    )


def test_a_run_built_with_a_model_factory_is_not_rerun_from_its_directory(
    tmp_path: Path,
) -> None:
    """config.json cannot record a model_factory passed from Python: the run names it in its
    metrics, and ``pertlearn run RUN_DIR`` and a sweep with ``config = RUN_DIR`` refuse to train
    another network in its place."""
    from click.testing import CliRunner

    from image_data_support import tiny_images
    from pertlearn.cli.main import cli
    from pertlearn.experiments.pipelines.images import run_images

    train = {"lr": 0.05, "epochs": 1, "batch_size": 32, "plateau_patience": None}
    tree = tiny_images(n_train=30, train_f=train, train_g=train)
    tree["data"]["n_test"] = 10
    result = run_images(validate_config(tree), model_factory=small_network)
    assert result.metrics["model_factory"] == f"{__name__}.small_network"
    run_dir = result.save(tmp_path / "run")
    again = CliRunner().invoke(cli, ["run", str(run_dir), "--out", str(tmp_path / "again")])
    assert again.exit_code == 2
    (line,) = again.output.strip().splitlines()
    assert f"model_factory={__name__}.small_network passed from Python" in line
    assert line.endswith("model_factory=small_network)")
    assert not (tmp_path / "again").exists()
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'config = "{run_dir.name}"\nseeds = [0, 1]\n')
    swept = CliRunner().invoke(cli, ["sweep", str(spec), "--out", str(tmp_path / "swept")])
    assert swept.exit_code == 2
    assert "model_factory=" in swept.output.strip().splitlines()[-1]
    assert not (tmp_path / "swept").exists()
    plain = pertlearn.run(validate_config(tree)).save(tmp_path / "plain")
    assert "model_factory" not in json.loads((plain / "metrics.json").read_text())
