"""Targeted L2 PGD (:class:`PgdL2`): the closed-form optimum on a linear model."""

from __future__ import annotations

import torch

from pertlearn.attacks import PgdL2, per_sample_norm

from .support import cosines, linear_setup


def test_l2_finds_the_closed_form_optimum_on_a_linear_model() -> None:
    """argmin_{‖δ‖₂≤ε} ℓ(-y(w·(x+δ)+b)) = ε y w/‖w‖₂ (spec §3)."""
    model, x, target = linear_setup()
    eps = 0.5
    delta = PgdL2(eps)(model, x, target) - x
    optimum = eps * target[:, None] * model.w.detach() / model.w.detach().norm()
    assert float(cosines(delta, optimum).min()) >= 0.99
    assert torch.allclose(per_sample_norm(delta), torch.full_like(target, eps), rtol=1e-6)
