import math

import pytest
import torch

from pertlearn.training import (
    margin_loss,
    margin_loss_derivative,
    per_sample_loss,
    per_sample_margin_loss,
    predict,
)
from pertlearn.training.losses import per_sample_logit_margin

SCORES = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0], dtype=torch.float64)
LABELS = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)


def test_margin_loss_values():
    s = (-LABELS * SCORES).tolist()
    ident = per_sample_margin_loss(SCORES, LABELS, "identity").tolist()
    logistic = per_sample_margin_loss(SCORES, LABELS, "logistic").tolist()
    expo = per_sample_margin_loss(SCORES, LABELS, "exponential").tolist()
    for si, a, b, c in zip(s, ident, logistic, expo, strict=True):
        assert a == pytest.approx(si)
        assert b == pytest.approx(math.log1p(math.exp(si)))
        assert c == pytest.approx(math.exp(si))
    assert margin_loss(SCORES, LABELS, "identity").item() == pytest.approx(sum(s) / len(s))


@pytest.mark.parametrize("name", ["identity", "logistic", "exponential"])
def test_derivative_matches_autograd(name):
    s = (-LABELS * SCORES).clone().requires_grad_(True)
    value = per_sample_margin_loss(-s * LABELS, LABELS, name)  # ℓ(s) written through scores
    (grad,) = torch.autograd.grad(value.sum(), s)
    assert torch.allclose(grad, margin_loss_derivative(SCORES, LABELS, name))
    assert (grad > 0).all()


def test_cross_entropy_path_and_predict():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(per_sample_loss(logits, labels), expected)
    assert predict(logits).tolist() == [0, 2]
    assert predict(torch.tensor([-0.1, 0.0, 2.0])).tolist() == [-1.0, 1.0, 1.0]


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown margin loss"):
        margin_loss(SCORES, LABELS, "hinge")


def test_logit_margin_is_the_best_other_logit_minus_the_labels() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 7, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 7, (40,), generator=g)
    expected = torch.tensor(
        [
            max(logits[n, j].item() for j in range(7) if j != labels[n])
            - logits[n, labels[n]].item()
            for n in range(40)
        ],
        dtype=torch.float64,
    )
    got = per_sample_loss(logits, labels, "logit_margin")
    assert torch.allclose(got, expected)
    assert torch.equal(per_sample_logit_margin(logits, labels), got)
    assert torch.equal(got < 0, logits.argmax(1) == labels)  # negative exactly when the label wins


def test_logit_margin_on_binary_scores_is_the_identity_margin() -> None:
    scores = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1.0, 1.0, -1.0])
    assert torch.equal(per_sample_loss(scores, labels, "logit_margin"), -labels * scores)
