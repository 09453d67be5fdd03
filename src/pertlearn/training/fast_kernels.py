"""One epoch of ``B`` fixed-readout networks with hand-derived gradients (no autograd).

For :class:`~pertlearn.models.TwoLayerNet` / :class:`~pertlearn.models.OneHiddenNet`
(NeurIPS24 arXiv:2410.23677 and ICLR24 arXiv:2402.10470: ``f(x) = Σ_k a_k φ(w_kᵀ x + b_k)``
with a fixed readout ``a`` and LeakyReLU ``φ`` of slope ``γ``) and a margin loss:

* forward: ``Z = X Wᵀ + b`` (``(N, m)``), ``f = φ(Z) a`` (``(N,)``), ``s = -y f``, loss
  ``L = (1/N) Σ_n ℓ(s_n)``;
* gradients: ``∂L/∂f_n = -y_n ℓ'(s_n) / N =: c_n``, ``G = (c aᵀ) ⊙ φ'(Z)`` with
  ``φ'(u) = 1`` for ``u > 0`` else ``γ`` (autograd's convention at 0), ``∇W = Gᵀ X``,
  ``∇b = Σ_n G_n``;
* ``torch.optim.SGD`` with momentum ``μ`` (no dampening, no Nesterov, no weight decay):
  ``v ← μ v + ∇`` (``v = ∇`` at the first step, the same as starting from ``v = 0``),
  ``θ ← θ - lr v``;
* the per-sample loss weights ``Σ_t lr_t ℓ'(s_n(t))``.

:class:`BatchedNetworks` holds the preallocated buffers; every configuration has a leading
dimension ``B``.
"""

from __future__ import annotations

import torch
from torch import nn

from pertlearn.training.fast_incremental import IncrementalState


