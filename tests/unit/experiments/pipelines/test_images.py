"""The images pipeline, binary image tasks in the neurips pipeline, and the image presets.

End-to-end runs use real MNIST digits at tiny sizes: the in-repo subset (tests/data/mnist);
the figures on the full test set (``full_data``) read ``$PERTLEARN_DATA``
(tests/image_data_support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import pertlearn
from image_data_support import fixture_data_dir
from image_data_support import tiny_images as support_tiny_images
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.image_data import draw_image_targets
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.pipelines.images import run_images
from pertlearn.experiments.presets import PRESETS, load_config
from pertlearn.experiments.rundir import read_metrics
from pertlearn.metrics import predictions
from pertlearn.models.cnn import build_image_model
from pertlearn.training.minibatch import fit_minibatch


def tiny_images(scenario: str, **extra: Any) -> dict[str, Any]:
    return support_tiny_images(scenario, **{"controls": [], "craft_batch_size": 32, **extra})


def test_natural_det_end_to_end_and_fooling_check(tmp_path: Path) -> None:
    config = validate_config(tiny_images("natural_det"))
    result = pertlearn.run(config)
    m, t = result.metrics, result.tensors
    assert torch.equal(t["y_adv"], (t["y_train"] + 1) % 3)
    assert t["x_adv"].min() >= 0 and t["x_adv"].max() <= 1  # clipped to the pixel range
    norms = (t["x_adv"] - t["x_train"]).flatten(1).norm(dim=1)
    assert norms.max().item() <= 3.0 + 1e-4
    # fooling check recomputed independently from the saved tensors
    fooled = predictions(result.models["f"], t["x_adv"]) == t["y_adv"]
    assert m["fooling_rate"] == pytest.approx(fooled.float().mean().item())
    for k in range(3):
        mask = t["y_adv"] == k
        assert m["fooling_rate_per_class"][str(k)] == pytest.approx(
            fooled[mask].float().mean().item()
        )
    assert m["chance"] == pytest.approx(1 / 3) and m["n_train"] == 150 and m["n_test"] == 60
    assert len(result.curves["g"].val_acc) == 2
    assert m["g_best_acc_test"] == max(result.curves["g"].val_acc)
    out = result.save(tmp_path / "run")
    saved = read_metrics(out)
    assert set(saved["fooling_rate_per_class"]) == {"0", "1", "2"}
    import json

    curves = json.loads((out / "curves.json").read_text())
    assert len(curves["g"]["val_acc"]) == 2


def test_natural_rand_targets_are_other_classes() -> None:
    y = torch.randint(0, 10, (5000,), generator=torch.Generator().manual_seed(0))
    t = draw_image_targets("natural_rand", y, 10, torch.Generator().manual_seed(1))
    assert not bool((t == y).any())
    shifts = torch.bincount((t - y) % 10, minlength=10)
    assert shifts[0] == 0 and shifts[1:].min() > 450  # uniform over the 9 others (~555 each)


def test_uniform_scenario_with_control_and_checkpoints(tmp_path: Path) -> None:
    tree = tiny_images("uniform", controls=["unperturbed_inputs"])
    tree["checkpoint_dir"] = str(tmp_path / "ckpt")
    config = validate_config(tree)
    first = run_images(config)
    m = first.metrics
    assert m["n_adv"] == 70 and "fooling_rate_per_source_class" not in m
    assert {"control_g_acc_test", "control_g_acc_train"} <= set(m)
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"f", "g", "unperturbed_inputs"}
    # the rerun resumes every network from its final checkpoint: same numbers
    second = run_images(config)
    assert second.curves["g"].resumed_from == 2
    assert second.metrics["g_acc_test"] == m["g_acc_test"]
    assert torch.equal(second.tensors["x_adv"], first.tensors["x_adv"])


def test_user_model_factory() -> None:
    calls = []

    def factory(
        in_shape: tuple[int, int, int], num_classes: int, gen: torch.Generator
    ) -> nn.Module:
        calls.append((in_shape, num_classes))
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
        return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))

    result = run_images(validate_config(tiny_images("natural_rand")), model_factory=factory)
    assert calls == [((1, 28, 28), 3), ((1, 28, 28), 3)]
    assert 0 <= result.metrics["g_acc_test"] <= 1


def test_images_pipeline_rejects_binary_models_and_synthetic_data() -> None:
    tree = tiny_images("natural_rand")
    tree["model"] = {"name": "two_layer", "width": 10}
    with pytest.raises(ConfigError, match=r"model\.name"):
        validate_config(tree)
    with pytest.raises(ConfigError, match=r"data\.name"):
        validate_config({"pipeline": "images", "data": {"name": "gauss"}})


def test_neurips_pipeline_on_a_binary_image_task() -> None:
    tree = {
        "data": {
            "name": "mnist",
            "classes": [1, 2],
            "n_train": 300,
            "n_test": 100,
            "data_dir": str(fixture_data_dir()),
        },
        "model": {"name": "two_layer", "width": 100},
        "train_f": {"loss": "logistic", "lr": 0.1, "epochs": 50},
        "train_g": {"loss": "logistic", "lr": 0.01, "epochs": 20},
        "attack": {"name": "gradient_step", "eps": 0.14},
    }
    config = validate_config(tree)
    assert config.data.dim == 784 and config.eps == 0.14
    result = pertlearn.run(config)
    t = result.tensors
    assert t["x_train"].shape == (300, 784) and set(t["y_train"].tolist()) == {-1.0, 1.0}
    assert result.metrics["f_acc_test"] > 0.9
    assert t["x_train"].min().item() == pytest.approx(-0.1307, abs=1e-6)


def test_image_data_config_errors() -> None:
    with pytest.raises(ConfigError, match="dimension 784"):
        validate_config({"data": {"name": "mnist", "dim": 100}})
    with pytest.raises(ConfigError, match="classes"):
        validate_config({"data": {"name": "mnist", "classes": [1, 10]}})
    with pytest.raises(ConfigError, match=r"scenario"):
        validate_config({"pipeline": "images", "scenario": "natural"})
    with pytest.raises(ConfigError, match=r"images: unknown key for the neurips pipeline"):
        validate_config({"images": {"scenario": "natural_det"}})


IMAGE_PREFIXES = (
    "iclr-mnist-",
    "iclr-fmnist-",
    "iclr-cifar10-",
    "neurips-mnist-",
    "neurips-fmnist-",
)
IMAGE_PRESETS = sorted(n for n in PRESETS if n.startswith(IMAGE_PREFIXES))


def test_all_image_presets_are_registered() -> None:
    expected = {f"neurips-{d}-{s}" for d in ("mnist", "fmnist") for s in "ab"} | {
        f"iclr-{d}-{s}-{n}"
        for d in ("mnist", "fmnist", "cifar10")
        for s in ("natural-rand", "natural-det", "uniform")
        for n in ("l0", "l2", "linf")
    }
    assert expected <= set(IMAGE_PRESETS)


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_image_presets_build(scale: str) -> None:
    for name in IMAGE_PRESETS:
        config = load_config(preset=name, scale=scale)
        assert config.data.name in {"mnist", "fashion_mnist", "cifar10"}
        if scale == "cpu" and config.pipeline == "images":
            assert config.model.name == "small_cnn" and config.data.n_train <= 5000


@pytest.mark.parametrize("dataset", ["mnist", "fmnist", "cifar10"])
def test_paper_scale_model_instantiates_and_trains_one_step(dataset: str) -> None:
    """Paper-scale models (ICLR24 residual CNN; WRN-28-10) do one SGD step on 4 images."""
    config = load_config(preset=f"iclr-{dataset}-natural-rand-l2", scale="paper")
    from pertlearn.data.catalogue import DATASETS

    info = DATASETS[config.data.name]
    model = build_image_model(
        config.model.name,
        info.shape,
        10,
        mean=info.mean,
        std=info.std,
        options=config.model.options,
        generator=torch.Generator().manual_seed(0),
    )
    x = torch.rand(4, *info.shape)
    y = torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    train = config.train_f.model_copy(update={"epochs": 1, "batch_size": 4})
    history = fit_minibatch(model, x, y, train)
    assert history.epochs_run == 1 and torch.isfinite(torch.tensor(history.losses)).all()
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert config.train_f.nesterov and config.train_f.weight_decay == 5e-4
    assert config.attack.options.get("steps") == 100


def test_neurips_paper_presets_instantiate() -> None:
    for name in ("neurips-mnist-a", "neurips-fmnist-b"):
        config = load_config(preset=name, scale="paper")
        model = pertlearn.experiments.build_model(
            config.model, config.data.dim, torch.Generator().manual_seed(0), torch.float32
        )
        assert model(torch.rand(3, 784)).shape == (3,)


def test_cli_run_with_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from pertlearn.cli.main import cli

    monkeypatch.delenv("PERTLEARN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    args = ["run", "--preset", "neurips-mnist-a", "-q", "--out", str(tmp_path / "run")]
    args += ["--set", "train_f.epochs=2", "--set", "train_g.epochs=2", "--set", "data.n_train=50"]
    missing = CliRunner().invoke(cli, args)
    assert missing.exit_code == 2 and "pertlearn data download mnist" in missing.output
    ok = CliRunner().invoke(cli, [*args, "--data-dir", str(fixture_data_dir())])
    assert ok.exit_code == 0, ok.output
    assert read_metrics(tmp_path / "run")["eps"] == 0.14
