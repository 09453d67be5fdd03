"""The random control perturbation :class:`RandomL2`: reproducible from its generator, of norm
ε."""

from __future__ import annotations

import torch
from torch import nn

from pertlearn.attacks import RandomL2, per_sample_norm


def test_random_l2_norm_and_seed(gen: torch.Generator) -> None:
    x = torch.randn(30, 9, generator=gen)
    a = RandomL2(0.2)(nn.Identity(), x, torch.ones(30), generator=torch.Generator().manual_seed(5))
    b = RandomL2(0.2)(nn.Identity(), x, torch.ones(30), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.allclose(per_sample_norm(a - x), torch.full((30,), 0.2), atol=1e-6)
