"""Targeted L∞ attacks: the standard sign-gradient PGD (Madry et al. 2018) and the ICLR24
reference variant that rescales an L∞-normalized gradient step (ICLR24 arXiv:2402.10470)."""

from __future__ import annotations

from typing import Any

from torch import Generator, Tensor

from pertlearn.attacks.base import draw, register_attack
from pertlearn.attacks.pgd_base import TargetedPGD
from pertlearn.tensors import normalize


def linf_random_start(attack: TargetedPGD, x: Tensor, generator: Generator | None) -> Tensor:
    """A uniform point of the L∞ ball: ``clip(x + ε(2u - 1))``, ``u ~ U[0, 1)^{shape of x}``."""
    noise = draw("uniform", tuple(x.shape), generator, x)
    return attack.clamp(x + attack.eps * (2 * noise - 1))


@register_attack
class PgdLinf(TargetedPGD):
    """Targeted sign-gradient L∞ PGD (Madry et al.):
    ``x ← clip(x₀ + clamp(x - α sign(∇ℓ) - x₀, -ε, ε))``.

    ``steps`` defaults to 100 and ``step_size`` to ``2.5·ε/steps`` (Madry et al.). With
    ``random_start = True`` the first iterate is ``x₀ + u``, ``u ~ U([-ε, ε]^d)`` drawn from the
    ``generator`` passed to the call (clipped); the clean input still counts as a candidate
    for the best iterate. Theory (ICLR24 arXiv:2402.10470): for a linear ``f̃`` the optimum is
    ``η = ε y_adv sign(∇f̃)``, which this attack reaches.
    """

    name = "pgd_linf"

    def __init__(self, eps: float, *, random_start: bool = False, **options: Any) -> None:
        """``eps``: the L∞ budget; ``random_start``: start from a uniform point of the ε-ball
        instead of the clean input (default false); ``steps`` and the other ``options``: those of
        :class:`~pertlearn.attacks.pgd_base.TargetedPGD` (``step_size``, ``clip``, ``loss``,
        ``batch_size``, ``targeted``, ``restarts``, ``until_fooled``, ``max_steps``, ``noise_std``,
        ``eot_samples``, ``precision``), described under its ``__init__``."""
        super().__init__(eps, **options)
        self.uniform_start = bool(random_start)

    def default_step_size(self) -> float:
        return 2.5 * self.eps / self.steps

    def start(self, x: Tensor, generator: Generator | None) -> Tensor:
        if not self.uniform_start:
            return x.clone()
        return self.random_start(x, generator)

    def random_start(self, x: Tensor, generator: Generator | None) -> Tensor:
        """``x + u``, ``u ~ U([-ε, ε]^d)``, clipped to the data range."""
        return linf_random_start(self, x, generator)

    def step(self, x: Tensor, x_adv: Tensor, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        delta = (x_adv - self.step_size * grad.sign() - x).clamp(-self.eps, self.eps)
        return self.clamp(x + delta)


@register_attack
class PgdLinfRescaled(TargetedPGD):
    """The ICLR24 reference L∞ attack: ``x ← clip(x₀ + rescale_ε(x - α ∇ℓ/‖∇ℓ‖∞ - x₀))``
    where ``rescale_ε(δ) = δ·min(1, ε/‖δ‖∞)`` shrinks the whole perturbation (no clamping).

    ``steps`` defaults to 100 and ``step_size`` to ``ε/5``. Weaker than :class:`PgdLinf`:
    on a linear model it converges to ``ε ∇f/‖∇f‖∞`` rather than the L∞ optimum
    ``ε sign(∇f)``, so most coordinates stay well inside the budget.
    """

    name = "pgd_linf_rescaled"

    def random_start(self, x: Tensor, generator: Generator | None) -> Tensor:
        """``x + u``, ``u ~ U([-ε, ε]^d)``, clipped to the data range."""
        return linf_random_start(self, x, generator)

    def step(self, x: Tensor, x_adv: Tensor, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        delta = x_adv - self.step_size * normalize(grad, float("inf")) - x
        delta = delta.flatten(1).renorm(p=float("inf"), dim=0, maxnorm=self.eps).view_as(x)
        return self.clamp(x + delta)
