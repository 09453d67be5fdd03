"""ICLR24 theory for one-hidden-layer networks on nearly orthogonal data (ICLR24 arXiv:2402.10470).

Plain tensor functions: they need only the training inputs ``x`` ``(N, d)`` (flattened),
labels ``y`` ``(N,)`` (±1) and, for comparisons, the crafted perturbations and the networks'
scores. Nothing here builds an ``N × N`` matrix: Gram products are computed as
``X (Xᵀ v)`` (``O(N d)``) or in row chunks.

* :func:`data_statistics`: ``R_min``, ``R_max``, ``p_max``.
* :func:`orthogonality_condition`: ``γ³ R_min⁴ / (3 N R_max²) > p_max`` and its margin.
* :func:`max_margin_lambdas`: the multipliers ``λ_n`` of the max-margin problem (all samples
  support vectors: ``Σ_k λ_k y_k y_n ⟨x_k, x_n⟩ = 1``; else a non-negative dual solve) and the
  bounds ``(1/(2R_max²), 3/(2γ²R_min²))``.
* :func:`surrogate_weight`: ``w̃ = Σ_n λ_n y_n x_n``, so ``f̃(z) = ⟨w̃, z⟩``.
* :func:`predicted_perturbation`: ``L2: ε y^adv w̃/‖w̃‖``, ``L∞: ε y^adv sign(w̃)``,
  ``L0``: the ``k`` coordinates with the largest ``|w̃_i|``.
* :func:`surrogate_decomposition`: g's surrogate
  ``Σ_n λ^adv_n y^adv_n ⟨x_n^base, z⟩ + Σ_n λ^adv_n y^adv_n ⟨η_n, z⟩``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from pertlearn.theory.kernel import DEFAULT_CHUNK, check_xy


@dataclass
class DataStatistics:
    """``R_min = min ‖x_n‖``, ``R_max = max ‖x_n‖``, ``p_max = max_{i≠j} |⟨x_i, x_j⟩|``."""

    r_min: float
    r_max: float
    p_max: float
    n: int


def data_statistics(x: torch.Tensor, *, chunk_size: int = DEFAULT_CHUNK) -> DataStatistics:
    """Statistics of ``x`` ``(N, d)``; ``p_max`` from chunked Gram blocks (diagonal excluded),
    in float64."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            f"data_statistics needs at least 2 samples of shape (N, d), got {tuple(x.shape)}"
        )
    x64 = x.double()
    norms = x64.norm(dim=1)
    p_max = 0.0
    for start in range(0, x.shape[0], chunk_size):
        block = (x64[start : start + chunk_size] @ x64.T).abs()
        rows = torch.arange(block.shape[0], device=x.device)
        block[rows, rows + start] = 0.0
        p_max = max(p_max, block.max().item())
    return DataStatistics(norms.min().item(), norms.max().item(), p_max, x.shape[0])


@dataclass
class OrthogonalityCondition:
    """``bound = γ³ R_min⁴ / (3 N R_max²)``; the condition holds when ``p_max < bound``.
    ``margin = bound − p_max`` (positive: holds), ``ratio = p_max / bound`` (< 1: holds)."""

    holds: bool
    bound: float
    p_max: float
    margin: float
    ratio: float


def orthogonality_condition(stats: DataStatistics, slope: float) -> OrthogonalityCondition:
    """The ICLR24 (Frei et al. 2023) near-orthogonality condition for LeakyReLU slope γ."""
    if not 0.0 < slope < 1.0:
        raise ValueError(f"the ICLR24 condition needs a LeakyReLU slope in (0, 1), got {slope}")
    bound = slope**3 * stats.r_min**4 / (3.0 * stats.n * stats.r_max**2)
    ratio = stats.p_max / bound if bound > 0 else math.inf
    return OrthogonalityCondition(
        stats.p_max < bound, bound, stats.p_max, bound - stats.p_max, ratio
    )


def lambda_bounds(stats: DataStatistics, slope: float) -> tuple[float, float]:
    """``(1/(2 R_max²), 3/(2 γ² R_min²))``, the interval of the λ_n under the condition."""
    return 1.0 / (2.0 * stats.r_max**2), 3.0 / (2.0 * slope**2 * stats.r_min**2)


