"""NeurIPS24 predictions for wide two-layer networks (NeurIPS24 arXiv:2410.23677 "Theory").

With the kernel Φ of :mod:`pertlearn.theory.kernel`, training data ``x`` ``(N, d)``, labels
``y`` ``(N,)`` (±1) and per-sample loss weights ``c_k = ∫ ℓ'(−y_k f(x_k; t)) dt`` (constant for
the identity loss; ``TrainResult.loss_weights`` of the trainer), the theory predicts

* the gradient direction at a training input, hence the perturbation direction:
  ``u_n = (1/N) Σ_k c_k y_k Φ(x_n, x_k) x_k`` and ``r_n ∥ y_n^adv u_n``;
* f's decision function ``f̂(z) = (1/N) Σ_n c_n y_n Φ(x_n, z) ⟨x_n, z⟩``;
* g's decision function, the same formula over g's training set ``{(x_n^adv, y_n^adv)}``
  with the predicted perturbation ``r̂_n = ε y_n^adv u_n/‖u_n‖`` in place of the crafted one:
  ``ĝ(z) = (1/N) Σ_n c^g_n y_n^adv Φ(x_n^adv, z) ⟨r̂_n, z⟩``
  ``= (ε/N) Σ_n c^g_n Φ(x_n^adv, z) ⟨u_n, z⟩/‖u_n‖`` (the spec's ĝ up to the positive factor
  ``ε/‖u_n‖`` per term), plus in scenario (b) the term of the mislabeled originals
  ``(1/N) Σ_n c^g_n y_n^adv Φ(x_n^adv, z) ⟨x_n, z⟩``.

Every function works in row chunks of ``chunk_size`` and never holds more than one
``chunk_size × N`` kernel block, so N = 10⁴ and more fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pertlearn.tensors import per_sample_norm
from pertlearn.theory.kernel import DEFAULT_CHUNK, check_xy, phi_matmul


def _weights(y: Tensor, weights: Tensor | None) -> Tensor:
    if weights is None:
        return y
    if weights.shape != y.shape:
        raise ValueError(
            f"loss weights have shape {tuple(weights.shape)} but labels {tuple(y.shape)}; "
            "pass one weight per training sample"
        )
    return y * weights.to(y.dtype)


def predicted_directions(
    x: Tensor,
    y: Tensor,
    slope: float,
    *,
    at: Tensor | None = None,
    weights: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    bias: bool = True,
) -> Tensor:
    """``u_n = (1/N) Σ_k c_k y_k Φ(x_n, x_k) x_k`` for every training sample: ``x`` ``(N, d)``,
    ``y`` ``(N,)`` → ``(N, d)``. ``weights`` are the ``c_k`` (``None``: identity loss, all 1).

    ``y_n^adv u_n`` is the predicted direction of the perturbation crafted at ``x_n``
    towards ``y_n^adv`` (NeurIPS24: ``∇_x f(x_n) ≈ u_n`` up to a positive factor). ``at``
    ``(M, d)``: predict at these points instead (``Φ(at_m, x_k)`` in place of
    ``Φ(x_n, x_k)``; e.g. noise inputs that are perturbed), → ``(M, d)``.
    """
    check_xy(x, y, "predicted_directions")
    coeff = _weights(y, weights)
    points = x if at is None else at
    return (
        phi_matmul(points, x, coeff[:, None] * x, slope, chunk_size=chunk_size, bias=bias)
        / x.shape[0]
    )


def predicted_perturbations(directions: Tensor, y_adv: Tensor, eps: float) -> Tensor:
    """``r̂_n = ε y_n^adv u_n/‖u_n‖`` (``(N, d)``), the predicted one-step L2 perturbation,
    from the directions ``u`` ``(N, d)`` and the targets ``y_adv`` ``(N,)`` ±1."""
    check_xy(directions, y_adv, "predicted_perturbations")
    norm = per_sample_norm(directions).clamp_min(torch.finfo(directions.dtype).tiny)
    return eps * y_adv[:, None].to(directions.dtype) * directions / norm[:, None]


def cosines(a: Tensor, b: Tensor) -> Tensor:
    """Per-row cosine of ``a`` and ``b`` (``(N, ...)`` each) → ``(N,)`` in ``[-1, 1]``; 0 for a
    zero row."""
    a, b = a.flatten(1), b.flatten(1)
    denom = (per_sample_norm(a) * per_sample_norm(b)).clamp_min(torch.finfo(a.dtype).tiny)
    return ((a * b).sum(dim=1) / denom).clamp(-1.0, 1.0)  # rounding can overshoot ±1


def _kernel_decision(
    z: Tensor, x: Tensor, coeff: Tensor, slope: float, inputs: Tensor, chunk_size: int, bias: bool
) -> Tensor:
    """``(1/N) Σ_n coeff_n Φ(x_n, z) ⟨inputs_n, z⟩`` for each row of ``z`` ``(M, d)`` → ``(M,)``.

    ``x`` ``(N, d)`` enters the kernel, ``inputs`` (same shape) the inner product; the sum is
    chunked over ``z`` so only ``chunk_size × N`` blocks exist.
    """
    if inputs.shape != x.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} must have the shape of x {tuple(x.shape)}")

    def combine(rows: slice, block: Tensor) -> Tensor:
        return block * (z[rows] @ inputs.T)

    return (
        phi_matmul(z, x, coeff, slope, chunk_size=chunk_size, combine=combine, bias=bias)
        / x.shape[0]
    )


def fhat(
    z: Tensor,
    x: Tensor,
    y: Tensor,
    slope: float,
    *,
    weights: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    bias: bool = True,
) -> Tensor:
    """Predicted decision function of f, ``f̂(z) = (1/N) Σ_n c_n y_n Φ(x_n, z) ⟨x_n, z⟩``:
    ``z`` ``(M, d)`` → ``(M,)``; only its sign is a prediction. ``x`` ``(N, d)``, ``y``
    ``(N,)`` ±1: f's training set."""
    check_xy(x, y, "fhat")
    return _kernel_decision(z, x, _weights(y, weights), slope, x, chunk_size, bias)


