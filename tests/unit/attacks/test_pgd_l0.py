"""Targeted L0 attack (:class:`PgdL0`): at most ``k`` coordinates change, the largest-gradient
coordinates of a linear model, one ``step`` by hand, validation of ``k``, and its random start,
also against its closed form."""

from __future__ import annotations

import pytest
import torch

from pertlearn.attacks import PgdL0

from .distribution_checks import DRAW_SEED, SAMPLES, assert_mean_near, assert_uniform_01
from .support import binary_setup, gen, image_setup, linear_setup


@pytest.mark.parametrize("setup", [binary_setup, image_setup])
@pytest.mark.parametrize("k", [1, 4, 9])
def test_l0_changes_at_most_k_coordinates(setup: object, k: int) -> None:
    model, x, target = setup()  # type: ignore[operator]
    for steps in (k, 3 * k):  # more steps than k still change at most k coordinates
        x_adv = PgdL0(k, steps=steps)(model, x, target)
        changed = (x_adv != x).flatten(1).sum(dim=1)
        assert bool((changed <= k).all()), changed.max()
        assert bool((changed >= 1).any())


@pytest.mark.parametrize("clip", [None, (-1.0, 1.0)])
def test_l0_changes_the_largest_gradient_coordinates_of_a_linear_model(
    clip: tuple[float, float] | None,
) -> None:
    """On f = w·x + b the gradient direction is fixed, so the k changed coordinates are the
    k largest |w_i| (spec §3), each moved in the direction y_adv·sign(w_i)."""
    model, x, target = linear_setup()
    k = 7
    delta = PgdL0(k, clip=clip)(model, x, target) - x
    w = model.w.detach()
    top = torch.zeros_like(w, dtype=torch.bool)
    top[w.abs().topk(k).indices] = True
    changed = delta != 0
    assert bool((changed & ~top).sum() == 0)
    if clip is None:
        assert bool((changed == top).all())
    moved_right = (delta * target[:, None] * w.sign())[changed]
    assert bool((moved_right > 0).all())


def test_l0_k_larger_than_the_input_is_rejected() -> None:
    model, x, target = binary_setup(d=30)
    with pytest.raises(ValueError, match="only 30"):
        PgdL0(31)(model, x, target)
    with pytest.raises(ValueError, match="whole number"):
        PgdL0(2.5)


def test_l0_step_unlocks_the_largest_new_gradient_coordinate_and_moves_only_unlocked() -> None:
    """``PgdL0.step`` by hand: the locked coordinate with the largest |g| is unlocked (while
    fewer than k are), then the unlocked coordinates move by α·g/‖g_unlocked‖∞ and are clipped;
    a sample with k coordinates unlocked unlocks no more."""
    x = torch.full((3, 6), 0.5, dtype=torch.float64)
    x[:, 5] = 1.0  # at the top of the range
    grad = torch.tensor(
        [
            [0.1, -0.9, 0.3, 0.0, 0.2, -0.4],  # nothing unlocked yet: unlocks 1
            [0.1, -0.9, 0.3, 0.0, 0.2, -0.4],  # 1 unlocked: unlocks 5 (|−0.4| > 0.3)
            [2.0, -0.9, 0.3, 0.0, 0.2, -0.4],  # 1 and 2 unlocked (= k): nothing new
        ],
        dtype=torch.float64,
    )
    x_adv = x.clone()
    x_adv[1, 1] = 0.6
    x_adv[2, 1], x_adv[2, 2] = 0.6, 0.45
    attack = PgdL0(2, step_size=0.3, clip=(0.0, 1.0))
    state = attack.init_state(x, x_adv)
    assert state["unlocked"].sum(dim=1).tolist() == [0, 1, 2]
    got = attack.step(x, x_adv, grad, state)

    expected = x_adv.clone()
    # row 0: unlocked {1}; g on it −0.9, ‖·‖∞ 0.9 → x_1 += 0.3
    expected[0, 1] += 0.3
    # row 1: unlocked {1, 5}; ‖(−0.9, −0.4)‖∞ = 0.9 → x_1 += 0.3, x_5 += 0.3·0.4/0.9 → clip 1
    expected[1, 1] += 0.3
    expected[1, 5] = 1.0
    # row 2: unlocked {1, 2}; ‖(−0.9, 0.3)‖∞ = 0.9 → x_1 += 0.3, x_2 −= 0.1; the large g_0
    # stays locked
    expected[2, 1] += 0.3
    expected[2, 2] -= 0.1
    torch.testing.assert_close(got, expected.clamp(0, 1), rtol=0, atol=1e-12)
    assert state["unlocked"].sum(dim=1).tolist() == [1, 2, 2]
    assert state["unlocked"][1].nonzero().flatten().tolist() == [1, 5]
    assert not bool(state["unlocked"][2, 0])


