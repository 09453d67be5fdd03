"""The one-step attack :class:`GradientStep` (NeurIPS24): its norm, its direction on linear
models (binary and multi-class), the untargeted ascent step, and a model left untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pertlearn.attacks import GradientStep, per_sample_norm
from pertlearn.models import TwoLayerNet

from .support import Linear, binary_setup


def test_gradient_step_norm_is_exactly_eps(gen: torch.Generator) -> None:
    net = TwoLayerNet(20, 30, generator=gen).double()
    x = torch.randn(50, 20, generator=gen, dtype=torch.float64)
    target = torch.where(torch.rand(50, generator=gen) < 0.5, 1.0, -1.0).double()
    x_adv = GradientStep(0.37)(net, x, target)
    assert torch.allclose(per_sample_norm(x_adv - x), torch.full((50,), 0.37, dtype=torch.float64))


def test_gradient_step_direction_on_linear_model(gen: torch.Generator) -> None:
    w = torch.randn(6, generator=gen, dtype=torch.float64)
    model = Linear(w)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    target = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    # Hand gradient: ∇_x ℓ(-t f(x)) = -t ℓ' w, so r = ε t w/‖w‖ for every margin loss.
    expected = 0.5 * target[:, None] * w / w.norm()
    for loss in ["identity", "logistic", "exponential"]:
        r = GradientStep(0.5, loss=loss)(model, x, target) - x
        assert torch.allclose(r, expected)


def test_gradient_step_leaves_model_untouched(gen: torch.Generator) -> None:
    net = TwoLayerNet(5, 7, generator=gen)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    GradientStep(1.0)(net, torch.randn(3, 5, generator=gen), torch.ones(3))
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training


def test_gradient_step_zero_gradient_leaves_input(gen: torch.Generator) -> None:
    model = Linear(torch.zeros(3))
    x = torch.randn(2, 3, generator=gen)
    assert torch.equal(GradientStep(1.0)(model, x, torch.ones(2)), x)


def seeded_linear(gen: torch.Generator, d: int, classes: int) -> nn.Linear:
    """``nn.Linear(d, classes)`` in float64 with weights and bias drawn from ``gen``."""
    model = nn.Linear(d, classes).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(classes, d, generator=gen, dtype=torch.float64))
        model.bias.copy_(torch.randn(classes, generator=gen, dtype=torch.float64))
    return model


def test_gradient_step_multi_class_targets(gen: torch.Generator) -> None:
    model = seeded_linear(gen, 8, 4)
    x = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    target = torch.arange(10) % 4
    x_adv = GradientStep(2.0)(model, x, target)
    assert torch.allclose(per_sample_norm(x_adv - x), torch.full((10,), 2.0, dtype=torch.float64))
    # Hand gradient of the cross-entropy of logits Wx + b: ∇_x = Wᵀ(p - e_t), so the step is
    # r = ε Wᵀ(e_t - p)/‖Wᵀ(e_t - p)‖.
    w = model.weight.detach()
    p = torch.softmax(model(x).detach(), dim=1)
    direction = (nn.functional.one_hot(target, 4).double() - p) @ w
    expected = 2.0 * direction / direction.norm(dim=1, keepdim=True)
    assert torch.allclose(x_adv - x, expected)
    # A small step raises the probability of every target (first order: the change of
    # log p_t is ε‖Wᵀ(e_t - p)‖ > 0).
    small = GradientStep(1e-3)(model, x, target)
    after = torch.softmax(model(small).detach(), dim=1)
    assert bool((after[torch.arange(10), target] > p[torch.arange(10), target]).all())


@pytest.mark.parametrize("loss", ["identity", "logistic", "exponential"])
def test_untargeted_gradient_step_is_the_ascent_step(loss: str) -> None:
    """On binary scores, ∇ℓ(-y f) = -ℓ'·y∇f with ℓ' > 0, so the untargeted step of size ε is
    r = -ε y ∇f/‖∇f‖: exactly the targeted step towards -y."""
    model, x, y = binary_setup(dtype=torch.float64)
    up = GradientStep(0.3, loss=loss, targeted=False)(model, x, y)
    xg = x.clone().requires_grad_(True)
    (grad_f,) = torch.autograd.grad(model(xg).sum(), xg)
    expected = x - 0.3 * y[:, None] * grad_f / grad_f.norm(dim=1, keepdim=True)
    assert torch.allclose(up, expected)
    assert torch.allclose(up, GradientStep(0.3, loss=loss)(model, x, -y))
