"""Targeted PGD attacks (ICLR24, spec §3): budgets, data range, best iterate, closed-form
optima on linear models, batching, devices and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pertlearn.attacks import (
    ATTACKS,
    PgdL0,
    PgdL2,
    PgdLinf,
    PgdLinfRescaled,
    fooling_rate,
    make_attack,
    per_sample_norm,
)
from pertlearn.data import random_signs, uniform
from pertlearn.models import OneHiddenNet
from pertlearn.training import TrainConfig, fit

DENSE = {
    "pgd_l2": (PgdL2, 2.0),
    "pgd_linf": (PgdLinf, math.inf),
    "pgd_linf_rescaled": (PgdLinfRescaled, math.inf),
}
ALL = [*DENSE, "pgd_l0"]


class Linear(nn.Module):
    """Binary linear model ``f(x) = w·x + b`` on flattened inputs, scores ``(N,)``."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(b, dtype=w.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binary_setup(
    n: int = 16, d: int = 30, dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
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


def make(name: str, eps: float, **options: object) -> PgdL2 | PgdLinf | PgdLinfRescaled | PgdL0:
    attack = make_attack(name, eps, **options)
    assert isinstance(attack, PgdL2 | PgdLinf | PgdLinfRescaled | PgdL0)
    return attack


EPS = {"pgd_l2": 0.8, "pgd_linf": 0.1, "pgd_linf_rescaled": 0.1, "pgd_l0": 5}


def test_registered() -> None:
    for name in ALL:
        assert name in ATTACKS


# --------------------------------------------------------------- budgets and range


@pytest.mark.parametrize("name", list(DENSE))
@pytest.mark.parametrize("setup", [binary_setup, image_setup])
@pytest.mark.parametrize("clip", [None, (0.0, 1.0)])
def test_norm_never_exceeds_eps(name: str, setup: object, clip: tuple[float, float] | None) -> None:
    model, x, target = setup()  # type: ignore[operator]
    if clip is not None:
        x = x.clamp(0, 1)
    eps = EPS[name]
    attack = make(name, eps, steps=20, step_size=eps / 2, clip=clip)
    x_adv = attack(model, x, target)
    assert x_adv.shape == x.shape
    norms = per_sample_norm(x_adv - x, DENSE[name][1])
    assert bool((norms <= eps * (1 + 1e-5)).all()), norms.max()
    assert bool((norms > 0).any())


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


@pytest.mark.parametrize("setup", [binary_setup, image_setup])
@pytest.mark.parametrize("k", [1, 4, 9])
def test_l0_changes_at_most_k_coordinates(setup: object, k: int) -> None:
    model, x, target = setup()  # type: ignore[operator]
    for steps in (k, 3 * k):  # more steps than k still change at most k coordinates
        x_adv = PgdL0(k, steps=steps)(model, x, target)
        changed = (x_adv != x).flatten(1).sum(dim=1)
        assert bool((changed <= k).all()), changed.max()
        assert bool((changed >= 1).any())


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("clip", [(-1.0, 1.0), (-0.9, 0.95)])
def test_outputs_stay_in_the_data_range(name: str, clip: tuple[float, float]) -> None:
    model, x, target = binary_setup()
    x = x.clamp(*clip)
    eps = 10.0 if name == "pgd_l2" else (0.9 if name != "pgd_l0" else 20)  # large: clips bite
    x_adv = make(name, eps, steps=30, clip=clip)(model, x, target)
    assert float(x_adv.min()) >= clip[0]
    assert float(x_adv.max()) <= clip[1]
    assert bool(((x_adv == clip[0]) | (x_adv == clip[1])).any())  # the range was reached


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("setup", [binary_setup, image_setup])
def test_best_loss_never_above_start(name: str, setup: object) -> None:
    model, x, target = setup()  # type: ignore[operator]
    attack = make(name, EPS[name], steps=10, step_size=3.0 if name == "pgd_l0" else None)
    x_adv = attack(model, x, target)
    with torch.no_grad():
        start = attack.target_loss(model, x, target)
        best = attack.target_loss(model, x_adv, target)
    assert bool((best <= start).all())
    assert bool((best < start).any())


