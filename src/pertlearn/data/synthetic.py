"""Synthetic data sets of the papers (NeurIPS24 arXiv:2410.23677; ICLR24 arXiv:2402.10470).

All generators return ``(x, y)`` with ``x`` of shape ``(n, dim)`` and ``y`` of shape ``(n,)``
holding binary labels in ``{-1, +1}`` (same dtype as ``x``). They draw only from the
``torch.Generator`` passed in, on the CPU, so results do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _check_sizes(n: int, dim: int) -> None:
    if n < 1:
        raise ValueError(f"sample count must be at least 1, got {n}")
    if dim < 1:
        raise ValueError(f"input dimension must be at least 1, got {dim}")


def random_signs(
    n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n`` i.i.d. uniform labels in ``{-1, +1}``, shape ``(n,)``."""
    return torch.randint(0, 2, (n,), generator=generator).to(dtype) * 2 - 1


def balanced_signs(
    n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``n`` labels in ``{-1, +1}``, exactly ``n // 2`` of them ``-1`` (one extra ``+1`` if
    ``n`` is odd), in uniformly random order. Shape ``(n,)``."""
    labels = torch.ones(n, dtype=dtype)
    labels[: n // 2] = -1
    return labels[torch.randperm(n, generator=generator)]


def gauss(
    n: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x ~ N(0, I_dim)`` with i.i.d. uniform random labels (NeurIPS24 ``gauss``)."""
    _check_sizes(n, dim)
    x = torch.randn(n, dim, generator=generator, dtype=dtype)
    return x, random_signs(n, generator, dtype)


def shifted_gauss(
    n: int,
    dim: int,
    generator: torch.Generator,
    shift: float = 0.3,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the samples from ``N(+μ, I)`` (label +1), half from ``N(-μ, I)`` (label -1),
    ``μ = shift · 1_dim`` (NeurIPS24 ``shifted_gauss``, shift 0.3). Shuffled; for odd ``n`` the
    +1 class has one extra sample."""
    _check_sizes(n, dim)
    y = balanced_signs(n, generator, dtype)
    noise = torch.randn(n, dim, generator=generator, dtype=dtype)
    return noise + shift * y[:, None], y


def uniform(
    n: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x ~ U([-1, 1]^dim)`` with i.i.d. uniform random labels (ICLR24 artificial data)."""
    _check_sizes(n, dim)
    x = torch.rand(n, dim, generator=generator, dtype=dtype) * 2 - 1
    return x, random_signs(n, generator, dtype)


SYNTHETIC: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "gauss": gauss,
    "shifted_gauss": shifted_gauss,
    "uniform": uniform,
}
"""Name → generator, as named in configs (``data.name``)."""
