"""The NeurIPS24 kernel Φ of a wide two-layer LeakyReLU network (NeurIPS24 arXiv:2410.23677
"Theory").

``Φ(x, z) = E_{w~N(0, I/d), b~N(0, 1)} [φ'(w·x + b) φ'(w·z + b)]`` with ``φ'(u) = 1`` for
``u ≥ 0`` and ``γ`` otherwise. The two pre-activations are jointly Gaussian with zero mean,
variances ``‖x‖²/d + 1``, ``‖z‖²/d + 1`` and covariance ``x·z/d + 1``, so with the correlation
``ρ`` and ``θ = arccos ρ`` (Sheppard's formula for the orthant probabilities)

    Φ(x, z) = γ + (1 − γ)² (π − θ) / (2π).

:func:`phi` evaluates this closed form for all pairs of two batches, in row chunks so that no
intermediate grows beyond ``chunk_size × N2``; :func:`phi_matmul` contracts ``Φ(x, z) @ v``
without ever holding the full ``N1 × N2`` matrix. :func:`phi_monte_carlo` is the seeded
Monte Carlo estimator the closed form is checked against (the reference code's method).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

DEFAULT_CHUNK = 1024
ROW_ALIGN = 16
#: Column grid of the symmetric Φ(x, x) (GEMMs start on it, so results do not depend on chunks).
COLUMN_TILE = 1024


def _check_pair(x: torch.Tensor, z: torch.Tensor, slope: float) -> None:
    if x.ndim != 2 or z.ndim != 2:
        raise ValueError(
            f"phi expects 2-D batches (N1, d) and (N2, d), got shapes {tuple(x.shape)} and "
            f"{tuple(z.shape)}; flatten inputs with x.flatten(1)"
        )
    if x.shape[1] != z.shape[1]:
        raise ValueError(
            f"phi: input dimensions differ ({x.shape[1]} vs {z.shape[1]}); "
            "both batches must be (N, d)"
        )
    if x.dtype != z.dtype:
        raise ValueError(
            f"phi: the batches differ in dtype ({x.dtype} and {z.dtype}); give both in one, "
            "e.g. z.to(x.dtype)"
        )
    if not 0.0 <= slope < 1.0:
        raise ValueError(f"phi: LeakyReLU slope must lie in [0, 1), got {slope}")


def check_xy(x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``x`` holds inputs ``(N, d)`` and ``y`` one
    label per input, ``(N,)``, each -1 or +1 (the binary labels of the papers' theory)."""
    if x.ndim != 2:
        raise ValueError(
            f"{where}: expected inputs of shape (N, d), got {tuple(x.shape)}; use x.flatten(1)"
        )
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"{where}: labels must have shape ({x.shape[0]},), one per input, got {tuple(y.shape)}"
        )
    bad = (y != 1) & (y != -1)
    if bool(bad.any()):
        raise ValueError(
            f"{where}: labels must be -1 or +1, got {y[bad][0].item():g} (map 0/1 labels with "
            "2 * y - 1)"
        )


def _check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")


def _unit_rows(t: torch.Tensor, bias: bool) -> torch.Tensor:
    """Rows ``(t_n/√d, 1)`` (``t_n/√d`` without bias) scaled to unit length, ``(N, d[+1])``:
    the inner product of two such rows is the correlation ``ρ`` of the pre-activations. A zero
    row without bias stays zero (``ρ = 0`` by convention)."""
    dim = t.shape[1]
    rows = t / math.sqrt(dim)
    if bias:
        rows = torch.cat([rows, torch.ones(t.shape[0], 1, dtype=t.dtype, device=t.device)], 1)
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    return rows / torch.where(norms > 0, norms, 1.0)


def _phi_block(x_unit: torch.Tensor, z_unit_t: torch.Tensor, slope: float) -> torch.Tensor:
    """``Φ = γ + (1 − γ)²/2 − (1 − γ)² θ/(2π)`` with ``θ = arccos(x̂ · ẑ)``, in place on the
    ``(rows, N2)`` block."""
    theta = torch.arccos_((x_unit @ z_unit_t).clamp_(-1.0, 1.0))
    scale = (1.0 - slope) ** 2
    return theta.mul_(-scale / (2.0 * math.pi)).add_(slope + scale / 2.0)


