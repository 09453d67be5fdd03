"""Targeted L2 PGD (ICLR24 reference, ICLR24 arXiv:2402.10470)."""

from __future__ import annotations

from torch import Generator, Tensor

from pertlearn.attacks.base import draw, register_attack
from pertlearn.attacks.pgd_base import TargetedPGD
from pertlearn.tensors import normalize, per_sample_view


@register_attack
class PgdL2(TargetedPGD):
    """Targeted L2 PGD: ``x ← clip(x₀ + renorm_ε(x - α ∇ℓ/‖∇ℓ‖₂ - x₀))``.

    Each of ``steps`` (default 100) updates moves by ``α = step_size`` (default ``ε/5``)
    against the L2-normalized gradient of the target loss, rescales the total perturbation
    into the ε-ball (``δ·min(1, ε/‖δ‖₂)``) and clips to the data range. Clipping moves each
    coordinate towards the clean input (which lies in the range), so ``‖δ‖₂ ≤ ε`` still holds.
    The per-sample best iterate by target loss is returned. Theory (ICLR24 arXiv:2402.10470): for
    a linear
    ``f̃``, the optimum is ``η = ε y_adv ∇f̃/‖∇f̃‖₂``.
    """

    name = "pgd_l2"

    def random_start(self, x: Tensor, generator: Generator | None) -> Tensor:
        """``x + ε·r·u/‖u‖₂`` with ``u ~ N(0, I)`` and radius fraction ``r ~ U[0, 1)`` per
        sample (as torchattacks' PGDL2), clipped to the data range (which keeps it in the
        ball)."""
        direction = normalize(draw("normal", tuple(x.shape), generator, x), 2.0)
        radius = draw("uniform", (x.shape[0],), generator, x)
        return self.clamp(x + self.eps * per_sample_view(radius, x.ndim) * direction)

    def step(self, x: Tensor, x_adv: Tensor, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        delta = x_adv - self.step_size * normalize(grad, 2.0) - x
        delta = delta.flatten(1).renorm(p=2, dim=0, maxnorm=self.eps).view_as(x)
        return self.clamp(x + delta)
