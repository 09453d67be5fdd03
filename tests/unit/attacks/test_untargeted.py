"""Untargeted mode (``targeted=False``): every attack maximizes the loss of the labels it is
given (Madry et al. 2018, arXiv:1706.06083 eq. 2.1) instead of minimizing it."""

from __future__ import annotations

import pytest
import torch

from pertlearn.attacks import ATTACKS, make_attack

from .conftest import Trained
from .support import PGD, binary_setup

BUDGET = {"pgd_l2": 0.8, "pgd_linf": 0.1, "pgd_linf_rescaled": 0.1, "pgd_l0": 5}


@pytest.mark.parametrize("name", PGD)
def test_untargeted_pgd_on_binary_scores_equals_targeting_the_other_label(name: str) -> None:
    """For margin losses both objectives, -ℓ(-y f) and ℓ(y f), decrease with y f and have
    gradients along -y∇f; every PGD step normalizes the gradient (L2, L∞, sign, top-|g|), so
    the iterates coincide up to rounding."""
    model, x, y = binary_setup(dtype=torch.float64)
    options = {"steps": 8, "clip": (-1.0, 1.0)}
    untargeted = make_attack(name, BUDGET[name], targeted=False, **options)(model, x, y)
    towards_other = make_attack(name, BUDGET[name], **options)(model, x, -y)
    assert torch.allclose(untargeted, towards_other, atol=1e-10)
    assert not torch.equal(untargeted, x)


def test_untargeted_is_recorded_and_validated() -> None:
    assert "targeted=False" in repr(make_attack("pgd_l2", 1.0, targeted=False))
    assert "targeted" not in repr(make_attack("pgd_l2", 1.0))
    for name in ATTACKS:
        with pytest.raises(ValueError, match=rf"^{name}: targeted must be true or false"):
            make_attack(name, 1.0, targeted="no")


@pytest.mark.parametrize(
    ("name", "eps", "options"),
    [
        ("pgd_l2", 1.5, {}),
        ("pgd_linf", 0.05, {}),
        ("pgd_l0", 10, {"step_size": 1.0}),
    ],
)
def test_untargeted_pgd_lowers_accuracy_on_the_true_labels(
    trained: Trained, name: str, eps: float, options: dict[str, float]
) -> None:
    """An MLP with clean accuracy ≈ 0.87 on 300 held-out digits. Measured (10 steps): untargeted
    L2 ε=1.5 → 0.16, L∞ ε=0.05 → 0.58, L0 k=10 → 0.41; the targeted attack given the true labels
    (what passing them did before this mode existed) instead raises it to ≥ 0.96."""
    clean = trained.accuracy(trained.x)
    assert clean > 0.8
    attack = make_attack(name, eps, steps=10, clip=(0.0, 1.0), targeted=False, **options)
    x_adv = attack(trained.model, trained.x, trained.y)
    assert trained.accuracy(x_adv) <= clean - 0.2
    assert attack.last_fooling_rate == pytest.approx(1 - trained.accuracy(x_adv))
    towards = make_attack(name, eps, steps=10, clip=(0.0, 1.0), **options)
    assert trained.accuracy(towards(trained.model, trained.x, trained.y)) >= clean
