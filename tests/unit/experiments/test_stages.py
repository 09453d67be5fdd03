"""Stage timings: every long stage of a run is timed, in stage order, beside the metrics."""

from __future__ import annotations

import time

import pytest

import pertlearn
from pertlearn.experiments.stages import StageClock

SMALL = ["data.dim=8", "model.width=8", "train_f.epochs=20", "train_g.epochs=20"]


def test_a_stage_timed_twice_adds_up_and_stages_come_in_run_order() -> None:
    clock = StageClock()
    with clock("controls"):
        time.sleep(0.01)
    with clock("data"):
        pass
    with clock("controls"):
        time.sleep(0.01)
    assert list(clock.ordered()) == ["data", "controls"]
    assert clock.seconds["controls"] >= 0.02


def test_binary_pipelines_time_each_stage_outside_their_metrics() -> None:
    neurips = pertlearn.load_config(
        preset="quickstart",
        overrides=[*SMALL, "data.n_train=40", "data.n_test=40", "controls=['random_l2_noise']"],
    )
    result = pertlearn.run(neurips)
    assert list(result.stage_seconds) == [
        "data",
        "train_f",
        "craft",
        "train_g",
        "controls",
        "evaluate",
    ]
    assert all(seconds >= 0 for seconds in result.stage_seconds.values())
    assert "stage_seconds" not in result.metrics
    assert sum(result.stage_seconds.values()) <= result.metrics["seconds"]

    iclr = pertlearn.load_config(
        preset="iclr-artificial-l2-uniform",
        overrides=[*SMALL, "data.n_train=20", "data.n_test=20", "data.n_noise=40"],
    )
    stages = pertlearn.run(iclr).stage_seconds
    assert list(stages) == ["data", "train_f", "craft", "train_g", "controls", "evaluate"]


def test_the_craft_stage_has_a_bar_only_when_progress_is_on_and_the_numbers_stay(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = pertlearn.load_config(
        preset="quickstart", overrides=[*SMALL, "data.n_train=30", "data.n_test=30"]
    )
    quiet = dict(pertlearn.run(config).metrics)
    assert capsys.readouterr().err == ""
    shown = dict(pertlearn.run(config, progress=True).metrics)
    err = capsys.readouterr().err
    assert "craft (gradient_step)" in err and "train g" in err
    quiet.pop("seconds"), shown.pop("seconds")
    assert shown == quiet


def test_the_craft_bar_counts_every_pgd_step_and_leaves_the_numbers_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch
    from torch import nn

    from pertlearn.attacks import make_attack
    from pertlearn.experiments.stages import craft

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))  # binary scores (N,)
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.where(torch.arange(12) % 2 == 0, 1.0, -1.0)
    attack = make_attack("pgd_l2", 0.5, steps=7, loss="identity")
    calls: list[int] = []
    attack.step_callback = lambda: calls.append(1)
    quiet = attack(model, x, targets)
    assert len(calls) == 7  # one callback per update step (one batch, no restarts)
    attack.step_callback = None
    shown = craft(attack, model, x, targets, seed=0, progress=True)
    assert torch.equal(shown, quiet)
    assert attack.step_callback is None  # the bar's hook is removed after the call
    err = capsys.readouterr().err
    assert "craft (pgd_l2): 0step" in err  # a bar counting steps (tqdm redraws it at most 10/s)
