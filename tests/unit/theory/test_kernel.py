"""The NeurIPS24 kernel Φ: closed form against Monte Carlo, exact diagonal, symmetry, range,
chunking and dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from pertlearn.theory import phi, phi_diagonal, phi_matmul, phi_monte_carlo

SLOPES = [0.0, 0.25, 0.99]


def _pairs(seed: int, n: int = 10, dim: int = 5, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    # Varied norms and directions so that ρ covers a wide range, including negative values.
    x = (
        torch.randn(n, dim, generator=g, dtype=dtype)
        * torch.rand(n, 1, generator=g, dtype=dtype)
        * 4
    )
    z = (
        torch.randn(n, dim, generator=g, dtype=dtype)
        * torch.rand(n, 1, generator=g, dtype=dtype)
        * 4
    )
    z[:3] = -x[:3] * 1.5  # strongly anti-correlated pairs
    return x, z


def _reference(x: torch.Tensor, z: torch.Tensor, slope: float) -> torch.Tensor:
    """Φ from the orthant probabilities written out term by term (independent of phi())."""
    d = x.shape[1]
    out = torch.empty(x.shape[0], z.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        for j in range(z.shape[0]):
            cov = float(x[i] @ z[j]) / d + 1
            vx, vz = float(x[i] @ x[i]) / d + 1, float(z[j] @ z[j]) / d + 1
            theta = math.acos(max(-1.0, min(1.0, cov / math.sqrt(vx * vz))))
            both_pos = (math.pi - theta) / (2 * math.pi)  # P(u ≥ 0, v ≥ 0) = P(u < 0, v < 0)
            mixed = theta / (2 * math.pi)  # P(u ≥ 0, v < 0) = P(u < 0, v ≥ 0)
            out[i, j] = both_pos * 1 + 2 * mixed * slope + both_pos * slope**2
    return out


@pytest.mark.parametrize("slope", SLOPES)
def test_closed_form_matches_monte_carlo_within_4_standard_errors(slope: float) -> None:
    x, z = _pairs(1)  # 10 × 10 = 100 random pairs
    exact = phi(x, z, slope)
    mean, se = phi_monte_carlo(
        x, z, slope, draws=1_000_000, generator=torch.Generator().manual_seed(7)
    )
    assert mean.dtype == torch.float64
    assert bool((se > 0).all())
    z_scores = (exact - mean).abs() / se
    assert z_scores.max().item() < 4.0, z_scores.max().item()


@pytest.mark.parametrize("slope", SLOPES)
def test_closed_form_matches_orthant_probability_reference(slope: float) -> None:
    x, z = _pairs(2)
    torch.testing.assert_close(phi(x, z, slope), _reference(x, z, slope), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("slope", SLOPES)
def test_diagonal_is_exact(slope: float, dtype: torch.dtype) -> None:
    x, _ = _pairs(3, n=50, dim=30, dtype=dtype)
    expected = slope + (1 - slope) ** 2 / 2
    assert phi_diagonal(slope) == expected
    diag = phi(x, x, slope, chunk_size=7).diagonal()
    assert bool((diag == torch.tensor(expected, dtype=dtype)).all())
    if slope == 0.0:
        assert expected == 0.5  # the spec's check: γ = 0, x = z gives 1/2


@pytest.mark.parametrize("slope", SLOPES)
def test_symmetric_and_in_range(slope: float) -> None:
    x, z = _pairs(4, n=40, dim=8)
    forward, backward = phi(x, z, slope), phi(z, x, slope)
    torch.testing.assert_close(forward, backward.T, rtol=0, atol=1e-12)
    both = torch.cat([x, z])
    k = phi(both, both, slope)
    torch.testing.assert_close(k, k.T, rtol=0, atol=1e-12)
    assert bool((k >= slope**2).all()) and bool((k <= 1).all())
    # tighter: Φ = γ + (1 − γ)²(π − θ)/(2π) lies in [γ, γ + (1 − γ)²/2]
    assert bool((k >= slope - 1e-12).all())
    assert bool((k <= phi_diagonal(slope) + 1e-12).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_small_chunks_give_identical_results(dtype: torch.dtype) -> None:
    for n, dim in ((37, 12), (301, 100)):
        x, z = _pairs(5, n=n, dim=dim, dtype=dtype)
        full = phi(x, z, 0.25, chunk_size=10_000)
        for chunk in (1, 3, 16, 40, 64):
            assert torch.equal(phi(x, z, 0.25, chunk_size=chunk), full), (n, chunk)
        assert torch.equal(phi(x, x, 0.0, chunk_size=5), phi(x, x, 0.0, chunk_size=10_000))
    x, z = _pairs(5, n=37, dim=12)
    full = phi(x, z, 0.25)
    v = torch.randn(z.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(phi_matmul(x, z, v, 0.25, chunk_size=5), full @ v)
    torch.testing.assert_close(phi_matmul(x, z, v[:, 0], 0.25, chunk_size=4), full @ v[:, 0])


def test_float32_matches_float64() -> None:
    x, z = _pairs(6, n=20, dim=10)
    k32 = phi(x.float(), z.float(), 0.25)
    assert k32.dtype == torch.float32
    torch.testing.assert_close(k32.double(), phi(x, z, 0.25), rtol=0, atol=2e-4)


def test_bias_free_kernel_matches_monte_carlo() -> None:
    x, z = _pairs(8)
    exact = phi(x, z, 0.25, bias=False)
    mean, se = phi_monte_carlo(
        x, z, 0.25, draws=200_000, generator=torch.Generator().manual_seed(3), bias=False
    )
    random = se > 0
    assert ((exact - mean).abs()[random] / se[random]).max().item() < 4.5
    # ρ = −1 (z = −1.5 x without bias): the two signs always differ, Φ = γ exactly
    torch.testing.assert_close(exact[~random], mean[~random], rtol=0, atol=1e-7)
    assert bool((~random).any())


def test_bad_input_is_rejected() -> None:
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="input dimensions differ"):
        phi(x, torch.zeros(2, 5), 0.0)
    with pytest.raises(ValueError, match="slope"):
        phi(x, x, 1.0)
    with pytest.raises(ValueError, match="2-D"):
        phi(torch.zeros(4), x, 0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        phi(x, x, 0.0, chunk_size=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_symmetric_tiles_independent_of_chunks_and_exactly_symmetric(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small column tiles, so that Φ(x, x) spans many tiles and row chunks of every size.
    monkeypatch.setattr("pertlearn.theory.kernel.COLUMN_TILE", 64)
    x, _ = _pairs(9, n=301, dim=100, dtype=dtype)
    full = phi(x, None, 0.25, chunk_size=10_000)
    assert torch.equal(full, full.T)
    assert bool((full.diagonal() == phi_diagonal(0.25)).all())
    for chunk in (1, 16, 40, 64, 100):
        assert torch.equal(phi(x, x, 0.25, chunk_size=chunk), full), chunk
    general = phi(x, x.clone(), 0.25)  # all blocks, no mirroring
    general.diagonal().fill_(phi_diagonal(0.25))
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(full, general, rtol=0, atol=atol)
    torch.testing.assert_close(
        phi(x, None, 0.25, bias=False).double(),
        _reference_bias_free(x.double(), 0.25),
        rtol=0,
        atol=atol,
    )


def _reference_bias_free(x: torch.Tensor, slope: float) -> torch.Tensor:
    unit = x / x.norm(dim=1, keepdim=True)
    theta = torch.arccos((unit @ unit.T).clamp(-1, 1))
    out = slope + (1 - slope) ** 2 * (math.pi - theta) / (2 * math.pi)
    out.diagonal().fill_(phi_diagonal(slope))
    return out


def test_batches_of_two_dtypes_are_one_clear_error() -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError) as caught:
        phi(x, x.float(), 0.0)
    assert str(caught.value) == (
        "phi: the batches differ in dtype (torch.float64 and torch.float32); give both in one, "
        "e.g. z.to(x.dtype)"
    )
    assert phi(x, x.float().to(x.dtype), 0.0).dtype == torch.float64
