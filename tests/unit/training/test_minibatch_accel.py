"""Paper-scale options of the mini-batch trainer: bf16 autocast, channels last and
torch.compile close to the exact fp32 run on a tiny CNN; fp16 refused on the CPU; the CUDA
paths (device generators, fp16 with a gradient scaler) run where CUDA is present."""

from __future__ import annotations

import copy
import shutil
from typing import Any

import pytest
import torch

from pertlearn.models.cnn import SmallCNN
from pertlearn.training.checkpoint import fingerprint
from pertlearn.training.minibatch import MinibatchConfig, MinibatchResult, fit_minibatch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def toy_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 3, 8, 8)`` images in [0, 1] whose class (0..2) brightens one quadrant."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.rand(n, 3, 8, 8, generator=gen) * 0.5
    x[:, :, :4, :4] += (y == 1).float()[:, None, None, None] * 0.5
    x[:, :, 4:, 4:] += (y == 2).float()[:, None, None, None] * 0.5
    return x, y


def tiny_cnn() -> SmallCNN:
    return SmallCNN((3, 8, 8), 3, width=4, hidden=16, generator=torch.Generator().manual_seed(0))


def train(
    model: torch.nn.Module, device: str = "cpu", **options: Any
) -> tuple[torch.nn.Module, MinibatchResult]:
    x, y = toy_images(128, 0)
    xv, yv = toy_images(64, 1)
    config = MinibatchConfig(
        lr=0.05, batch_size=32, epochs=3, plateau_patience=None, augment=True, **options
    )
    model = model.to(device)
    result = fit_minibatch(
        model,
        x.to(device),
        y.to(device),
        config,
        x_val=xv.to(device),
        y_val=yv.to(device),
        generator=torch.Generator().manual_seed(0),
    )
    return model, result


def parameter_distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """``‖θ_a - θ_b‖ / ‖θ_b‖`` over all parameters."""
    ta = torch.cat([p.detach().cpu().flatten() for p in a.parameters()])
    tb = torch.cat([p.detach().cpu().flatten() for p in b.parameters()])
    return float((ta - tb).norm() / tb.norm())


@pytest.fixture(scope="module")
def exact() -> tuple[torch.nn.Module, MinibatchResult]:
    return train(tiny_cnn())


def test_defaults_are_exact_fp32_without_channels_last_or_compile() -> None:
    config = MinibatchConfig()
    assert (config.precision, config.channels_last, config.compile) == ("fp32", "off", False)


def test_bf16_training_stays_close_to_fp32(exact: tuple[torch.nn.Module, MinibatchResult]) -> None:
    """bf16 keeps 8 significant bits; over 12 SGD steps the losses stay within 2% (relative)
    and the weights within 2% of the fp32 run; the weights themselves remain fp32."""
    model, result = train(tiny_cnn(), precision="bf16")
    ref_model, ref = exact
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for got, want in zip(result.losses, ref.losses, strict=True):
        assert abs(got - want) <= 0.02 * abs(want)
    assert parameter_distance(model, ref_model) < 0.02


def test_channels_last_training_matches_fp32(
    exact: tuple[torch.nn.Module, MinibatchResult],
) -> None:
    """Only the memory layout changes: the same run to float rounding (1e-4)."""
    model, result = train(tiny_cnn(), channels_last="on")
    ref_model, ref = exact
    conv = model.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(result.losses, ref.losses, rtol=1e-4, atol=1e-5)
    assert result.val_acc == ref.val_acc
    assert parameter_distance(model, ref_model) < 1e-4


def test_channels_last_auto_is_off_on_the_cpu(
    exact: tuple[torch.nn.Module, MinibatchResult],
) -> None:
    model, result = train(tiny_cnn(), channels_last="auto")
    assert not model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert result.losses == exact[1].losses  # bit for bit


def test_fp16_is_refused_on_the_cpu() -> None:
    with pytest.raises(ValueError, match="model: precision = 'fp16' needs a CUDA device"):
        train(tiny_cnn(), precision="fp16")


def test_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="precision"):
        MinibatchConfig(precision="fp8")  # type: ignore[arg-type]


def test_checkpoint_fingerprint_ignores_new_defaults_but_not_changes() -> None:
    x = torch.zeros(4, 3, 8, 8)
    model = tiny_cnn()
    base = fingerprint(MinibatchConfig(), "f", x, model)
    assert fingerprint(MinibatchConfig(precision="fp32"), "f", x, model) == base
    assert fingerprint(MinibatchConfig(precision="bf16"), "f", x, model) != base
    assert fingerprint(MinibatchConfig(compile=True), "f", x, model) != base


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile on the CPU needs cc")
# raised inside torch's own compiler (Inductor), not by pertlearn: keep the summary for ours
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_training_matches_eager(
    exact: tuple[torch.nn.Module, MinibatchResult],
) -> None:
    """Inductor may fuse and reorder float operations: the same run within 1e-3."""
    model, result = train(tiny_cnn(), compile=True)
    ref_model, ref = exact
    torch.testing.assert_close(result.losses, ref.losses, rtol=1e-3, atol=1e-4)
    assert parameter_distance(model, ref_model) < 1e-3


@needs_cuda
def test_cuda_run_draws_batches_on_the_device_and_is_reproducible() -> None:
    first_model, first = train(tiny_cnn(), "cuda")
    second_model, second = train(tiny_cnn(), "cuda")
    assert first.losses == second.losses
    assert parameter_distance(first_model, second_model) == 0.0
    assert first.losses[-1] < first.losses[0]


@needs_cuda
def test_cuda_fp16_with_grad_scaler_stays_close_to_fp32() -> None:
    ref_model, ref = train(tiny_cnn(), "cuda")
    model, result = train(copy.deepcopy(tiny_cnn()), "cuda", precision="fp16")
    for got, want in zip(result.losses, ref.losses, strict=True):
        assert abs(got - want) <= 0.02 * abs(want)
    assert parameter_distance(model, ref_model) < 0.02
