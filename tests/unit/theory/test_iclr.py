"""ICLR24 theory: statistics, the orthogonality condition, max-margin λ, the surrogate f̃,
predicted perturbations and g's two-term surrogate."""

from __future__ import annotations

import itertools

import pytest
import torch

from pertlearn.data.synthetic import balanced_signs, gauss
from pertlearn.models import OneHiddenNet
from pertlearn.theory import iclr
from pertlearn.training import TrainConfig, fit


def _orthogonal(seed: int, n: int = 10, dim: int = 50):
    """x_n = r_n e_n with r_n ∈ [3, 4): exactly orthogonal, unequal norms."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, dim, dtype=torch.float64)
    x[torch.arange(n), torch.arange(n)] = 3.0 + torch.rand(n, generator=g, dtype=torch.float64)
    return x, balanced_signs(n, g, torch.float64), g


def test_statistics_match_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, 7, generator=g, dtype=torch.float64)
    stats = iclr.data_statistics(x, chunk_size=4)
    norms = [float(row.norm()) for row in x]
    p_max = max(abs(float(x[i] @ x[j])) for i, j in itertools.permutations(range(23), 2))
    assert stats.r_min == pytest.approx(min(norms))
    assert stats.r_max == pytest.approx(max(norms))
    assert stats.p_max == pytest.approx(p_max)
    assert stats.n == 23


def test_condition_holds_for_orthogonal_data_and_fails_for_crowded_data() -> None:
    x, _, _ = _orthogonal(0)
    stats = iclr.data_statistics(x)
    cond = iclr.orthogonality_condition(stats, 0.5)
    bound = 0.5**3 * stats.r_min**4 / (3 * 10 * stats.r_max**2)
    assert stats.p_max == 0.0
    assert cond.holds and cond.bound == pytest.approx(bound) and cond.margin == pytest.approx(bound)
    # d = 100, N = 1000: far from orthogonal; reported false with a large negative margin
    xg, _ = gauss(1000, 100, torch.Generator().manual_seed(1), dtype=torch.float64)
    bad = iclr.orthogonality_condition(iclr.data_statistics(xg), 0.01)
    assert not bad.holds
    assert bad.margin < 0 and bad.ratio > 1e6
    assert bad.margin == pytest.approx(bad.bound - bad.p_max)
    with pytest.raises(ValueError, match="slope"):
        iclr.orthogonality_condition(stats, 0.0)


def test_lambdas_of_orthogonal_data_are_inverse_squared_norms_and_in_bounds() -> None:
    x, y, _ = _orthogonal(2)
    lam = iclr.max_margin_lambdas(x, y)
    assert lam.method == "all_support" and lam.converged
    torch.testing.assert_close(lam.values, 1 / x.norm(dim=1) ** 2)
    lo, hi = iclr.lambda_bounds(iclr.data_statistics(x), 0.5)
    assert bool(((lam.values > lo) & (lam.values < hi)).all())
    # margins y_n f̃(x_n) are all exactly 1
    w = iclr.surrogate_weight(x, y, lam.values)
    torch.testing.assert_close(y * (x @ w), torch.ones(10, dtype=torch.float64))


def test_lambdas_solve_the_linear_system_for_nearly_orthogonal_data() -> None:
    x, y = gauss(8, 500, torch.Generator().manual_seed(3), dtype=torch.float64)
    lam = iclr.max_margin_lambdas(x, y)
    assert lam.method == "all_support"
    q = (y[:, None] * y[None, :]) * (x @ x.T)
    torch.testing.assert_close(q @ lam.values, torch.ones(8, dtype=torch.float64))


def test_nonnegative_fallback_when_a_sample_is_no_support_vector() -> None:
    # x1 = e1 (+1), x2 = e2 (−1) are support vectors; x3 = (2, −2) (+1) has margin 4.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, -2.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    lam = iclr.max_margin_lambdas(x, y)
    assert lam.method == "nonnegative" and lam.converged
    torch.testing.assert_close(lam.values, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    assert lam.kkt_residual < 1e-6 and lam.min_margin == pytest.approx(1.0)


def test_nonseparable_data_is_reported_not_converged() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    lam = iclr.max_margin_lambdas(x, y, dual_iter=500)
    assert lam.method == "nonnegative" and not lam.converged


def test_surrogate_agrees_with_trained_network_on_orthogonal_data() -> None:
    x, y, g = _orthogonal(0)
    z = torch.randn(500, 50, generator=g)
    lam = iclr.max_margin_lambdas(x, y)
    w = iclr.surrogate_weight(x, y, lam.values)
    net = OneHiddenNet(50, 20, 0.5, init_std=1e-6, generator=g)
    fit(net, x.float(), y.float(), TrainConfig(loss="exponential", lr=0.1, epochs=300))
    with torch.no_grad():
        f_scores = net(z)
    agree = ((z.double() @ w >= 0) == (f_scores >= 0)).double().mean().item()
    assert agree >= 0.97


def test_predicted_perturbations_have_the_right_norms_and_support() -> None:
    w = torch.tensor([0.5, -2.0, 0.1, 1.0, -0.3], dtype=torch.float64)
    y_adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    l2 = iclr.predicted_perturbation(w, y_adv, 0.7, "l2")
    torch.testing.assert_close(l2.norm(dim=1), torch.full((2,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(l2[0], 0.7 * w / w.norm())
    torch.testing.assert_close(l2[1], -l2[0])
    linf = iclr.predicted_perturbation(w, y_adv, 0.1, "linf")
    torch.testing.assert_close(linf[0], 0.1 * torch.sign(w))
    l0 = iclr.predicted_perturbation(w, y_adv, 1.0, "l0", k=2)
    assert l0[0].tolist() == [0.0, -1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="k"):
        iclr.predicted_perturbation(w, y_adv, 1.0, "l0")


def test_l0_overlap_counts_shared_coordinates() -> None:
    w = torch.tensor([0.5, -2.0, 0.1, 1.0, -0.3])
    crafted = torch.tensor(
        [
            [0.0, 0.3, 0.0, -0.1, 0.0],  # top-2 of |w| are {1, 3}: full overlap
            [0.2, 0.3, 0.0, 0.0, 0.0],  # {0, 1}: half
            [0.0, 0.0, 0.0, 0.0, 0.0],  # unchanged: NaN
        ]
    )
    overlap = iclr.l0_overlap(crafted, w)
    assert overlap[:2].tolist() == [1.0, 0.5]
    assert torch.isnan(overlap[2])


def test_decomposition_splits_g_surrogate_into_noise_and_perturbation_terms() -> None:
    g = torch.Generator().manual_seed(4)
    base = torch.randn(6, 30, generator=g, dtype=torch.float64)
    eta = torch.randn(6, 30, generator=g, dtype=torch.float64) * 0.1
    y_adv = balanced_signs(6, g, torch.float64)
    lam = iclr.max_margin_lambdas(base + eta, y_adv)
    z = torch.randn(9, 30, generator=g, dtype=torch.float64)
    parts = iclr.surrogate_decomposition(z, base, eta, y_adv, lam.values)
    full = z @ iclr.surrogate_weight(base + eta, y_adv, lam.values)
    torch.testing.assert_close(parts.total, full)
    expected_noise = z @ ((lam.values * y_adv) @ base)
    torch.testing.assert_close(parts.noise, expected_noise)
    assert (
        parts.perturbation_dominates.tolist()
        == (parts.perturbation.abs() > parts.noise.abs()).tolist()
    )


def test_summary_reports_quantiles() -> None:
    s = iclr.summary(torch.tensor([1.0, 2.0, 3.0, float("nan")]))
    assert s["count"] == 3 and s["mean"] == 2.0 and s["median"] == 2.0 and s["max"] == 3.0
