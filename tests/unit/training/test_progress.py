"""Training bars end where the training ended: a run that stops early shows 100% of the epochs
it ran, labelled with the epoch it stopped at."""

from __future__ import annotations

import io
from typing import ClassVar

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


class RecordingBar(tqdm):  # type: ignore[misc]
    """A real bar (written to nowhere) that records the loss shown at each update."""

    shown: ClassVar[list[float]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["file"] = io.StringIO()
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        loss = self.postfix.split("loss=")[-1] if self.postfix else "nan"
        RecordingBar.shown.append(float(loss))
        return super().update(n)


@pytest.mark.parametrize("fast", [True, False])
def test_the_bar_shows_the_loss_of_the_epochs_it_counts(
    fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each update of the bar carries the loss of the last epoch it counts, not the one
    before (the postfix is shown by the refresh of the update that follows it)."""
    import pertlearn.training.fast as fast_module
    import pertlearn.training.trainer as trainer_module

    monkeypatch.setattr(fast_module if fast else trainer_module, "tqdm", RecordingBar)
    monkeypatch.setattr(RecordingBar, "shown", [])
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, generator=generator)
    y = torch.where(x[:, 0] > 0, 1.0, -1.0)
    model = TwoLayerNet(4, 6, 0.0, generator=generator, dtype=torch.float32)
    config = TrainConfig(loss="logistic", lr=0.01, epochs=200, plateau_patience=None)
    result = fit(model, x, y, config, progress=True, fast=fast)
    if fast:  # one update per block of 50 epochs, showing the block's last loss
        shown, counted = RecordingBar.shown, range(49, 200, 50)
    else:  # one update per epoch; the loss is set every 2 epochs (1% of them), from the first
        shown, counted = RecordingBar.shown[::2], range(0, 200, 2)
    expected = [float(f"{result.losses[epoch]:.4g}") for epoch in counted]
    assert shown == expected
