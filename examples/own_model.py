"""Your own ``nn.Module`` as f and g, through the Python API (no config, no pipeline).

    python examples/own_model.py [--tiny]

Any module mapping inputs (N, d) to scores (N,) works with ``pertlearn.training.fit``, the
attacks and ``pertlearn.metrics``. Here f and g are small two-hidden-layer tanh networks on
shifted Gaussian data; the steps are those of NeurIPS24 scenario (a): train f, draw balanced
random targets, craft r = one normalized gradient step of size ε towards each target, train g
on (r, target) only, and evaluate g on clean data.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from pertlearn.attacks import GradientStep
from pertlearn.metrics import accuracy, agreement
from pertlearn.training import TrainConfig, fit


class MLP(nn.Module):
    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, width),
            nn.Tanh(),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Linear(width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # binary scores (N,)


def shifted_gauss(n: int, dim: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    return torch.randn(n, dim, generator=gen) + 0.3 * y[:, None], y


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds (used by the tests)")
    args = parser.parse_args(argv)
    n, dim, width, epochs = (200, 20, 32, 100) if args.tiny else (1000, 100, 256, 500)
    gen = torch.Generator().manual_seed(0)
    x, y = shifted_gauss(n, dim, gen)
    x_test, y_test = shifted_gauss(1000, dim, gen)

    torch.manual_seed(0)  # the modules' own initialisation
    f, g = MLP(dim, width), MLP(dim, width)
    train = TrainConfig(loss="logistic", lr=0.1, epochs=epochs)
    fit(f, x, y, train)

    targets = y[torch.randperm(n, generator=gen)]  # balanced, independent of y
    eps = 0.1 * dim**0.5
    r = GradientStep(eps)(f, x, targets) - x  # the perturbations alone (scenario a)
    fit(g, r, targets, train)

    m = {
        "f_acc_test": accuracy(f, x_test, y_test),
        "g_acc_test": accuracy(g, x_test, y_test),
        "agreement": agreement(f, g, x_test),
    }
    print(", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    return m


if __name__ == "__main__":
    main()
