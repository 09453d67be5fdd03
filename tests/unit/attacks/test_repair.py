"""Target-hit repair of the PGD attacks: random restarts, ``until_fooled`` with ``max_steps``,
and noise-averaged (expectation-over-transformation) gradients: what they repair, and the
contracts every PGD attack keeps under them (budget, range, determinism, batching, validation)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from pertlearn.attacks import PgdL2, TargetedPGD, make_attack, per_sample_norm, target_hits

from .conftest import Trained
from .support import PGD, binary_setup, gen

NORM = {"pgd_l2": 2.0, "pgd_linf": math.inf, "pgd_linf_rescaled": math.inf}
BUDGET = {"pgd_l2": 0.8, "pgd_linf": 0.1, "pgd_linf_rescaled": 0.1, "pgd_l0": 4}
REPAIRS: list[dict[str, Any]] = [
    {"restarts": 2},
    {"until_fooled": True, "max_steps": 12},
    {"noise_std": 0.05, "eot_samples": 3},
    {"restarts": 1, "until_fooled": True, "noise_std": 0.05},
]


class Wavy(nn.Module):
    """Binary scores ``f(x) = w·x + A sin(Ω u·x)`` (``(N, d)`` → ``(N,)``), unit ``w ⊥ u``: a
    linear classifier under a fast ripple whose gradient ``w + AΩ cos(Ω u·x) u`` points mostly
    along ``±u`` (gradient masking, Athalye et al. 2018, arXiv:1802.00420). Averaged over
    ``x + σξ`` the ripple's gradient shrinks by ``exp(-(Ωσ)²/2)`` and ``w`` remains."""

    def __init__(self, d: int, amp: float, freq: float, generator: torch.Generator) -> None:
        super().__init__()
        w = torch.randn(d, generator=generator, dtype=torch.float64)
        u = torch.randn(d, generator=generator, dtype=torch.float64)
        u = u - (u @ w) / (w @ w) * w
        self.register_buffer("w", w / w.norm())
        self.register_buffer("u", u / u.norm())
        self.amp, self.freq = amp, freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.amp * torch.sin(self.freq * (x @ self.u))


def wavy_setup(seed: int) -> tuple[Wavy, torch.Tensor, torch.Tensor]:
    """200 points at distance 0.6 behind the linear boundary (reachable within ε = 1 along
    ``w``), all with target +1."""
    g = gen(seed)
    model = Wavy(20, 0.3, 50.0, g)
    x = torch.randn(200, 20, generator=g, dtype=torch.float64)
    x = x - (x @ model.w)[:, None] * model.w - 0.6 * model.w
    return model, x, torch.ones(200, dtype=torch.float64)


def hit_rate(model: nn.Module, x_adv: torch.Tensor, target: torch.Tensor) -> float:
    return target_hits(model, x_adv, target).double().mean().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_repair_beats_a_masked_gradient(seed: int) -> None:
    """Measured over seeds 0-4: plain 0.42-0.50; noise-averaged 1.0, restarts 0.87-0.94,
    until_fooled 1.0."""
    model, x, target = wavy_setup(seed)
    plain = hit_rate(model, PgdL2(1.0, steps=20)(model, x, target), target)
    assert plain < 0.6
    for options in (
        {"noise_std": 0.3, "eot_samples": 16},
        {"restarts": 3},
        {"until_fooled": True, "max_steps": 200},
    ):
        attack = PgdL2(1.0, steps=20, **options)
        repaired = hit_rate(model, attack(model, x, target, generator=gen(seed + 10)), target)
        assert repaired >= plain + 0.3, options


