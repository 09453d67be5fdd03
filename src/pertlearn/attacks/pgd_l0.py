"""Targeted L0 attack of the ICLR24 reference (ICLR24 arXiv:2402.10470)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Generator, Tensor

from pertlearn.attacks.base import draw, register_attack
from pertlearn.attacks.pgd_base import TargetedPGD
from pertlearn.tensors import normalize


@register_attack
class PgdL0(TargetedPGD):
    """Targeted L0 attack changing at most ``k = eps`` coordinates per sample.

    Each update unlocks the not-yet-unlocked coordinate with the largest ``|∇ℓ|`` (while fewer
    than ``k`` are unlocked), then moves all unlocked coordinates by
    ``step_size · g/‖g‖∞`` (default 0.3) against the gradient ``g`` restricted to them, and
    clips to the data range. ``steps`` defaults to ``k``, so ``k`` updates change at most ``k``
    coordinates. Coordinates are the elements of each sample (all non-batch dimensions
    flattened). Theory (ICLR24 arXiv:2402.10470): on a linear ``f̃`` it changes the coordinates
    with the
    largest ``|∇f̃|``.

    Args:
        eps: the number ``k`` of coordinates that may change, a whole number ``>= 1`` (and at
            most the input size, checked at call time).
    """

    name = "pgd_l0"

    def __init__(self, eps: float, *, steps: int | None = None, **options: Any) -> None:
        """``eps``: the number k of coordinates that may change (a whole number); ``steps``:
        the number of updates (default k); ``options``: those of
        :class:`~pertlearn.attacks.pgd_base.TargetedPGD` (``step_size``, ``clip``, ``loss``,
        ``batch_size``, ``targeted``, ``restarts``, ``until_fooled``, ``max_steps``, ``noise_std``,
        ``eot_samples``, ``precision``), described under its ``__init__``."""
        if eps > 0 and eps != int(eps):
            raise ValueError(
                f"pgd_l0: eps is the number of coordinates that may change and must be a "
                f"whole number, got {eps}"
            )
        if eps > 0 and steps is None:
            steps = int(eps)
        super().__init__(eps, steps=steps, **options)
        self.k = int(self.eps)

    def default_step_size(self) -> float:
        return 0.3

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        size = math.prod(x.shape[1:])
        if self.k > size:
            raise ValueError(
                f"pgd_l0: k = eps = {self.k} coordinates may change but each input has only "
                f"{size}; choose eps <= {size}"
            )

    def random_start(self, x: Tensor, generator: Generator | None) -> Tensor:
        """``max(1, k // 2)`` coordinates per sample, chosen uniformly, each moved by
        ``step_size·(2u - 1)``, ``u ~ U[0, 1)``, and clipped; they count as unlocked, so the
        run still changes at most ``k`` coordinates."""
        flat = x.flatten(1)
        chosen = draw("uniform", tuple(flat.shape), generator, x).topk(max(1, self.k // 2), dim=1)
        offsets = self.step_size * (
            2 * draw("uniform", tuple(chosen.indices.shape), generator, x) - 1
        )
        return self.clamp(flat.scatter_add(1, chosen.indices, offsets).view_as(x))

    def init_state(self, x: Tensor, x_adv: Tensor) -> dict[str, Tensor]:
        """``unlocked``: which coordinates may move, shape ``(N, numel per sample)``; those
        where the first iterate differs from ``x`` start unlocked."""
        return {"unlocked": (x_adv != x).flatten(1)}

    def step(self, x: Tensor, x_adv: Tensor, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        unlocked = state["unlocked"]
        flat_grad = grad.flatten(1)
        room = unlocked.sum(dim=1) < self.k
        if bool(room.any()):
            candidates = flat_grad.abs().masked_fill(unlocked, -1.0)
            pick = candidates.argmax(dim=1)
            rows = torch.arange(x.shape[0], device=x.device)
            unlocked[rows[room], pick[room]] = True
        masked = normalize(flat_grad * unlocked, float("inf")).view_as(x)
        return self.clamp(x_adv - self.step_size * masked)