def test_best_iterate_is_kept_when_steps_overshoot() -> None:
    """Huge L∞-normalized steps overshoot the boundary-crossing point; the returned input is
    still the best visited, never worse than the clean start."""
    model, x, target = binary_setup()
    attack = PgdL0(3, steps=3, step_size=50.0)
    x_adv = attack(model, x, target)
    with torch.no_grad():
        assert bool(
            (attack.target_loss(model, x_adv, target) <= attack.target_loss(model, x, target)).all()
        )


# --------------------------------------------------------------- closed forms


def linear_setup(
    n: int = 12, d: int = 50, dtype: torch.dtype = torch.float64
) -> tuple[Linear, torch.Tensor, torch.Tensor]:
    w = torch.randn(d, generator=gen(10), dtype=dtype) / math.sqrt(d)
    x = (torch.rand(n, d, generator=gen(11), dtype=dtype) * 2 - 1) * 0.5
    target = torch.randint(0, 2, (n,), generator=gen(12)).to(dtype) * 2 - 1
    return Linear(w, 0.1), x, target


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def test_l2_finds_the_closed_form_optimum_on_a_linear_model() -> None:
    """argmin_{‖δ‖₂≤ε} ℓ(-y(w·(x+δ)+b)) = ε y w/‖w‖₂ (spec §3)."""
    model, x, target = linear_setup()
    eps = 0.5
    delta = PgdL2(eps)(model, x, target) - x
    optimum = eps * target[:, None] * model.w.detach() / model.w.detach().norm()
    assert float(cosines(delta, optimum).min()) >= 0.99
    assert torch.allclose(per_sample_norm(delta), torch.full_like(target, eps), rtol=1e-6)


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


def test_fooling_rate_is_reported() -> None:
    model, x, target = linear_setup()
    attack = PgdL2(5.0)
    x_adv = attack(model, x, target)
    assert attack.last_fooling_rate == fooling_rate(model, x_adv, target) == 1.0


# --------------------------------------------------------------- batching and devices


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("setup", [binary_setup, image_setup])
def test_batched_equals_per_sample(name: str, setup: object) -> None:
    model, x, target = setup(dtype=torch.float64)  # type: ignore[operator]
    attack = make(name, EPS[name], steps=15)
    batched = attack(model, x, target)
    single = torch.cat([attack(model, x[i : i + 1], target[i : i + 1]) for i in range(len(x))])
    assert torch.allclose(batched, single, atol=1e-10)
    chunked = make(name, EPS[name], steps=15, batch_size=3)(model, x, target)
    assert torch.allclose(batched, chunked, atol=1e-10)


def test_model_is_untouched() -> None:
    model, x, target = binary_setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    PgdL2(0.5, steps=5)(model, x, target)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name: str) -> None:
    model, x, target = binary_setup(dtype=torch.float64)
    attack = make(name, EPS[name], steps=10, clip=(-1, 1))
    cpu = attack(model, x, target)
    gpu = attack(model.cuda(), x.cuda(), target.cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-8)


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("eps", [0.0, -1.0, math.nan])
def test_non_positive_eps_is_rejected(name: str, eps: float) -> None:
    with pytest.raises(ValueError, match="eps must be positive"):
        make_attack(name, eps)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("steps", [0, -3])
def test_steps_below_one_are_rejected(name: str, steps: int) -> None:
    with pytest.raises(ValueError, match="steps must be at least 1"):
        make_attack(name, 2, steps=steps)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("clip", [(1.0, -1.0), (0.5, 0.5), (0.0, math.nan)])
def test_empty_data_range_is_rejected(name: str, clip: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="needs low < high"):
        make_attack(name, 2, clip=clip)


