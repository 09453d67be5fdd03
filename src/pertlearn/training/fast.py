"""Fast full-batch training of the fixed-readout networks with hand-derived gradients.

:func:`~pertlearn.training.fit` (the generic trainer) builds an autograd graph, runs
``torch.optim.SGD`` and reads the loss back to the host every epoch. For the papers' networks
(:class:`~pertlearn.models.TwoLayerNet`, :class:`~pertlearn.models.OneHiddenNet`) with a margin
loss and full batches, every epoch is a handful of tensor operations whose gradients we can
write down (:mod:`pertlearn.training.fast_kernels`), so :func:`fit_batched` trains them without
autograd, with preallocated buffers, and with the ``ReduceLROnPlateau`` rule and the stopping
rules of :mod:`pertlearn.training.schedule` kept on the device
(:mod:`pertlearn.training.fast_schedule`). With the identity loss on the CPU it also skips most
matrix products (:mod:`pertlearn.training.fast_incremental`).

Everything is batched over ``B`` independent configurations (leading dimension), which may
differ in learning rate, momentum, scheduler settings, ``stop_tol`` and epoch count; a single
model is ``B = 1`` (:func:`fast_fit`). :mod:`pertlearn.experiments.batched` uses the batched form
to train a whole sweep at once. Off the CPU, losses are read back to the host every
``check_every`` epochs only (to test for NaN, naming the first bad epoch, and to stop when every
configuration has stopped). Every epoch also records the largest ``|weight|``, so a run whose
weights overflow :data:`~pertlearn.training.divergence.WEIGHT_BOUND` stops at the same epoch as
under :func:`~pertlearn.training.fit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from pertlearn.models import OneHiddenNet, TwoLayerNet
from pertlearn.training.config import TrainConfig, TrainResult
from pertlearn.training.divergence import TrainingDivergedError, diverged_message
from pertlearn.training.fast_kernels import BatchedNetworks
from pertlearn.training.fast_schedule import BatchedTrainResult, DeviceSchedule, HostSchedule
from pertlearn.training.losses import MARGIN_LOSSES
from pertlearn.training.progress import finish_bar

__all__ = [
    "FAST_MODELS",
    "BatchedTrainResult",
    "diverged_message",
    "fast_fit",
    "fit_batched",
    "supports_fast_fit",
]

FAST_MODELS = (TwoLayerNet, OneHiddenNet)

SMALL_WORK = 2**20
"""Elements per operation (configurations × samples × width) up to which the trainer runs on
one CPU thread (see :func:`small_work_threads`)."""


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


def _check_batched_inputs(
    weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor, configs: list[TrainConfig], name: str
) -> str:
    """Check the shapes of :func:`fit_batched`'s arguments; return the shared margin loss."""
    batch, _, dim = weight.shape
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
    return losses_used.pop()


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
        check_every: epochs between host reads of the losses (divergence, early stop) when the
            schedule is kept on the device.
        incremental: use the sparse-update scheme of :mod:`pertlearn.training.fast_incremental`
            (identity loss only; default: on the CPU with the identity loss).
        host_schedule: keep the schedule on the host, reading the losses every epoch
            (default: on the CPU).

    A configuration that diverges stops; its :class:`~pertlearn.training.divergence.Divergence`
    is in the result's ``diverged`` (nothing is raised here).
    """
    loss = _check_batched_inputs(weight, x, y, configs, name)
    batch, width = weight.shape[:2]
    with small_work_threads(batch * y.shape[-1] * width, weight.device):
        device = weight.device
        epochs = max(c.epochs for c in configs)
        momentum = torch.tensor([c.momentum for c in configs], dtype=torch.float64, device=device)
        nets = BatchedNetworks(
            x,
            y,
            weight,
            bias,
            readout,
            slope,
            momentum,
            loss,
            incremental=device.type == "cpu" if incremental is None else incremental,
        )
        if host_schedule is None:
            host_schedule = device.type == "cpu"
        schedule = (
            HostSchedule(configs, device)
            if host_schedule
            else DeviceSchedule(configs, device, epochs)
        )
        bar = tqdm(total=epochs, desc=f"train {name}", disable=not progress, leave=False)
        try:
            for start in range(0, epochs, check_every):
                stop = min(start + check_every, epochs)
                for epoch in range(start, stop):
                    epoch_loss, derivative = nets.forward(block_start=epoch == start)
                    nets.gradient(derivative, block_start=epoch == start)
                    nets.step(schedule.step_lr(), derivative)
                    if schedule.record(epoch, epoch_loss, nets.largest_weight()):
                        break
                finished = schedule.end_block(start, stop)
                if progress:  # before update, whose refresh shows it
                    bar.set_postfix(loss=f"{schedule.last_loss(stop):.4g}", refresh=False)
                bar.update(stop - start)
                if finished:
                    break
            outcome = schedule.outcome(nets.loss_weights)
            finish_bar(bar, max(outcome.epochs_run, default=epochs), epochs)
        finally:
            bar.close()  # no-op after finish_bar; closes the bar when training raised
        return outcome


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
    tolerance), without autograd. Requires :func:`supports_fast_fit`. Raises
    :class:`TrainingDivergedError` naming ``name`` and the epoch when the run diverges."""
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
    diverged = outcome.diverged[0]
    if diverged is not None:
        raise TrainingDivergedError(diverged_message(name, diverged))
    return outcome.result(0)
