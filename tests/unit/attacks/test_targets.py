"""Every registered attack checks its targets against the model's outputs the same way: ±1 for
binary scores ``(N,)``, class indices ``0..K-1`` for logits ``(N, K)``; anything else is a
ValueError naming the attack and the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pertlearn.attacks import ATTACKS, Attack, GradientStep, make_attack
from pertlearn.attacks.pgd_base import TargetedPGD
from pertlearn.models import OneHiddenNet

from .support import ALL, EPS, binary_setup, gen, image_setup, make

NAMES = sorted(ATTACKS)
D = 6


def build(name: str) -> Attack:
    """``name`` at ε = 2 (a valid budget for every attack), 2 steps where it iterates."""
    if issubclass(ATTACKS[name], TargetedPGD):
        return make_attack(name, 2, steps=2)
    return make_attack(name, 2)


def binary_model() -> nn.Module:
    return OneHiddenNet(D, 8, generator=gen(1), dtype=torch.float64)


def logits_model(classes: int = 3) -> nn.Module:
    model = nn.Linear(D, classes).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(classes, D, generator=gen(2), dtype=torch.float64))
        model.bias.zero_()
    return model


def inputs(n: int = 5) -> torch.Tensor:
    return torch.rand(n, D, generator=gen(3), dtype=torch.float64)


def test_every_attack_is_covered() -> None:
    assert {"gradient_step", "random_l2", "pgd_l2", "pgd_linf", "pgd_l0"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_zero_one_labels_for_a_binary_model_are_rejected(name: str) -> None:
    target = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    with pytest.raises(
        ValueError, match=rf"^{name}: .*targets must be -1 or \+1; got 0 .*2 \* y - 1"
    ):
        build(name)(binary_model(), inputs(), target)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [3.0, -1.0, 0.5, float("nan")])
def test_labels_outside_the_classes_are_rejected(name: str, bad: float) -> None:
    target = torch.tensor([0.0, 1.0, 2.0, 1.0, bad], dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"^{name}: the model has 3 classes, .*0\.\.2"):
        build(name)(logits_model(), inputs(), target)


@pytest.mark.parametrize("name", NAMES)
def test_malformed_targets_are_rejected(name: str) -> None:
    attack = build(name)
    x = inputs()
    with pytest.raises(ValueError, match=rf"^{name}: targets must have shape \(N,\)"):
        attack(logits_model(), x, torch.zeros(5, 3))  # one-hot-like rows
    with pytest.raises(ValueError, match=rf"^{name}: 5 inputs but 4 targets"):
        attack(logits_model(), x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"^{name}: targets must be a tensor"):
        attack(logits_model(), x, [0, 1, 2, 0, 1])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_outputs_of_other_shapes_are_rejected(name: str) -> None:
    class Cube(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], 2, 3)

    with pytest.raises(ValueError, match=rf"^{name}: the model must output scores"):
        build(name)(Cube(), inputs(), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("name", NAMES)
def test_valid_targets_of_any_dtype_pass(name: str) -> None:
    attack = build(name)
    x = inputs()
    signs = torch.tensor([1, -1, 1, -1, -1])
    classes = torch.tensor([0, 1, 2, 2, 0])
    for model, target in [
        (binary_model(), signs),
        (binary_model(), signs.double()),
        (logits_model(), classes),
        (logits_model(), classes.double()),
    ]:
        x_adv = attack(model, x, target, generator=gen(4))
        assert x_adv.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_no_inputs_is_no_work(name: str) -> None:
    x = torch.zeros(0, D, dtype=torch.float64)
    out = build(name)(logits_model(), x, torch.zeros(0, dtype=torch.long), generator=gen(4))
    assert out.shape == x.shape


def test_gradient_step_moves_every_sample_of_a_binary_model() -> None:
    """The defect this check closes: 0/1 targets used to pass, and every target-0 sample came
    back unperturbed (its loss ℓ(-0·f) has no gradient). With ±1 every sample moves by ε."""
    x = inputs()
    target = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    moved = (GradientStep(0.5)(binary_model(), x, target) - x).norm(dim=1)
    assert torch.allclose(moved, torch.full((5,), 0.5, dtype=torch.float64))


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


@pytest.mark.parametrize("name", NAMES)
def test_a_binary_model_with_outputs_n_by_1_is_told_to_squeeze_them(name: str) -> None:
    """``nn.Linear(d, 1)``, the usual binary model in torch, outputs ``(N, 1)``: the message
    says how to make it a model of scores ``(N,)``, not that it has one class."""
    model = nn.Linear(D, 1).double()
    with pytest.raises(ValueError) as caught:
        build(name)(model, inputs(), torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]))
    assert str(caught.value) == (
        f"{name}: the model outputs (N, 1); a binary model must output scores (N,) with "
        "targets -1 or +1 (end it with nn.Flatten(0)), a classifier logits (N, K >= 2)"
    )
    squeezed = nn.Sequential(model, nn.Flatten(0))
    x_adv = build(name)(squeezed, inputs(), torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]))
    assert x_adv.shape == inputs().shape


@pytest.mark.parametrize("name", NAMES)
def test_integer_inputs_are_one_clear_error(name: str) -> None:
    images = (inputs() * 50).round().clamp(0, 255).to(torch.uint8)
    with pytest.raises(ValueError) as caught:
        build(name)(logits_model(), images, torch.tensor([0, 1, 2, 0, 1]))
    assert str(caught.value) == (
        f"{name}: inputs x must be a floating-point tensor (N, ...), got torch.uint8; convert "
        "them, e.g. x.float() / 255 for 8-bit images"
    )
