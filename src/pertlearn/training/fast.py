"""Fast full-batch training of the fixed-readout networks with hand-derived gradients.

:func:`fit` (the generic trainer) builds an autograd graph, runs ``torch.optim.SGD`` and
``ReduceLROnPlateau`` and reads the loss back to the host every epoch. For the papers' networks
(:class:`~pertlearn.models.TwoLayerNet`, :class:`~pertlearn.models.OneHiddenNet`) with a margin
loss and full batches, every epoch is a handful of tensor operations whose gradients we can
write down, so this module trains them without autograd, with preallocated buffers, and with the
optimizer and the scheduler kept on the device:

* forward (spec §2/§3): ``Z = X Wᵀ + b`` (``(N, m)``), ``f = φ(Z) a`` (``(N,)``), ``s = -y f``,
  loss ``L = (1/N) Σ_n ℓ(s_n)``;
* gradients: ``∂L/∂f_n = -y_n ℓ'(s_n) / N =: c_n``, ``G = (c aᵀ) ⊙ φ'(Z)`` with
  ``φ'(u) = 1`` for ``u > 0`` else ``γ`` (autograd's convention at 0), ``∇W = Gᵀ X``,
  ``∇b = Σ_n G_n``;
* ``torch.optim.SGD`` with momentum ``μ`` (no dampening, no Nesterov, no weight decay):
  ``v ← μ v + ∇`` (``v = ∇`` at the first step, which is the same as starting from ``v = 0``),
  ``θ ← θ - lr v``;
* ``ReduceLROnPlateau`` (mode ``min``, relative threshold 1e-4, no cooldown, ``min_lr = 0``,
  ``eps = 1e-8``) on the epoch loss, evaluated in float64 as torch does with Python floats;
* the per-sample loss weights ``Σ_t lr_t ℓ'(s_n(t))`` of :class:`TrainResult`.

Everything is batched over ``B`` independent configurations (leading dimension), which may
differ in learning rate, momentum, scheduler settings, ``stop_tol`` and epoch count; a single
model is ``B = 1``. :mod:`pertlearn.experiments.batched` uses the batched form to train a whole
sweep at once. Losses are read back to the host every ``check_every`` epochs only (to test for
NaN, naming the first bad epoch, and to stop when every configuration has stopped).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from pertlearn.errors import TrainingDivergedError
from pertlearn.models import OneHiddenNet, TwoLayerNet
from pertlearn.training.losses import MARGIN_LOSSES
from pertlearn.training.train_config import TrainConfig, TrainResult

SMALL_WORK = 2**20
"""Elements per operation (configurations × samples × width) up to which the trainer runs on
one CPU thread (see :func:`small_work_threads`)."""

PLATEAU_THRESHOLD = 1e-4
"""``ReduceLROnPlateau`` default relative threshold (mode ``min``)."""
PLATEAU_EPS = 1e-8
"""``ReduceLROnPlateau`` default ``eps``: smaller learning-rate changes are skipped."""
FAST_MODELS = (TwoLayerNet, OneHiddenNet)


def supports_fast_fit(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig
) -> bool:
    """True when :func:`fast_fit` computes exactly what :func:`~pertlearn.training.fit` would:
    a :class:`TwoLayerNet` or :class:`OneHiddenNet` (not a subclass, whose forward may differ)
    with its usual trainable parameters, a margin loss, full batches, inputs ``(N, d)``."""
    if type(model) not in FAST_MODELS or config.loss not in MARGIN_LOSSES:
        return False
    if config.batch_size is not None and config.batch_size < x.shape[0]:
        return False
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[1] != model.in_dim:
        return False
    params = [p for p in model.parameters() if p.requires_grad]
    expected = [model.weight] + ([model.bias] if isinstance(model, TwoLayerNet) else [])
    if len(params) != len(expected) or any(
        p is not q for p, q in zip(params, expected, strict=True)
    ):
        return False
    dtypes = {x.dtype, y.dtype, model.weight.dtype}
    return len(dtypes) == 1 and x.dtype in (torch.float32, torch.float64)


@dataclass
class BatchedTrainResult:
    """What :func:`fit_batched` records for ``B`` configurations trained together.

    ``losses``: float64 ``(E, B)`` on the host, the loss of each epoch (valid up to
    ``epochs_run[b]``); ``epochs_run``: ``(B,)`` ints; ``loss_weights``: ``(B, N)`` on the
    device; ``diverged``: for each configuration ``None`` or ``(epoch, lr, loss)`` of the first
    epoch (1-based) whose loss was not finite (its later values are meaningless); ``final_lr``:
    each configuration's learning rate after training (after the scheduler's reductions)."""

    losses: torch.Tensor
    epochs_run: list[int]
    loss_weights: torch.Tensor
    diverged: list[tuple[int, float, float] | None]
    final_lr: list[float]

    def result(self, b: int) -> TrainResult:
        """The :class:`TrainResult` of configuration ``b`` (as :func:`fit` returns it)."""
        n = self.epochs_run[b]
        return TrainResult(
            losses=self.losses[:n, b].tolist(),
            epochs_run=n,
            loss_weights=self.loss_weights[b].clone(),
            final_lr=self.final_lr[b],
        )


def _margin_value_and_derivative(s: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``ℓ(s)`` and ``ℓ'(s)`` elementwise (losses of :mod:`pertlearn.training.losses`)."""
    if loss == "identity":
        return s, torch.ones_like(s)
    if loss == "logistic":
        return torch.nn.functional.softplus(s), torch.sigmoid(s)
    if loss == "exponential":
        e = torch.exp(s)
        return e, e
    raise ValueError(f"fast training supports margin losses only, got {loss!r}")


