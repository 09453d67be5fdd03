"""Gradient-descent training of f and g (full batch by default, as in both papers).

:func:`fit` runs SGD with momentum on the mean training loss, optionally with
``ReduceLROnPlateau`` on that loss, records the loss curve, and stops with
:class:`TrainingDivergedError` on a NaN or infinite loss. Full-batch gradient descent stands
in for the gradient flow of the theory; ``batch_size`` switches to shuffled mini-batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from pertlearn.errors import TrainingDivergedError
from pertlearn.training import fast as fast_trainer
from pertlearn.training.losses import margin_loss_derivative, per_sample_loss
from pertlearn.training.train_config import TrainConfig, TrainResult

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
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if fast:
        if fast_trainer.supports_fast_fit(model, x, y, config):
            return fast_trainer.fast_fit(model, x, y, config, name=name, progress=progress)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    scheduler = (
        None
        if config.plateau_patience is None
        else torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        )
    )
    margin = config.loss if config.loss != "cross_entropy" else "logistic"
    full_batch = config.batch_size is None or config.batch_size >= x.shape[0]
    track_weights = full_batch and config.loss != "cross_entropy"
    weights = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if track_weights else None
    result = TrainResult(loss_weights=weights)

    model.train()
    bar = tqdm(range(config.epochs), desc=f"train {name}", disable=not progress, leave=False)
    previous = math.inf
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        if full_batch:
            optimizer.zero_grad(set_to_none=True)
            outputs = model(x)
            loss = per_sample_loss(outputs, y, margin).mean()
            loss.backward()
            optimizer.step()
            if weights is not None:
                weights += lr * margin_loss_derivative(outputs.detach(), y, margin)
            epoch_loss = loss.item()
        else:
            assert config.batch_size is not None
            order = torch.randperm(x.shape[0], generator=generator).to(x.device)
            total = torch.zeros((), dtype=x.dtype, device=x.device)
            for start in range(0, x.shape[0], config.batch_size):
                idx = order[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = per_sample_loss(model(x[idx]), y[idx], margin).mean()
                loss.backward()
                optimizer.step()
                total += loss.detach() * idx.numel()
            epoch_loss = (total / x.shape[0]).item()
        if not math.isfinite(epoch_loss):
            raise TrainingDivergedError(
                f"training of {name} diverged at epoch {epoch + 1}: the loss is {epoch_loss}; "
                f"lower the learning rate (now {lr:g}) or use a bounded loss"
            )
        result.losses.append(epoch_loss)
        result.epochs_run = epoch + 1
        if scheduler is not None:
            scheduler.step(epoch_loss)
        if config.stop_tol is not None and math.isfinite(previous):
            change = abs(previous - epoch_loss) / max(abs(previous), 1e-30)
            if change < config.stop_tol:
                break
        previous = epoch_loss
        if progress and epoch % max(1, config.epochs // 100) == 0:
            bar.set_postfix(loss=f"{epoch_loss:.4g}", refresh=False)
    bar.close()
    result.final_lr = optimizer.param_groups[0]["lr"]
    model.eval()
    return result
