"""``Result.load`` / ``pertlearn.load_run``: a saved run read back into Python, the inverse of
``Result.save``, for each pipeline; and the one-line errors of a run directory it cannot read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import pertlearn
from image_data_support import tiny_images
from pertlearn.errors import RunDirError
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.pipelines.images import run_images
from pertlearn.training import TrainResult
from pertlearn.training.minibatch import MinibatchResult

BINARY_SMALL = ["data.n_train=40", "data.n_test=30", "model.width=8"]
BINARY_SMALL += ["train_f.epochs=15", "train_g.epochs=15"]

TINY_TRAIN = {"lr": 0.05, "epochs": 1, "batch_size": 32, "plateau_patience": None}


def tiny_config(pipeline: str) -> Any:
    """A run of ``pipeline`` that takes a second, with every control of the pipeline."""
    if pipeline == "neurips":
        return pertlearn.load_config(
            preset="quickstart",
            overrides=[
                *BINARY_SMALL,
                "data.dim=6",
                "controls=['random_l2_noise', 'mislabeled_clean']",
            ],
        )
    if pipeline == "iclr_artificial":
        return pertlearn.load_config(
            preset="iclr-artificial-l2-uniform",
            overrides=[
                *BINARY_SMALL,
                "data.dim=20",
                "data.n_noise=30",
                "controls=['unperturbed_inputs', 'mislabeled_clean']",
            ],
        )
    tree = tiny_images(n_train=40, train_f=TINY_TRAIN, train_g=TINY_TRAIN)
    tree["data"]["n_test"] = 20
    tree["controls"] = ["unperturbed_inputs", "mislabeled_clean"]
    tree["transfer_eval"] = True
    return validate_config(tree)


def network_inputs(result: pertlearn.Result) -> list[torch.Tensor]:
    """The saved inputs the networks of ``result`` are compared on."""
    keys = ("x_train", "x_test", "x_adv")
    return [result.tensors[key] for key in keys if key in result.tensors]


def assert_same_curves(loaded: TrainResult, trained: TrainResult) -> None:
    assert type(loaded) is type(trained)
    assert loaded.losses == pytest.approx(trained.losses, rel=0, abs=0, nan_ok=True)
    assert loaded.epochs_run == trained.epochs_run
    assert loaded.final_lr == pytest.approx(trained.final_lr, rel=0, abs=0, nan_ok=True)
    if trained.loss_weights is None:
        assert loaded.loss_weights is None
    else:
        assert loaded.loss_weights is not None
        assert torch.equal(loaded.loss_weights, trained.loss_weights)
    if isinstance(trained, MinibatchResult):
        assert isinstance(loaded, MinibatchResult)
        assert loaded.curves_extra == trained.curves_extra


@pytest.fixture(scope="module", params=["neurips", "iclr_artificial", "images"])
def saved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pertlearn.Result, Path]:
    result = pertlearn.run(tiny_config(request.param))
    return result, result.save(tmp_path_factory.mktemp("load") / "run")


def test_loaded_networks_give_the_trained_networks_outputs_exactly(
    saved: tuple[pertlearn.Result, Path],
) -> None:
    result, run_dir = saved
    loaded = pertlearn.Result.load(run_dir)
    assert list(loaded.models) == list(result.models)
    assert len(loaded.models) >= 4  # f, g and every control (images: the transfer model too)
    for name, network in loaded.models.items():
        assert type(network) is type(result.models[name])
        assert not network.training
        trained = result.models[name].eval()
        with torch.no_grad():
            for x in network_inputs(result):
                assert torch.equal(network(x), trained(x)), name


def test_config_metrics_curves_and_tensors_round_trip(
    saved: tuple[pertlearn.Result, Path],
) -> None:
    result, run_dir = saved
    loaded = pertlearn.load_run(run_dir)
    assert type(loaded.config) is type(result.config)
    # config.json records the device the run used in place of "auto"
    assert loaded.config == result.config.model_copy(update={"device": result.device})
    assert loaded.metrics == result.metrics
    assert loaded.stage_seconds == result.stage_seconds
    assert loaded.device == "cpu"
    assert loaded.class_names == result.class_names  # image runs: the names of their classes
    assert list(loaded.curves) == list(result.curves)
    for name, history in result.curves.items():
        assert_same_curves(loaded.curves[name], history)
    assert set(loaded.tensors) == set(result.tensors)  # safetensors sorts its keys
    for key, tensor in result.tensors.items():
        assert torch.equal(loaded.tensors[key], tensor), key


def test_a_run_saved_without_tensors_loads_with_none(tmp_path: Path) -> None:
    config = tiny_config("neurips").model_copy(update={"save_tensors": False})
    result = pertlearn.run(config)
    loaded = pertlearn.load_run(result.save(tmp_path / "run"))
    assert loaded.tensors == {}
    assert loaded.curves["f"].loss_weights is None
    assert loaded.curves["f"].losses == result.curves["f"].losses
    x = result.tensors["x_test"]
    assert torch.equal(loaded.models["g"](x), result.models["g"](x))


def linear_network(
    in_shape: tuple[int, int, int], num_classes: int, generator: torch.Generator
) -> torch.nn.Module:
    """A ``model_factory`` of the images pipeline: a linear classifier on the flat pixels."""
    channels, height, width = in_shape
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(channels * height * width, num_classes)
    )


def test_a_run_built_with_a_model_factory_loads_with_the_factory_only(tmp_path: Path) -> None:
    tree = tiny_images(n_train=30, train_f=TINY_TRAIN, train_g=TINY_TRAIN)
    tree["data"]["n_test"] = 10
    result = run_images(validate_config(tree), model_factory=linear_network)
    run_dir = result.save(tmp_path / "run")
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(run_dir)
    (line,) = str(caught.value).splitlines()
    assert f"model_factory={__name__}.linear_network passed from Python" in line
    assert line.endswith("model_factory=linear_network)")
    loaded = pertlearn.load_run(run_dir, model_factory=linear_network)
    x = result.tensors["x_test"]
    assert torch.equal(loaded.models["g"](x), result.models["g"].eval()(x))
    plain = pertlearn.run(tiny_config("neurips")).save(tmp_path / "plain")
    with pytest.raises(ValueError, match="built its networks from its config"):
        pertlearn.load_run(plain, model_factory=linear_network)


@pytest.fixture
def copy_of(saved: tuple[pertlearn.Result, Path], tmp_path: Path) -> Path:
    """A copy of the saved run directory, free to damage."""
    return Path(shutil.copytree(saved[1], tmp_path / "copy"))


def one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    (line,) = str(err.value).splitlines()
    return line


def test_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(tmp_path / "nowhere")
    assert one_line(caught).endswith("is not a run directory (not a directory)")


def test_a_sweep_directory_says_where_its_runs_are(tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(tmp_path)
    assert one_line(caught) == (
        f"{str(tmp_path)!r} is not a run directory (no config.json); it is a sweep directory, "
        f"its runs are in {str(tmp_path / 'runs')!r}"
    )


def test_the_config_json_of_a_run_names_the_run_too(saved: tuple[pertlearn.Result, Path]) -> None:
    result, run_dir = saved
    assert pertlearn.load_run(run_dir / "config.json").metrics == result.metrics


def test_missing_weights_name_the_file(copy_of: Path) -> None:
    (copy_of / "g.safetensors").unlink()
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(copy_of)
    assert "has no g.safetensors; the run directory is incomplete" in one_line(caught)


def test_corrupt_weights_and_tensors_name_the_file(copy_of: Path) -> None:
    weights = copy_of / "f.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(copy_of)
    assert one_line(caught).startswith(f"{weights}: corrupt or truncated (")
    shutil.copy(copy_of / "g.safetensors", weights)  # whole again: g's weights fit f
    (copy_of / "tensors.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(copy_of)
    assert one_line(caught).startswith(f"{copy_of / 'tensors.safetensors'}: corrupt or truncated")


def test_weights_of_another_network_are_refused(copy_of: Path) -> None:
    config = json.loads((copy_of / "config.json").read_text())
    model = config["config"]["model"]
    if config["config"]["pipeline"] == "images":
        model["options"]["width"] += 2
    else:
        model["width"] += 2
    (copy_of / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(copy_of)
    line = one_line(caught)
    assert "f.safetensors' does not fit the network that config.json builds (" in line


def test_a_config_of_an_unknown_pipeline_is_refused(copy_of: Path) -> None:
    config = json.loads((copy_of / "config.json").read_text())
    config["config"]["pipeline"] = "my_own"
    (copy_of / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunDirError) as caught:
        pertlearn.Result.load(copy_of)
    line = one_line(caught)
    assert "config.json': the run's pipeline 'my_own' is not registered in this process" in line
    assert "import the module that registers it" in line


def test_a_config_its_pipeline_refuses_names_the_file(copy_of: Path) -> None:
    config = json.loads((copy_of / "config.json").read_text())
    config["config"]["seed"] = -1
    (copy_of / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(copy_of)
    assert "config.json': invalid config: seed:" in one_line(caught)


def test_corrupt_curves_name_the_file(copy_of: Path) -> None:
    (copy_of / "curves.json").write_text(json.dumps({"f": {"loss": "falling", "epochs_run": 3}}))
    with pytest.raises(RunDirError) as caught:
        pertlearn.load_run(copy_of)
    assert one_line(caught) == f"{copy_of / 'curves.json'}: f.loss is not a list of numbers"


def test_a_device_that_does_not_exist_is_one_line(saved: tuple[pertlearn.Result, Path]) -> None:
    with pytest.raises(ValueError) as caught:
        pertlearn.load_run(saved[1], device="gpu")
    assert one_line(caught) == "device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got 'gpu'"


def test_a_run_on_an_image_data_file_rebuilds_its_networks_from_the_file_and_metrics(
    tmp_path: Path,
) -> None:
    """The image shape comes from the file's header and the number of classes (which only the
    labels say) from the run's metrics; the normalisation buffers come with the weights."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 8, 8, generator=generator)
    y = torch.arange(48) % 4
    save_file({"x_train": x, "y_train": y}, str(tmp_path / "images.safetensors"))
    tree = tiny_images(n_train=30, train_f=TINY_TRAIN, train_g=TINY_TRAIN)
    tree["data"] = {"name": "file", "path": str(tmp_path / "images.safetensors"), "n_noise": 10}
    result = pertlearn.run(validate_config(tree))
    assert result.metrics["num_classes"] == 4
    loaded = pertlearn.load_run(result.save(tmp_path / "run"))
    trained = result.models["f"].eval()
    assert torch.equal(loaded.models["f"](x), trained(x))
    assert torch.equal(loaded.models["f"].normalize.mean, trained.normalize.mean)
