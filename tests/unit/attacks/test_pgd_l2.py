"""Targeted L2 PGD (:class:`PgdL2`): the closed-form optimum on a linear model, and the
distribution of its random start against its closed form."""

from __future__ import annotations

import torch

from pertlearn.attacks import PgdL2, per_sample_norm

from .distribution_checks import DRAW_SEED, SAMPLES, assert_isotropic, assert_uniform_01
from .support import cosines, gen, linear_setup


def test_l2_finds_the_closed_form_optimum_on_a_linear_model() -> None:
    """argmin_{‖δ‖₂≤ε} ℓ(-y(w·(x+δ)+b)) = ε y w/‖w‖₂ (spec §3)."""
    model, x, target = linear_setup()
    eps = 0.5
    delta = PgdL2(eps)(model, x, target) - x
    optimum = eps * target[:, None] * model.w.detach() / model.w.detach().norm()
    assert float(cosines(delta, optimum).min()) >= 0.99
    assert torch.allclose(per_sample_norm(delta), torch.full_like(target, eps), rtol=1e-6)


# --------------------------------------------------------------- random start


def test_random_start_radius_fraction_is_uniform_and_direction_isotropic() -> None:
    """With a data range too wide to clip, ``δ = ε·r·u/‖u‖₂``: the radius fraction ``‖δ‖₂/ε = r``
    is ``U[0, 1)`` (torchattacks' draw, not the ``r^{1/d}`` of a uniform point of the ball) and
    the direction ``δ/‖δ‖₂`` is uniform on the sphere of all non-batch coordinates."""
    eps = 0.5
    x = torch.rand(SAMPLES, 2, 2, 3, generator=gen(DRAW_SEED), dtype=torch.float64) * 2 - 1
    attack = PgdL2(eps, clip=(-10.0, 10.0))
    delta = (attack.random_start(x, gen(DRAW_SEED + 1)) - x).flatten(1)
    radius = delta.norm(dim=1)
    assert_uniform_01(radius / eps)
    assert_isotropic(delta / radius[:, None])


def test_clipped_random_start_is_the_clipped_draw_in_the_range_and_the_ball() -> None:
    """With clipping active the start is the unclipped draw clipped to the data range, so it
    stays in the range and, the clean input lying in it, in the ε-ball."""
    eps = 1.5
    x = torch.rand(2_000, 12, generator=gen(DRAW_SEED), dtype=torch.float64)
    x[:, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # on the edges of the range
    clipped = PgdL2(eps, clip=(0.0, 1.0)).random_start(x, gen(DRAW_SEED + 1))
    unclipped = PgdL2(eps).random_start(x, gen(DRAW_SEED + 1))
    assert torch.equal(clipped, unclipped.clamp(0.0, 1.0))
    assert not torch.equal(clipped, unclipped)  # the clip was active
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
    assert float(per_sample_norm(clipped - x).max()) <= eps * (1 + 1e-12)
