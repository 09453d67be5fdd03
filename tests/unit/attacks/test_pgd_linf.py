"""The L∞ attacks (:class:`PgdLinf`, sign steps, and :class:`PgdLinfRescaled`, the ICLR24
reference): their closed forms on a linear model, how they compare on a trained model, and the
uniform random start of the L∞ ball they share, against its closed form."""

from __future__ import annotations

import math

import pytest
import torch

from pertlearn.attacks import PgdLinf, PgdLinfRescaled, per_sample_norm
from pertlearn.attacks.pgd_linf import linf_random_start
from pertlearn.data import random_signs, uniform
from pertlearn.models import OneHiddenNet
from pertlearn.training import TrainConfig, fit

from .distribution_checks import DRAW_SEED, SAMPLES, assert_mean_near, assert_uniform_01
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


# --------------------------------------------------------------- random start


def test_every_linf_random_start_is_the_uniform_draw_of_linf_random_start() -> None:
    """``PgdLinf(random_start=True)``'s first iterate and the restarts of both L∞ attacks draw
    the same start from the same generator state; without ``random_start`` the sign attack
    starts at the clean input."""
    x = torch.rand(50, 2, 3, 3, generator=gen(DRAW_SEED), dtype=torch.float64)
    clip = (0.0, 1.0)
    expected = linf_random_start(PgdLinf(0.1, clip=clip), x, gen(DRAW_SEED + 1))
    starts = [
        PgdLinf(0.1, random_start=True, clip=clip).start(x, gen(DRAW_SEED + 1)),
        PgdLinf(0.1, clip=clip).random_start(x, gen(DRAW_SEED + 1)),
        PgdLinfRescaled(0.1, clip=clip).random_start(x, gen(DRAW_SEED + 1)),
    ]
    for start in starts:
        assert torch.equal(start, expected)
    assert torch.equal(PgdLinf(0.1, clip=clip).start(x, gen(DRAW_SEED + 1)), x)


def test_linf_random_start_coordinates_are_independent_and_uniform() -> None:
    """With a data range too wide to clip, ``δ = ε(2u - 1)``: the scaled offsets ``s = δ/ε`` of
    all ``SAMPLES·d`` coordinates, pooled, are ``U[-1, 1)`` (``(s + 1)/2`` is ``U[0, 1)``), and
    they are uncorrelated with mean 0 per coordinate: ``E[s sᵀ] = I/3``, with ``Var s_i² =
    1/5 - 1/9`` and ``Var s_i s_j = 1/9``."""
    eps, d = 0.25, 8
    x = torch.rand(SAMPLES, d, generator=gen(DRAW_SEED), dtype=torch.float64) * 2 - 1
    attack = PgdLinf(eps, clip=(-10.0, 10.0))
    scaled = (linf_random_start(attack, x, gen(DRAW_SEED + 1)) - x) / eps
    assert float(scaled.abs().max()) <= 1 + 1e-12
    assert_uniform_01((scaled + 1) / 2)
    assert_mean_near(scaled, 0.0, 1 / 3, 1.0, "mean offset")
    eye = torch.eye(d, dtype=torch.float64)
    variance = eye * (1 / 5 - 1 / 9) + (1 - eye) / 9
    outer = scaled[:, :, None] * scaled[:, None, :]
    assert_mean_near(outer, eye / 3, variance, 1.0, "second moment of the offsets")


def test_clipped_linf_random_start_is_the_clipped_draw_in_the_range_and_the_ball() -> None:
    """With clipping active the start is the unclipped draw clipped to the data range: in the
    range and within ε of the clean input in every coordinate."""
    eps = 0.3
    x = torch.rand(2_000, 12, generator=gen(DRAW_SEED), dtype=torch.float64)
    x[:, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # on the edges of the range
    clipped = linf_random_start(PgdLinf(eps, clip=(0.0, 1.0)), x, gen(DRAW_SEED + 1))
    unclipped = linf_random_start(PgdLinf(eps), x, gen(DRAW_SEED + 1))
    assert torch.equal(clipped, unclipped.clamp(0.0, 1.0))
    assert not torch.equal(clipped, unclipped)  # the clip was active
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
    assert float(per_sample_norm(clipped - x, math.inf).max()) <= eps * (1 + 1e-12)
