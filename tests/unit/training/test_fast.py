"""The explicit-gradient trainer (pertlearn.training.fast) against autograd + torch.optim."""

from __future__ import annotations

import copy

import pytest
import torch

import pertlearn.training.fast as fast
from pertlearn.models import OneHiddenNet, TwoLayerNet
from pertlearn.training import TrainConfig, TrainingDivergedError, fit
from pertlearn.training.fast import fast_fit, fit_batched, supports_fast_fit
from pertlearn.training.losses import per_sample_loss


def _data(n: int = 64, d: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype) + 0.3
    y = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).to(dtype)
    return x, y


def _model(kind: str, d: int = 16, m: int = 20, slope: float = 0.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    if kind == "two_layer":
        return TwoLayerNet(d, m, slope, generator=g, dtype=dtype)
    return OneHiddenNet(d, m, slope or 0.01, generator=g, dtype=dtype)


def _reference(model, x, y, config: TrainConfig):
    """Autograd, torch.optim.SGD and torch's ReduceLROnPlateau, written out independently."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    sched = (
        None
        if config.plateau_patience is None
        else torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=config.plateau_factor, patience=config.plateau_patience
        )
    )
    losses = []
    for _ in range(config.epochs):
        opt.zero_grad()
        loss = per_sample_loss(model(x), y, config.loss).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if sched is not None:
            sched.step(losses[-1])
    return losses, opt.param_groups[0]["lr"]


CASES = [
    ("two_layer", 0.0, "identity", 0.5),
    ("two_layer", 0.25, "logistic", 1.0),
    ("two_layer", 0.0, "exponential", 0.1),
    ("one_hidden", 0.01, "exponential", 0.05),
    ("one_hidden", 0.5, "logistic", 1.0),
    ("one_hidden", 0.2, "identity", 0.5),
]


@pytest.mark.parametrize(("kind", "slope", "loss", "lr"), CASES)
def test_fast_fit_matches_autograd_fit(kind, slope, loss, lr):
    """In float64 the two paths agree to rounding (some of these runs amplify float32 rounding
    differences to ~1e-3, so exactness is checked where rounding cannot hide a bug)."""
    x, y = _data(dtype=torch.float64)
    config = TrainConfig(loss=loss, lr=lr, epochs=150, plateau_patience=3)
    reference = _model(kind, slope=slope, dtype=torch.float64)
    model = copy.deepcopy(reference)
    expected = fit(reference, x, y, config, fast=False)
    got = fast_fit(model, x, y, config)
    assert got.epochs_run == expected.epochs_run == 150
    assert got.final_lr == expected.final_lr
    tight = {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(torch.tensor(got.losses), torch.tensor(expected.losses), **tight)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(dict(model.named_parameters())[name], p, **tight)
    assert got.loss_weights is not None and expected.loss_weights is not None
    torch.testing.assert_close(got.loss_weights, expected.loss_weights, **tight)
    assert not model.training


@pytest.mark.parametrize("kind", ["two_layer", "one_hidden"])
def test_fast_fit_float32(kind):
    x, y = _data()
    config = TrainConfig(loss="identity", lr=0.1, epochs=200, plateau_patience=10)
    reference = _model(kind)
    model = copy.deepcopy(reference)
    expected = fit(reference, x, y, config, fast=False)
    got = fit(model, x, y, config)
    assert got.epochs_run == expected.epochs_run
    torch.testing.assert_close(
        torch.tensor(got.losses), torch.tensor(expected.losses), rtol=1e-5, atol=1e-6
    )
    # The identity loss takes the incremental scheme, whose Z differs from a fresh X Wᵀ + b by
    # rounding; in float32 that can move a unit whose pre-activation is ~1e-7 from zero across
    # the ReLU kink for a few epochs, a discrete difference of ~lr·|c_n a_k x_n| per epoch.
    torch.testing.assert_close(model.weight, reference.weight, rtol=0, atol=2e-3)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("slope", [0.0, 0.3])
def test_incremental_identity_scheme_is_exact(shared, slope):
    """The sparse-update scheme for the identity loss (on by default on the CPU) equals
    autograd in float64, batched, with shared or per-configuration inputs; many units flip in
    the first epochs (dense steps) and few later (sparse steps)."""
    configs = [
        TrainConfig(loss="identity", lr=0.5, epochs=130),
        TrainConfig(loss="identity", lr=0.05, momentum=0.5, epochs=130, plateau_patience=None),
    ]
    xs = [_data(seed=0 if shared else s, dtype=torch.float64) for s in range(2)]
    models = [_model("two_layer", slope=slope, dtype=torch.float64) for _ in configs]
    with torch.no_grad():
        models[1].weight.mul_(1.3)
    refs = [copy.deepcopy(m) for m in models]
    expected = [fit(m, x, y, c, fast=False) for m, (x, y), c in zip(refs, xs, configs, strict=True)]
    weight = torch.stack([m.weight.detach() for m in models])
    bias = torch.stack([m.bias.detach() for m in models])
    readout = torch.stack([m.readout for m in models])
    x_in = xs[0][0] if shared else torch.stack([x for x, _ in xs])
    y_in = torch.stack([y for _, y in xs])
    out = fit_batched(weight, bias, readout, slope, x_in, y_in, configs, incremental=True)
    tight = {"rtol": 1e-9, "atol": 1e-10}
    for b, (exp, ref) in enumerate(zip(expected, refs, strict=True)):
        torch.testing.assert_close(
            torch.tensor(out.result(b).losses), torch.tensor(exp.losses), **tight
        )
        torch.testing.assert_close(weight[b], ref.weight, **tight)
        torch.testing.assert_close(bias[b], ref.bias, **tight)


def test_scheduler_reduces_like_torch():
    """A large step makes the exponential loss oscillate: the plateau scheduler must fire, with
    torch's exact decisions (in float64 so that no rounding can flip a decision)."""
    x, y = _data(dtype=torch.float64)
    config = TrainConfig(
        loss="exponential", lr=20.0, epochs=300, plateau_patience=2, plateau_factor=0.5
    )
    reference = _model("two_layer", dtype=torch.float64)
    model = copy.deepcopy(reference)
    losses, lr = _reference(reference, x, y, config)
    out = fit_batched(
        model.weight.detach()[None],
        model.bias.detach()[None],
        model.readout[None],
        0.0,
        x,
        y[None],
        [config],
    )
    assert out.final_lr[0] == pytest.approx(lr, rel=1e-12)
    assert lr < 20.0, "the test should exercise at least one reduction"
    torch.testing.assert_close(
        out.losses[:, 0], torch.tensor(losses, dtype=torch.float64), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("loss", ["identity", "exponential"])
def test_device_schedule_equals_host_schedule(loss):
    """The scheduler kept on the device (used on CUDA) makes the same decisions as the host one
    (used on the CPU): plateau reductions, stop_tol, different epoch counts, in one batch."""
    x, y = _data(dtype=torch.float64)
    configs = [
        TrainConfig(loss=loss, lr=20.0, epochs=90, plateau_patience=2, plateau_factor=0.5),
        TrainConfig(loss=loss, lr=0.5, momentum=0.0, epochs=200, stop_tol=2e-2),
        TrainConfig(loss=loss, lr=0.1, epochs=60, plateau_patience=None),
    ]
    outs = []
    for host in (True, False):
        models = [_model("two_layer", dtype=torch.float64) for _ in configs]
        weight = torch.stack([m.weight.detach() for m in models])
        bias = torch.stack([m.bias.detach() for m in models])
        readout = torch.stack([m.readout for m in models])
        out = fit_batched(
            weight,
            bias,
            readout,
            0.0,
            x,
            y.expand(3, -1).clone(),
            configs,
            host_schedule=host,
            check_every=7,
        )
        outs.append((out, weight))
    (host_out, host_w), (dev_out, dev_w) = outs
    assert host_out.epochs_run == dev_out.epochs_run
    assert host_out.epochs_run[2] == 60 and 1 < host_out.epochs_run[1] < 200
    assert host_out.final_lr == pytest.approx(dev_out.final_lr, rel=1e-12)
    if loss == "exponential":  # the identity loss decreases steadily and never plateaus
        assert host_out.final_lr[0] < 20.0
    for b in range(3):
        torch.testing.assert_close(host_out.result(b).losses, dev_out.result(b).losses)
    torch.testing.assert_close(host_w, dev_w, rtol=1e-12, atol=1e-12)


def test_stop_tol_and_momentum_zero():
    x, y = _data()
    config = TrainConfig(loss="logistic", lr=0.5, momentum=0.0, epochs=400, stop_tol=3e-3)
    reference = _model("two_layer", slope=0.1)
    model = copy.deepcopy(reference)
    expected = fit(reference, x, y, config, fast=False)
    got = fit(model, x, y, config)  # dispatches to the fast path
    assert 1 < expected.epochs_run < 400
    assert got.epochs_run == expected.epochs_run
    torch.testing.assert_close(
        torch.tensor(got.losses), torch.tensor(expected.losses), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(model.weight, reference.weight, rtol=1e-5, atol=1e-6)


def test_fit_batched_equals_separate_fits():
    """Three configurations with different lr / momentum / scheduler / epochs trained together,
    with their own inputs (B, N, d) and with shared inputs (N, d)."""
    configs = [
        TrainConfig(loss="logistic", lr=1.0, epochs=80),
        TrainConfig(loss="logistic", lr=0.1, momentum=0.5, epochs=60, plateau_patience=None),
        TrainConfig(loss="logistic", lr=0.3, epochs=80, plateau_patience=2, stop_tol=1e-4),
    ]
    for shared in (False, True):
        xs = [_data(seed=0 if shared else s) for s in range(3)]
        models = [_model("two_layer", slope=0.2) for _ in configs]
        for i, m in enumerate(models):  # different initialisations
            with torch.no_grad():
                m.weight.mul_(1 + 0.1 * i)
        expected = [
            fit(copy.deepcopy(m), x, y, c, fast=False)
            for m, (x, y), c in zip(models, xs, configs, strict=True)
        ]
        trained = [copy.deepcopy(m) for m in models]
        refs = [copy.deepcopy(m) for m in models]
        for m, (x, y), c in zip(refs, xs, configs, strict=True):
            fit(m, x, y, c, fast=False)
        weight = torch.stack([m.weight.detach() for m in trained])
        bias = torch.stack([m.bias.detach() for m in trained])
        readout = torch.stack([m.readout for m in trained])
        x_in = xs[0][0] if shared else torch.stack([x for x, _ in xs])
        out = fit_batched(
            weight, bias, readout, 0.2, x_in, torch.stack([y for _, y in xs]), configs
        )
        for b, (exp, ref) in enumerate(zip(expected, refs, strict=True)):
            got = out.result(b)
            assert got.epochs_run == exp.epochs_run
            torch.testing.assert_close(
                torch.tensor(got.losses), torch.tensor(exp.losses), rtol=1e-4, atol=1e-5
            )
            torch.testing.assert_close(weight[b], ref.weight, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(bias[b], ref.bias, rtol=1e-4, atol=1e-5)


def test_divergence_names_the_same_epoch():
    x, y = _data()
    x = x * 30
    config = TrainConfig(loss="exponential", lr=50.0, epochs=200, plateau_patience=None)
    reference = _model("two_layer")
    with pytest.raises(TrainingDivergedError) as expected:
        fit(copy.deepcopy(reference), x, y, config, fast=False)
    with pytest.raises(TrainingDivergedError) as got:
        fit(copy.deepcopy(reference), x, y, config)
    assert str(got.value).split(":")[0] == str(expected.value).split(":")[0]
    assert "diverged at epoch" in str(got.value)


def test_dispatch_only_where_exact(monkeypatch):
    x, y = _data()
    model = _model("two_layer")
    assert supports_fast_fit(model, x, y, TrainConfig(loss="identity"))
    assert not supports_fast_fit(model, x, y, TrainConfig(loss="cross_entropy"))
    assert not supports_fast_fit(model, x, y, TrainConfig(batch_size=16))
    assert supports_fast_fit(model, x, y, TrainConfig(batch_size=64))

    class Custom(TwoLayerNet):
        pass

    assert not supports_fast_fit(Custom(16, 20), x, y, TrainConfig())
    frozen = _model("two_layer")
    frozen.bias.requires_grad_(False)
    assert not supports_fast_fit(frozen, x, y, TrainConfig())
    assert not supports_fast_fit(model, x.double(), y.double(), TrainConfig())

    calls = []
    monkeypatch.setattr(
        fast, "fast_fit", lambda *a, **k: calls.append(1) or fit(*a, fast=False, **k)
    )
    fit(model, x, y, TrainConfig(epochs=2))
    assert calls == [1]
    fit(model, x, y, TrainConfig(epochs=2, batch_size=8))
    assert calls == [1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_fit_on_cuda():
    x, y = _data()
    config = TrainConfig(loss="logistic", lr=1.0, epochs=50, plateau_patience=3)
    reference = _model("two_layer", slope=0.1)
    model = copy.deepcopy(reference).cuda()
    expected = fit(reference, x, y, config, fast=False)
    got = fast_fit(model, x.cuda(), y.cuda(), config)
    torch.testing.assert_close(
        torch.tensor(got.losses), torch.tensor(expected.losses), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(model.weight.cpu(), reference.weight, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("loss", "lr"), [("identity", 2.0), ("logistic", 50.0), ("exponential", 2.0)]
)
def test_loss_weights_are_the_lr_weighted_sum_of_the_loss_derivative(loss, lr):
    """``TrainResult.loss_weights`` = ``Σ_t lr_t ℓ'(-y f(x; t))`` (the NeurIPS24 weights
    ``∫ ℓ'(-y f(x; t)) dt`` of gradient descent), with ``ℓ'`` written out here (1, the logistic
    sigmoid, exp) along a trajectory from autograd, torch.optim.SGD and torch's
    ReduceLROnPlateau; with the logistic and exponential losses these steps make the loss
    oscillate, so the rate drops during the run. Both trainers agree with it."""
    x, y = _data(dtype=torch.float64)
    derivative = {
        "identity": lambda s: torch.ones_like(s),
        "logistic": lambda s: 1 / (1 + torch.exp(-s)),
        "exponential": torch.exp,
    }[loss]
    config = TrainConfig(loss=loss, lr=lr, epochs=60, plateau_patience=0, plateau_factor=0.5)
    reference = _model("two_layer", slope=0.1, dtype=torch.float64)
    params = [reference.weight, reference.bias]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    expected = torch.zeros_like(y)
    rates = []
    for _ in range(config.epochs):
        rate = opt.param_groups[0]["lr"]
        rates.append(rate)
        opt.zero_grad()
        scores = reference(x)
        expected += rate * derivative(-y * scores.detach())
        loss_value = per_sample_loss(scores, y, loss).mean()
        loss_value.backward()
        opt.step()
        sched.step(loss_value.item())
    if loss == "identity":  # ℓ' = 1: every weight is the sum of the rates
        torch.testing.assert_close(expected, torch.full_like(y, sum(rates)))
    else:  # the schedule changed the rate: the weights must follow it
        assert min(rates) < lr
    for fast_path in (True, False):
        model = _model("two_layer", slope=0.1, dtype=torch.float64)
        got = fit(model, x, y, config, fast=fast_path)
        assert got.loss_weights is not None
        torch.testing.assert_close(got.loss_weights, expected, rtol=1e-9, atol=1e-12)
