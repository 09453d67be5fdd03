"""The incremental scheme of the explicit-gradient trainer (identity loss, mostly on the CPU).

With the identity loss ``ℓ(s) = s`` the loss derivative is constant, ``c_n = ∂L/∂f_n = -y_n/N``,
so the gradient ``∇W_k = a_k Σ_n c_n φ'(Z_nk) x_n`` changes from one epoch to the next only where
a hidden unit's activation pattern ``Z_nk > 0`` flipped. :class:`IncrementalState` keeps

* ``P = X ∇Wᵀ + 1 ∇bᵀ`` and ``Q = X Vᵀ + 1 v_bᵀ`` (``V``, ``v_b``: the momentum velocities),
  laid out like ``Z``, so that the SGD step ``V ← μ V + ∇W``, ``W ← W - lr V`` moves the
  pre-activations by ``Z ← Z - lr Q`` with ``Q ← μ Q + P``, without a matrix product;
* the activation pattern that ``∇W`` and ``P`` belong to, as flat bytes padded to whole 8-byte
  words (flips are found word-wise by :func:`find_flips`);

and :func:`sparse_gradient_update` patches ``∇W``, ``∇b`` and ``P`` after a few flips. The
caller recomputes ``Z`` exactly at the start of every block of epochs (bounding rounding drift).
"""

from __future__ import annotations

import torch

GRAM_BUDGET = 2**28
"""Bytes the incremental scheme may spend on Gram matrices ``X Xᵀ`` (else it multiplies)."""


def project(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, out: torch.Tensor, shared_x: bool
) -> None:
    """``out = X wᵀ + 1 bᵀ`` per configuration: ``x`` ``(N, d)`` or ``(B, N, d)``, ``w``
    ``(B, m, d)``, ``b`` ``(B, m)`` or None; ``out`` is the ``(N, B, m)`` store (shared ``x``)
    or ``(B, N, m)``."""
    if shared_x:
        flat = out.view(x.shape[0], -1)
        if b is None:
            torch.mm(x, w.view(-1, w.shape[-1]).T, out=flat)
        else:
            torch.addmm(b.reshape(-1), x, w.view(-1, w.shape[-1]).T, out=flat)
    elif b is None:
        torch.bmm(x, w.transpose(1, 2), out=out)
    else:
        torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2), out=out)


def pattern(z: torch.Tensor, hidden: torch.Tensor, slope: float, out: torch.Tensor) -> None:
    """``out = (z > 0)`` as flat bools, through a float→bool copy (nonzero → True), which is
    vectorized where a comparison is not: ``φ(z)`` itself for ReLU, else ``max(z, 0)``."""
    out.copy_((hidden if slope == 0 else torch.clamp_min(z, 0)).view(-1))


