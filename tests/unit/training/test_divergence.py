"""Every training path stops a run whose loss or weights blow up, with one line naming the
network, the epoch and the fix."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from pertlearn.models import OneHiddenNet, TwoLayerNet
from pertlearn.training import TrainConfig, TrainingDivergedError, fit
from pertlearn.training.divergence import (
    WEIGHT_BOUND,
    Divergence,
    check_epoch,
    diverged_message,
    largest_weight,
)
from pertlearn.training.fast import fast_fit, fit_batched
from pertlearn.training.minibatch import MinibatchConfig, fit_minibatch

# At this learning rate an unbounded margin loss (identity, or logistic far from the margin)
# keeps a finite loss while a step adds ~1e15 to the weights: only the bound catches it.
HUGE_LR = 1e16


def _data(n: int = 40, d: int = 8, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).to(dtype)
    return x, y


def _net(kind: str = "two_layer", dtype: torch.dtype = torch.float32) -> nn.Module:
    g = torch.Generator().manual_seed(1)
    if kind == "two_layer":
        return TwoLayerNet(8, 10, 0.0, generator=g, dtype=dtype)
    return OneHiddenNet(8, 10, 0.1, generator=g, dtype=dtype)


def _assert_one_line(err: pytest.ExceptionInfo[TrainingDivergedError], name: str) -> int:
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"training of {name} diverged at epoch ")
    assert "lower the learning rate" in message
    return int(message.split("epoch ")[1].split(":")[0])


@pytest.mark.parametrize("loss", ["identity", "logistic"])
@pytest.mark.parametrize("kind", ["two_layer", "one_hidden"])
def test_fast_and_autograd_full_batch_stop_at_the_same_epoch(loss, kind):
    x, y = _data()
    config = TrainConfig(loss=loss, lr=HUGE_LR, epochs=300)
    net = _net(kind)
    with pytest.raises(TrainingDivergedError) as autograd:
        fit(copy.deepcopy(net), x, y, config, name="f", fast=False)
    with pytest.raises(TrainingDivergedError) as explicit:
        fast_fit(copy.deepcopy(net), x, y, config, name="f")
    assert "a weight reached" in str(explicit.value)
    epoch = _assert_one_line(explicit, "f")
    assert 1 <= epoch < 300
    assert _assert_one_line(autograd, "f") == epoch


def test_autograd_minibatch_path_stops():
    x, y = _data()
    config = TrainConfig(loss="identity", lr=HUGE_LR, epochs=300, batch_size=8)
    with pytest.raises(TrainingDivergedError, match="a weight reached") as err:
        fit(_net(), x, y, config, name="g", generator=torch.Generator().manual_seed(0))
    assert _assert_one_line(err, "g") < 300


def test_cross_entropy_path_stops():
    x, y = _data()
    head = nn.Sequential(nn.Linear(8, 2))
    config = TrainConfig(loss="cross_entropy", lr=HUGE_LR * 10, epochs=300)
    with pytest.raises(TrainingDivergedError) as err:
        fit(head, x, (y > 0).long(), config, name="g")
    _assert_one_line(err, "g")


@pytest.mark.parametrize("host", [True, False])
def test_batched_paths_record_the_divergence_and_keep_the_others(host):
    """Host and device schedules: the diverging configuration stops at the epoch the single
    fit names; the others train to the end."""
    x, y = _data()
    configs = [
        TrainConfig(loss="identity", lr=0.1, epochs=120),
        TrainConfig(loss="identity", lr=HUGE_LR, epochs=120),
    ]
    nets = [_net(), _net()]
    weight = torch.stack([n.weight.detach() for n in nets])
    bias = torch.stack([n.bias.detach() for n in nets])
    readout = torch.stack([n.readout for n in nets])
    out = fit_batched(
        weight, bias, readout, 0.0, x, y.expand(2, -1).clone(), configs,
        host_schedule=host, check_every=7,
    )  # fmt: skip
    assert out.diverged[0] is None and out.epochs_run[0] == 120
    diverged = out.diverged[1]
    assert isinstance(diverged, Divergence) and diverged.weight is not None
    assert diverged.weight > WEIGHT_BOUND and math.isfinite(diverged.loss)
    assert out.epochs_run[1] == diverged.epoch - 1
    with pytest.raises(TrainingDivergedError) as single:
        fit(_net(), x, y, configs[1], name="model", fast=False)
    assert _assert_one_line(single, "model") == diverged.epoch
    assert diverged_message("model", diverged) == str(single.value)


def test_nan_loss_on_the_device_schedule_names_its_epoch():
    x, y = _data()
    x = x * 30
    config = TrainConfig(loss="exponential", lr=50.0, epochs=60, plateau_patience=None)
    net = _net()
    with pytest.raises(TrainingDivergedError) as expected:
        fit(copy.deepcopy(net), x, y, config, fast=False)
    out = fit_batched(
        net.weight.detach().clone().unsqueeze(0),
        net.bias.detach().clone().unsqueeze(0),
        net.readout.unsqueeze(0),
        0.0,
        x,
        y.unsqueeze(0),
        [config],
        host_schedule=False,
    )
    assert out.diverged[0] is not None
    assert diverged_message("model", out.diverged[0]) == str(expected.value)


def _images(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_minibatch_trainer_stops_on_overflowing_weights():
    x, y = _images()
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    config = MinibatchConfig(lr=1e20, momentum=0.0, batch_size=8, epochs=5, weight_decay=0.0)
    with pytest.raises(TrainingDivergedError) as err:
        fit_minibatch(model, x, y, config, name="f")
    assert _assert_one_line(err, "f") == 1
    assert "bounded loss" not in str(err.value)  # cross-entropy: only the learning rate


def test_minibatch_trainer_stops_on_a_nan_loss():
    x, y = _images()
    x[3] = math.nan
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(TrainingDivergedError, match="the loss is nan") as err:
        fit_minibatch(model, x, y, MinibatchConfig(batch_size=8, epochs=2), name="f")
    assert _assert_one_line(err, "f") == 1


def test_sane_training_is_untouched():
    x, y = _data()
    result = fit(_net(), x, y, TrainConfig(loss="logistic", lr=1.0, epochs=50))
    assert result.epochs_run == 50


def test_check_epoch_and_largest_weight():
    params = [torch.tensor([1.0, -3.0]), torch.zeros(0), torch.tensor([[2.0]])]
    assert largest_weight(params) == 3.0
    check_epoch("f", 1, 0.1, 0.5, params)
    with pytest.raises(TrainingDivergedError, match="the loss is inf"):
        check_epoch("f", 1, 0.1, math.inf, params)
    for bad in (2 * WEIGHT_BOUND, math.inf, math.nan):
        with pytest.raises(TrainingDivergedError, match="a weight reached"):
            check_epoch("f", 4, 0.1, 0.5, [torch.tensor([bad])])
