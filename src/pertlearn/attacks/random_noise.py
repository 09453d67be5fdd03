"""Random perturbations of a fixed L2 norm: the control that carries no information from f."""

from __future__ import annotations

from torch import Generator, Tensor, nn

from pertlearn.attacks.base import Attack, draw, register_attack
from pertlearn.tensors import per_sample_norm, per_sample_view


@register_attack
class RandomL2(Attack):
    """``x_adv = x + ε u/‖u‖₂`` with ``u ~ N(0, I)`` drawn from ``generator`` on its own device
    (a CUDA generator draws on the GPU); ignores the model and the targets (``targeted`` is
    accepted and has no effect; the targets are still checked against the model's outputs like
    every attack's). Used for the ``control_random`` classifier g'."""

    name = "random_l2"

    def perturb(
        self, model: nn.Module, x: Tensor, target: Tensor, *, generator: Generator | None = None
    ) -> Tensor:
        noise = draw("normal", tuple(x.shape), generator, x)
        norm = per_sample_view(per_sample_norm(noise), x.ndim)
        return x + self.eps * noise / norm
