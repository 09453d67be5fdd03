"""Per-sample norms and normalisation against a loop over samples in float64."""

from __future__ import annotations

import math

import pytest
import torch

from pertlearn.tensors import normalize, per_sample_norm, per_sample_view


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_norm_and_normalize_equal_a_loop_over_samples(p: float) -> None:
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[2] = 0.0
    want = [
        float(x[i].abs().max()) if p == math.inf else float(x[i].abs().pow(p).sum()) ** (1 / p)
        for i in range(5)
    ]
    assert per_sample_norm(x, p).tolist() == pytest.approx(want, rel=1e-12)
    unit = normalize(x, p)
    for i in range(5):
        expected = torch.zeros_like(x[i]) if want[i] == 0 else x[i] / want[i]
        assert torch.allclose(unit[i], expected, rtol=1e-12, atol=0)
    assert per_sample_view(per_sample_norm(x, p), x.ndim).shape == (5, 1, 1, 1)
