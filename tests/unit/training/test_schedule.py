"""The one ReduceLROnPlateau rule (floats and tensors) against torch's scheduler, and the
stop_tol rule."""

from __future__ import annotations

import math

import pytest
import torch

from pertlearn.training.schedule import (
    PlateauScheduler,
    plateau_start,
    plateau_step,
    stop_by_tolerance,
)


def _metrics(seed: int, count: int = 120) -> list[float]:
    """A noisy curve with long plateaus, exact repeats and tiny improvements (below and above
    the 1e-4 relative threshold), so every branch of the rule is taken."""
    g = torch.Generator().manual_seed(seed)
    values, current = [], 1.0
    for _ in range(count):
        r = float(torch.rand((), generator=g))
        if r < 0.3:
            current *= 0.9
        elif r < 0.45:
            current *= 1 - 5e-5  # not an improvement by torch's relative threshold
        elif r < 0.6:
            current *= 1 + 0.1
        values.append(current if r < 0.9 else current * 1.5)
    return values


def _torch_lrs(metrics: list[float], lr: float, patience: int, factor: float, mode: str):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt,
        mode=mode,  # type: ignore[arg-type]
        factor=factor,
        patience=patience,
    )
    lrs = []
    for m in metrics:
        sched.step(m)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize(
    ("patience", "factor", "lr"), [(0, 0.5, 1.0), (2, 0.1, 0.3), (5, 0.9, 1e-7)]
)
def test_rule_on_floats_and_tensors_equals_torch(mode, patience, factor, lr):
    metrics = _metrics(patience)
    if mode == "max":
        metrics = [-m for m in metrics]
    expected = _torch_lrs(metrics, lr, patience, factor, mode)

    state = plateau_start(lr, mode)
    got = []
    for m in metrics:
        state = plateau_step(state, m, float(patience), factor, mode)
        got.append(state.lr)
    assert got == expected  # exactly: the same double arithmetic

    # Three configurations at once as float64 tensors: one of them is the case above.
    lrs = torch.tensor([lr, 0.5, 2.0], dtype=torch.float64)
    tensor_state = plateau_start(lrs, mode)
    pat = torch.tensor([patience, math.inf, 1], dtype=torch.float64)
    fac = torch.tensor([factor, 0.1, 0.2], dtype=torch.float64)
    for m, want in zip(metrics, expected, strict=True):
        tensor_state = plateau_step(
            tensor_state, torch.full((3,), m, dtype=torch.float64), pat, fac, mode
        )
        assert tensor_state.lr[0].item() == want
        assert tensor_state.lr[1].item() == 0.5  # infinite patience: never reduced
    assert tensor_state.lr[2].item() == _torch_lrs(metrics, 2.0, 1, 0.2, mode)[-1]


def test_eps_skips_tiny_reductions():
    """torch leaves the learning rate alone when a cut would change it by at most 1e-8."""
    metrics = [1.0] * 30
    assert _torch_lrs(metrics, 1e-8, 0, 0.5, "min")[-1] == 1e-8
    state = plateau_start(1e-8)
    for m in metrics:
        state = plateau_step(state, m, 0.0, 0.5)
    assert state.lr == 1e-8


def test_scheduler_drives_an_optimizer_like_torch_and_round_trips_its_state():
    metrics = _metrics(7)
    expected = _torch_lrs(metrics, 0.1, 3, 0.5, "min")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = PlateauScheduler(opt, patience=3, factor=0.5)
    for i, m in enumerate(metrics):
        if i == 50:  # resume from a saved state, as a checkpoint does
            saved = sched.state_dict()
            sched = PlateauScheduler(opt, patience=3, factor=0.5)
            sched.load_state_dict(saved)
        sched.step(m)
        assert opt.param_groups[0]["lr"] == expected[i]


def test_scheduler_loads_a_torch_state_dict():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2)
    for m in (1.0, 0.5, 0.5):
        reference.step(m)
    ours = PlateauScheduler(opt, patience=2, factor=0.1)
    ours.load_state_dict(reference.state_dict())
    assert ours.state_dict() == {"best": 0.5, "num_bad_epochs": 1}


def test_scheduler_rejects_an_unknown_mode():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="'min' or 'max'"):
        PlateauScheduler(opt, patience=1, factor=0.1, mode="up")  # type: ignore[arg-type]


def test_stop_by_tolerance():
    assert not stop_by_tolerance(math.inf, 1.0, 0.1)  # before the first epoch
    assert stop_by_tolerance(1.0, 0.95, 0.1)
    assert not stop_by_tolerance(1.0, 0.8, 0.1)
    assert not stop_by_tolerance(1.0, 1.0, 0.0)  # tolerance 0: never stops
    assert stop_by_tolerance(0.0, 0.0, 0.1)  # denominator floored at 1e-30
    prev = torch.tensor([math.inf, 1.0, 1.0, 2.0], dtype=torch.float64)
    cur = torch.tensor([1.0, 0.95, 0.8, 2.0], dtype=torch.float64)
    tol = torch.tensor([0.1, 0.1, 0.1, 0.0], dtype=torch.float64)
    assert stop_by_tolerance(prev, cur, tol).tolist() == [False, True, False, False]