def margin_value_and_derivative(s: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``ℓ(s)`` and ``ℓ'(s)`` elementwise (losses of :mod:`pertlearn.training.losses`)."""
    if loss == "identity":
        return s, torch.ones_like(s)
    if loss == "logistic":
        return torch.nn.functional.softplus(s), torch.sigmoid(s)
    if loss == "exponential":
        e = torch.exp(s)
        return e, e
    raise ValueError(f"fast training supports margin losses only, got {loss!r}")


class BatchedNetworks:
    """Buffers and per-epoch computations for ``B`` networks trained in place.

    Inputs ``x`` ``(N, d)`` (shared) or ``(B, N, d)``; labels ``y`` ±1 ``(B, N)``; ``weight``
    ``(B, m, d)`` and ``bias`` ``(B, m)`` (or None) are updated in place; ``readout`` ``(B, m)``;
    ``momentum`` ``(B,)``; ``incremental``: use :mod:`pertlearn.training.fast_incremental`
    (identity loss only).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        readout: torch.Tensor,
        slope: float,
        momentum: torch.Tensor,
        loss: str,
        incremental: bool,
    ) -> None:
        batch, width, _ = weight.shape
        n = y.shape[1]
        device, dtype = weight.device, weight.dtype
        self.weight, self.bias, self.readout, self.slope = weight, bias, readout, slope
        self.x, self.loss, self.batch = x, loss, batch
        self.shared_x = x.ndim == 2
        if self.shared_x:
            # One wide product for all configurations, Z = X [W_1; ...; W_B]ᵀ, stored (N, B, m).
            self.store = torch.empty(n, batch, width, dtype=dtype, device=device)
            self.grad_store = torch.empty_like(self.store)
            self.z, self.grad_z = self.store.transpose(0, 1), self.grad_store.transpose(0, 1)
        else:
            self.z = torch.empty(batch, n, width, dtype=dtype, device=device)
            self.grad_z = torch.empty_like(self.z)
            self.store, self.grad_store = self.z, self.grad_z
        self.grad_w = torch.empty_like(weight)
        self.grad_b = None if bias is None else torch.zeros_like(bias)
        self.velocity_w = torch.zeros_like(weight)
        self.velocity_b = None if bias is None else torch.zeros_like(bias)
        self.loss_weights = torch.zeros(batch, n, dtype=dtype, device=device)
        self.neg_y = -y
        self.scale = -y / n  # ∂L/∂f = -y ℓ'(s) / N
        self.momentum = momentum.to(dtype).view(batch, 1, 1)
        self._rates: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.readout_col = readout.unsqueeze(-1)  # (B, m, 1)
        self.readout_row = readout.unsqueeze(1)  # (B, 1, m)
        self.incremental = (
            IncrementalState(self.store, x, self.shared_x)
            if incremental and loss == "identity"
            else None
        )
        self._hidden_store = self.store

    def pre_activations(self) -> None:
        """``Z = X Wᵀ + b`` from scratch (the bias fused into the product)."""
        x, weight, bias = self.x, self.weight, self.bias
        if self.shared_x:
            flat = self.store.view(x.shape[0], -1)
            weight_flat = weight.view(-1, weight.shape[2])
            if bias is not None:
                torch.addmm(bias.view(-1), x, weight_flat.T, out=flat)
            else:
                torch.mm(x, weight_flat.T, out=flat)
        elif bias is not None:
            torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2), out=self.z)
        else:
            torch.bmm(x, weight.transpose(1, 2), out=self.z)

    def forward(self, block_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch loss ``(B,)`` in float64 (as ``loss.item()`` gives it) and ``ℓ'(s)``
        ``(B, N)``. ``Z`` is recomputed every epoch, or under the incremental scheme only at
        the start of a block."""
        if self.incremental is None or block_start:
            self.pre_activations()
        self._hidden_store = nn.functional.leaky_relu(self.store, self.slope)
        hidden = self._hidden_store.transpose(0, 1) if self.shared_x else self._hidden_store
        scores = torch.bmm(hidden, self.readout_col).squeeze(-1)  # (B, N)
        value, derivative = margin_value_and_derivative(self.neg_y * scores, self.loss)
        return value.mean(dim=1).to(torch.float64), derivative

    def gradient(self, derivative: torch.Tensor, block_start: bool) -> None:
        """``∇W`` and ``∇b`` at the current ``Z``: patched after a few activation flips under
        the incremental scheme, else computed densely."""
        inc = self.incremental
        if inc is not None and not block_start:
            flips = inc.flips(self.store, self._hidden_store, self.slope)
            if flips.shape[0] == 0:  # no unit flipped: the gradient and P are unchanged
                return
            if flips.shape[0] <= self.weight.shape[0] * self.weight.shape[1] // 2:
                inc.apply_flips(
                    flips, self.scale, self.readout, self.slope, self.x, self.grad_w, self.grad_b
                )
                return
        self.dense_gradient(derivative)
        if inc is not None:
            velocity = (self.velocity_w, self.velocity_b) if block_start else None
            inc.after_dense_gradient(
                self.store,
                self._hidden_store,
                self.slope,
                self.x,
                self.grad_w,
                self.grad_b,
                velocity,
            )

    def dense_gradient(self, derivative: torch.Tensor) -> None:
        """Backward in autograd's order: ``G = (c aᵀ) ⊙ φ'(Z)``, ``c = ∂L/∂f``, ``∇W = Gᵀ X``,
        ``∇b = Σ_n G_n``."""
        torch.mul((self.scale * derivative).unsqueeze(-1), self.readout_row, out=self.grad_z)
        # φ'(Z) with autograd's own (vectorized) kernel: grad where Z > 0, else γ·grad.
        torch.ops.aten.leaky_relu_backward.grad_input(
            self.grad_z, self.z, self.slope, False, grad_input=self.grad_z
        )
        if self.shared_x:
            n = self.x.shape[0]
            grad_flat = self.grad_store.view(n, -1)
            torch.mm(grad_flat.T, self.x, out=self.grad_w.view(-1, self.grad_w.shape[2]))
        else:
            torch.bmm(self.grad_z.transpose(1, 2), self.x, out=self.grad_w)
        if self.grad_b is not None:
            torch.sum(self.grad_z, dim=1, out=self.grad_b)

    def step(self, step_lr: torch.Tensor, derivative: torch.Tensor) -> None:
        """Momentum SGD with learning rates ``step_lr`` (``(B,)`` float64, 0 for stopped
        configurations), and the loss weights ``+= lr ℓ'(s)``."""
        batch = self.batch
        lr, neg_lr = self._rates_in_dtype(step_lr)
        self.velocity_w.mul_(self.momentum).add_(self.grad_w)
        self.weight.addcmul_(self.velocity_w, neg_lr.view(batch, 1, 1))
        if self.bias is not None and self.velocity_b is not None and self.grad_b is not None:
            self.velocity_b.mul_(self.momentum.view(batch, 1)).add_(self.grad_b)
            self.bias.addcmul_(self.velocity_b, neg_lr.view(batch, 1))
        if self.incremental is not None:
            self.incremental.advance(self.z, self.momentum, neg_lr.view(batch, 1, 1))
        self.loss_weights.addcmul_(derivative, lr.view(batch, 1))

    def _rates_in_dtype(self, step_lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``step_lr`` and ``-step_lr`` in the weights' dtype, converted again only when the
        schedule hands over another tensor (the host schedule keeps one until a rate changes)."""
        if self._rates is None or self._rates[0] is not step_lr:
            dtype = self.weight.dtype
            self._rates = (step_lr, step_lr.to(dtype), (-step_lr).to(dtype))
        return self._rates[1], self._rates[2]

    def largest_weight(self) -> torch.Tensor:
        """``max |w|`` over each configuration's weights and biases, ``(B,)`` (NaN if any is)."""
        largest = self.weight.abs().amax(dim=(1, 2))
        if self.bias is not None:
            largest = torch.maximum(largest, self.bias.abs().amax(dim=1))
        return largest
