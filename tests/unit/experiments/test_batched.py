"""run_many (batched sweeps) gives the results of running each config with the autograd path."""

from __future__ import annotations

import pytest
import torch

import pertlearn.training.fast as fast
from pertlearn.experiments.batched import can_batch, run_each, run_many
from pertlearn.experiments.pipelines import run
from pertlearn.experiments.presets import load_config

SMALL = [
    "data.dim=20",
    "data.n_train=200",
    "data.n_test=300",
    "model.width=20",
    "train_f.epochs=80",
    "train_g.epochs=80",
]


def _configs():
    configs = []
    for seed in (0, 1):
        for lr_f, lr_g in ((1.0, 1.0), (0.1, 1.0), (1.0, 0.1)):
            configs.append(
                load_config(
                    preset="quickstart",
                    overrides=[*SMALL, f"seed={seed}", f"train_f.lr={lr_f}", f"train_g.lr={lr_g}"],
                )
            )
    configs.append(
        load_config(
            preset="neurips-gauss-b",
            overrides=[*SMALL, "targets=random", "train_f.loss=logistic", "model.slope=0.25"],
        )
    )
    for lr in (0.5, 0.2):  # logistic losses: trained as one batch (dense explicit gradients)
        configs.append(
            load_config(
                preset="quickstart",
                overrides=[
                    *SMALL,
                    "train_f.loss=logistic",
                    "train_g.loss=logistic",
                    f"train_f.lr={lr}",
                ],
            )
        )
    configs.append(load_config(preset="quickstart", overrides=[*SMALL, "train_g.batch_size=50"]))
    return configs


def _assert_same(got, expected):
    assert got.metrics.keys() == expected.metrics.keys()
    for key, value in expected.metrics.items():
        if key == "seconds":
            continue
        if isinstance(value, bool):
            assert got.metrics[key] == value, key
        else:
            assert got.metrics[key] == pytest.approx(value, abs=0.005), key
    assert got.curves.keys() == expected.curves.keys()
    for name, curve in expected.curves.items():
        assert got.curves[name].epochs_run == curve.epochs_run
        torch.testing.assert_close(
            torch.tensor(got.curves[name].losses),
            torch.tensor(curve.losses),
            rtol=1e-3,
            atol=1e-5,
        )
    for name in ("x_adv", "g_inputs", "y_adv"):
        torch.testing.assert_close(got.tensors[name], expected.tensors[name], rtol=1e-4, atol=1e-6)


def test_run_many_matches_sequential_autograd_runs(monkeypatch):
    configs = _configs()
    assert [can_batch(c) for c in configs] == [True] * 9 + [False]
    with monkeypatch.context() as patch:
        patch.setattr(fast, "supports_fast_fit", lambda *a, **k: False)
        expected = [run(c) for c in configs]
    got = run_many(configs)
    assert len(got) == len(configs)
    for g, e in zip(got, expected, strict=True):
        assert g.config == e.config
        _assert_same(g, e)
    # Shared networks are copied: results do not alias each other's models.
    assert got[0].models["f"] is not got[2].models["f"]
    assert got[0].models["f"].weight.data_ptr() != got[2].models["f"].weight.data_ptr()


def test_run_many_result_saves(tmp_path):
    (result,) = run_many([load_config(preset="quickstart", overrides=SMALL)])
    out = result.save(tmp_path / "run")
    assert (out / "metrics.json").exists()


def test_run_each_isolates_a_diverging_config():
    good = load_config(preset="quickstart", overrides=SMALL)
    bad = load_config(
        preset="quickstart",
        overrides=[*SMALL, "data.name=gauss", "train_f.loss=exponential", "train_f.lr=1e4"],
    )
    with pytest.raises(Exception, match="diverged"):
        run_many([good, bad])
    outcomes = run_each([good, bad, good])
    assert isinstance(outcomes[1], Exception) and "diverged" in str(outcomes[1])
    for outcome in (outcomes[0], outcomes[2]):
        assert not isinstance(outcome, Exception)
        assert outcome.metrics["f_acc_train"] == run(good).metrics["f_acc_train"]


def test_with_the_identity_loss_on_the_cpu_run_many_computes_the_bits_of_run() -> None:
    # each distinct network trains on its own there (see the module docstring of batched)
    configs = [
        load_config(preset="quickstart", overrides=[*SMALL, f"seed={seed}", f"train_g.lr={lr}"])
        for seed, lr in ((0, 1.0), (0, 0.5), (1, 1.0))
    ]
    for got, expected in zip(run_many(configs), [run(c) for c in configs], strict=True):
        got.metrics.pop("seconds"), expected.metrics.pop("seconds")
        assert got.metrics == expected.metrics
        for name, curve in expected.curves.items():
            assert got.curves[name].losses == curve.losses, name
        for name, model in expected.models.items():
            for p, q in zip(got.models[name].parameters(), model.parameters(), strict=True):
                assert torch.equal(p, q), name
        for name, tensor in expected.tensors.items():
            assert torch.equal(got.tensors[name], tensor), name
