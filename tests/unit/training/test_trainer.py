import pytest
import torch

from pertlearn.data import shifted_gauss
from pertlearn.models import TwoLayerNet
from pertlearn.training import TrainConfig, TrainingDivergedError, fit


def hand_gradient_identity(net: TwoLayerNet, x: torch.Tensor, y: torch.Tensor):
    """∂/∂W and ∂/∂b of L = -(1/N) Σ_n y_n f(x_n), derived by hand."""
    pre = x @ net.weight.T + net.bias
    dphi = torch.where(pre >= 0, 1.0, net.slope).to(x.dtype)  # (N, m)
    coef = -(y[:, None] * dphi * net.readout) / x.shape[0]  # (N, m)
    return coef.T @ x, coef.sum(0)


def test_one_step_equals_hand_gradient(gen):
    x, y = shifted_gauss(64, 9, gen, dtype=torch.float64)
    net = TwoLayerNet(9, 12, slope=0.3, generator=gen, dtype=torch.float64)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    gw, gb = hand_gradient_identity(net, x, y)
    fit(net, x, y, TrainConfig(loss="identity", lr=0.5, momentum=0.0, epochs=1))
    assert torch.allclose(net.weight, w0 - 0.5 * gw)
    assert torch.allclose(net.bias, b0 - 0.5 * gb)


def test_loss_decreases_and_curve_recorded(gen):
    x, y = shifted_gauss(200, 10, gen)
    net = TwoLayerNet(10, 20, generator=gen)
    result = fit(net, x, y, TrainConfig(loss="logistic", lr=0.5, epochs=50))
    assert len(result.losses) == result.epochs_run == 50
    assert result.losses[-1] < 0.5 * result.losses[0]


def test_identity_loss_weights_sum_learning_rates(gen):
    x, y = shifted_gauss(30, 4, gen)
    net = TwoLayerNet(4, 6, generator=gen)
    result = fit(net, x, y, TrainConfig(lr=0.1, epochs=7, plateau_patience=None))
    assert result.loss_weights is not None
    assert torch.allclose(result.loss_weights, torch.full((30,), 0.7))


def test_nan_loss_names_epoch_and_learning_rate(gen):
    x, y = shifted_gauss(50, 5, gen)
    net = TwoLayerNet(5, 8, generator=gen)
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch \d+.*learning rate"):
        fit(net, x, y, TrainConfig(loss="exponential", lr=1e6, epochs=100), name="f")


def test_plateau_reduces_learning_rate(gen):
    # Zero inputs with balanced labels: the identity loss has zero gradient and stays flat,
    # so the scheduler must cut the learning rate every patience + 1 epochs.
    x, y = torch.zeros(40, 3), torch.tensor([1.0, -1.0] * 20)
    config = TrainConfig(loss="identity", lr=0.1, momentum=0.0, epochs=12, plateau_patience=2)
    result = fit(TwoLayerNet(3, 4, generator=gen), x, y, config)
    assert result.final_lr == pytest.approx(0.1 * 0.1**3)
    fixed = config.model_copy(update={"plateau_patience": None})
    assert fit(TwoLayerNet(3, 4, generator=gen), x, y, fixed).final_lr == 0.1


def test_stop_tol_stops_early(gen):
    x, y = shifted_gauss(100, 5, gen)
    net = TwoLayerNet(5, 10, generator=gen)
    result = fit(net, x, y, TrainConfig(loss="logistic", lr=0.5, epochs=5000, stop_tol=1e-3))
    assert result.epochs_run < 5000
    assert len(result.losses) == result.epochs_run


def test_minibatch_mode_trains(gen):
    x, y = shifted_gauss(300, 10, gen)
    net = TwoLayerNet(10, 20, generator=gen)
    config = TrainConfig(loss="logistic", lr=0.1, epochs=5, batch_size=32)
    result = fit(net, x, y, config, generator=torch.Generator().manual_seed(0))
    assert result.loss_weights is None
    assert result.losses[-1] < result.losses[0]


def test_mismatched_sizes(gen):
    net = TwoLayerNet(3, 4, generator=gen)
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        fit(net, torch.zeros(3, 3), torch.ones(2), TrainConfig())
