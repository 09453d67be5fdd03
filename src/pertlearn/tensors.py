"""Per-sample tensor helpers shared by the attacks, the theory and the constructed data sets:
a norm per sample over all non-batch dimensions, its broadcastable view, and normalisation.
Pure torch; the bottom layer of the package."""

from __future__ import annotations

import torch
from torch import Tensor


def per_sample_norm(t: Tensor, p: float = 2.0) -> Tensor:
    """Norm of each sample over all non-batch dimensions, shape ``(N,)``."""
    return torch.linalg.vector_norm(t.flatten(1), ord=p, dim=1)


def per_sample_view(t: Tensor, ndim: int) -> Tensor:
    """``(N,)`` values reshaped to ``(N, 1, ..., 1)`` to broadcast over ``ndim``-d inputs."""
    return t.view(-1, *([1] * (ndim - 1)))


def normalize(t: Tensor, p: float) -> Tensor:
    """``t / ‖t‖_p`` per sample (norm over all non-batch dimensions); zero where the norm is 0."""
    norm = per_sample_view(per_sample_norm(t, p), t.ndim)
    return torch.where(norm > 0, t / norm.clamp_min(torch.finfo(t.dtype).tiny), 0.0)
