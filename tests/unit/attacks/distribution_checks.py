"""Statistical checks of random draws against closed forms, with margins from concentration
inequalities (not a test module).

Every check fails a correct sampler with probability at most :data:`FAILURE_PROBABILITY` per
compared quantity, whatever the seed: the margins come from inequalities that hold for every
sample size, not from asymptotic approximations.

* Kolmogorov–Smirnov against ``U[0, 1)``: the Dvoretzky–Kiefer–Wolfowitz inequality with
  Massart's constant, ``P(sup_x |F_n(x) - F(x)| > t) ≤ 2 exp(-2 n t²)``, so
  ``t = sqrt(ln(2/p) / (2n))``.
* Means of bounded variables of known variance: Bernstein's inequality, for i.i.d. ``X_i`` with
  ``|X_i - μ| ≤ b`` and ``Var X_i = σ²``,
  ``P(|X̄ - μ| ≥ t) ≤ 2 exp(-n t² / (2σ² + 2bt/3))``, solved for ``t``.
"""

from __future__ import annotations

import math

import torch

SAMPLES = 20_000
"""Draws per distribution check: KS margins of about 0.023 (0.01 pooled over coordinates), moment
margins of a few thousandths, well under a second per check."""

DRAW_SEED = 0
"""Seed of the generators whose draws the checks test; the margins do not depend on it (for
any seed a correct sampler fails a check with at most the probability below)."""

FAILURE_PROBABILITY = 1e-9
"""Bound on the probability that one compared quantity exceeds its margin for a correct
sampler; a test comparing ``m`` quantities fails with probability at most ``m`` times this."""


def dkw_margin(n: int, failure_probability: float = FAILURE_PROBABILITY) -> float:
    """The ``t`` with ``2 exp(-2 n t²) = failure_probability``: the Kolmogorov–Smirnov
    statistic of ``n`` i.i.d. draws from the hypothesized law exceeds it with at most that
    probability (DKW inequality, Massart's constant; valid for every ``n``)."""
    return math.sqrt(math.log(2 / failure_probability) / (2 * n))


def ks_statistic_uniform(samples: torch.Tensor) -> float:
    """``sup_x |F_n(x) - x|`` of the empirical distribution function ``F_n`` of ``samples``
    (any shape, flattened) against ``U[0, 1)``."""
    ordered = samples.detach().flatten().to(torch.float64).sort().values
    n = ordered.numel()
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    above = (ranks / n - ordered).max()
    below = (ordered - (ranks - 1) / n).max()
    return float(torch.maximum(above, below))


def assert_uniform_01(
    samples: torch.Tensor, failure_probability: float = FAILURE_PROBABILITY
) -> None:
    """Assert that the i.i.d. ``samples`` (any shape, flattened) follow ``U[0, 1)``: their
    Kolmogorov–Smirnov statistic is within the DKW margin."""
    statistic = ks_statistic_uniform(samples)
    margin = dkw_margin(samples.numel(), failure_probability)
    assert statistic <= margin, f"KS statistic {statistic:.4f} against U[0, 1) > {margin:.4f}"


def bernstein_margin(
    n: int, variance: float, bound: float, failure_probability: float = FAILURE_PROBABILITY
) -> float:
    """The ``t`` at which Bernstein's inequality bounds ``P(|X̄ - μ| ≥ t)`` by
    ``failure_probability`` for the mean of ``n`` i.i.d. variables of variance ``variance``
    with ``|X - μ| ≤ bound``: the positive root of ``n t² = L (2σ² + 2bt/3)``,
    ``L = ln(2/p)``."""
    log_term = math.log(2 / failure_probability)
    linear = bound * log_term / 3
    return (linear + math.sqrt(linear**2 + 2 * n * variance * log_term)) / n


def assert_mean_near(
    values: torch.Tensor,
    expected: torch.Tensor | float,
    variance: torch.Tensor | float,
    bound: float,
    what: str,
    failure_probability: float = FAILURE_PROBABILITY,
) -> None:
    """Assert that the mean over the first dimension of the i.i.d. rows ``values`` (``(n,
    ...)``) is, entry by entry, within the Bernstein margin of ``expected`` (the exact mean,
    broadcast to ``values.shape[1:]``), given each entry's exact ``variance`` (same broadcast)
    and ``bound`` on ``|X - μ|``."""
    n = values.shape[0]
    mean = values.to(torch.float64).mean(dim=0)
    expected_t = torch.as_tensor(expected, dtype=torch.float64).expand_as(mean)
    variance_t = torch.as_tensor(variance, dtype=torch.float64).expand_as(mean)
    margins = torch.tensor(
        [bernstein_margin(n, float(v), bound, failure_probability) for v in variance_t.flatten()],
        dtype=torch.float64,
    ).view_as(mean)
    excess = (mean - expected_t).abs() - margins
    worst = int(excess.flatten().argmax())
    assert float(excess.max()) <= 0, (
        f"{what}: mean {float(mean.flatten()[worst]):.5f} at entry {worst}, expected "
        f"{float(expected_t.flatten()[worst]):.5f} ± {float(margins.flatten()[worst]):.5f}"
    )


def assert_isotropic(
    directions: torch.Tensor, failure_probability: float = FAILURE_PROBABILITY
) -> None:
    """Assert that the i.i.d. unit vectors ``directions`` (``(n, d)``) are uniform on the
    sphere ``S^{d-1}`` through its moments, each against its exact value and variance:

    * mean ``E[v] = 0``, ``Var v_i = 1/d``;
    * second moment ``E[v vᵀ] = I/d``, ``Var v_i² = 3/(d(d+2)) - 1/d²``,
      ``Var v_i v_j = E[v_i² v_j²] = 1/(d(d+2))`` for ``i ≠ j``;
    * ``E[Σ_i v_i⁴] = 3/(d+2)``, which the first two moments do not pin down (a direction
      uniform on the cube's surface has them too); its variance follows from
      ``E[v_i⁸] = 105/(d(d+2)(d+4)(d+6))`` and ``E[v_i⁴ v_j⁴] = 9/(d(d+2)(d+4)(d+6))``.

    The moments of a uniform unit vector are those of a standard Gaussian ``g`` divided by
    ``E‖g‖^{2k} = d(d+2)…(d+2k-2)``, ``g`` and ``‖g‖`` being independent.
    """
    d = directions.shape[1]
    v = directions.to(torch.float64)
    assert_mean_near(v, 0.0, 1 / d, 1.0, "mean direction", failure_probability)
    outer = v[:, :, None] * v[:, None, :]
    eye = torch.eye(d, dtype=torch.float64)
    diagonal_variance = 3 / (d * (d + 2)) - 1 / d**2
    off_diagonal_variance = 1 / (d * (d + 2))
    variance = eye * diagonal_variance + (1 - eye) * off_diagonal_variance
    assert_mean_near(outer, eye / d, variance, 1.0, "second moment", failure_probability)
    fourth = (v**4).sum(dim=1, keepdim=True)
    scale = d * (d + 2) * (d + 4) * (d + 6)
    fourth_variance = (105 * d + 9 * d * (d - 1)) / scale - (3 / (d + 2)) ** 2
    assert_mean_near(
        fourth, 3 / (d + 2), fourth_variance, 1.0, "sum of fourth powers", failure_probability
    )
