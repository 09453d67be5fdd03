"""Device speed-ups for the image experiments at paper scale (ICLR24 arXiv:2402.10470, image
experiments: WRN-28-10 on CIFAR-10): mixed precision, the channels-last memory format,
``torch.compile``, per-epoch generators on the data's device and the attack batch size chosen
from the free device memory.

Every option defaults to the exact fp32 computation, so existing configs give the same numbers:

- precision ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: the model's forward pass runs under
  :func:`torch.autocast` (:func:`autocast`); parameters, optimizer state, inputs and attack
  perturbations stay fp32. ``bf16`` runs on the CPU too; ``fp16`` needs CUDA and scales the loss
  with a :class:`torch.amp.GradScaler` (:func:`grad_scaler`).
- channels last ``"off"`` (default), ``"on"`` or ``"auto"`` (on for CUDA, off on the CPU, where
  oneDNN gains little from it): 4-d weights and image batches use
  :data:`torch.channels_last` (:func:`use_channels_last`).
- compile ``False`` (default) or ``True``: the training forward pass goes through
  :func:`torch.compile` (needs a C compiler for its CPU backend).
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
from torch import nn

__all__ = [
    "FP16_ATTACK_LOSS_SCALE",
    "PRECISIONS",
    "ChannelsLast",
    "Precision",
    "autocast",
    "batch_from_memory",
    "check_precision",
    "derive_generator",
    "epoch_generator",
    "grad_scaler",
    "probe_batch_size",
    "to_channels_last",
    "use_channels_last",
]

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")
ChannelsLast = Literal["off", "on", "auto"]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

FP16_ATTACK_LOSS_SCALE = 1024.0
"""Static scale of the attack objective under fp16 before its input gradient is taken, so
small gradients do not flush to zero in half precision. The PGD steps use the gradient's
direction only (L2-normalized, sign or top-k), which a positive scale does not change."""


def check_precision(precision: str, device: torch.device | str, name: str = "precision") -> None:
    """Raise ValueError unless ``precision`` is one of :data:`PRECISIONS` and can run on
    ``device`` (``fp16`` needs CUDA)."""
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError(
            f"{name} = 'fp16' needs a CUDA device (got {torch.device(device).type}); "
            "use 'bf16' on the CPU, or 'fp32'"
        )


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[None]:
    """The context of a forward pass in ``precision`` on ``device``: :func:`torch.autocast`
    to bf16/fp16, or no context at all for fp32 (so fp32 is bit for bit the plain call)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    check_precision(precision, device)
    return torch.autocast(torch.device(device).type, dtype=_AUTOCAST_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A :class:`torch.amp.GradScaler` for fp16 training on CUDA, ``None`` otherwise (bf16 has
    fp32's exponent range and needs no loss scaling)."""
    if precision != "fp16":
        return None
    check_precision(precision, device)
    return torch.amp.GradScaler(torch.device(device).type)


def use_channels_last(option: str, device: torch.device | str) -> bool:
    """Whether the channels-last option ``"off"``/``"on"``/``"auto"`` is on for ``device``
    (``auto``: on CUDA only)."""
    if option not in ("off", "on", "auto"):
        raise ValueError(f"channels_last must be 'off', 'on' or 'auto', got {option!r}")
    return option == "on" or (option == "auto" and torch.device(device).type == "cuda")


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in the channels-last layout (same values and shape); other
    ranks unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def derive_generator(generator: torch.Generator, device: torch.device | str) -> torch.Generator:
    """A fresh generator on ``device`` seeded by one draw from ``generator`` (which advances
    it by that draw): random numbers made where they are used, reproducible from
    ``generator``'s state."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def epoch_generator(generator: torch.Generator, device: torch.device | str) -> torch.Generator:
    """The generator that shuffles and augments one epoch of data held on ``device``:
    ``generator`` itself when it lives there (the CPU: the numbers are unchanged), else
    :func:`derive_generator` onto ``device`` (CUDA: no host-to-device copy per batch; one
    draw per epoch from the CPU generator, so checkpoints written between epochs resume it)."""
    if torch.device(device).type == generator.device.type:
        return generator
    return derive_generator(generator, device)


def batch_from_memory(
    per_sample_bytes: float,
    free_bytes: float,
    *,
    fraction: float = 0.5,
    multiple: int = 64,
    low: int = 64,
    high: int = 65536,
) -> int:
    """The largest multiple of ``multiple`` samples whose memory ``per_sample_bytes`` each
    fits in ``fraction`` of ``free_bytes``, kept within ``[low, high]``."""
    if per_sample_bytes <= 0 or not math.isfinite(per_sample_bytes):
        return high
    fits = int(fraction * free_bytes / per_sample_bytes) // multiple * multiple
    return max(low, min(high, fits))


def probe_batch_size(
    model: nn.Module,
    sample: torch.Tensor,
    *,
    precision: str = "fp32",
    probe: int = 64,
    fraction: float = 0.5,
    high: int = 65536,
) -> int:
    """Samples one attack batch can hold on ``sample``'s CUDA device: one forward and input
    backward pass of ``model`` on ``probe`` copies of ``sample`` (``(1, C, H, W)``) measures
    the peak memory per sample, and :func:`batch_from_memory` fits ``fraction`` of the free
    memory. The CPU has no such limit worth probing: raise ValueError there."""
    device = sample.device
    if device.type != "cuda":
        raise ValueError("probe_batch_size measures CUDA memory; on the CPU use a fixed size")
    was_training = model.training
    model.eval()
    try:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        x = sample.expand(probe, *sample.shape[1:]).clone().requires_grad_(True)
        with torch.enable_grad(), autocast(precision, device):
            out = model(x)
        (grad,) = torch.autograd.grad(out.float().logsumexp(1).sum(), x)
        del out, grad, x
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        free, _ = torch.cuda.mem_get_info(device)
    finally:
        model.train(was_training)
    return batch_from_memory(peak / probe, free, fraction=fraction, high=high)
