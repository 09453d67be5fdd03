"""Radial power spectra, same-norm noise and ideal Fourier filters, each checked against an
independent computation (numpy FFT with an explicit loop over frequencies, Parseval, images
with a known spectrum)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pertlearn.features.spectra import (
    high_pass,
    low_pass,
    mean_per_class,
    radial_bin_counts,
    radial_bins,
    radial_power_spectrum,
    random_noise_like,
)


def numpy_radial_spectrum(x: np.ndarray) -> np.ndarray:
    """Reference: unnormalized numpy FFT scaled by 1/(H·W), explicit loop over frequencies."""
    n, _, h, w = x.shape
    power = np.abs(np.fft.fft2(x)) ** 2 / (h * w)  # orthonormal |F|²
    size = int(np.rint(math.hypot(h // 2, w // 2))) + 1
    out = np.zeros((n, size))
    for iy in range(h):
        ky = iy if iy < (h + 1) // 2 else iy - h
        for ix in range(w):
            kx = ix if ix < (w + 1) // 2 else ix - w
            r = int(np.rint(math.hypot(ky, kx)))
            out[:, r] += power[:, :, iy, ix].mean(axis=1)
    return out


def cosine_image(h: int, w: int, ky: int, kx: int) -> torch.Tensor:
    """cos(2π(ky·i/H + kx·j/W)) as a (1, 1, H, W) float64 image."""
    i = torch.arange(h, dtype=torch.float64)[:, None]
    j = torch.arange(w, dtype=torch.float64)[None, :]
    return torch.cos(2 * math.pi * (ky * i / h + kx * j / w))[None, None]


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 8, 10), (2, 2, 7, 9)])
def test_matches_numpy_reference(gen: torch.Generator, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    ours = radial_power_spectrum(x)
    ref = numpy_radial_spectrum(x.numpy())
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_parseval_sum_equals_energy_over_channels(gen: torch.Generator) -> None:
    x = torch.randn(4, 3, 16, 16, generator=gen)
    spectrum = radial_power_spectrum(x)
    energy = x.double().pow(2).flatten(1).sum(1) / 3
    torch.testing.assert_close(spectrum.sum(1), energy, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("ky", "kx", "bin_"), [(0, 5, 5), (3, 4, 5), (7, 0, 7), (2, 2, 3)])
def test_cosine_power_lands_in_its_bin(ky: int, kx: int, bin_: int) -> None:
    h = w = 28
    spectrum = radial_power_spectrum(cosine_image(h, w, ky, kx))[0]
    # A unit cosine has energy H·W/2, split between the frequencies ±(ky, kx).
    assert spectrum[bin_].item() == pytest.approx(h * w / 2, rel=1e-9)
    others = torch.cat([spectrum[:bin_], spectrum[bin_ + 1 :]])
    assert others.abs().max().item() < 1e-9


def test_bins_counts_and_size() -> None:
    counts = radial_bin_counts(28, 28)
    assert counts.shape == (21,)  # round(√(14² + 14²)) = 20
    assert int(counts.sum()) == 28 * 28
    assert counts[0].item() == 1  # DC only
    assert counts[1].item() == 8  # (±1, 0), (0, ±1), (±1, ±1): radii 1 and √2
    cifar = radial_bin_counts(32, 32)
    assert cifar.shape == (24,)  # round(√(16² + 16²)) = round(22.6) = 23
    assert cifar[-1].item() == 1  # (−16, −16) alone: the frequencies of 32 run −16..15
    bins = radial_bins(6, 6)
    assert bins[0, 3].item() == 3 and bins[3, 3].item() == round(math.hypot(3, 3))
    assert torch.equal(bins, bins.flip(0).roll(1, 0).flip(1).roll(1, 1))  # k → −k symmetric


def test_white_noise_is_flat(gen: torch.Generator) -> None:
    noise = 0.5 * torch.randn(400, 1, 28, 28, generator=gen)
    per_frequency = radial_power_spectrum(noise, reduce="mean").mean(0)
    # E|F_k|² = σ² = 0.25 at every frequency for the orthonormal DFT.
    assert torch.all((per_frequency - 0.25).abs() < 0.25 * 0.3), per_frequency


def test_mean_reduce_divides_by_counts(gen: torch.Generator) -> None:
    x = torch.rand(2, 1, 12, 12, generator=gen)
    ratio = radial_power_spectrum(x) / radial_power_spectrum(x, reduce="mean")
    torch.testing.assert_close(ratio, radial_bin_counts(12, 12).double().expand(2, -1))


def test_low_plus_high_is_identity_and_orthogonal(gen: torch.Generator) -> None:
    x = torch.rand(3, 2, 16, 12, generator=gen, dtype=torch.float64)
    for cutoff in (0, 2.5, 4, 100):
        low, high = low_pass(x, cutoff), high_pass(x, cutoff)
        assert low.dtype == x.dtype and not low.is_complex()
        torch.testing.assert_close(low + high, x, rtol=0, atol=1e-12)
        assert abs((low * high).sum().item()) < 1e-9
    torch.testing.assert_close(low_pass(x, 100), x, rtol=0, atol=1e-12)
    # cut-off 0 keeps the DC component only: the per-channel mean.
    torch.testing.assert_close(low_pass(x, 0), x.mean(dim=(2, 3), keepdim=True).expand_as(x))


def test_filters_on_a_cosine_and_against_numpy(gen: torch.Generator) -> None:
    x = cosine_image(28, 28, 3, 4)  # bin 5
    assert low_pass(x, 4).abs().max().item() < 1e-12
    torch.testing.assert_close(low_pass(x, 5), x)
    torch.testing.assert_close(high_pass(x, 4), x)
    y = torch.rand(2, 1, 10, 10, generator=gen, dtype=torch.float64)
    f = np.fft.fft2(y.numpy())
    k = np.fft.fftfreq(10) * 10
    keep = np.rint(np.hypot(k[:, None], k[None, :])) <= 3
    ref = np.fft.ifft2(f * keep).real
    np.testing.assert_allclose(low_pass(y, 3).numpy(), ref, atol=1e-12)


def test_low_pass_spectrum_is_truncated(gen: torch.Generator) -> None:
    x = torch.rand(2, 1, 14, 14, generator=gen, dtype=torch.float64)
    full = radial_power_spectrum(x)
    cut = radial_power_spectrum(low_pass(x, 4))
    torch.testing.assert_close(cut[:, :5], full[:, :5])
    assert cut[:, 5:].abs().max().item() < 1e-20


def test_random_noise_like_matches_norms(gen: torch.Generator) -> None:
    r = torch.randn(5, 1, 6, 6, generator=gen)
    r[2] = 0.0
    noise = random_noise_like(r, torch.Generator().manual_seed(7))
    norms = torch.linalg.vector_norm(noise.flatten(1), dim=1)
    torch.testing.assert_close(norms, torch.linalg.vector_norm(r.flatten(1), dim=1))
    assert torch.equal(noise[2], torch.zeros_like(noise[2]))
    again = random_noise_like(r, torch.Generator().manual_seed(7))
    other = random_noise_like(r, torch.Generator().manual_seed(8))
    assert torch.equal(noise, again) and not torch.equal(noise, other)
    # the direction is Gaussian, not the perturbation: nearly orthogonal to r in 36 dims
    cosines = torch.nn.functional.cosine_similarity(noise.flatten(1), r.flatten(1), dim=1)
    assert cosines[[0, 1, 3, 4]].abs().max() < 0.9


def test_mean_per_class_against_loop(gen: torch.Generator) -> None:
    values = torch.rand(9, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 2, 2, 0, 3, 3, 3, 0, 2])
    means = mean_per_class(values, y, 5)
    assert means.shape == (5, 4)
    for c in (0, 2, 3):
        torch.testing.assert_close(means[c], values[y == c].mean(0))
    assert torch.isnan(means[1]).all() and torch.isnan(means[4]).all()


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        radial_power_spectrum(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="reduce"):
        radial_power_spectrum(torch.zeros(1, 1, 4, 4), reduce="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cutoff"):
        low_pass(torch.zeros(1, 1, 4, 4), -1)
    with pytest.raises(ValueError, match="cutoff"):
        high_pass(torch.zeros(1, 1, 4, 4), math.nan)
    with pytest.raises(ValueError, match="labels"):
        mean_per_class(torch.zeros(2, 3), torch.tensor([0, 5]), 3)
    with pytest.raises(ValueError, match="float"):
        random_noise_like(torch.zeros(3, 2, dtype=torch.long), torch.Generator())