def test_l0_random_start_unlocks_at_most_half_of_k() -> None:
    _, x, _ = binary_setup(n=12, dtype=torch.float64)
    attack = PgdL0(6, clip=(-1.0, 1.0))
    start = attack.random_start(x, gen(3))
    changed = (start != x).sum(dim=1)
    assert bool((changed <= 3).all()) and bool((changed >= 1).all())
    assert bool((attack.init_state(x, start)["unlocked"] == (start != x)).all())


# --------------------------------------------------------------- random start


@pytest.mark.parametrize("k", [1, 2, 9])
def test_l0_random_start_moves_a_uniform_subset_by_uniform_offsets(k: int) -> None:
    """With a data range too wide to clip, the start moves exactly ``m = max(1, k // 2)``
    coordinates of each sample, a uniformly chosen subset: each coordinate with probability
    ``m/d``, each pair with ``m(m-1)/(d(d-1))`` (Bernoulli counts, variance ``p(1-p)``); the
    offsets, pooled over all ``SAMPLES·m`` moved coordinates, are ``U[-α, α)``."""
    d, alpha = 12, 0.3
    chosen_count = max(1, k // 2)
    x = torch.rand(SAMPLES, d, generator=gen(DRAW_SEED), dtype=torch.float64) * 2 - 1
    attack = PgdL0(k, step_size=alpha, clip=(-10.0, 10.0))
    delta = attack.random_start(x, gen(DRAW_SEED + 1)) - x
    moved = delta != 0
    assert bool((moved.sum(dim=1) == chosen_count).all())
    single = chosen_count / d
    assert_mean_near(moved.double(), single, single * (1 - single), 1.0, "coordinate chosen")
    pair = chosen_count * (chosen_count - 1) / (d * (d - 1))
    off_diagonal = 1 - torch.eye(d, dtype=torch.float64)
    both = (moved[:, :, None] & moved[:, None, :]).double() * off_diagonal
    pair_expected = off_diagonal * pair
    pair_variance = pair_expected * (1 - pair_expected)
    assert_mean_near(both, pair_expected, pair_variance, 1.0, "pair of coordinates chosen")
    assert float(delta.abs().max()) <= alpha * (1 + 1e-12)
    assert_uniform_01((delta[moved] / alpha + 1) / 2)


def test_clipped_l0_random_start_is_the_clipped_draw_in_the_range_and_the_budget() -> None:
    """With clipping active the start is the unclipped draw clipped to the data range: in the
    range, at most ``k // 2`` coordinates moved per sample, each by at most ``α``, and exactly
    those count as unlocked."""
    k, alpha = 8, 0.8
    x = torch.rand(2_000, 6, generator=gen(DRAW_SEED), dtype=torch.float64)
    x[:, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # on the edges of the range
    attack = PgdL0(k, step_size=alpha, clip=(0.0, 1.0))
    clipped = attack.random_start(x, gen(DRAW_SEED + 1))
    unclipped = PgdL0(k, step_size=alpha).random_start(x, gen(DRAW_SEED + 1))
    assert torch.equal(clipped, unclipped.clamp(0.0, 1.0))
    assert not torch.equal(clipped, unclipped)  # the clip was active
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
    moved = clipped != x
    assert bool((moved.sum(dim=1) <= k // 2).all())
    assert float((clipped - x).abs().max()) <= alpha * (1 + 1e-12)
    assert torch.equal(attack.init_state(x, clipped)["unlocked"], moved)
