"""Experiment-tracking export: a finished run read back from TensorBoard's event files and from
MLflow's file store holds its config, its per-epoch curves and its final metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import pertlearn
from pertlearn.cli.main import cli
from pertlearn.errors import MissingExtraError
from pertlearn.reports import tracking
from pertlearn.reports.tracking import check_trackers, export_run, mlflow_uri, tracked_run
from sweep_support import tiny_spec, write_spec_toml

SMALL = [
    "data.n_train=40",
    "data.n_test=40",
    "data.dim=8",
    "model.width=8",
    "train_f.epochs=30",
    "train_g.epochs=30",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = pertlearn.load_config(preset="quickstart", overrides=SMALL)
    out = tmp_path_factory.mktemp("tracking") / "small-run"
    pertlearn.run(config).save(out)
    return out


def _saved(run: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    def load(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((run / name).read_text())
        return data

    return load("config.json"), load("curves.json"), load("metrics.json")


def test_a_run_is_read_as_params_curves_and_metrics(run_dir: Path) -> None:
    saved, curves, metrics = _saved(run_dir)
    run = tracked_run(run_dir)
    assert run.params["train_f.epochs"] == 30 and run.params["model.width"] == 8
    assert run.params["resolved.device"] == saved["resolved"]["device"]
    assert run.params["resolved.device_requested"] == "auto"
    assert set(run.curves) == {"f/loss", "g/loss", "random_l2_noise/loss"}
    assert run.curves["f/loss"] == curves["f"]["loss"]
    assert run.metrics["g_acc_test"] == metrics["g_acc_test"]
    assert run.metrics["g_degenerate"] in (0.0, 1.0)
    assert set(metrics["stage_seconds"]) == {
        "data",
        "train_f",
        "craft",
        "train_g",
        "controls",
        "evaluate",
    }
    assert run.metrics["stage_seconds.train_f"] == metrics["stage_seconds"]["train_f"]


def test_tensorboard_events_hold_the_curves_metrics_and_hparams(
    run_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    _, curves, metrics = _saved(run_dir)
    where = export_run(run_dir, ["tensorboard"], log_dir=tmp_path, name="one")
    folder = tmp_path / "tensorboard" / "one"
    assert where == {"tensorboard": str(folder)}
    # Exporting again replaces the events instead of doubling every point.
    export_run(run_dir, ["tensorboard"], log_dir=tmp_path, name="one")
    events = EventAccumulator(str(folder))
    events.Reload()
    loss = events.Scalars("f/loss")
    assert [e.step for e in loss] == list(range(1, len(curves["f"]["loss"]) + 1))
    assert [e.value for e in loss] == pytest.approx(curves["f"]["loss"], rel=1e-6)
    assert len(events.Scalars("random_l2_noise/loss")) == curves["random_l2_noise"]["epochs_run"]
    (final,) = events.Scalars("metrics/g_acc_test")
    assert final.value == pytest.approx(metrics["g_acc_test"], rel=1e-6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train_f.epochs"].number_value == 30
    assert hparams["resolved.device_requested"].string_value == "auto"


def test_mlflow_run_holds_the_params_curves_and_metrics(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    saved, curves, metrics = _saved(run_dir)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    where = export_run(run_dir, ["mlflow"], log_dir=tmp_path)
    again = export_run(run_dir, ["mlflow"], log_dir=tmp_path)
    assert again == where  # the same run directory is exported once
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set only while exporting
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reading its file store
    client = MlflowClient(tracking_uri=mlflow_uri(tmp_path))
    experiment = client.get_experiment_by_name(saved["config"]["name"])
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_id == where["mlflow"] and found.info.run_name == "small-run"
    assert found.data.params["train_g.epochs"] == "30"
    assert found.data.params["resolved.device_requested"] == "auto"
    assert found.data.metrics["g_acc_test"] == pytest.approx(metrics["g_acc_test"])
    history = client.get_metric_history(found.info.run_id, "g/loss")
    assert [m.step for m in history] == list(range(1, curves["g"]["epochs_run"] + 1))
    assert [m.value for m in history] == pytest.approx(curves["g"]["loss"], rel=1e-6)


def test_a_missing_extra_is_one_line_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(tracking._PACKAGES, "mlflow", "pertlearn_no_such_package")
    with pytest.raises(MissingExtraError, match=r"pip install 'pertlearn\[mlflow\]'"):
        check_trackers(["mlflow"])
    out = tmp_path / "never-written"
    result = CliRunner().invoke(cli, ["run", "--log", "mlflow", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: exporting to mlflow needs the pertlearn_no_such_package package: "
        "pip install 'pertlearn[mlflow]'"
    ]
    assert not out.exists()


def test_unknown_trackers_are_refused_and_repeats_dropped() -> None:
    with pytest.raises(ValueError, match="unknown tracker 'wandb'"):
        check_trackers(["wandb"])
    with pytest.raises(ValueError, match="unknown tracker 'wandb'"):  # one name, not letters
        check_trackers("wandb")
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    assert check_trackers(["tensorboard", "tensorboard"]) == ["tensorboard"]
    assert check_trackers("tensorboard") == ["tensorboard"]


def test_cli_run_log_and_export_write_into_the_run_directory(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    out = tmp_path / "run"
    args = ["run", "-q", *[a for o in SMALL for a in ("--set", o)], "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--log", "tensorboard"])
    assert result.exit_code == 0, result.output
    assert list((out / "tensorboard" / "run").glob("events.out.tfevents.*"))
    assert "stages: data" in result.output
    # The export folders belong to the run: --overwrite still replaces it.
    again = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    exported = CliRunner().invoke(
        cli, ["export", str(out), "--to", "tensorboard", "--log-dir", str(tmp_path / "logs")]
    )
    assert exported.exit_code == 0, exported.output
    assert list((tmp_path / "logs" / "tensorboard" / "run").glob("events.out.tfevents.*"))


def test_export_of_a_folder_that_is_no_run_or_sweep_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--to", "tensorboard"])
    assert result.exit_code == 2
    assert "is not a sweep directory" in result.output


def test_sweep_log_exports_every_run_by_its_run_id(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    spec = tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [4, 8]})
    spec_file = write_spec_toml(tmp_path / "s.toml", spec)
    out = tmp_path / "sweep"
    args = ["sweep", str(spec_file), "--out", str(out), "-q", "--log", "tensorboard"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run_ids = sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith("."))
    assert len(run_ids) == 2
    exported = sorted(p.name for p in (out / "tensorboard").iterdir())
    assert exported == run_ids
