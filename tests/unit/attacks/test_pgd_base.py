"""The machinery every PGD attack shares (:mod:`pertlearn.attacks.pgd_base`): the best iterate
kept over the run, the reported fooling rate, the model left untouched, validation of the
options and inputs; and the forward passes under autocast (bf16 on the CPU, fp16 on CUDA), with
iterates and input gradients in fp32, close to the exact fp32 attack on a tiny CNN."""

from __future__ import annotations

import pytest
import torch

from pertlearn.attacks import PgdL0, PgdL2, PgdLinf, fooling_rate, make_attack
from pertlearn.models.cnn import SmallCNN
from pertlearn.tensors import per_sample_norm

from .support import binary_setup, linear_setup

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def setup(device: str = "cpu") -> tuple[SmallCNN, torch.Tensor, torch.Tensor]:
    """A random tiny CNN ``(N, 3, 8, 8) → (N, 4)``, 64 images in [0, 1] and random targets."""
    gen = torch.Generator().manual_seed(0)
    model = SmallCNN((3, 8, 8), 4, width=8, hidden=16, generator=gen).to(device).eval()
    x = torch.rand(64, 3, 8, 8, generator=gen).to(device)
    target = torch.randint(0, 4, (64,), generator=gen).to(device)
    return model, x, target


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity ``(N,)`` of ``(N, ...)`` tensors."""
    return (a * b).flatten(1).sum(1) / (per_sample_norm(a) * per_sample_norm(b))


def gradients(attack: PgdL2, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    model, x, target = setup(device)
    _, grad, outputs = attack._objective_and_grad(model, x, target, None)
    return grad, outputs


@pytest.mark.parametrize("precision", ["bf16"])
def test_low_precision_input_gradient_is_fp32_and_points_the_same_way(precision: str) -> None:
    """bf16 rounds activations to 8 significant bits (and may flip a ReLU near its kink): the
    input gradients keep a mean cosine above 0.98 with the fp32 ones and each above 0.9."""
    exact, exact_out = gradients(PgdL2(1.0, steps=1))
    low, low_out = gradients(PgdL2(1.0, steps=1, precision=precision))
    assert low.dtype == low_out.dtype == torch.float32
    similarity = cosine(low, exact)
    assert float(similarity.mean()) > 0.98 and float(similarity.min()) > 0.9
    torch.testing.assert_close(low_out, exact_out, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("cls", [PgdL2, PgdLinf])
def test_bf16_attack_stays_in_the_ball_and_fools_like_fp32(cls: type[PgdL2]) -> None:
    model, x, target = setup()
    eps = 2.0 if cls is PgdL2 else 0.3
    exact = cls(eps, steps=20, clip=(0.0, 1.0))
    low = cls(eps, steps=20, clip=(0.0, 1.0), precision="bf16")
    exact(model, x, target)
    x_low = low(model, x, target)
    assert x_low.dtype == torch.float32
    assert float(x_low.min()) >= 0.0 and float(x_low.max()) <= 1.0
    p = 2.0 if cls is PgdL2 else float("inf")
    assert bool((per_sample_norm(x_low - x, p) <= eps * (1 + 1e-5)).all())
    assert exact.last_fooling_rate is not None and low.last_fooling_rate is not None
    assert abs(low.last_fooling_rate - exact.last_fooling_rate) <= 0.1
    assert low.last_fooling_rate >= 0.5


def test_fp32_is_the_default_and_other_precisions_are_named_in_repr() -> None:
    assert PgdL2(1.0).precision == "fp32"
    assert "precision='bf16'" in repr(PgdL2(1.0, precision="bf16"))
    assert "precision" not in repr(PgdL2(1.0))
    assert make_attack("pgd_l2", 1.0, precision="bf16").precision == "bf16"  # type: ignore[attr-defined]


def test_bad_precisions_are_refused() -> None:
    with pytest.raises(ValueError, match="pgd_l2: precision must be one of fp32, bf16, fp16"):
        PgdL2(1.0, precision="half")
    model, x, target = setup()
    with pytest.raises(ValueError, match="pgd_l2: precision = 'fp16' needs a CUDA device"):
        PgdL2(1.0, precision="fp16")(model, x, target)


@needs_cuda
def test_fp16_on_cuda_keeps_the_gradient_direction_and_the_fooling_rate() -> None:
    exact, _ = gradients(PgdL2(1.0, steps=1), "cuda")
    low, _ = gradients(PgdL2(1.0, steps=1, precision="fp16"), "cuda")
    assert low.dtype == torch.float32
    similarity = cosine(low, exact)
    assert float(similarity.mean()) > 0.98 and float(similarity.min()) > 0.9
    model, x, target = setup("cuda")
    exact_attack = PgdL2(2.0, steps=20, clip=(0.0, 1.0))
    low_attack = PgdL2(2.0, steps=20, clip=(0.0, 1.0), precision="fp16")
    exact_attack(model, x, target)
    low_attack(model, x, target)
    assert exact_attack.last_fooling_rate is not None
    assert low_attack.last_fooling_rate is not None
    assert abs(low_attack.last_fooling_rate - exact_attack.last_fooling_rate) <= 0.1


# --------------------------------------------------------------- the loop, and bad input


def test_best_iterate_is_kept_when_steps_overshoot() -> None:
    """Huge L∞-normalized steps overshoot the boundary-crossing point; the returned input is
    still the best visited, never worse than the clean start."""
    model, x, target = binary_setup()
    attack = PgdL0(3, steps=3, step_size=50.0)
    x_adv = attack(model, x, target)
    with torch.no_grad():
        assert bool(
            (attack.target_loss(model, x_adv, target) <= attack.target_loss(model, x, target)).all()
        )


def test_fooling_rate_is_reported() -> None:
    model, x, target = linear_setup()
    attack = PgdL2(5.0)
    x_adv = attack(model, x, target)
    assert attack.last_fooling_rate == fooling_rate(model, x_adv, target) == 1.0


def test_model_is_untouched() -> None:
    model, x, target = binary_setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    PgdL2(0.5, steps=5)(model, x, target)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in model.parameters())


def test_malformed_clip_and_step_size_are_rejected() -> None:
    with pytest.raises(ValueError, match="clip must be a pair"):
        PgdL2(1.0, clip=(0.0,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_size must be positive"):
        PgdL2(1.0, step_size=0.0)


def test_inputs_outside_the_data_range_are_rejected() -> None:
    model, x, target = binary_setup()
    with pytest.raises(ValueError, match="outside the data range"):
        PgdL2(0.5, clip=(0, 1))(model, x, target)
