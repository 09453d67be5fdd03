"""Training bars end where the training ended: a run that stops early shows 100% of the epochs
it ran, labelled with the epoch it stopped at."""

from __future__ import annotations

import io

import pytest
import torch
from tqdm.auto import tqdm

from pertlearn.models import TwoLayerNet
from pertlearn.training import TrainConfig, fit
from pertlearn.training.progress import finish_bar


def test_an_early_stop_closes_the_bar_at_its_true_end() -> None:
    out = io.StringIO()
    bar = tqdm(total=10, file=out, leave=True)
    bar.update(3)
    finish_bar(bar, epochs_run=3, epochs=10)
    last = out.getvalue().split("\r")[-1]
    assert bar.total == 3 and bar.n == 3
    assert "100%" in last and "3/3" in last and "stopped early at epoch 3 of 10" in last


def test_a_full_run_and_a_disabled_bar_are_left_as_they_are() -> None:
    out = io.StringIO()
    bar = tqdm(total=10, file=out, leave=True)
    bar.update(10)
    finish_bar(bar, epochs_run=10, epochs=10)
    assert bar.total == 10 and "stopped early" not in out.getvalue()
    quiet = io.StringIO()
    finish_bar(tqdm(total=10, file=quiet, disable=True), epochs_run=3, epochs=10)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("fast", [True, False])
def test_fit_stopped_by_tolerance_says_so_on_stderr(
    fast: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, generator=generator)
    y = torch.where(x[:, 0] > 0, 1.0, -1.0)
    model = TwoLayerNet(4, 6, 0.0, generator=generator, dtype=torch.float32)
    config = TrainConfig(loss="logistic", lr=0.01, epochs=500, stop_tol=0.01)
    result = fit(model, x, y, config, progress=True, fast=fast)
    err = capsys.readouterr().err
    assert 1 < result.epochs_run < 500
    assert f"stopped early at epoch {result.epochs_run} of 500" in err
    quiet = fit(TwoLayerNet(4, 6, 0.0, generator=generator), x, y, config, fast=fast)
    assert quiet.epochs_run > 1 and capsys.readouterr().err == ""
