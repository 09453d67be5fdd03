"""A small classifier trained on the in-repo MNIST subset, shared by the attack tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pertlearn.data.images import load_dataset, prepare
from pertlearn.training.minibatch import MinibatchConfig, fit_minibatch

DATA = Path(__file__).resolve().parents[2] / "data"


class Trained:
    """An MLP ``784 → 32 → 10`` (logits ``(N, 10)``) trained on 1,600 images, and 300 held-out
    images ``x`` ``(300, 1, 28, 28)`` in ``[0, 1]`` with labels ``y`` ``(300,)``."""

    def __init__(self) -> None:
        split = prepare(
            load_dataset("mnist", DATA),
            test_fraction=0.2,
            generator=torch.Generator().manual_seed(0),
        )
        gen = torch.Generator().manual_seed(1)
        first, second = nn.Linear(784, 32), nn.Linear(32, 10)
        with torch.no_grad():
            for layer in (first, second):
                fan_in = layer.weight.shape[1]
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / fan_in**0.5)
                layer.bias.zero_()
        self.model = nn.Sequential(nn.Flatten(), first, nn.ReLU(), second)
        config = MinibatchConfig(lr=0.05, batch_size=64, epochs=5, plateau_patience=None)
        fit_minibatch(
            self.model,
            split.x_train,
            split.y_train,
            config,
            generator=torch.Generator().manual_seed(2),
        )
        self.model.eval()
        self.x = split.x_test[:300]
        self.y = split.y_test[:300]

    def accuracy(self, x: torch.Tensor) -> float:
        with torch.no_grad():
            return (self.model(x).argmax(dim=1) == self.y).float().mean().item()


@pytest.fixture(scope="session")
def trained() -> Trained:
    return Trained()