def test_until_fooled_finishes_runs_cut_short(trained: Trained) -> None:
    """Natural-det targets on the MLP at L2 ε = 3: two steps of ε/5 reach only 0.4ε (hit rate
    0.11 measured); stepping on up to 20 updates reaches 0.85 (10 full steps: 0.85)."""
    target = (trained.y + 1) % 10
    options: dict[str, Any] = {"steps": 2, "clip": (0.0, 1.0)}
    plain = PgdL2(3.0, **options)
    x_plain = plain(trained.model, trained.x, target)
    assert hit_rate(trained.model, x_plain, target) < 0.6
    until = PgdL2(3.0, until_fooled=True, max_steps=20, **options)
    x_until = until(trained.model, trained.x, target)
    assert (
        hit_rate(trained.model, x_until, target) >= hit_rate(trained.model, x_plain, target) + 0.5
    )
    # Samples the plain run already hit are returned unchanged; no objective gets worse.
    done = target_hits(trained.model, x_plain, target)
    assert torch.equal(x_until[done], x_plain[done])
    with torch.no_grad():
        assert bool(
            (
                until.target_loss(trained.model, x_until, target)
                <= plain.target_loss(trained.model, x_plain, target)
            ).all()
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_restarts_raise_the_hit_rate_of_short_runs(trained: Trained, seed: int) -> None:
    """Three more 2-step runs from random points of the ball for the samples not yet hit:
    measured 0.11 → 0.22 (seed 0)."""
    target = (trained.y + 1) % 10
    options: dict[str, Any] = {"steps": 2, "clip": (0.0, 1.0)}
    x_plain = PgdL2(3.0, **options)(trained.model, trained.x, target)
    x_restarts = PgdL2(3.0, restarts=3, **options)(
        trained.model, trained.x, target, generator=gen(seed)
    )
    plain, repaired = (hit_rate(trained.model, xa, target) for xa in (x_plain, x_restarts))
    assert repaired >= plain + 0.05
    done = target_hits(trained.model, x_plain, target)
    assert torch.equal(x_restarts[done], x_plain[done])


# --------------------------------------------------------------- contracts of every option


@pytest.mark.parametrize("name", PGD)
@pytest.mark.parametrize("options", REPAIRS, ids=lambda o: ",".join(o))
def test_repairs_keep_budget_and_range_and_are_deterministic(
    name: str, options: dict[str, Any]
) -> None:
    model, x, target = binary_setup(n=12, dtype=torch.float64)
    clip = (-1.0, 1.0)
    attack = make_attack(name, BUDGET[name], steps=4, clip=clip, **options)
    a = attack(model, x, target, generator=gen(5))
    assert torch.equal(a, attack(model, x, target, generator=gen(5)))
    assert float(a.min()) >= clip[0] and float(a.max()) <= clip[1]
    if name == "pgd_l0":
        assert bool(((a != x).sum(dim=1) <= BUDGET[name]).all())
    else:
        assert float(per_sample_norm(a - x, NORM[name]).max()) <= BUDGET[name] * (1 + 1e-9)
    assert attack.last_success is not None
    assert torch.equal(attack.last_success, target_hits(model, a, target))
    if options.get("restarts") or options.get("noise_std"):
        with pytest.raises(ValueError, match=rf"^{name}: restarts and noise_std draw random"):
            attack(model, x, target)


@pytest.mark.parametrize("name", PGD)
def test_random_draws_depend_on_the_generator(name: str) -> None:
    model, x, target = binary_setup(n=12, dtype=torch.float64)
    attack = make_attack(name, BUDGET[name], steps=2, clip=(-1.0, 1.0), restarts=1, noise_std=0.3)
    assert not torch.equal(
        attack(model, x, target, generator=gen(5)), attack(model, x, target, generator=gen(6))
    )


@pytest.mark.parametrize("name", PGD)
def test_options_at_their_defaults_give_the_plain_attack_bit_for_bit(name: str) -> None:
    model, x, target = binary_setup(n=12, dtype=torch.float64)
    plain = make_attack(name, BUDGET[name], steps=6)(model, x, target)
    same = make_attack(
        name,
        BUDGET[name],
        steps=6,
        restarts=0,
        until_fooled=True,
        max_steps=6,
        noise_std=0.0,
        eot_samples=1,
    )(model, x, target, generator=gen(0))
    assert torch.equal(plain, same)


@pytest.mark.parametrize("name", PGD)
@pytest.mark.parametrize("options", REPAIRS[:2], ids=lambda o: ",".join(o))
def test_restarts_and_until_fooled_do_not_depend_on_batching(
    name: str, options: dict[str, Any]
) -> None:
    model, x, target = binary_setup(n=12, dtype=torch.float64)
    whole = make_attack(name, BUDGET[name], steps=3, clip=(-1.0, 1.0), **options)
    chunked = make_attack(name, BUDGET[name], steps=3, clip=(-1.0, 1.0), batch_size=5, **options)
    a = whole(model, x, target, generator=gen(7))
    b = chunked(model, x, target, generator=gen(7))
    assert torch.allclose(a, b, atol=1e-12)


def test_noise_averaged_gradient_is_the_mean_over_noisy_copies() -> None:
    """∇̃ = (1/S) Σ_s ∇J(x + σξ_s), ξ_s the S draws of N(0, I) from the generator, in order
    (arXiv:1707.07397): recomputed here sample by sample."""
    model, x, target = binary_setup(n=4, d=5, dtype=torch.float64)
    attack = PgdL2(1.0, noise_std=0.2, eot_samples=3)
    objective, grad, outputs = attack._objective_and_grad(model, x, target, gen(9))
    xi = torch.randn((3 * 4, 5), generator=gen(9), dtype=torch.float64).view(3, 4, 5)
    expected = torch.zeros_like(x)
    for s in range(3):
        noisy = (x + 0.2 * xi[s]).requires_grad_(True)
        loss = nn.functional.softplus(-target * model(noisy)).sum()
        expected += torch.autograd.grad(loss, noisy)[0] / 3
    assert torch.allclose(grad, expected)
    with torch.no_grad():
        assert torch.allclose(objective, nn.functional.softplus(-target * model(x)))
        assert torch.allclose(outputs, model(x))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"restarts": -1}, "restarts must be at least 0"),
        ({"restarts": 1.5}, "restarts must be a whole number"),
        ({"restarts": True}, "restarts must be a whole number"),
        ({"max_steps": 50}, "max_steps caps the updates of until_fooled"),
        ({"until_fooled": True, "steps": 10, "max_steps": 5}, "max_steps must be at least 10"),
        ({"until_fooled": "yes"}, "until_fooled must be true or false"),
        ({"noise_std": -0.1}, "noise_std must be finite and >= 0"),
        ({"noise_std": math.nan}, "noise_std must be finite and >= 0"),
        ({"noise_std": math.inf}, "noise_std must be finite and >= 0"),
        ({"noise_std": "0.1"}, "noise_std must be a number"),
        ({"eot_samples": 0}, "eot_samples must be at least 1"),
        ({"eot_samples": 4}, "set noise_std > 0 or eot_samples = 1"),
    ],
)
@pytest.mark.parametrize("name", PGD)
def test_bad_repair_options_are_rejected(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^(attack '{name}': )?{name}: .*{message}"):
        make_attack(name, BUDGET[name], **options)


def test_restarts_need_a_random_start() -> None:
    class NoStart(TargetedPGD):
        name = "test_no_start"

        def step(self, x, x_adv, grad, state):  # type: ignore[no-untyped-def]
            return x_adv - grad

    with pytest.raises(ValueError, match=r"^test_no_start: restarts need a random start"):
        NoStart(1.0, restarts=1)
