"""Transfer rate and the source × target transfer matrix."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from pertlearn.features.transfer import TransferMatrix, transfer_rate


class FixedLogits(nn.Module):
    """Logits read from the first feature: class = int(x[:, 0]), tracking calls and mode."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return nn.functional.one_hot(x[:, 0].long(), self.classes).float()


def test_transfer_rate_counts_hits() -> None:
    model = FixedLogits(4).train()
    predicted = torch.tensor([0, 1, 2, 3, 3, 2, 1])
    x = torch.stack([predicted.float(), torch.zeros(7)], dim=1)
    target = torch.tensor([0, 1, 0, 3, 0, 0, 1])  # hits at 0, 1, 3, 6
    assert transfer_rate(model, x, target) == pytest.approx(4 / 7)
    assert transfer_rate(model, x, target, batch_size=2) == pytest.approx(4 / 7)
    assert model.training and not any(model.modes)  # evaluated in eval mode, mode restored


def test_transfer_rate_on_a_linear_model_and_binary_scores(gen: torch.Generator) -> None:
    linear = nn.Linear(5, 3)
    x = torch.randn(50, 5, generator=gen)
    target = torch.randint(0, 3, (50,), generator=gen)
    with torch.no_grad():
        expected = (x @ linear.weight.T + linear.bias).argmax(1).eq(target).float().mean()
    assert transfer_rate(linear, x, target) == pytest.approx(expected.item())

    class Scores(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0]

    scores = torch.tensor([[0.5], [-1.0], [2.0], [0.0]])
    assert transfer_rate(Scores(), scores, torch.tensor([1.0, 1.0, -1.0, 1.0])) == 0.5


def test_transfer_rate_bad_inputs() -> None:
    model = FixedLogits(2)
    with pytest.raises(ValueError, match="non-empty"):
        transfer_rate(model, torch.zeros(0, 2), torch.zeros(0))
    with pytest.raises(ValueError, match="target"):
        transfer_rate(model, torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="batch_size"):
        transfer_rate(model, torch.zeros(3, 2), torch.zeros(3), batch_size=0)


def test_matrix_records_rows_and_round_trips() -> None:
    m = TransferMatrix(("small_cnn", "mlp"))
    assert m.targets == ("small_cnn", "mlp") and not m.complete
    m.record("mlp", "small_cnn", g_acc=0.4, transfer_rate=0.2)
    m.record("small_cnn", "small_cnn", g_acc=0.8, transfer_rate=0.9)
    acc = m.g_acc_matrix()
    assert acc.shape == (2, 2)
    assert acc[0, 0].item() == 0.8 and acc[1, 0].item() == 0.4
    assert math.isnan(acc[0, 1].item()) and math.isnan(m.transfer_matrix()[1, 1].item())
    assert m.transfer_matrix()[1, 0].item() == 0.2
    rows = m.to_rows()
    assert [(r["source"], r["target"]) for r in rows] == [
        ("small_cnn", "small_cnn"),
        ("mlp", "small_cnn"),
    ]
    assert rows[1] == {"source": "mlp", "target": "small_cnn", "g_acc": 0.4, "transfer_rate": 0.2}
    back = TransferMatrix.from_rows(json.loads(json.dumps(rows)), sources=m.sources)
    assert back.to_rows() == rows and back.sources == m.sources
    for s in m.sources:
        for t in m.targets:
            m.record(s, t, g_acc=0.5, transfer_rate=0.5)
    assert m.complete and len(m.to_rows()) == 4


def test_matrix_rectangular_and_errors() -> None:
    m = TransferMatrix(("a",), ("b", "c"), {("a", "c"): (0.3, 0.1)})
    assert m.g_acc_matrix().shape == (1, 2) and m.g_acc_matrix()[0, 1].item() == 0.3
    with pytest.raises(ValueError, match="unknown source"):
        m.record("b", "b", g_acc=0.1, transfer_rate=0.1)
    with pytest.raises(ValueError, match="unknown target"):
        m.record("a", "a", g_acc=0.1, transfer_rate=0.1)
    with pytest.raises(ValueError, match="g_acc"):
        m.record("a", "b", g_acc=1.5, transfer_rate=0.1)
    with pytest.raises(ValueError, match="transfer_rate"):
        m.record("a", "b", g_acc=0.5, transfer_rate=math.nan)
    with pytest.raises(ValueError, match="duplicate"):
        TransferMatrix(("a", "a"))
    with pytest.raises(ValueError, match="non-empty"):
        TransferMatrix(())
    with pytest.raises(ValueError, match="lacks"):
        TransferMatrix.from_rows([{"source": "a", "target": "b", "g_acc": 0.1}])