@dataclass
class GHat:
    """ĝ on a batch of points: ``perturbation`` (the term of the perturbations),
    ``original`` (scenario (b): the mislabeled originals; zeros in scenario (a)); ``total`` is
    their sum. Each has shape ``(M,)``."""

    perturbation: Tensor
    original: Tensor

    @property
    def total(self) -> Tensor:
        return self.perturbation + self.original


def ghat(
    z: Tensor,
    x_adv: Tensor,
    y_adv: Tensor,
    perturbations: Tensor,
    slope: float,
    *,
    originals: Tensor | None = None,
    weights: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    bias: bool = True,
) -> GHat:
    """Predicted decision function of g trained on ``{(x_n^adv, y_n^adv)}`` (``(N, d)``,
    ``(N,)``) whose inputs are ``originals + perturbations`` (``originals`` ``None``:
    scenario (a), the perturbations alone).

    ``perturbation`` term: ``(1/N) Σ_n c_n y_n^adv Φ(x_n^adv, z) ⟨r̂_n, z⟩`` with
    ``perturbations = r̂`` (use :func:`predicted_perturbations` for the theory's ĝ);
    ``original`` term: ``(1/N) Σ_n c_n y_n^adv Φ(x_n^adv, z) ⟨x_n, z⟩``. ``weights`` are g's
    loss weights ``c_n`` (``None``: identity loss).
    """
    check_xy(x_adv, y_adv, "ghat")
    coeff = _weights(y_adv, weights)
    pert = _kernel_decision(z, x_adv, coeff, slope, perturbations, chunk_size, bias)
    if originals is None:
        orig = torch.zeros_like(pert)
    else:
        orig = _kernel_decision(z, x_adv, coeff, slope, originals, chunk_size, bias)
    return GHat(pert, orig)


def sign_agreement(a: Tensor, b: Tensor) -> float:
    """Share of entries with equal sign (ties count as +1, like :func:`training.predict`);
    ``a`` and ``b`` of one shape, e.g. ``(N,)`` predictions of f̂ and ĝ."""
    return ((a >= 0) == (b >= 0)).double().mean().item()