def _per_config(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, device=device)


class _HostSchedule:
    """``ReduceLROnPlateau`` and the stopping rules of :func:`~pertlearn.training.fit` on the host
    in Python floats (exactly torch's arithmetic), for CPU tensors where reading the loss costs
    nothing; on other devices :func:`fit_batched` keeps the same logic on the device."""

    def __init__(self, configs: list[TrainConfig]) -> None:
        count = len(configs)
        self.configs = configs
        self.lr = [c.lr for c in configs]
        self.best = [math.inf] * count
        self.bad = [0] * count
        self.previous = [math.inf] * count
        self.active = [True] * count
        self.epochs_run = [0] * count
        self.losses: list[list[float]] = []
        self.diverged: list[tuple[int, float, float] | None] = [None] * count

    def step(self, epoch: int, losses: list[float]) -> bool:
        """Record the losses of ``epoch`` (0-based); True when a learning rate or an active flag
        changed."""
        self.losses.append(losses)
        changed = False
        for b, (config, current) in enumerate(zip(self.configs, losses, strict=True)):
            if not self.active[b]:
                continue
            self.epochs_run[b] = epoch + 1
            if not math.isfinite(current):
                self.diverged[b] = (epoch + 1, self.lr[b], current)
                self.epochs_run[b] = epoch
                self.active[b], changed = False, True
                continue
            if config.plateau_patience is not None:
                if current < self.best[b] * (1 - PLATEAU_THRESHOLD):
                    self.best[b], self.bad[b] = current, 0
                else:
                    self.bad[b] += 1
                if self.bad[b] > config.plateau_patience:
                    reduced = max(self.lr[b] * config.plateau_factor, 0.0)
                    if self.lr[b] - reduced > PLATEAU_EPS:
                        self.lr[b], changed = reduced, True
                    self.bad[b] = 0
            stop = config.epochs == epoch + 1
            if config.stop_tol is not None and math.isfinite(self.previous[b]):
                change = abs(self.previous[b] - current) / max(abs(self.previous[b]), 1e-30)
                stop = stop or change < config.stop_tol
            self.previous[b] = current
            if stop:
                self.active[b], changed = False, True
        return changed

    def step_lr(self, device: torch.device) -> torch.Tensor:
        """Learning rates of the next step, 0 for inactive configurations, float64 ``(B,)``."""
        rates = [lr if on else 0.0 for lr, on in zip(self.lr, self.active, strict=True)]
        return torch.tensor(rates, dtype=torch.float64, device=device)


