"""The run directory records the device the run used (``device = "auto"`` resolved), the
requested one beside it, and the stage timings beside the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
