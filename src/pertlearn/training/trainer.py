"""Gradient-descent training of f and g (full batch by default, as in both papers).

:func:`fit` runs SGD with momentum on the mean training loss, optionally with the
``ReduceLROnPlateau`` rule of :mod:`pertlearn.training.schedule` on that loss, records the loss
curve, and stops with :class:`TrainingDivergedError` when the loss becomes NaN or infinite or
the weights overflow (:mod:`pertlearn.training.divergence`). Full-batch gradient descent stands
in for the gradient flow of the theory; ``batch_size`` switches to shuffled mini-batches. The
papers' networks with a margin loss and full batches take the explicit-gradient path of
:mod:`pertlearn.training.fast` (same results to float tolerance).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from pertlearn.training import fast as explicit  # module attributes, so tests can patch them
from pertlearn.training.config import TrainConfig, TrainResult
from pertlearn.training.divergence import TrainingDivergedError, check_epoch
from pertlearn.training.losses import margin_loss_derivative, per_sample_loss
from pertlearn.training.progress import finish_bar
from pertlearn.training.schedule import PlateauScheduler, stop_by_tolerance

__all__ = ["TrainConfig", "TrainResult", "TrainingDivergedError", "fit"]


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    generator: torch.Generator | None = None,
    name: str = "model",
    progress: bool = False,
    fast: bool = True,
) -> TrainResult:
    """Train ``model`` in place on inputs ``x`` (shape ``(N, ...)``) and labels ``y`` (``(N,)``:
    ±1 for margin losses, ``0..K-1`` for cross-entropy).

    ``generator`` shuffles mini-batches (unused for full batch). ``name`` appears in the
    progress bar and in error messages. ``fast`` (default) trains TwoLayerNet / OneHiddenNet
    with a margin loss and full batches by :func:`pertlearn.training.fast.fast_fit` (explicit
    gradients, same results to float tolerance); ``fast=False`` forces the autograd loop below.
    Raises :class:`TrainingDivergedError` naming ``name`` and the epoch when the run diverges.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if fast and explicit.supports_fast_fit(model, x, y, config):
        return explicit.fast_fit(model, x, y, config, name=name, progress=progress)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    scheduler = (
        None
        if config.plateau_patience is None
        else PlateauScheduler(optimizer, config.plateau_patience, config.plateau_factor)
    )
    margin = config.loss if config.loss != "cross_entropy" else "logistic"
    full_batch = config.batch_size is None or config.batch_size >= x.shape[0]
    track_weights = full_batch and config.loss != "cross_entropy"
    weights = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if track_weights else None
    result = TrainResult(loss_weights=weights)

    model.train()
    # Updated by hand, not iterated: iterating closes the bar on an early stop before
    # finish_bar can show where it stopped.
    bar = tqdm(total=config.epochs, desc=f"train {name}", disable=not progress, leave=False)
    previous = math.inf
    try:
        for epoch in range(config.epochs):
            lr = optimizer.param_groups[0]["lr"]
            if full_batch:
                epoch_loss = _full_batch_step(model, x, y, optimizer, margin, weights, lr)
            else:
                assert config.batch_size is not None
                order = torch.randperm(x.shape[0], generator=generator).to(x.device)
                epoch_loss = _minibatch_epoch(model, x, y, optimizer, margin, order, config)
            check_epoch(name, epoch + 1, lr, epoch_loss, params)
            result.losses.append(epoch_loss)
            result.epochs_run = epoch + 1
            if progress and epoch % max(1, config.epochs // 100) == 0:
                bar.set_postfix(loss=f"{epoch_loss:.4g}", refresh=False)
            bar.update()  # its refresh shows the loss just set
            if scheduler is not None:
                scheduler.step(epoch_loss)
            if config.stop_tol is not None and stop_by_tolerance(
                previous, epoch_loss, config.stop_tol
            ):
                break
            previous = epoch_loss
        finish_bar(bar, result.epochs_run, config.epochs)
    finally:
        bar.close()  # no-op after finish_bar; closes the bar when training raised
    result.final_lr = optimizer.param_groups[0]["lr"]
    model.eval()
    return result


def _full_batch_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    margin: str,
    weights: torch.Tensor | None,
    lr: float,
) -> float:
    """One gradient step on the mean loss over all of ``x``; adds ``lr · ℓ'(-y f(x))`` to the
    loss weights ``(N,)`` when tracked. Returns the loss before the step."""
    optimizer.zero_grad(set_to_none=True)
    outputs = model(x)
    loss = per_sample_loss(outputs, y, margin).mean()
    loss.backward()
    optimizer.step()
    if weights is not None:
        weights += lr * margin_loss_derivative(outputs.detach(), y, margin)
    return loss.item()


def _minibatch_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    margin: str,
    order: torch.Tensor,
    config: TrainConfig,
) -> float:
    """One pass over ``x`` in the shuffled ``order`` (``(N,)``), one step per mini-batch;
    returns the sample-weighted mean of the batch losses."""
    assert config.batch_size is not None
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], config.batch_size):
        idx = order[start : start + config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = per_sample_loss(model(x[idx]), y[idx], margin).mean()
        loss.backward()
        optimizer.step()
        total += loss.detach() * idx.numel()
    return (total / x.shape[0]).item()