def fit_batched(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    readout: torch.Tensor,
    slope: float,
    x: torch.Tensor,
    y: torch.Tensor,
    configs: list[TrainConfig],
    *,
    check_every: int = 50,
    progress: bool = False,
    name: str = "model",
    incremental: bool | None = None,
    host_schedule: bool | None = None,
) -> BatchedTrainResult:
    """Train ``B`` fixed-readout networks in place by full-batch SGD (see the module docstring).

    Args:
        weight: ``(B, m, d)`` first-layer weights, updated in place.
        bias: ``(B, m)`` biases updated in place, or None (OneHiddenNet: no bias).
        readout: ``(B, m)`` fixed readouts ``a``.
        slope: LeakyReLU slope ``γ`` shared by all configurations.
        x: inputs, ``(B, N, d)`` (one set per configuration) or ``(N, d)`` (shared).
        y: labels ±1, ``(B, N)``.
        configs: ``B`` train configs sharing one margin ``loss``; full batch.
        check_every: epochs between host reads of the losses (NaN check, early stop).
        incremental: use the sparse-update scheme of :func:`_sparse_gradient_update` (identity
            loss only; default: on the CPU with the identity loss).
    """
    batch, width = weight.shape[:2]
    with small_work_threads(batch * y.shape[-1] * width, weight.device):
        return _fit_batched(
            weight,
            bias,
            readout,
            slope,
            x,
            y,
            configs,
            check_every=check_every,
            progress=progress,
            name=name,
            incremental=incremental,
            host_schedule=host_schedule,
        )