def find_flips(positive: torch.Tensor, mask: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Flat indices ``(F,)`` where the byte masks ``positive`` and ``mask`` (padded to whole
    8-byte words) differ. Scans 8 bytes at a time: flips are rare, so only the few nonzero words
    are opened."""
    torch.ne(positive, mask, out=flipped)
    as_words = flipped.view(torch.int64)
    if positive.device.type == "cpu" and int(torch.count_nonzero(as_words)) == 0:
        return as_words.new_empty(0)  # most epochs: counting is cheaper than listing
    words = as_words.nonzero().squeeze(1)
    offsets = flipped.view(-1, 8)[words].nonzero()  # (F, 2): word row, byte
    return words[offsets[:, 0]] * 8 + offsets[:, 1]


def sparse_gradient_update(
    flat: torch.Tensor,
    positive: torch.Tensor,
    scale: torch.Tensor,
    readout: torch.Tensor,
    slope: float,
    x: torch.Tensor,
    gram: torch.Tensor | None,
    grad_w: torch.Tensor,
    grad_b: torch.Tensor | None,
    p_all: torch.Tensor,
) -> None:
    """Update ``∇W``, ``∇b`` and ``P = X ∇Wᵀ + 1 ∇bᵀ`` (identity loss) after a few flips.

    The gradient changes only where the activation pattern flipped (``flat``: flat indices into
    the ``(N, B, m)`` store for shared inputs, ``(B, N, m)`` otherwise; ``positive``: the new
    flat pattern): by ``Δ = c_n a_k (±(1 - γ))`` times ``x_n``, and ``P[:, k]`` by
    ``Δ (X x_n + 1)``, where ``X x_n`` is a column of the Gram matrix ``gram = X Xᵀ`` when
    given. ``scale``: ``c = -y/N``, ``(B, N)``. Exact up to rounding.
    """
    batch, n, width = p_all.shape
    shared_x = x.ndim == 2
    if shared_x:
        n_idx, unit = flat // (batch * width), flat % (batch * width)
        b_idx = unit // width
    else:
        b_idx, rest = flat // (n * width), flat % (n * width)
        n_idx = rest // width
        unit = b_idx * width + rest % width  # row of the flattened (B·m, d) gradient
    sign = positive[flat].to(scale.dtype) * 2 - 1  # +1: became positive
    step = sign * (1.0 - slope)  # in the inputs' dtype (a float32 constant would lose bits)
    delta = scale[b_idx, n_idx] * readout.view(-1)[unit] * step  # (F,)
    rows = x[n_idx] if shared_x else x[b_idx, n_idx]  # (F, d)
    grad_w.view(-1, grad_w.shape[2]).index_add_(0, unit, delta.unsqueeze(1) * rows)
    bias = 0.0
    if grad_b is not None:
        grad_b.view(-1).index_add_(0, unit, delta)
        bias = 1.0  # P also carries 1 ∇bᵀ
    if shared_x:
        # P is the (N, B·m) store transposed: add Δ (X x_n + 1) to column b·m + k.
        columns = (gram[n_idx] if gram is not None else rows @ x.T).add_(bias)
        p_store = p_all.transpose(0, 1)
        p_store.view(n, -1).index_add_(1, unit, columns.mul_(delta.unsqueeze(1)).T)
        return
    k_idx = unit % width
    for b in b_idx.unique().tolist():  # per configuration: its own inputs X_b
        sel = (b_idx == b).nonzero().squeeze(1)
        if gram is not None:
            columns = gram[b, n_idx[sel]]  # (F_b, N) rows of the symmetric X_b X_bᵀ
        else:
            columns = rows[sel] @ x[b].T
        columns = columns.add_(bias).mul_(delta[sel].unsqueeze(1))
        p_all[b].index_add_(1, k_idx[sel], columns.T)


class IncrementalState:
    """``P``, ``Q``, the activation masks and the Gram matrix of the incremental scheme for
    pre-activations stored in ``store`` (``(N, B, m)`` for shared inputs ``x`` ``(N, d)``,
    else ``(B, N, m)`` with ``x`` ``(B, N, d)``)."""

    def __init__(self, store: torch.Tensor, x: torch.Tensor, shared_x: bool) -> None:
        self.shared_x = shared_x
        self.p_store, self.q_store = torch.empty_like(store), torch.empty_like(store)
        self.p_all, self.q_all = self.p_store, self.q_store  # (B, N, m) views
        if shared_x:
            self.p_all, self.q_all = self.p_store.transpose(0, 1), self.q_store.transpose(0, 1)
        self.size = store.numel()
        padded = -(-self.size // 8) * 8
        self.mask, self.positive, self.flipped = (
            torch.zeros(padded, dtype=torch.bool, device=store.device) for _ in range(3)
        )
        # X x_n for a flipped sample is a column of X Xᵀ: precompute it when it fits.
        copies = 1 if shared_x else store.shape[0]
        self.gram = None
        if x.shape[-2] ** 2 * copies * x.element_size() <= GRAM_BUDGET:
            self.gram = x @ x.transpose(-1, -2)

    def flips(self, store: torch.Tensor, hidden_store: torch.Tensor, slope: float) -> torch.Tensor:
        """Flat indices ``(F,)`` of the units whose pattern changed since the last gradient."""
        pattern(store, hidden_store, slope, self.positive[: self.size])
        return find_flips(self.positive, self.mask, self.flipped)

    def apply_flips(
        self,
        flips: torch.Tensor,
        scale: torch.Tensor,
        readout: torch.Tensor,
        slope: float,
        x: torch.Tensor,
        grad_w: torch.Tensor,
        grad_b: torch.Tensor | None,
    ) -> None:
        """Patch the gradient and ``P`` for ``flips``; the new pattern becomes the current."""
        sparse_gradient_update(
            flips, self.positive, scale, readout, slope, x, self.gram, grad_w, grad_b, self.p_all
        )
        self.mask, self.positive = self.positive, self.mask

    def after_dense_gradient(
        self,
        store: torch.Tensor,
        hidden_store: torch.Tensor,
        slope: float,
        x: torch.Tensor,
        grad_w: torch.Tensor,
        grad_b: torch.Tensor | None,
        velocity: tuple[torch.Tensor, torch.Tensor | None] | None,
    ) -> None:
        """Record the pattern of a freshly computed gradient and ``P = X ∇Wᵀ + 1 ∇bᵀ``; with
        ``velocity`` (at the start of a block) also ``Q = X Vᵀ + 1 v_bᵀ``."""
        pattern(store, hidden_store, slope, self.mask[: self.size])
        project(x, grad_w, grad_b, self.p_store, self.shared_x)
        if velocity is not None:
            project(x, velocity[0], velocity[1], self.q_store, self.shared_x)

    def advance(self, z: torch.Tensor, momentum: torch.Tensor, neg_lr: torch.Tensor) -> None:
        """``Q ← μ Q + P`` and ``Z ← Z - lr Q`` (``z`` ``(B, N, m)``, ``momentum`` and
        ``neg_lr`` ``(B, 1, 1)``): the pre-activations after the SGD step."""
        torch.addcmul(self.p_all, self.q_all, momentum, out=self.q_all)
        z.addcmul_(self.q_all, neg_lr)
