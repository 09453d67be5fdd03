import math

import pytest
import torch

from pertlearn.models import OneHiddenNet, TwoLayerNet


def test_two_layer_init_statistics(gen):
    d, m = 400, 2000
    net = TwoLayerNet(d, m, generator=gen)
    assert net.weight.shape == (m, d) and net.bias.shape == (m,) and net.readout.shape == (m,)
    assert abs(net.weight.var().item() - 1 / d) < 0.02 / d
    assert abs(net.bias.var().item() - 1) < 0.1
    assert abs(net.readout.var().item() - 1 / m) < 0.1 / m
    assert abs(net.weight.mean().item()) < 0.01 / math.sqrt(d)


def test_two_layer_forward_matches_formula(gen):
    net = TwoLayerNet(7, 5, slope=0.25, generator=gen).double()
    x = torch.randn(11, 7, generator=gen, dtype=torch.float64)
    pre = x @ net.weight.T + net.bias
    expected = (torch.where(pre >= 0, pre, 0.25 * pre) * net.readout).sum(1)
    assert torch.allclose(net(x), expected)
    assert net(x).shape == (11,)


def test_readout_is_a_buffer_and_stays_fixed(gen):
    net = TwoLayerNet(5, 8, generator=gen)
    names = {name for name, _ in net.named_parameters()}
    assert names == {"weight", "bias"}
    assert "readout" in dict(net.named_buffers())
    assert "readout" in net.state_dict()
    before = net.readout.clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(4, 5, generator=gen)).sum().backward()
    opt.step()
    assert torch.equal(net.readout, before)


def test_one_hidden_readout_halves_and_no_bias(gen):
    net = OneHiddenNet(6, 10, generator=gen)
    assert {name for name, _ in net.named_parameters()} == {"weight"}
    assert torch.allclose(net.readout[:5], torch.full((5,), 1 / math.sqrt(10)))
    assert torch.allclose(net.readout[5:], torch.full((5,), -1 / math.sqrt(10)))
    assert net.slope == 0.01
    # No bias: f(0) = 0 and f is positively homogeneous.
    x = torch.randn(3, 6, generator=gen)
    assert torch.equal(net(torch.zeros(1, 6)), torch.zeros(1))
    assert torch.allclose(net(2 * x), 2 * net(x))


def test_one_hidden_init_std(gen):
    net = OneHiddenNet(50, 2000, init_std=0.01, generator=gen)
    assert abs(net.weight.std().item() - 0.01) < 0.001


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="even hidden width"):
        OneHiddenNet(4, 5)
    with pytest.raises(ValueError, match="slope"):
        TwoLayerNet(4, 4, slope=1.0)
    with pytest.raises(ValueError, match="width"):
        TwoLayerNet(4, 0)