@contextmanager
def small_work_threads(elements: int, device: torch.device) -> Iterator[None]:
    """Run the block on one CPU thread when each of its operations touches at most
    :data:`SMALL_WORK` elements (restoring the thread count after): such operations last
    microseconds, and splitting them across threads costs more in synchronisation than it
    saves (far more on a busy machine, where a thread waits for a time slice at every
    operation). Elementwise results are identical; reductions may differ in the last bits."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or elements > SMALL_WORK:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit_batched(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    readout: torch.Tensor,
    slope: float,
    x: torch.Tensor,
    y: torch.Tensor,
    configs: list[TrainConfig],
    *,
    check_every: int = 50,
    progress: bool = False,
    name: str = "model",
    incremental: bool | None = None,
    host_schedule: bool | None = None,
) -> BatchedTrainResult:
    batch, width, dim = weight.shape
    n = y.shape[1]
    if len(configs) != batch or y.shape[0] != batch:
        raise ValueError(
            f"{name}: {batch} weight sets, {len(configs)} configs, {y.shape[0]} label sets"
        )
    if x.shape[-2:] != (n, dim) or (x.ndim == 3 and x.shape[0] != batch) or x.ndim not in (2, 3):
        raise ValueError(
            f"{name}: inputs of shape {tuple(x.shape)} do not match ({batch}, {n}, {dim})"
        )
    losses_used = {c.loss for c in configs}
    if len(losses_used) != 1:
        raise ValueError(
            f"{name}: configurations trained together must share one loss, got {losses_used}"
        )
    loss = losses_used.pop()
    device, dtype = weight.device, weight.dtype
    epochs = max(c.epochs for c in configs)
    shared_x = x.ndim == 2

    # Per-configuration hyper-parameters and scheduler state (float64 like torch's Python floats).
    lr = _per_config([c.lr for c in configs], device)
    momentum = torch.tensor([c.momentum for c in configs], dtype=dtype, device=device)
    plateau = torch.tensor([c.plateau_patience is not None for c in configs], device=device)
    patience = _per_config(
        [math.inf if c.plateau_patience is None else c.plateau_patience for c in configs], device
    )
    factor = _per_config([c.plateau_factor for c in configs], device)
    stop_tol = _per_config([0.0 if c.stop_tol is None else c.stop_tol for c in configs], device)
    has_stop = torch.tensor([c.stop_tol is not None for c in configs], device=device)
    last_epoch = torch.tensor([c.epochs for c in configs], device=device)
    best = torch.full((batch,), math.inf, dtype=torch.float64, device=device)
    bad_epochs = torch.zeros(batch, dtype=torch.float64, device=device)
    previous = torch.full((batch,), math.inf, dtype=torch.float64, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    epochs_run = torch.zeros(batch, dtype=torch.int64, device=device)

    # Preallocated buffers.
    if shared_x:
        # One wide product for all configurations, Z = X [W_1; ...; W_B]ᵀ, stored as (N, B, m).
        z_store = torch.empty(n, batch, width, dtype=dtype, device=device)
        grad_store = torch.empty_like(z_store)
        z, grad_z = z_store.transpose(0, 1), grad_store.transpose(0, 1)
        z_flat, grad_flat = z_store.view(n, batch * width), grad_store.view(n, batch * width)
    else:
        z = torch.empty(batch, n, width, dtype=dtype, device=device)
        grad_z = torch.empty_like(z)
    grad_w = torch.empty_like(weight)
    velocity_w = torch.zeros_like(weight)
    velocity_b = None if bias is None else torch.zeros_like(bias)
    weights = torch.zeros(batch, n, dtype=dtype, device=device)
    loss_history = torch.empty(epochs, batch, dtype=torch.float64, device=device)
    lr_history = torch.empty(epochs, batch, dtype=torch.float64, device=device)
    readout_col = readout.unsqueeze(-1)  # (B, m, 1)
    readout_row = readout.unsqueeze(1)  # (B, 1, m)
    scale = -y / n  # ∂L/∂f = -y ℓ'(s) / N
    momentum_v = momentum.view(batch, 1, 1)
    weight_flat = weight.view(batch * width, dim)
    grad_w_flat = grad_w.view(batch * width, dim)
    bias_flat = None if bias is None else bias.view(batch * width)
    grad_b = None if bias is None else torch.zeros_like(bias)
    if incremental is None:
        incremental = device.type == "cpu"
    incremental = incremental and loss == "identity"
    if incremental:
        # P = X ∇Wᵀ + 1 ∇bᵀ and Q = X Vᵀ + 1 v_bᵀ (V, v_b: the velocities), laid out like Z
        # in ``store``; the activation pattern Z > 0 that ∇W and P belong to, as flat bytes
        # padded to whole 8-byte words (flips are found word-wise, see _find_flips).
        store = z_store if shared_x else z
        p_store, q_store = torch.empty_like(store), torch.empty_like(store)
        p_all, q_all = p_store, q_store
        if shared_x:
            p_all, q_all = p_store.transpose(0, 1), q_store.transpose(0, 1)
        size = store.numel()
        padded = -(-size // 8) * 8
        mask, positive, flipped = (
            torch.zeros(padded, dtype=torch.bool, device=device) for _ in range(3)
        )
        # X x_n for a flipped sample is a column of X Xᵀ: precompute it when it fits.
        gram = None
        if x.shape[-2] ** 2 * (1 if shared_x else batch) * x.element_size() <= GRAM_BUDGET:
            gram = x @ x.transpose(-1, -2)

    diverged: list[tuple[int, float, float] | None] = [None] * batch
    if host_schedule is None:
        host_schedule = device.type == "cpu"
    host = _HostSchedule(configs) if host_schedule else None
    if host is not None:
        step_lr = host.step_lr(device)
        neg_lr = (-step_lr).to(dtype)
    neg_y = -y
    bar = tqdm(total=epochs, desc=f"train {name}", disable=not progress, leave=False)
    start = 0
    while start < epochs:
        stop = min(start + check_every, epochs)
        for epoch in range(start, stop):
            # Forward: Z = X Wᵀ + b (bias fused into the product), f = φ(Z) a. The incremental
            # scheme recomputes Z only at the first epoch of each block (bounding rounding drift).
            fresh = not incremental or epoch == start
            if fresh:
                if shared_x and bias_flat is not None:
                    torch.addmm(bias_flat, x, weight_flat.T, out=z_flat)
                elif shared_x:
                    torch.mm(x, weight_flat.T, out=z_flat)
                elif bias is not None:
                    torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2), out=z)
                else:
                    torch.bmm(x, weight.transpose(1, 2), out=z)
            hidden_store = nn.functional.leaky_relu(z_store if shared_x else z, slope)
            hidden = hidden_store.transpose(0, 1) if shared_x else hidden_store
            scores = torch.bmm(hidden, readout_col).squeeze(-1)  # (B, N)
            s = neg_y * scores
            value, derivative = _margin_value_and_derivative(s, loss)
            epoch_loss = value.mean(dim=1).to(torch.float64)  # as loss.item() does
            dense = True
            if incremental and not fresh:
                _pattern(store, hidden_store, slope, positive[:size])
                flips = _find_flips(positive, mask, flipped)
                if flips.shape[0] == 0:  # no unit flipped: the gradient and P are unchanged
                    dense = False
                elif flips.shape[0] <= batch * width // 2:
                    _sparse_gradient_update(
                        flips, positive, scale, readout, slope, x, gram, grad_w, grad_b, p_all
                    )
                    mask, positive = positive, mask
                    dense = False
            if dense:
                # Backward, in autograd's order: G = (c aᵀ) ⊙ φ'(Z), c = ∂L/∂f, ∇W = Gᵀ X.
                torch.mul((scale * derivative).unsqueeze(-1), readout_row, out=grad_z)
                # φ'(Z) with autograd's own (vectorized) kernel: grad where Z > 0, else γ·grad.
                torch.ops.aten.leaky_relu_backward.grad_input(
                    grad_z, z, slope, False, grad_input=grad_z
                )
                if shared_x:
                    torch.mm(grad_flat.T, x, out=grad_w_flat)
                else:
                    torch.bmm(grad_z.transpose(1, 2), x, out=grad_w)
                if grad_b is not None:
                    torch.sum(grad_z, dim=1, out=grad_b)
                if incremental:
                    _pattern(store, hidden_store, slope, mask[:size])
                    _project(x, grad_w, grad_b, p_store, shared_x)  # P = X ∇Wᵀ + 1 ∇bᵀ
                    if fresh:  # Q = X Vᵀ + 1 v_bᵀ, velocities before this step
                        _project(x, velocity_w, velocity_b, q_store, shared_x)
            # Momentum SGD; inactive (stopped) configurations take no step.
            if host is None:
                step_lr = torch.where(active, lr, 0.0)
                neg_lr = (-step_lr).to(dtype)
            velocity_w.mul_(momentum_v).add_(grad_w)
            weight.addcmul_(velocity_w, neg_lr.view(batch, 1, 1))
            if bias is not None and velocity_b is not None and grad_b is not None:
                velocity_b.mul_(momentum.view(batch, 1)).add_(grad_b)
                bias.addcmul_(velocity_b, neg_lr.view(batch, 1))
            if incremental:
                # Z ← Z - lr (X Vᵀ + 1 v_bᵀ) = Z - lr Q with Q ← μ Q + P (no product needed).
                torch.addcmul(p_all, q_all, momentum_v, out=q_all)
                z.addcmul_(q_all, neg_lr.view(batch, 1, 1))
            weights.addcmul_(derivative, step_lr.to(dtype).view(batch, 1))
            if host is not None:
                if host.step(epoch, epoch_loss.tolist()):
                    step_lr = host.step_lr(device)
                    neg_lr = (-step_lr).to(dtype)
                    if not any(host.active):
                        break
                continue
            loss_history[epoch] = epoch_loss
            lr_history[epoch] = lr
            # ReduceLROnPlateau(mode="min", threshold_mode="rel") on the epoch loss.
            better = epoch_loss < best * (1 - PLATEAU_THRESHOLD)
            best = torch.where(better, epoch_loss, best)
            bad_epochs = torch.where(better, 0.0, bad_epochs + 1)
            reduce = plateau & active & (bad_epochs > patience)
            reduced = lr * factor
            lr = torch.where(reduce & (lr - reduced > PLATEAU_EPS), reduced, lr)
            bad_epochs = torch.where(reduce, 0.0, bad_epochs)
            # Stopping: relative change below stop_tol, or this configuration's last epoch.
            change = (previous - epoch_loss).abs() / previous.abs().clamp_min(1e-30)
            stopping = (has_stop & torch.isfinite(previous) & (change < stop_tol)) | (
                last_epoch == epoch + 1
            )
            epochs_run = torch.where(active, epoch + 1, epochs_run)
            previous = epoch_loss
            active = active & ~stopping
        if host is not None:
            bar.update(stop - start)
            start = stop
            if not any(host.active):
                break
            continue
        # Host read once per block: NaN check (naming the first bad epoch), early exit.
        block = loss_history[start:stop].cpu()
        runs = epochs_run.cpu()
        for b in range(batch):
            if diverged[b] is not None:
                continue
            valid = block[: max(0, int(runs[b]) - start), b]
            bad = (~torch.isfinite(valid)).nonzero()
            if bad.numel():
                epoch_index = start + int(bad[0])
                bad_loss = float(block[epoch_index - start, b])
                diverged[b] = (epoch_index + 1, float(lr_history[epoch_index, b]), bad_loss)
        if any(d is not None for d in diverged):
            active &= torch.tensor([d is None for d in diverged], device=device)
        bar.update(stop - start)
        if progress:
            bar.set_postfix(loss=f"{float(block[-1, 0]):.4g}", refresh=False)
        start = stop
        if not bool(active.any()):
            break
    bar.close()
    if host is not None:
        history = torch.tensor(host.losses, dtype=torch.float64).reshape(-1, batch)
        final = [float(v) for v in host.lr]
        return BatchedTrainResult(history, host.epochs_run, weights, host.diverged, final)
    runs_list = [int(r) for r in epochs_run.cpu()]
    for b, d in enumerate(diverged):
        if d is not None:
            runs_list[b] = d[0] - 1
    return BatchedTrainResult(loss_history.cpu(), runs_list, weights, diverged, lr.tolist())


def _project(
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


def _pattern(z: torch.Tensor, hidden: torch.Tensor, slope: float, out: torch.Tensor) -> None:
    """``out = (z > 0)`` as flat bools, through a float→bool copy (nonzero → True), which is
    vectorized where a comparison is not: ``φ(z)`` itself for ReLU, else ``max(z, 0)``."""
    out.copy_((hidden if slope == 0 else torch.clamp_min(z, 0)).view(-1))


def _find_flips(positive: torch.Tensor, mask: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Flat indices ``(F,)`` where the byte masks ``positive`` and ``mask`` (padded to whole
    8-byte words) differ. Scans 8 bytes at a time: flips are rare, so only the few nonzero words
    are opened."""
    torch.ne(positive, mask, out=flipped)
    words = flipped.view(torch.int64).nonzero().squeeze(1)
    offsets = flipped.view(-1, 8)[words].nonzero()  # (F, 2): word row, byte
    return words[offsets[:, 0]] * 8 + offsets[:, 1]


