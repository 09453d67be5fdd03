"""The random control perturbation :class:`RandomL2`: reproducible from its generator, of norm
exactly ε, in a direction uniform on the sphere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pertlearn.attacks import RandomL2, per_sample_norm

from .distribution_checks import DRAW_SEED, SAMPLES, assert_isotropic


def test_random_l2_norm_and_seed(gen: torch.Generator) -> None:
    x = torch.randn(30, 9, generator=gen)
    a = RandomL2(0.2)(nn.Identity(), x, torch.ones(30), generator=torch.Generator().manual_seed(5))
    b = RandomL2(0.2)(nn.Identity(), x, torch.ones(30), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.allclose(per_sample_norm(a - x), torch.full((30,), 0.2), atol=1e-6)


def test_random_l2_norm_is_eps_and_direction_isotropic() -> None:
    """``δ = ε u/‖u‖₂`` with ``u ~ N(0, I)``: every norm is ε to float64 precision and the
    direction is uniform on the sphere of all non-batch coordinates."""
    eps = 0.7
    draws = torch.Generator().manual_seed(DRAW_SEED)
    x = torch.rand(SAMPLES, 2, 2, 3, generator=draws, dtype=torch.float64) * 2 - 1
    no_target = torch.zeros(SAMPLES, dtype=torch.long)  # ignored; valid for 12 logits
    x_adv = RandomL2(eps)(nn.Flatten(), x, no_target, generator=draws)
    delta = (x_adv - x).flatten(1)
    norms = delta.norm(dim=1)
    assert float((norms / eps - 1).abs().max()) <= 1e-12
    assert_isotropic(delta / norms[:, None])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_random_l2_draws_on_a_cuda_generator() -> None:
    """A CUDA generator draws on the GPU (as the PGD random starts do), reproducibly."""
    x = torch.rand(16, 1, 4, 4, device="cuda")
    target = torch.zeros(16, dtype=torch.long, device="cuda")
    runs = [
        RandomL2(0.5)(nn.Flatten(), x, target, generator=torch.Generator("cuda").manual_seed(3))
        for _ in range(2)
    ]
    assert runs[0].device.type == "cuda"
    assert torch.equal(runs[0], runs[1])
    assert torch.allclose(per_sample_norm(runs[0] - x), torch.full((16,), 0.5, device="cuda"))
