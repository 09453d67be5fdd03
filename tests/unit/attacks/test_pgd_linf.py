"""The L∞ attacks (:class:`PgdLinf`, sign steps, and :class:`PgdLinfRescaled`, the ICLR24
reference): their closed forms on a linear model, how they compare on a trained model, and the
random start of the sign attack."""

from __future__ import annotations

import math

import pytest
import torch

from pertlearn.attacks import PgdLinf, PgdLinfRescaled, per_sample_norm
from pertlearn.data import random_signs, uniform
from pertlearn.models import OneHiddenNet
from pertlearn.training import TrainConfig, fit

from .support import binary_setup, cosines, gen, linear_setup


def test_sign_pgd_random_start_stays_in_ball_and_is_reproducible() -> None:
    model, x, target = binary_setup()
    attack = PgdLinf(0.1, steps=5, random_start=True, clip=(-1, 1))
    a = attack(model, x, target, generator=gen(7))
    b = attack(model, x, target, generator=gen(7))
    c = attack(model, x, target, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(per_sample_norm(a - x, math.inf).max()) <= 0.1 * (1 + 1e-6)
    assert float(a.abs().max()) <= 1.0
    chunked = PgdLinf(0.1, steps=5, random_start=True, clip=(-1, 1), batch_size=5)
    assert torch.allclose(chunked(model, x, target, generator=gen(7)), a, atol=1e-6)


def test_sign_linf_finds_the_closed_form_optimum_on_a_linear_model() -> None:
    """argmin_{‖δ‖∞≤ε} ℓ(-y(w·(x+δ)+b)) = ε y sign(w) (spec §3)."""
    model, x, target = linear_setup()
    eps = 0.05
    delta = PgdLinf(eps)(model, x, target) - x
    optimum = eps * target[:, None] * model.w.detach().sign()
    assert float(cosines(delta, optimum).min()) >= 0.99


def test_rescaled_linf_converges_to_the_normalized_gradient_not_the_optimum() -> None:
    """The ICLR24 variant reaches ε y w/‖w‖∞ (its fixed point); its cosine with the L∞
    optimum ε y sign(w) is only ≈ ‖w‖₁/(√d‖w‖₂) (≈ 0.8 for Gaussian w)."""
    model, x, target = linear_setup()
    eps = 0.05
    w = model.w.detach()
    delta = PgdLinfRescaled(eps)(model, x, target) - x
    fixed_point = eps * target[:, None] * w / w.abs().max()
    assert float(cosines(delta, fixed_point).min()) >= 0.99
    to_optimum = cosines(delta, target[:, None] * w.sign())
    expected = w.abs().sum() / (math.sqrt(w.numel()) * w.norm())
    assert torch.allclose(to_optimum, expected.expand_as(to_optimum), atol=1e-3)
    assert float(to_optimum.max()) < 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sign_linf_fools_a_trained_model_more_than_the_rescaled_variant(seed: int) -> None:
    """At equal ε and steps, the sign step uses the whole L∞ budget on every coordinate; the
    rescaled ICLR24 variant does not. Measured over seeds 0-4 on this set-up: sign 0.75-0.80,
    rescaled 0.57-0.64 (a gap of at least 0.14)."""
    g = gen(seed)
    x, y = uniform(30, 300, g)
    noise, _ = uniform(300, 300, g)
    target = random_signs(300, g)
    f = OneHiddenNet(300, 20, generator=g)
    fit(f, x, y, TrainConfig(loss="exponential", lr=0.01, epochs=500))
    sign = PgdLinf(0.03, steps=20, clip=(-1, 1))
    rescaled = PgdLinfRescaled(0.03, steps=20, clip=(-1, 1))
    sign(f, noise, target)
    rescaled(f, noise, target)
    assert sign.last_fooling_rate is not None and rescaled.last_fooling_rate is not None
    assert sign.last_fooling_rate >= rescaled.last_fooling_rate + 0.08
