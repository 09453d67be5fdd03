"""NeurIPS24 perturbation: one normalized gradient step towards the target label (or, when
untargeted, away from the true label)."""

from __future__ import annotations

from torch import Generator, Tensor, nn

from pertlearn.attacks.base import Attack, register_attack
from pertlearn.tensors import normalize


@register_attack
class GradientStep(Attack):
    """``x_adv = x + r`` with ``r = -ε ∇_x ℓ(x, y_adv) / ‖∇_x ℓ(x, y_adv)‖₂`` (NeurIPS24,
    arXiv:2410.23677).

    Each perturbation has L2 norm exactly ``ε`` (a sample whose gradient vanishes is left
    unchanged). For a binary model and any of the margin losses, ``∇_x ℓ = -ℓ' y_adv ∇_x f``
    with ``ℓ' > 0``, so the direction ``y_adv ∇f/‖∇f‖`` does not depend on the loss; the paper
    uses the identity loss, the default here.

    With ``targeted=False`` the labels are the true ones and the step ascends their loss:
    ``r = +ε ∇_x ℓ(x, y)/‖∇_x ℓ(x, y)‖₂`` (one normalized step of Madry et al. 2018,
    arXiv:1706.06083 eq. 2.1).
    """

    name = "gradient_step"

    def __init__(self, eps: float, *, loss: str = "identity", targeted: bool = True) -> None:
        """One step of L2 norm ``eps``; ``loss`` (default ``identity``, the paper's; the
        direction is the same for every margin loss) and ``targeted`` as for every
        :class:`~pertlearn.attacks.base.Attack`."""
        super().__init__(eps, loss=loss, targeted=targeted)

    def perturb(
        self, model: nn.Module, x: Tensor, target: Tensor, *, generator: Generator | None = None
    ) -> Tensor:
        _, grad = self.loss_and_grad(model, x, target)
        return x - self.eps * normalize(grad, 2.0)
