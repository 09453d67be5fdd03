"""``fast_train``: the ICLR24 artificial pipeline on the explicit-gradient trainer gives the
autograd run's numbers to float tolerance (the path the paper scale takes on CUDA)."""

from __future__ import annotations

import math

import pytest
import torch

from pertlearn.experiments import load_config, run

SMALL = [
    "data.dim=400",
    "data.n_train=40",
    "data.n_noise=400",
    "data.n_test=400",
    "model.width=20",
    "train_f.epochs=300",
    "train_g.epochs=300",
]


def small_run(*extra: str) -> dict[str, object]:
    config = load_config(preset="iclr-artificial-l2-uniform", overrides=[*SMALL, *extra])
    result = run(config)
    return {"metrics": result.metrics, "curves": result.curves}


def test_fast_train_defaults_off_and_matches_autograd() -> None:
    assert load_config(preset="iclr-artificial-l2-uniform").fast_train is False  # type: ignore[attr-defined]
    exact = small_run()
    fast = small_run("fast_train=true")
    for key in ("f_acc_train", "g_acc_train", "control_g_acc_train", "fooling_rate"):
        want, got = exact["metrics"][key], fast["metrics"][key]  # type: ignore[index]
        assert math.isclose(got, want, abs_tol=0.01), key
    for net in ("f", "g"):
        want_losses = exact["curves"][net].losses  # type: ignore[index]
        got_losses = fast["curves"][net].losses  # type: ignore[index]
        assert len(got_losses) == len(want_losses)
        torch.testing.assert_close(got_losses, want_losses, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_train_on_cuda_matches_the_cpu() -> None:
    cpu = small_run("fast_train=true")
    cuda = small_run("fast_train=true", "device=cuda")
    for key in ("f_acc_train", "g_acc_train", "fooling_rate"):
        assert math.isclose(cuda["metrics"][key], cpu["metrics"][key], abs_tol=0.02), key  # type: ignore[index]
