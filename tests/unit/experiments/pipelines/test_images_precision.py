"""The images pipeline's paper-scale options: ``craft_batch_size = "auto"`` (a fixed size on
the CPU, memory-probed on CUDA), ``craft_precision`` and the training ``precision``; tiny runs
on the in-repo MNIST subset."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import pertlearn
from image_data_support import tiny_images
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.pipelines.images import CPU_CRAFT_BATCH, resolve_craft_batch
from pertlearn.models.cnn import SmallCNN

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def tiny(**extra: Any) -> dict[str, Any]:
    """An images config on 3 MNIST classes: 150 training and 60 test digits, 2 epochs."""
    return tiny_images("natural_det", **extra)


def test_craft_options_are_validated() -> None:
    assert validate_config(tiny(craft_batch_size="auto")).craft_batch_size == "auto"
    with pytest.raises(ConfigError, match="craft_batch_size must be at least 1 or 'auto'"):
        validate_config(tiny(craft_batch_size=0))
    with pytest.raises(ConfigError, match="craft_precision"):
        validate_config(tiny(craft_precision="fp8"))


def test_auto_craft_batch_is_fixed_on_the_cpu() -> None:
    model = SmallCNN((1, 28, 28), 3)
    sample = torch.rand(1, 1, 28, 28)
    assert resolve_craft_batch("auto", model, sample, "fp32") == CPU_CRAFT_BATCH
    assert resolve_craft_batch(77, model, sample, "fp32") == 77


def test_auto_on_the_cpu_is_the_fixed_run_bit_for_bit() -> None:
    fixed = pertlearn.run(validate_config(tiny(craft_batch_size=CPU_CRAFT_BATCH))).metrics
    auto = pertlearn.run(validate_config(tiny(craft_batch_size="auto"))).metrics
    assert auto.pop("craft_batch_size") == CPU_CRAFT_BATCH
    assert "craft_batch_size" not in fixed
    fixed.pop("seconds"), auto.pop("seconds")
    assert auto == fixed


def test_bf16_training_and_crafting_stay_close_to_fp32() -> None:
    """bf16 everywhere on the CPU against the same fp32 run: the perturbations stay fp32 and in
    the ε-ball, f's test accuracy and the fooling rate move by at most 0.1 (measured: 0.017 and
    0)."""

    def run(precision: str) -> pertlearn.Result:
        train = {"lr": 0.05, "epochs": 2, "batch_size": 32, "plateau_patience": None}
        train["precision"] = precision
        config = tiny(craft_precision=precision, train_f=train, train_g=train)
        return pertlearn.run(validate_config(config))

    exact, low = run("fp32").metrics, run("bf16")
    t = low.tensors
    assert t["x_adv"].dtype == torch.float32
    norms = (t["x_adv"] - t["x_train"]).flatten(1).norm(dim=1)
    assert norms.max().item() <= 3.0 + 1e-4
    assert abs(low.metrics["f_acc_test"] - exact["f_acc_test"]) <= 0.1
    assert abs(low.metrics["fooling_rate"] - exact["fooling_rate"]) <= 0.1


@needs_cuda
def test_auto_craft_batch_on_cuda_is_probed_and_recorded() -> None:
    metrics = pertlearn.run(validate_config(tiny(craft_batch_size="auto", device="cuda"))).metrics
    assert metrics["craft_batch_size"] >= 64 and metrics["craft_batch_size"] % 64 == 0