def phi_blocks(
    x: torch.Tensor,
    z: torch.Tensor,
    slope: float,
    chunk_size: int = DEFAULT_CHUNK,
    *,
    bias: bool = True,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, Φ(x[rows], z))`` for consecutive row chunks of ``x``; each block has
    shape ``(≤chunk_size, N2)``. The building block of every chunked kernel computation.

    ``ρ`` comes from one GEMM of unit-normalized augmented rows (``(x/√d, 1)/‖·‖``), and
    the elementwise steps run in place, so a block costs one GEMM and three passes."""
    _check_pair(x, z, slope)
    _check_chunk(chunk_size)
    same = x is z
    # Round the chunk up to a multiple of 16 rows (and pad the last one): BLAS kernels block
    # rows in groups of 4-16 and pick edge kernels by size, so only aligned row counts
    # reproduce the full product bit for bit (checked in the tests).
    chunk_size = -(-chunk_size // ROW_ALIGN) * ROW_ALIGN
    # A contiguous ẑᵀ: every chunk then takes the same GEMM path.
    z_unit_t = _unit_rows(z, bias).T.contiguous()
    for start in range(0, x.shape[0], chunk_size):
        rows = slice(start, min(start + chunk_size, x.shape[0]))
        x_unit = _unit_rows(x[rows], bias)
        count = x_unit.shape[0]
        if count % ROW_ALIGN:  # pad the last chunk so that every GEMM has aligned rows
            pad = ROW_ALIGN - count % ROW_ALIGN
            x_unit = torch.cat([x_unit, x_unit.new_zeros(pad, x_unit.shape[1])])
        block = _phi_block(x_unit, z_unit_t, slope)[:count]
        if same:  # Φ(x, x) exactly (arccos near ρ = 1 would amplify rounding)
            idx = torch.arange(block.shape[0], device=block.device)
            block[idx, idx + start] = phi_diagonal(slope)
        yield rows, block


def _phi_from_rho_(block: torch.Tensor, slope: float) -> torch.Tensor:
    """In place on a block of correlations ``ρ``: ``Φ = c − a θ`` with ``θ = arccos ρ``,
    ``a = (1 − γ)²/(2π)``, ``c = γ + (1 − γ)²/2``, in three passes (clamp, arccos, and the
    affine map as one ``lerp`` towards ``c/(1 + a)`` with weight ``1 + a``)."""
    rate = (1.0 - slope) ** 2 / (2.0 * math.pi)
    target = torch.tensor(
        phi_diagonal(slope) / (1.0 + rate), dtype=block.dtype, device=block.device
    )
    return block.clamp_(-1.0, 1.0).arccos_().lerp_(target, 1.0 + rate)


def _padded_unit_rows(t: torch.Tensor, bias: bool, rows: int) -> torch.Tensor:
    """:func:`_unit_rows` of ``t`` followed by zero rows up to ``rows`` rows."""
    unit = _unit_rows(t, bias)
    if rows > unit.shape[0]:
        unit = torch.cat([unit, unit.new_zeros(rows - unit.shape[0], unit.shape[1])])
    return unit


def _phi_symmetric(x: torch.Tensor, slope: float, chunk_size: int, bias: bool) -> torch.Tensor:
    """``Φ(x, x)`` from the entries on and right of the diagonal only, mirrored.

    Rows go ``chunk`` at a time (the largest power of two ≤ ``chunk_size``, between
    :data:`ROW_ALIGN` and :data:`COLUMN_TILE`). Row chunk ``[s, e)`` costs one GEMM
    ``x̂[s:e] x̂[g:]ᵀ`` from the column ``g = ⌊s/COLUMN_TILE⌋·COLUMN_TILE`` on, into a
    scratch buffer of at most ``chunk × N`` entries (about half the multiply-adds and arccos
    of the full matrix over all chunks), turned into Φ in place and written to
    ``out[s:e, s:]`` and, transposed, to ``out[s:, s:e]``. Since ``g`` is a fixed grid point
    for every row whatever the chunk (and rows are padded to :data:`ROW_ALIGN`), each entry
    comes out of the same BLAS kernel position, so the result does not depend on
    ``chunk_size``, bit for bit; it is exactly symmetric (each pair takes the value computed
    above the diagonal)."""
    n = x.shape[0]
    padded = -(-n // ROW_ALIGN) * ROW_ALIGN
    chunk = max(ROW_ALIGN, min(COLUMN_TILE, 1 << (chunk_size.bit_length() - 1)))
    unit = _padded_unit_rows(x, bias, padded)
    unit_t = unit.T.contiguous()
    out = torch.empty(n, n, dtype=x.dtype, device=x.device)
    scratch = torch.empty(min(chunk, padded) * padded, dtype=x.dtype, device=x.device)
    below = torch.ones(chunk, chunk, dtype=torch.bool, device=x.device).tril_(-1)
    for start in range(0, n, chunk):
        stop = min(start + chunk, padded)  # chunk divides COLUMN_TILE: one tile holds the square
        last = min(stop, n)
        rows = stop - start
        # From the column tile holding the diagonal square to the end, in one GEMM: a row's
        # columns start at the same grid point whatever the chunk.
        left = start // COLUMN_TILE * COLUMN_TILE
        width = padded - left
        block = scratch[: rows * width].view(rows, width)
        torch.mm(unit[start:stop], unit_t[:, left:], out=block)
        _phi_from_rho_(block, slope)
        # the diagonal square: below it, the values from above it
        shift = start - left
        square = block[:, shift : shift + rows]
        square.copy_(torch.where(below[:rows, :rows], square.T, square))
        part = block[: last - start, shift : n - left]
        out[start:last, start:] = part
        out[start:, start:last] = part.T
    # Φ(x, x) exactly (arccos near ρ = 1 would amplify rounding)
    out.diagonal().fill_(phi_diagonal(slope))
    return out


def phi(
    x: torch.Tensor,
    z: torch.Tensor | None,
    slope: float,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    bias: bool = True,
) -> torch.Tensor:
    """Exact kernel ``Φ(x_i, z_j)`` for all pairs: ``x`` ``(N1, d)``, ``z`` ``(N2, d)`` →
    ``(N1, N2)`` in the dtype of the inputs (both float32 or both float64). ``z=None`` (or
    ``z is x``) gives ``Φ(x, x)``.

    Closed form (NeurIPS24 arXiv:2410.23677): ``ρ = (x·z/d + 1)/√((‖x‖²/d + 1)(‖z‖²/d + 1))``, ``θ
    = arccos ρ``,
    ``Φ = γ + (1 − γ)² (π − θ)/(2π)`` with ``γ = slope``. Rows of ``x`` are processed
    ``chunk_size`` at a time (temporaries stay within ``chunk_size × N2`` entries besides the
    output); the result does not depend on ``chunk_size``, bit for bit. For ``Φ(x, x)`` only
    the upper triangle is computed and mirrored (the result is exactly symmetric) and the
    diagonal is exactly ``γ + (1 − γ)²/2``.

    ``bias=False`` gives the kernel of the bias-free ICLR24 network (``b = 0``, any weight
    scale): ``ρ = x·z/(‖x‖‖z‖)``.
    """
    if z is None:
        z = x
    _check_pair(x, z, slope)
    _check_chunk(chunk_size)
    if x is z:
        return _phi_symmetric(x, slope, chunk_size, bias)
    chunk = -(-chunk_size // ROW_ALIGN) * ROW_ALIGN
    rows_padded = -(-x.shape[0] // ROW_ALIGN) * ROW_ALIGN
    dtype = torch.result_type(x, z)
    # Padded rows, so that each chunk's GEMM writes straight into the output (aligned rows,
    # see phi_blocks); the returned view drops the padding and is contiguous.
    out = torch.empty(rows_padded, z.shape[0], dtype=dtype, device=x.device)
    z_unit_t = _unit_rows(z, bias).T.contiguous()
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        x_unit = _padded_unit_rows(x[start:stop], bias, -(-(stop - start) // ROW_ALIGN) * ROW_ALIGN)
        block = out[start : start + x_unit.shape[0]]
        torch.mm(x_unit, z_unit_t, out=block)
        _phi_from_rho_(block, slope)
    return out[: x.shape[0]]


def phi_matmul(
    x: torch.Tensor,
    z: torch.Tensor,
    v: torch.Tensor,
    slope: float,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    combine: Callable[[slice, torch.Tensor], torch.Tensor] | None = None,
    bias: bool = True,
) -> torch.Tensor:
    """``Φ(x, z) @ v`` without materializing ``Φ``: ``x`` ``(N1, d)``, ``z`` ``(N2, d)``, ``v``
    ``(N2,)`` or ``(N2, k)`` → ``(N1,)`` or ``(N1, k)``.

    ``combine(rows, block)``, if given, maps each kernel block ``Φ(x[rows], z)`` to the matrix
    that multiplies ``v`` (e.g. an elementwise product with ``x[rows] @ z.T``), so sums like
    ``Σ_n c_n Φ(x_i, z_n) ⟨z_n, x_i⟩`` also stay chunked. At most one ``chunk_size × N2``
    block lives at a time.
    """
    if v.shape[0] != z.shape[0]:
        raise ValueError(f"phi_matmul: v has {v.shape[0]} rows but z has {z.shape[0]}")
    out = torch.empty((x.shape[0], *v.shape[1:]), dtype=v.dtype, device=v.device)
    for rows, block in phi_blocks(x, z, slope, chunk_size, bias=bias):
        if combine is not None:
            block = combine(rows, block)
        out[rows] = block.to(v.dtype) @ v
    return out


def phi_diagonal(slope: float) -> float:
    """``Φ(x, x) = γ + (1 − γ)²/2`` for every ``x`` (θ = 0)."""
    return slope + (1.0 - slope) ** 2 / 2.0


def phi_monte_carlo(
    x: torch.Tensor,
    z: torch.Tensor,
    slope: float,
    *,
    draws: int = 1000,
    generator: torch.Generator | None = None,
    batch: int | None = None,
    bias: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo estimate of ``Φ(x_i, z_j)`` from ``draws`` samples ``w ~ N(0, I/d)``,
    ``b ~ N(0, 1)`` shared by all pairs (the reference code uses 1000 draws).

    Returns ``(mean, standard_error)``, both ``(N1, N2)`` in the inputs' dtype. Draws come from
    ``generator`` (on the CPU) in batches of ``batch`` (default: about 2²⁴ activation entries
    per batch, at most 2¹⁸ draws) so memory stays bounded.
    """
    _check_pair(x, z, slope)
    if draws < 2:
        raise ValueError(f"phi_monte_carlo needs at least 2 draws, got {draws}")
    dim = x.shape[1]
    dtype = torch.result_type(x, z)
    total = torch.zeros(x.shape[0], z.shape[0], dtype=dtype, device=x.device)
    total_sq = torch.zeros_like(total)
    if batch is None:
        batch = max(1024, min(1 << 18, (1 << 24) // (x.shape[0] + z.shape[0])))
    if batch < 1:
        raise ValueError(f"phi_monte_carlo batch must be positive, got {batch}")
    done = 0
    while done < draws:
        n = min(batch, draws - done)
        w = (torch.randn(n, dim, generator=generator, dtype=dtype) / math.sqrt(dim)).to(x.device)
        b = torch.randn(n, generator=generator, dtype=dtype).to(x.device) * float(bias)
        dx = torch.where(x @ w.T + b >= 0, 1.0, slope).to(dtype)  # (N1, n)
        dz = torch.where(z @ w.T + b >= 0, 1.0, slope).to(dtype)  # (N2, n)
        total += dx @ dz.T
        total_sq += (dx * dx) @ (dz * dz).T
        done += n
    mean = total / draws
    variance = (total_sq / draws - mean**2).clamp_min(0.0) * draws / (draws - 1)
    return mean, torch.sqrt(variance / draws)
