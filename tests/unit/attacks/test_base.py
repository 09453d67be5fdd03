import pytest
import torch
from torch import nn

from pertlearn.attacks import (
    ATTACKS,
    Attack,
    GradientStep,
    RandomL2,
    fooling_rate,
    make_attack,
    per_sample_norm,
)
from pertlearn.models import TwoLayerNet


class Linear(nn.Module):
    """f(x) = w·x + c, whose input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor, c: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.c


def test_gradient_step_norm_is_exactly_eps(gen):
    net = TwoLayerNet(20, 30, generator=gen).double()
    x = torch.randn(50, 20, generator=gen, dtype=torch.float64)
    target = torch.where(torch.rand(50, generator=gen) < 0.5, 1.0, -1.0).double()
    x_adv = GradientStep(0.37)(net, x, target)
    assert torch.allclose(per_sample_norm(x_adv - x), torch.full((50,), 0.37, dtype=torch.float64))


def test_gradient_step_direction_on_linear_model(gen):
    w = torch.randn(6, generator=gen, dtype=torch.float64)
    model = Linear(w)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    target = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    # Hand gradient: ∇_x ℓ(-t f(x)) = -t ℓ' w, so r = ε t w/‖w‖ for every margin loss.
    expected = 0.5 * target[:, None] * w / w.norm()
    for loss in ["identity", "logistic", "exponential"]:
        r = GradientStep(0.5, loss=loss)(model, x, target) - x
        assert torch.allclose(r, expected)


def test_gradient_step_leaves_model_untouched(gen):
    net = TwoLayerNet(5, 7, generator=gen)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    GradientStep(1.0)(net, torch.randn(3, 5, generator=gen), torch.ones(3))
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training


def test_gradient_step_zero_gradient_leaves_input(gen):
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


def test_gradient_step_multi_class_targets(gen):
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


def test_random_l2_norm_and_seed(gen):
    x = torch.randn(30, 9, generator=gen)
    a = RandomL2(0.2)(nn.Identity(), x, torch.ones(30), generator=torch.Generator().manual_seed(5))
    b = RandomL2(0.2)(nn.Identity(), x, torch.ones(30), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.allclose(per_sample_norm(a - x), torch.full((30,), 0.2), atol=1e-6)


def test_fooling_rate_binary():
    model = Linear(torch.tensor([1.0, 0.0]))
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0], [-3.0, 1.0]])
    assert fooling_rate(model, x, torch.tensor([1.0, 1.0, 1.0, 1.0])) == 0.5
    assert fooling_rate(model, x, torch.tensor([1.0, -1.0, 1.0, -1.0])) == 1.0


def test_registry_and_errors():
    assert {"gradient_step", "random_l2"} <= set(ATTACKS)
    assert isinstance(make_attack("gradient_step", 0.1), GradientStep)
    with pytest.raises(ValueError, match="unknown attack"):
        make_attack("nope", 0.1)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        make_attack("gradient_step", -0.1)
    with pytest.raises(ValueError, match="unexpected keyword"):
        make_attack("gradient_step", 0.1, steps=3)
    with pytest.raises(ValueError, match="3 inputs but 2 targets"):
        GradientStep(0.1)(nn.Identity(), torch.zeros(3, 2), torch.ones(2))


def test_user_attack_plugs_in():
    from pertlearn.attacks import register_attack

    @register_attack
    class Nudge(Attack):
        name = "test_nudge"

        def perturb(self, model, x, target, *, generator=None):
            return x + self.eps

    try:
        assert torch.equal(
            make_attack("test_nudge", 1.0)(nn.Identity(), torch.zeros(2, 2), torch.ones(2)),
            torch.ones(2, 2),
        )
    finally:
        ATTACKS.pop("test_nudge")


def test_unknown_attack_loss_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; choose one of .*logit_margin"):
        make_attack("pgd_l2", 1.0, loss="hinge")


def test_logit_margin_attack_minimizes_the_targets_logit_margin() -> None:
    from pertlearn.training.losses import per_sample_logit_margin

    model = nn.Linear(5, 4)
    with torch.no_grad():
        model.weight.copy_(torch.eye(4, 5))
        model.bias.zero_()
    x = torch.zeros(6, 5)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    attack = make_attack("pgd_l2", 2.0, loss="logit_margin", steps=20)
    assert torch.equal(
        attack.objective(model(x), target), per_sample_logit_margin(model(x), target)
    )
    x_adv = attack(model, x, target)
    # the optimum moves along e_target (and away from the best other class): every target wins
    assert torch.equal(model(x_adv).argmax(1), target)
    assert torch.all(per_sample_norm(x_adv - x) <= 2.0 + 1e-5)