def test_malformed_clip_and_step_size_are_rejected() -> None:
    with pytest.raises(ValueError, match="clip must be a pair"):
        PgdL2(1.0, clip=(0.0,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_size must be positive"):
        PgdL2(1.0, step_size=0.0)


def test_unknown_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        PgdL2(1.0, loss="hinge")


def test_l0_k_larger_than_the_input_is_rejected() -> None:
    model, x, target = binary_setup(d=30)
    with pytest.raises(ValueError, match="only 30"):
        PgdL0(31)(model, x, target)
    with pytest.raises(ValueError, match="whole number"):
        PgdL0(2.5)


def test_inputs_outside_the_data_range_are_rejected() -> None:
    model, x, target = binary_setup()
    with pytest.raises(ValueError, match="outside the data range"):
        PgdL2(0.5, clip=(0, 1))(model, x, target)


@pytest.mark.parametrize("name", ALL)
def test_targets_outside_the_model_classes_are_rejected(name: str) -> None:
    model, x, target = binary_setup()
    attack = make(name, EPS[name], steps=2)
    with pytest.raises(ValueError, match="targets must be -1 or \\+1"):
        attack(model, x, (target + 1) / 2)  # 0/1 labels for a binary model
    model, x, classes = image_setup(classes=5)
    for bad in (5, -1):
        wrong = classes.clone()
        wrong[0] = bad
        with pytest.raises(ValueError, match="has 5 classes"):
            attack(model, x, wrong)
    with pytest.raises(ValueError, match="has 5 classes"):
        attack(model, x, classes.double() + 0.5)


# --------------------------------------------------------------- one step, by hand


def _step_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean images ``x`` ``(4, 2, 3, 3)`` in [0, 1] (some pixels at 0 and 1, so the clip
    bites), a current iterate ``x_adv`` near ``x`` and a gradient, all float64."""
    x = torch.rand(4, 2, 3, 3, generator=gen(20), dtype=torch.float64)
    x[:, 0, 0, 0], x[:, 1, 2, 2] = 0.0, 1.0
    x_adv = (x + 0.2 * torch.randn(x.shape, generator=gen(21), dtype=torch.float64)).clamp(0, 1)
    grad = torch.randn(x.shape, generator=gen(22), dtype=torch.float64)
    grad[:, 0, 0, 0], grad[:, 1, 2, 2] = 5.0, -5.0  # push the boundary pixels out of the range
    grad[3] = 0.0  # a vanishing gradient: the iterate only gets projected
    return x, x_adv, grad


def _hand_step(
    name: str,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    grad: torch.Tensor,
    eps: float,
    alpha: float,
    clip: bool = True,
) -> torch.Tensor:
    """The update of each attack written out per sample with Python floats and numpy (the
    formulas of the class docstrings), then clipped to [0, 1] (``clip``)."""
    out = []
    for x0, xa, g in zip(x.numpy(), x_adv.numpy(), grad.numpy(), strict=True):
        x0, xa, g = x0.ravel(), xa.ravel(), g.ravel()
        if name == "pgd_l2":
            gn = float(np.sqrt((g**2).sum()))
            d = xa - alpha * (g / gn if gn > 0 else 0 * g) - x0
            size = float(np.sqrt((d**2).sum()))
            d = d * min(1.0, eps / size) if size > 0 else d
        elif name == "pgd_linf":
            d = np.clip(xa - alpha * np.sign(g) - x0, -eps, eps)
        else:  # pgd_linf_rescaled
            gn = float(np.abs(g).max())
            d = xa - alpha * (g / gn if gn > 0 else 0 * g) - x0
            size = float(np.abs(d).max())
            d = d * min(1.0, eps / size) if size > 0 else d
        out.append(np.clip(x0 + d, 0.0, 1.0) if clip else x0 + d)
    return torch.from_numpy(np.stack(out)).view_as(x)


@pytest.mark.parametrize("name", list(DENSE))
def test_one_step_is_the_hand_written_projected_update(name: str) -> None:
    """One call of ``step`` equals the update and projection of the docstring computed by hand
    (numpy, per sample): both the ε-ball projection and the [0, 1] clip bite here."""
    x, x_adv, grad = _step_inputs()
    eps = {"pgd_l2": 0.3, "pgd_linf": 0.1, "pgd_linf_rescaled": 0.1}[name]
    alpha = 0.25 if name == "pgd_l2" else 0.07
    attack = make(name, eps, step_size=alpha, clip=(0.0, 1.0))
    got = attack.step(x, x_adv, grad, attack.init_state(x, x_adv))
    expected = _hand_step(name, x, x_adv, grad, eps, alpha)
    # torch.renorm scales by maxnorm/(norm + 1e-7): a relative difference of ~1e-7/ε
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    norms = per_sample_norm(got - x, DENSE[name][1])
    assert bool((norms <= eps * (1 + 1e-9)).all())
    # the ball projection and the clip were both active (else this test checks less than it
    # says)
    assert not torch.allclose(_hand_step(name, x, x_adv, grad, math.inf, alpha), expected)
    assert not torch.allclose(_hand_step(name, x, x_adv, grad, eps, alpha, clip=False), expected)


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
