"""Radial power spectra of images and perturbations, same-norm noise, ideal Fourier filters.

Frequencies are integer: the 2-D DFT of an ``H×W`` image has frequencies
``(k_y, k_x)`` with ``k_y ∈ {−⌊H/2⌋, …, ⌈H/2⌉ − 1}`` cycles per image height (likewise
``k_x``), so ``cos(2π·5·w/W)`` sits at ``(0, ±5)``. Its *radius* is ``√(k_y² + k_x²)``
and its *bin* the nearest integer ``r = round(radius)``, ``0 ≤ r < R`` with
``R = round(√(⌊H/2⌋² + ⌊W/2⌋²)) + 1`` (21 for 28×28, 24 for 32×32).

The DFT is orthonormal (``F = fft2(x, norm="ortho")``), so Parseval reads
``Σ_k |F_k|² = Σ_pixels x²`` per channel (Plancherel; e.g. Oppenheim & Schafer, DFT
properties) and white noise of variance σ² has ``E|F_k|² = σ²`` at every frequency. These
tools serve the spectral analysis of adversarial perturbations against clean images and noise
(the feature hypothesis: Ilyas et al. 2019, arXiv:1905.02175; perturbation learning: Kumano
et al., arXiv:2402.10470).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Reduce = Literal["sum", "mean"]


def _frequencies(n: int, device: torch.device | str) -> torch.Tensor:
    """Integer DFT frequencies in FFT order, ``n · fftfreq(n)``, shape ``(n,)``."""
    return torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=torch.float64)


def radial_bins(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bin ``round(√(k_y² + k_x²))`` of every DFT frequency in FFT order, shape ``(H, W)``
    (int64). Symmetric under ``k → −k``, so filtering by bins keeps images real."""
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {h}×{w}")
    ky = _frequencies(h, device)[:, None]
    kx = _frequencies(w, device)[None, :]
    return torch.sqrt(ky**2 + kx**2).round().long()


def radial_bin_counts(h: int, w: int) -> torch.Tensor:
    """Number of DFT frequencies in each radial bin, shape ``(R,)`` (int64; sums to ``H·W``)."""
    return torch.bincount(radial_bins(h, w).flatten())


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (N, C, H, W), got {tuple(x.shape)}")


def radial_power_spectrum(x: torch.Tensor, *, reduce: Reduce = "sum") -> torch.Tensor:
    """Radial power spectrum ``(N, R)`` of images or perturbations ``x`` ``(N, C, H, W)``.

    ``S[n, r] = (1/C) Σ_c Σ_{k: bin(k) = r} |F_{n,c,k}|²`` with the orthonormal 2-D DFT
    ``F``; ``reduce="mean"`` divides by the number of frequencies in the bin (power per
    frequency: flat at σ² for white noise). With ``"sum"``, Parseval gives
    ``Σ_r S[n, r] = ‖x_n‖₂² / C``. Float64 output on ``x``'s device.
    """
    _check_images(x)
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    n, _, h, w = x.shape
    power = torch.fft.fft2(x.to(torch.float64), norm="ortho").abs().pow(2).mean(dim=1)
    bins = radial_bins(h, w, x.device).flatten()
    size = int(bins.max()) + 1
    out = torch.zeros(n, size, dtype=torch.float64, device=x.device)
    out.index_add_(1, bins, power.reshape(n, h * w))
    if reduce == "mean":
        out = out / torch.bincount(bins, minlength=size).to(out)
    return out


def mean_per_class(values: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean of per-sample rows ``values`` ``(N, R)`` over the samples of each class ``y``
    (``(N,)``, ``0..K−1``): shape ``(K, R)``, NaN rows for classes without samples."""
    if values.ndim != 2 or y.ndim != 1 or y.shape[0] != values.shape[0]:
        raise ValueError(
            f"values must be (N, R) and y (N,), got {tuple(values.shape)} and {tuple(y.shape)}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    labels = y.long().to(values.device)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    sums = values.new_zeros(num_classes, values.shape[1]).index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=num_classes).to(values)
    return sums / counts[:, None].where(counts[:, None] > 0, torch.nan)


def random_noise_like(r: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise with the shape of ``r`` ``(N, ...)`` rescaled so that each sample has the
    L2 norm of the matching ``r[n]`` (zero where ``r[n] = 0``): ``‖r_n‖₂ u_n/‖u_n‖₂``,
    ``u ~ N(0, I)`` drawn from ``generator`` (on its device; the result is on ``r``'s)."""
    if r.ndim < 2 or not r.is_floating_point():
        raise ValueError(f"r must be a float tensor (N, ...), got {tuple(r.shape)}")
    u = torch.randn(r.shape, generator=generator, device=generator.device, dtype=r.dtype)
    u = u.to(r.device)
    view = (-1, *([1] * (r.ndim - 1)))
    target = torch.linalg.vector_norm(r.flatten(1), dim=1).view(view)
    norm = torch.linalg.vector_norm(u.flatten(1), dim=1).view(view)
    return torch.where(target > 0, u * (target / norm), 0.0)


def _check_cutoff(cutoff: float) -> float:
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float):
        raise ValueError(f"cutoff must be a number, got {cutoff!r}")
    if not (cutoff >= 0 and math.isfinite(cutoff)):
        raise ValueError(f"cutoff must be a finite radius >= 0, got {cutoff!r}")
    return float(cutoff)


def _filter(x: torch.Tensor, cutoff: float, keep_low: bool) -> torch.Tensor:
    if x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (..., H, W), got {tuple(x.shape)}")
    c = _check_cutoff(cutoff)
    h, w = x.shape[-2:]
    low = radial_bins(h, w, x.device) <= c
    mask = low if keep_low else ~low
    spectrum = torch.fft.fft2(x, norm="ortho")
    return torch.fft.ifft2(spectrum * mask, norm="ortho").real.to(x.dtype)


def low_pass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Ideal low-pass filter: keep the DFT frequencies whose radial bin (see the module
    docstring) is ``<= cutoff``, zero the rest, transform back. ``x`` ``(..., H, W)`` (e.g.
    ``(N, C, H, W)``), real output of the same shape. ``low_pass(x, c) + high_pass(x, c) = x``
    and the two parts are orthogonal."""
    return _filter(x, cutoff, keep_low=True)


def high_pass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Ideal high-pass filter: keep the DFT frequencies whose radial bin is ``> cutoff``
    (the complement of :func:`low_pass`). ``x`` ``(..., H, W)``, real output, same shape."""
    return _filter(x, cutoff, keep_low=False)