def _sparse_gradient_update(
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

    With the identity loss ``c_n = ∂L/∂f_n = -y_n/N`` is constant, so the gradient
    ``∇W_k = a_k Σ_n c_n φ'(Z_nk) x_n`` changes only where the activation pattern flipped
    (``flat``: flat indices into the ``(N, B, m)`` store for shared inputs, ``(B, N, m)``
    otherwise; ``positive``: the new flat pattern): by ``Δ = c_n a_k (±(1 - γ))`` times
    ``x_n``, and ``P[:, k]`` by ``Δ (X x_n + 1)``, where ``X x_n`` is a column of the Gram
    matrix ``gram = X Xᵀ`` when given. Exact up to rounding; the caller recomputes everything
    densely at the start of each block.
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


GRAM_BUDGET = 2**28
"""Bytes the incremental scheme may spend on Gram matrices ``X Xᵀ`` (else it multiplies)."""


def diverged_message(name: str, epoch: int, lr: float, loss: float) -> str:
    """The error message of :class:`TrainingDivergedError` (same wording as :func:`fit`)."""
    return (
        f"training of {name} diverged at epoch {epoch}: the loss is {loss}; "
        f"lower the learning rate (now {lr:g}) or use a bounded loss"
    )


def fast_fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    name: str = "model",
    progress: bool = False,
    check_every: int = 50,
) -> TrainResult:
    """Train a :class:`TwoLayerNet` / :class:`OneHiddenNet` in place like
    :func:`~pertlearn.training.fit` (same :class:`TrainResult`, same numbers to float
    tolerance), without autograd. Requires :func:`supports_fast_fit`."""
    if not supports_fast_fit(model, x, y, config):
        raise ValueError(
            f"{name}: fast training needs a TwoLayerNet/OneHiddenNet, a margin loss, full batches"
        )
    assert isinstance(model, TwoLayerNet | OneHiddenNet)
    model.train()
    with torch.no_grad():
        weight = model.weight.detach().unsqueeze(0)
        bias = model.bias.detach().unsqueeze(0) if isinstance(model, TwoLayerNet) else None
        outcome = fit_batched(
            weight,
            bias,
            model.readout.unsqueeze(0),
            model.slope,
            x.detach(),
            y.detach().unsqueeze(0),
            [config],
            check_every=check_every,
            progress=progress,
            name=name,
        )
    model.eval()
    if outcome.diverged[0] is not None:
        raise TrainingDivergedError(diverged_message(name, *outcome.diverged[0]))
    return outcome.result(0)
