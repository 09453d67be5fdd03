"""The attack interface (:mod:`pertlearn.attacks.base`): the registry and ``make_attack``, a
user attack plugging in, the loss option (including ``logit_margin``), and the hit audit
functions ``target_hits``, ``fooling_rate``, ``per_class_hit_rates`` and ``check_targets``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pertlearn.attacks import (
    ATTACKS,
    Attack,
    GradientStep,
    PgdL2,
    attack_options,
    check_targets,
    fooling_rate,
    make_attack,
    per_class_hit_rates,
    per_sample_norm,
    target_hits,
)

from .support import Linear


def test_fooling_rate_binary() -> None:
    model = Linear(torch.tensor([1.0, 0.0]))
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0], [-3.0, 1.0]])
    assert fooling_rate(model, x, torch.tensor([1.0, 1.0, 1.0, 1.0])) == 0.5
    assert fooling_rate(model, x, torch.tensor([1.0, -1.0, 1.0, -1.0])) == 1.0


def test_registry_and_errors() -> None:
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


def test_user_attack_plugs_in() -> None:
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


def test_unknown_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        PgdL2(1.0, loss="hinge")


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


# --------------------------------------------------------------- hit audit


def test_target_hits_and_fooling_rate() -> None:
    logits = nn.Identity()
    x = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    target = torch.tensor([0, 2, 2, 1])
    assert target_hits(logits, x, target).tolist() == [True, False, True, False]
    assert fooling_rate(logits, x, target) == 0.5
    scores = torch.tensor([[0.5], [-0.2], [0.0]])
    linear = nn.Flatten(0)  # (N, 1) → (N,): binary scores, sign ties to +1
    assert target_hits(linear, scores, torch.tensor([1.0, 1.0, 1.0])).tolist() == [
        True,
        False,
        True,
    ]


def test_per_class_hit_rates() -> None:
    hits = torch.tensor([True, False, True, True, False])
    target = torch.tensor([0, 0, 2, 2, 2])
    rates = per_class_hit_rates(hits, target, 4)
    assert rates == {"0": 0.5, "1": None, "2": pytest.approx(2 / 3), "3": None}
    with pytest.raises(ValueError, match="must both have shape"):
        per_class_hit_rates(hits, target[:3], 4)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        per_class_hit_rates(hits, target, 0)


def test_check_targets_on_outputs() -> None:
    check_targets(torch.zeros(3), torch.tensor([1, -1, 1]), "mine")
    check_targets(torch.zeros(3, 4), torch.tensor([0, 3, 1]), "mine")
    with pytest.raises(ValueError, match=r"^mine: 3 inputs but 2 targets"):
        check_targets(torch.zeros(3, 4), torch.tensor([0, 3]), "mine")


class _Returns(Attack):
    """A user attack (not registered) whose ``perturb`` returns ``make(x)``."""

    name = "test_returns"

    def __init__(self, make: object) -> None:
        super().__init__(0.1)
        self.make = make

    def perturb(self, model, x, target, *, generator=None):  # type: ignore[no-untyped-def]
        return self.make(x)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda x: x.flatten(1), r"shape \(3, 1, 2, 2\), got \(3, 4\)"),
        (lambda x: x[:-1], r"shape \(3, 1, 2, 2\), got \(2, 1, 2, 2\)"),
        (lambda x: x.double(), r"dtype torch.float32, got torch.float64"),
        (lambda x: (x * 255).to(torch.uint8), r"dtype torch.float32, got torch.uint8"),
        (lambda x: x.numpy(), r"\(a tensor of shape \(3, 1, 2, 2\)\), got ndarray"),
        (lambda x: x * float("nan"), r"NaN or infinite"),
    ],
)
def test_a_user_attack_returning_the_wrong_inputs_fails_naming_itself(
    make: object, message: str
) -> None:
    """What ``perturb`` returns is checked on every call, so a broken user attack fails in
    one line naming the attack, not later in the pipeline (a shape error deep in a stage, or
    g's training diverging on pixels it cannot learn from)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, target = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=f"test_returns: perturb .*{message}"):
        _Returns(make)(model, x, target)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_registered_attack_returns_inputs_like_x(name: str) -> None:
    """Common check over the registry: each attack's output passes the contract
    (:func:`check_adversarial_inputs`) for images and float64, and the model keeps its mode."""
    from pertlearn.attacks import check_adversarial_inputs

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double().train()
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1])
    options = {"steps": 2} if "steps" in (attack_options(name) or ["steps"]) else {}
    attack = make_attack(name, 1.0, **options)
    x_adv = attack(model, x, target, generator=torch.Generator().manual_seed(1))
    check_adversarial_inputs(x_adv, x, name)
    assert model.training
    assert not x_adv.requires_grad


def test_a_taken_attack_name_is_refused() -> None:
    """Registering another class under a registered name (a user attack called ``pgd_l2``, or
    a subclass inheriting its parent's ``name``) is refused instead of silently replacing the
    attack every preset names; the same class registered again (a reloaded module) is not."""
    from pertlearn.attacks import register_attack

    class Shadow(PgdL2):  # forgot its own name: inherits "pgd_l2"
        pass

    with pytest.raises(ValueError, match=r"attack name 'pgd_l2' is taken by .*PgdL2; give Shadow"):
        register_attack(Shadow)
    assert ATTACKS["pgd_l2"] is PgdL2
    assert register_attack(PgdL2) is PgdL2