def _gram_mv(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``X Xᵀ v`` without the N × N Gram matrix."""
    return x @ (x.T @ v)


@dataclass
class Lambdas:
    """Max-margin multipliers ``λ`` ``(N,)`` (float64), how they were found (``all_support``
    linear solve or ``nonnegative`` dual solve), whether the solve converged, the KKT
    residual ``max_n |min(λ_n, y_n f̃(x_n) − 1)|`` and the smallest margin ``min_n y_n f̃(x_n)``."""

    values: torch.Tensor
    method: Literal["all_support", "nonnegative"]
    converged: bool
    kkt_residual: float
    min_margin: float


def _conjugate_gradient(
    x: torch.Tensor, rhs: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, bool]:
    sol = torch.zeros_like(rhs)
    res = rhs.clone()
    direction = res.clone()
    rs = res @ res
    target = tol**2 * (rhs @ rhs)
    for _ in range(max_iter):
        if rs <= target:
            return sol, True
        gd = _gram_mv(x, direction)
        alpha = rs / (direction @ gd)
        sol += alpha * direction
        res -= alpha * gd
        rs_new = res @ res
        direction = res + (rs_new / rs) * direction
        rs = rs_new
    return sol, bool(rs <= target)


def _kkt(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> tuple[float, float]:
    margins = y * (x @ (x.T @ (lam * y)))
    residual = torch.minimum(lam, margins - 1.0).abs().max().item()
    return residual, margins.min().item()


def max_margin_lambdas(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    tol: float = 1e-8,
    max_iter: int = 2000,
    dual_iter: int = 5000,
    kkt_tol: float = 1e-9,
) -> Lambdas:
    """Multipliers of the max-margin problem ``min ‖w‖² s.t. y_n ⟨w, x_n⟩ ≥ 1`` with
    ``w = Σ_n λ_n y_n x_n`` (ICLR24 arXiv:2402.10470). ``x`` ``(N, d)``, ``y`` ``(N,)`` ±1.

    First the all-support-vector solution ``Σ_k λ_k y_k y_n ⟨x_k, x_n⟩ = 1`` (as ``G μ = y``,
    ``λ = y μ``, ``G = X Xᵀ``, by conjugate gradients in float64). If that does not converge or
    has a negative entry, the dual ``max Σ λ − ½ λᵀ(yyᵀ∘G)λ, λ ≥ 0`` is solved by accelerated
    projected gradient (FISTA with adaptive restart, step 1/‖X‖₂², at most ``dual_iter``
    steps, converged when the KKT residual is at most ``kkt_tol``). On non-separable data the
    dual is unbounded: ``converged`` is then false and the KKT residual large.
    """
    check_xy(x, y, "max_margin_lambdas")
    x64, y64 = x.double(), y.double()
    mu, ok = _conjugate_gradient(x64, y64.clone(), tol, max_iter)
    lam = y64 * mu
    if ok and bool((lam >= 0).all()):
        residual, margin = _kkt(x64, y64, lam)
        return Lambdas(lam, "all_support", True, residual, margin)

    # Non-negative dual solve: f(λ) = ½ λᵀ Q λ − 1ᵀλ, Q = D G D, ∇ = Q λ − 1.
    lipschitz = torch.linalg.matrix_norm(x64, ord=2).item() ** 2
    step = 1.0 / max(lipschitz, 1e-300)
    lam = torch.zeros_like(y64)
    prev = lam.clone()
    momentum_t = 1.0
    residual, margin = _kkt(x64, y64, lam)
    for it in range(1, dual_iter + 1):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * momentum_t**2)) / 2.0
        point = lam + ((momentum_t - 1.0) / t_next) * (lam - prev)
        grad = y64 * _gram_mv(x64, y64 * point) - 1.0
        prev = lam
        lam = (point - step * grad).clamp_min(0.0)
        momentum_t = t_next
        if float(grad @ (lam - prev)) > 0:  # adaptive restart of the momentum
            momentum_t = 1.0
        if it % 25 == 0:
            residual, margin = _kkt(x64, y64, lam)
            if residual <= kkt_tol:
                break
    residual, margin = _kkt(x64, y64, lam)
    converged = residual <= kkt_tol
    return Lambdas(lam, "nonnegative", converged, residual, margin)


def surrogate_weight(x: torch.Tensor, y: torch.Tensor, lambdas: torch.Tensor) -> torch.Tensor:
    """``w̃ = Σ_n λ_n y_n x_n`` ``(d,)``, so that ``f̃(z) = Σ_n λ_n y_n ⟨x_n, z⟩ = z @ w̃``."""
    check_xy(x, y, "surrogate_weight")
    return (lambdas.to(x.dtype) * y.to(x.dtype)) @ x


def predicted_perturbation(
    weight: torch.Tensor,
    y_adv: torch.Tensor,
    eps: float,
    norm: Literal["l2", "linf", "l0"],
    *,
    k: int | None = None,
) -> torch.Tensor:
    """The perturbation the surrogate ``f̃(z) = ⟨w̃, z⟩`` predicts for targets ``y_adv`` ``(N,)``
    → ``(N, d)``. ``l2``: ``ε y^adv w̃/‖w̃‖₂``; ``linf``: ``ε y^adv sign(w̃)``; ``l0``: ``ε
    y^adv sign(w̃_i)`` on the ``k`` coordinates with the largest ``|w̃_i|`` (``k`` required),
    zero elsewhere."""
    sign = y_adv.to(weight.dtype)[:, None]
    if norm == "l2":
        return eps * sign * (weight / weight.norm().clamp_min(torch.finfo(weight.dtype).tiny))
    if norm == "linf":
        return eps * sign * torch.sign(weight)
    if norm == "l0":
        if k is None or not 1 <= k <= weight.numel():
            raise ValueError(f"l0 prediction needs 1 <= k <= {weight.numel()}, got {k}")
        mask = torch.zeros_like(weight)
        mask[top_coordinates(weight, k)] = 1.0
        return eps * sign * (torch.sign(weight) * mask)
    raise ValueError(f"unknown norm {norm!r}; choose l2, linf or l0")


def top_coordinates(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest ``|w̃_i|`` (the coordinates an L0 attack changes)."""
    return weight.abs().topk(k).indices


def l0_overlap(perturbations: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per crafted perturbation ``(N, d)``: the share of its changed coordinates (nonzero
    entries, ``k_n`` of them) that are among the ``k_n`` largest ``|w̃_i|`` → ``(N,)``; NaN for
    an unchanged sample."""
    order = weight.abs().argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    changed = perturbations != 0
    counts = changed.sum(dim=1)
    hits = (changed & (rank[None, :] < counts[:, None])).sum(dim=1)
    return torch.where(counts > 0, hits / counts.clamp_min(1), torch.nan).to(weight.dtype)


@dataclass
class Decomposition:
    """g's surrogate ``g̃(z) = noise + perturbation`` at test points, each ``(M,)``:
    ``noise = Σ_n λ^adv_n y^adv_n ⟨x_n^base, z⟩`` (the base inputs with their target labels),
    ``perturbation = Σ_n λ^adv_n y^adv_n ⟨η_n, z⟩`` (≈ a positive multiple of f̃)."""

    noise: torch.Tensor
    perturbation: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.noise + self.perturbation

    @property
    def perturbation_dominates(self) -> torch.Tensor:
        """Bool ``(M,)``: ``|perturbation term| > |noise term|``."""
        return self.perturbation.abs() > self.noise.abs()


def surrogate_decomposition(
    z: torch.Tensor,
    base: torch.Tensor,
    perturbations: torch.Tensor,
    y_adv: torch.Tensor,
    lambdas: torch.Tensor,
) -> Decomposition:
    """Split ``g̃(z) = Σ_n λ_n y^adv_n ⟨base_n + η_n, z⟩`` for ``z`` ``(M, d)`` into the term of
    ``base`` ``(N, d)`` and the term of ``perturbations`` ``η`` ``(N, d)``. ``lambdas`` are the
    max-margin multipliers of g's training set ``{(base_n + η_n, y^adv_n)}``."""
    coeff = lambdas.to(z.dtype) * y_adv.to(z.dtype)
    return Decomposition(z @ (coeff @ base), z @ (coeff @ perturbations))


def summary(values: torch.Tensor) -> dict[str, Any]:
    """Mean, min, quartiles and max of a 1-D tensor (NaNs dropped), as floats."""
    v = values.detach().double().flatten()
    v = v[~torch.isnan(v)]
    if v.numel() == 0:
        return {"count": 0}
    q = torch.quantile(v, torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], dtype=v.dtype))
    keys = ["min", "p10", "p25", "median", "p75", "p90", "max"]
    out: dict[str, Any] = {"count": v.numel(), "mean": v.mean().item()}
    out.update({key: val.item() for key, val in zip(keys, q, strict=True)})
    return out
