"""Models, inputs and attack lists shared by the attack tests (not a test module)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pertlearn.attacks import (
    ATTACKS,
    PgdL0,
    PgdL2,
    PgdLinf,
    PgdLinfRescaled,
    TargetedPGD,
    make_attack,
)
from pertlearn.models import OneHiddenNet

DENSE = {
    "pgd_l2": (PgdL2, 2.0),
    "pgd_linf": (PgdLinf, math.inf),
    "pgd_linf_rescaled": (PgdLinfRescaled, math.inf),
}
"""The PGD attacks whose budget is a norm: name → (class, order p of the norm)."""

ALL = [*DENSE, "pgd_l0"]
"""The built-in PGD attacks, named here (``test_common`` checks that these are every registered
built-in PGD attack)."""

PGD = sorted(name for name, cls in ATTACKS.items() if issubclass(cls, TargetedPGD))
"""Every registered PGD attack (subclass of :class:`TargetedPGD`), from the registry."""

EPS = {"pgd_l2": 0.8, "pgd_linf": 0.1, "pgd_linf_rescaled": 0.1, "pgd_l0": 5}
"""A budget per PGD attack that moves the small set-ups below without saturating them."""


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


class Linear(nn.Module):
    """Binary linear model ``f(x) = w·x + b`` on flattened inputs, scores ``(N,)``."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(b, dtype=w.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b


def binary_setup(
    n: int = 16, d: int = 30, dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A random :class:`OneHiddenNet` with scores ``(N,)``, ``n`` inputs ``(n, d)`` uniform in
    ``[-1, 1)`` and ±1 targets ``(n,)``, all in ``dtype``."""
    model = OneHiddenNet(d, 20, 0.01, generator=gen(1), dtype=dtype)
    x = torch.rand(n, d, generator=gen(2), dtype=dtype) * 2 - 1
    target = torch.randint(0, 2, (n,), generator=gen(3)).to(dtype) * 2 - 1
    return model, x, target


def image_setup(
    n: int = 8, classes: int = 5, dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN with logits ``(N, K)`` on ``(N, 3, 6, 6)`` inputs in ``[0, 1]``."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, classes),
    ).to(dtype)
    x = torch.rand(n, 3, 6, 6, generator=gen(4), dtype=dtype)
    target = torch.randint(0, classes, (n,), generator=gen(5))
    return model, x, target


def linear_setup(
    n: int = 12, d: int = 50, dtype: torch.dtype = torch.float64
) -> tuple[Linear, torch.Tensor, torch.Tensor]:
    """A :class:`Linear` model with random ``w`` (``‖w‖ ≈ 1``) and ``b = 0.1``, inputs
    ``(n, d)`` in ``[-0.5, 0.5)`` and ±1 targets ``(n,)``."""
    w = torch.randn(d, generator=gen(10), dtype=dtype) / math.sqrt(d)
    x = (torch.rand(n, d, generator=gen(11), dtype=dtype) * 2 - 1) * 0.5
    target = torch.randint(0, 2, (n,), generator=gen(12)).to(dtype) * 2 - 1
    return Linear(w, 0.1), x, target


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity ``(N,)`` of two ``(N, ...)`` tensors."""
    return nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def make(name: str, eps: float, **options: object) -> PgdL2 | PgdLinf | PgdLinfRescaled | PgdL0:
    """The built-in PGD attack ``name`` from the registry (typed for its hooks)."""
    attack = make_attack(name, eps, **options)
    assert isinstance(attack, PgdL2 | PgdLinf | PgdLinfRescaled | PgdL0)
    return attack
