"""Accuracy, agreement and majority share (pertlearn.metrics) against plain Python loops over
the models' raw outputs, for binary scores ``(N,)`` and logits ``(N, K)``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pertlearn.metrics import accuracy, agreement, majority_share, predictions


class Scores(nn.Module):
    """Binary scores ``x @ w`` ``(N,)``; records the mode of every call."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x @ self.w


def _loop_label(score: float) -> float:
    return 1.0 if score >= 0 else -1.0  # ties to +1, as documented for predict


def test_binary_accuracy_and_agreement_equal_python_loops() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(203, 5, generator=g, dtype=torch.float64)
    x[0] = 0.0  # a tie (score exactly 0) counts as +1
    f = Scores(torch.randn(5, generator=g, dtype=torch.float64)).train()
    h = Scores(torch.randn(5, generator=g, dtype=torch.float64))
    y = torch.where(torch.rand(203, generator=g) < 0.5, 1.0, -1.0).double()
    f_scores, h_scores = (x @ f.w).tolist(), (x @ h.w).tolist()
    f_labels = [_loop_label(s) for s in f_scores]
    h_labels = [_loop_label(s) for s in h_scores]
    expected_acc = sum(a == b for a, b in zip(f_labels, y.tolist(), strict=True)) / 203
    expected_agree = sum(a == b for a, b in zip(f_labels, h_labels, strict=True)) / 203
    assert 0.2 < expected_acc < 0.8 and 0.2 < expected_agree < 0.8  # not a trivial case
    assert accuracy(f, x, y) == pytest.approx(expected_acc, abs=1e-15)
    assert agreement(f, h, x) == pytest.approx(expected_agree, abs=1e-15)
    assert agreement(f, f, x) == 1.0
    assert predictions(f, x)[0].item() == 1.0
    # evaluated in eval mode, the mode restored
    assert f.training and not any(f.modes)
    # batching does not change the labels
    assert torch.equal(predictions(f, x, batch_size=7), predictions(f, x))


def test_logit_accuracy_is_the_argmax_hit_rate() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 4, generator=g)
    model = nn.Linear(4, 3)
    y = torch.randint(0, 3, (50,), generator=g)
    with torch.no_grad():
        logits = model(x).tolist()
    hits = sum(
        max(range(3), key=row.__getitem__) == label
        for row, label in zip(logits, y.tolist(), strict=True)
    )
    assert accuracy(model, x, y) == pytest.approx(hits / 50, abs=1e-15)


def test_majority_share_is_the_largest_label_count_over_n() -> None:
    x = torch.tensor([[1.0], [2.0], [-1.0], [0.0], [-3.0], [4.0], [5.0]])
    # labels: +1, +1, −1, +1 (tie), −1, +1, +1 → five of seven are +1
    assert majority_share(Scores(torch.ones(1)), x) == pytest.approx(5 / 7)
    assert majority_share(Scores(torch.zeros(1)), x) == 1.0  # a constant classifier
    logits = nn.Linear(1, 4)
    with torch.no_grad():
        logits.weight.copy_(torch.tensor([[1.0], [-1.0], [0.0], [0.5]]))
        logits.bias.zero_()
    # argmax: x > 0 → class 0, x < 0 → class 1, x = 0 → class 0 (first of the ties)
    assert majority_share(logits, x) == pytest.approx(5 / 7)
