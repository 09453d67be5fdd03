"""The benchmark baseline (benchmarks/) computes what pertlearn computes: pipeline metrics,
training, the attack, and the closed-form kernel Φ against its Monte Carlo estimate."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from benchmarks import baseline

from pertlearn.attacks import GradientStep
from pertlearn.experiments.pipelines import run
from pertlearn.experiments.presets import load_config
from pertlearn.models import TwoLayerNet
from pertlearn.theory import phi
from pertlearn.training import TrainConfig
from pertlearn.training.fast import fast_fit

SMALL = ["data.dim=20", "data.n_train=200", "data.n_test=300", "model.width=20"]


@pytest.mark.parametrize("preset", ["quickstart", "neurips-gauss-b"])
def test_baseline_pipeline_matches_run(preset):
    config = load_config(
        preset=preset, overrides=[*SMALL, "train_f.epochs=80", "train_g.epochs=80"]
    )
    ours = run(config).metrics
    base = baseline.pipeline(config)
    for key, value in base.items():
        assert ours[key] == pytest.approx(value, abs=0.005), key


def test_baseline_training_matches_fast_fit():
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(100, 30, generator=g),
        torch.where(torch.rand(100, generator=g) < 0.5, 1.0, -1.0),
    )
    model = TwoLayerNet(30, 40, 0.1, generator=g, dtype=torch.float32)
    net = baseline.Net.copy_of(model)
    config = TrainConfig(loss="logistic", lr=0.5, epochs=100, plateau_patience=3)
    expected = baseline.train(net, x, y, config)
    got = fast_fit(model, x, y, config)
    torch.testing.assert_close(
        torch.tensor(got.losses), torch.tensor(expected["losses"]), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(model.weight, net.hidden.weight, rtol=1e-5, atol=1e-5)
    assert got.loss_weights is not None
    torch.testing.assert_close(got.loss_weights, expected["loss_weights"], rtol=1e-5, atol=1e-5)


def test_baseline_attack_matches_gradient_step():
    g = torch.Generator().manual_seed(1)
    x, t = (
        torch.randn(300, 50, generator=g),
        torch.where(torch.rand(300, generator=g) < 0.5, 1.0, -1.0),
    )
    model = TwoLayerNet(50, 30, 0.0, generator=g)
    ours = GradientStep(0.7)(model, x, t)
    base = baseline.gradient_step(baseline.Net.copy_of(model), x, t, 0.7)
    torch.testing.assert_close(ours, base, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.3])
def test_closed_form_phi_matches_monte_carlo(slope):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(120, 40, generator=g, dtype=torch.float64) * 1.5 + 0.2
    exact = phi(x, None, slope, chunk_size=32)  # symmetric tiles
    general = phi(x, x.clone(), slope, chunk_size=50)  # all blocks
    torch.testing.assert_close(exact, general, rtol=0, atol=1e-7)
    assert exact.diagonal().sub(slope + (1 - slope) ** 2 / 2).abs().max() < 1e-12
    draws = 200_000
    mc = baseline.phi_monte_carlo(x, slope, draws, torch.Generator().manual_seed(3))
    # 6 standard deviations of a mean of `draws` values in [0, 1]
    assert (exact - mc).abs().max() < 6 * 0.5 / math.sqrt(draws)


def test_baseline_pgd_matches_pgd_l2():
    from pertlearn.attacks import make_attack
    from pertlearn.models.cnn import SmallCNN

    g = torch.Generator().manual_seed(6)
    x = torch.rand(40, 1, 28, 28, generator=g)
    target = torch.randint(0, 10, (40,), generator=g)
    model = SmallCNN((1, 28, 28), 10, generator=g).eval()
    ours = make_attack("pgd_l2", 2.0, steps=4, clip=(0.0, 1.0))(model, x, target)
    base = baseline.pgd_l2(model, x, target, 2.0, 4, 0.4, (0.0, 1.0))
    torch.testing.assert_close(ours, base, rtol=1e-5, atol=1e-6)
    assert (ours - x).flatten(1).norm(dim=1).max() <= 2.0 + 1e-5
