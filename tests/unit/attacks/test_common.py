"""Common tests run over every PGD attack (scikit-learn style): registration, the budget and
the data range, the best iterate, batching, devices, validation of the shared options, and one
``step`` of each norm-ball attack checked against its update written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pertlearn.attacks import ATTACKS, make_attack, per_sample_norm

from .support import ALL, DENSE, EPS, PGD, binary_setup, gen, image_setup, make


def test_registered() -> None:
    for name in ALL:
        assert name in ATTACKS


def test_the_common_tests_cover_every_built_in_pgd_attack() -> None:
    """The common tests run over the names in ``ALL`` (each needs a budget in ``EPS``): a PGD
    attack added to ``pertlearn.attacks`` fails here until it is listed, instead of being
    skipped by every common test without a word."""
    built_in = {name for name in PGD if ATTACKS[name].__module__.startswith("pertlearn.")}
    assert set(ALL) == built_in
    assert set(EPS) == built_in


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
