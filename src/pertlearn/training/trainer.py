"""Gradient-descent training of f and g (full batch by default, as in both papers).

:func:`fit` runs SGD with momentum on the mean training loss, optionally with
``ReduceLROnPlateau`` on that loss, records the loss curve, and stops with
:class:`TrainingDivergedError` on a NaN or infinite loss. Full-batch gradient descent stands
in for the gradient flow of the theory; ``batch_size`` switches to shuffled mini-batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from tqdm.auto import tqdm

from pertlearn.errors import TrainingDivergedError
from pertlearn.training.losses import margin_loss_derivative, per_sample_loss


class TrainConfig(BaseModel):
    """How one network is trained (``train_f`` / ``train_g`` in an experiment config)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    loss: Literal["identity", "logistic", "exponential", "cross_entropy"] = "identity"
    lr: float = Field(1.0, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    epochs: int = Field(1000, ge=1)
    batch_size: int | None = Field(None, ge=1, description="None: full batch")
    plateau_patience: int | None = Field(
        10, ge=0, description="ReduceLROnPlateau patience on the training loss; None disables"
    )
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    stop_tol: float | None = Field(
        None, gt=0, description="stop once the relative change of the loss is below this"
    )


@dataclass
class TrainResult:
    """What :func:`fit` records: ``losses``, the mean training loss of each epoch (full batch:
    evaluated just before that epoch's step; mini-batch: averaged over its batches), the epochs
    actually run, and for margin losses
    trained full-batch the per-sample weights ``∫ ℓ'(-y_k f(x_k; t)) dt ≈ Σ_t lr_t ℓ'(...)``
    (shape ``(N,)``) used by the NeurIPS24 theory, and the learning rate at the end."""

    losses: list[float] = field(default_factory=list)
    epochs_run: int = 0
    loss_weights: torch.Tensor | None = None
    final_lr: float = math.nan


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
        from pertlearn.training.fast import fast_fit, supports_fast_fit  # imports this module

        if supports_fast_fit(model, x, y, config):
            return fast_fit(model, x, y, config, name=name, progress=progress)
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
