"""Device speed-up helpers: precision checks, autocast, channels last, generators on the data's
device and the memory-based batch size (CUDA parts skip without CUDA)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pertlearn.models.cnn import SmallCNN
from pertlearn.training.accel import (
    autocast,
    batch_from_memory,
    check_precision,
    derive_generator,
    epoch_generator,
    grad_scaler,
    probe_batch_size,
    to_channels_last,
    use_channels_last,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_check_precision_accepts_the_three_and_rejects_fp16_on_the_cpu() -> None:
    check_precision("fp32", "cpu")
    check_precision("bf16", "cpu")
    with pytest.raises(ValueError, match=r"fp16.*needs a CUDA device.*bf16"):
        check_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        check_precision("fp8", "cpu")


def test_fp32_autocast_is_no_context_and_bf16_computes_matmuls_in_bf16() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("fp32", "cpu"):
        assert torch.is_autocast_enabled("cpu") is False
        assert (a @ b).dtype == torch.float32
    with autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    assert grad_scaler("fp32", "cpu") is None
    assert grad_scaler("bf16", "cpu") is None


def test_channels_last_option_per_device() -> None:
    assert use_channels_last("off", "cpu") is False
    assert use_channels_last("on", "cpu") is True
    assert use_channels_last("auto", "cpu") is False
    assert use_channels_last("auto", "cuda") is True
    with pytest.raises(ValueError, match="channels_last must be"):
        use_channels_last("yes", "cpu")
    x = torch.rand(2, 3, 4, 4)
    y = to_channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, y)
    flat = torch.rand(2, 5)
    assert to_channels_last(flat) is flat


def test_channels_last_cnn_gives_the_same_logits() -> None:
    model = SmallCNN((3, 8, 8), 4, width=4, hidden=8, generator=torch.Generator().manual_seed(0))
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    want = model(x)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    got = model(to_channels_last(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_epoch_generator_on_the_generators_device_is_the_generator_itself() -> None:
    generator = torch.Generator().manual_seed(3)
    assert epoch_generator(generator, torch.device("cpu")) is generator


def test_derived_generators_are_reproducible_and_advance_the_parent() -> None:
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    first_a, first_b = derive_generator(a, "cpu"), derive_generator(b, "cpu")
    assert torch.equal(torch.rand(8, generator=first_a), torch.rand(8, generator=first_b))
    second_a = derive_generator(a, "cpu")  # a moved on: the next epoch's stream differs
    assert not torch.equal(
        torch.rand(8, generator=second_a),
        torch.rand(8, generator=derive_generator(torch.Generator().manual_seed(5), "cpu")),
    )


def test_batch_from_memory_fits_the_fraction_in_multiples() -> None:
    # 1 MB per sample, 1 GB free, half of it: 500 samples → 448 (multiple of 64)
    assert batch_from_memory(1e6, 1e9) == 448
    assert batch_from_memory(1e6, 1e9, fraction=1.0, multiple=100) == 1000
    assert batch_from_memory(1e12, 1e9) == 64  # floor
    assert batch_from_memory(1.0, 1e12, high=4096) == 4096  # cap
    assert batch_from_memory(0.0, 1e9, high=777) == 777


def test_probe_batch_size_is_cuda_only() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="CUDA memory"):
        probe_batch_size(model, torch.rand(1, 1, 2, 2))


@needs_cuda
def test_probe_batch_size_on_cuda_fits_in_memory() -> None:
    model = SmallCNN((3, 32, 32), 10).cuda()
    size = probe_batch_size(model, torch.rand(1, 3, 32, 32, device="cuda"), high=8192)
    assert 64 <= size <= 8192 and size % 64 == 0
    x = torch.rand(size, 3, 32, 32, device="cuda", requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    assert grad.shape == x.shape


@needs_cuda
def test_epoch_generator_for_cuda_data_lives_on_cuda() -> None:
    generator = torch.Generator().manual_seed(0)
    derived = epoch_generator(generator, torch.device("cuda"))
    assert derived.device.type == "cuda"
    again = epoch_generator(torch.Generator().manual_seed(0), torch.device("cuda"))
    assert torch.equal(
        torch.randperm(50, generator=derived, device="cuda"),
        torch.randperm(50, generator=again, device="cuda"),
    )


@needs_cuda
def test_fp16_scaler_on_cuda() -> None:
    check_precision("fp16", "cuda")
    assert isinstance(grad_scaler("fp16", "cuda"), torch.amp.GradScaler)
