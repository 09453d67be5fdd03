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
