"""Mini-batch training of multi-class image classifiers (ICLR24 image experiments,
arXiv:2402.10470).

:func:`fit_minibatch` trains a model mapping ``(N, C, H, W)`` to logits ``(N, K)`` with
cross-entropy and SGD (momentum, Nesterov, weight decay), the ``ReduceLROnPlateau`` rule of
:mod:`pertlearn.training.schedule`, shuffled mini-batches, optional CIFAR augmentation (random
crop with zero padding 4 and horizontal flip, done on tensors), optional PGD adversarial
training (:mod:`pertlearn.training.adversarial`), and records per epoch the training loss,
training accuracy (on the batches trained on, in train mode) and validation accuracy (the curves
the paper plots).

With ``checkpoint_dir`` it writes a checkpoint after every epoch
(:mod:`pertlearn.training.checkpoint`) and a later call with the same arguments resumes after
the last finished epoch, so a killed run loses at most one epoch and continues with the same
random numbers.

Paper-scale options (:mod:`pertlearn.training.accel`; the defaults compute exactly as before):
``precision`` (autocast to bf16/fp16, fp16 with a gradient scaler), ``channels_last`` and
``compile``. Batches are drawn from the data where it lies: with ``x`` on CUDA the shuffle and
the augmentation come from a generator on the device, seeded once per epoch from the CPU
generator (:func:`~pertlearn.training.accel.epoch_generator`), so no batch goes through the
host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from tqdm.auto import tqdm

from pertlearn.seeding import seeded_global_generator, stage_seed
from pertlearn.training.accel import (
    ChannelsLast,
    Precision,
    autocast,
    check_precision,
    epoch_generator,
    grad_scaler,
    to_channels_last,
    use_channels_last,
)
from pertlearn.training.adversarial import AdversarialConfig, Perturb, adversarial_batch
from pertlearn.training.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from pertlearn.training.config import StrictConfig, TrainResult
from pertlearn.training.divergence import TrainingDivergedError, check_epoch
from pertlearn.training.schedule import PlateauScheduler

__all__ = [
    "MinibatchConfig",
    "MinibatchResult",
    "TrainingDivergedError",
    "evaluate_accuracy",
    "fit_minibatch",
    "random_crop_flip",
]


class MinibatchConfig(StrictConfig):
    """How an image classifier is trained (ICLR24 reference: lr 0.1, momentum 0.9, Nesterov,
    weight decay 5e-4, batch 128, ReduceLROnPlateau; 100–300 epochs)."""

    lr: float = Field(0.1, gt=0, description="initial learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(100, ge=1)
    plateau_patience: int | None = Field(
        10, ge=0, description="ReduceLROnPlateau patience in epochs; None disables"
    )
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    plateau_metric: Literal["train_loss", "val_acc"] = Field(
        "train_loss", description="what ReduceLROnPlateau watches"
    )
    augment: bool = Field(False, description="random crop (padding 4) and horizontal flip")
    eval_batch_size: int = Field(1000, ge=1)
    adversarial: AdversarialConfig | None = Field(
        None, description="PGD adversarial training (each mini-batch replaced by its attack)"
    )
    precision: Precision = Field(
        "fp32",
        description="fp32 (exact), bf16 or fp16 (CUDA only) autocast of the forward passes",
    )
    channels_last: ChannelsLast = Field(
        "off", description="channels-last memory format: off, on, or auto (on for CUDA)"
    )
    compile: bool = Field(False, description="torch.compile the training forward pass")

    @model_validator(mode="after")
    def _adversarial_epochs_remain(self) -> MinibatchConfig:
        if self.adversarial is not None and self.adversarial.clean_epochs >= self.epochs:
            raise ValueError(
                f"adversarial.clean_epochs ({self.adversarial.clean_epochs}) must be below "
                f"epochs ({self.epochs}): no adversarial epoch would remain"
            )
        return self


@dataclass
class MinibatchResult(TrainResult):
    """:class:`TrainResult` plus per-epoch ``train_acc``, ``val_acc`` (empty without
    validation data) and ``lr``, and the epoch (1-based) and value of the best ``val_acc``.
    Under adversarial training ``losses`` and ``train_acc`` are those of the adversarial
    batches."""

    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def best_val_acc(self) -> float | None:
        return max(self.val_acc) if self.val_acc else None

    @property
    def best_epoch(self) -> int | None:
        return self.val_acc.index(max(self.val_acc)) + 1 if self.val_acc else None

    @property
    def curves_extra(self) -> dict[str, Any]:
        """Extra per-epoch curves for ``curves.json``."""
        return {"train_acc": self.train_acc, "val_acc": self.val_acc, "lr": self.lr}


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """CIFAR augmentation on a batch ``(B, C, H, W)``: zero-pad by ``padding``, crop a random
    ``H×W`` window per image, flip each image horizontally with probability 1/2. Randomness
    comes from ``generator``, drawn on its own device (best: ``x``'s)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    where = generator.device
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=where).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=where).to(x.device)
    flip = (torch.rand(b, generator=generator, device=where) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    precision: Precision = "fp32",
) -> float:
    """Share of ``x`` (``(N, ...)``) whose argmax logit equals ``y`` (``(N,)``), in eval mode,
    with the forward passes in ``precision``."""
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            with autocast(precision, xb.device):
                logits = model(xb)
            correct += int((logits.argmax(1) == yb).sum())
        return correct / max(x.shape[0], 1)
    finally:
        model.train(was_training)


def _check_arguments(
    x: torch.Tensor,
    y: torch.Tensor,
    config: MinibatchConfig,
    x_val: torch.Tensor | None,
    y_val: torch.Tensor | None,
    perturb: Perturb | None,
    name: str,
) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if (x_val is None) != (y_val is None):
        raise ValueError(f"{name}: give both x_val and y_val, or neither")
    if config.adversarial is not None and perturb is None:
        raise ValueError(
            f"{name}: adversarial training is configured but no attack was given; pass "
            f"perturb=... (an untargeted {config.adversarial.attack} at eps "
            f"{config.adversarial.eps:g})"
        )
    if config.adversarial is None and perturb is not None:
        raise ValueError(
            f"{name}: an attack was given but adversarial training is not configured; set "
            "adversarial = {attack, eps, ...} in the training config, or pass perturb=None"
        )


@dataclass
class _Step:
    """How one training step runs: the forward callable (the model or its compiled form),
    the autocast precision, the fp16 gradient scaler and the channels-last switch."""

    forward: nn.Module | Any
    precision: Precision
    scaler: torch.amp.GradScaler | None
    channels_last: bool


def _train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: MinibatchConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    perturb: Perturb | None,
    bar: Any,
    step: _Step,
) -> tuple[float, float]:
    """One shuffled pass over ``x`` (``(N, ...)``), one SGD step per mini-batch (augmented, then
    replaced by its adversarial examples under adversarial training); returns the mean loss
    and the accuracy on the batches trained on. Shuffle and augmentation draw from
    :func:`epoch_generator` on ``x``'s device; the attack's random starts from ``generator``."""
    n = x.shape[0]
    data_gen = epoch_generator(generator, x.device)
    order = torch.randperm(n, generator=data_gen, device=data_gen.device).to(x.device)
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for first in range(0, n, config.batch_size):
        idx = order[first : first + config.batch_size]
        xb, yb = x[idx], y[idx]
        if config.augment:
            xb = random_crop_flip(xb, data_gen)
        if step.channels_last:
            xb = to_channels_last(xb)
        if perturb is not None:
            xb = adversarial_batch(model, xb, yb, perturb, generator)
        optimizer.zero_grad(set_to_none=True)
        with autocast(step.precision, xb.device):
            logits = step.forward(xb)
            loss = F.cross_entropy(logits.float(), yb)
        if step.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            step.scaler.scale(loss).backward()
            step.scaler.step(optimizer)
            step.scaler.update()
        total_loss += loss.detach() * idx.numel()
        correct += (logits.detach().argmax(1) == yb).sum()
        bar.update(1)
    return (total_loss / n).item(), correct.item() / n


def fit_minibatch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: MinibatchConfig,
    *,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    name: str = "model",
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
    perturb: Perturb | None = None,
) -> MinibatchResult:
    """Train ``model`` in place on images ``x`` (``(N, C, H, W)``) with class labels ``y``
    (``(N,)``, ``0..K-1``) by mini-batch SGD on the cross-entropy loss.

    ``x_val``/``y_val`` give the validation accuracy after each epoch. ``generator`` (CPU)
    drives shuffling, augmentation and the attack's random starts; layers that draw from torch's
    global generator (dropout) draw from it seeded per epoch from ``generator``'s seed and given
    its state back after (:func:`~pertlearn.seeding.seeded_global_generator`), so a training
    does not depend on what the process ran before. ``checkpoint_dir``: write a
    checkpoint after every epoch and resume from one left there by an interrupted identical
    call. ``perturb``: the untargeted attack of adversarial training, required exactly when
    ``config.adversarial`` is set (Madry et al. arXiv:1706.06083 eq. 2.1: each mini-batch is
    replaced by ``perturb(model, x_b, y_b, generator)`` before its step). Raises
    :class:`TrainingDivergedError` when the loss becomes NaN/infinite or the weights overflow.
    """
    _check_arguments(x, y, config, x_val, y_val, perturb, name)
    check_precision(config.precision, x.device, f"{name}: precision")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    y = y.long()
    channels_last = use_channels_last(config.channels_last, x.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    step = _Step(
        forward=torch.compile(model) if config.compile else model,
        precision=config.precision,
        scaler=grad_scaler(config.precision, x.device),
        channels_last=channels_last,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    mode: Literal["min", "max"] = "min" if config.plateau_metric == "train_loss" else "max"
    scheduler = (
        None
        if config.plateau_patience is None
        else PlateauScheduler(optimizer, config.plateau_patience, config.plateau_factor, mode)
    )
    result = MinibatchResult()
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    run_fingerprint = fingerprint(config, name, x, model)
    start = 0
    if folder is not None:
        meta = load_checkpoint(folder, model, optimizer, generator, run_fingerprint)
        if meta is not None:
            start = meta["epoch"]
            if scheduler is not None and meta["scheduler"] is not None:
                scheduler.load_state_dict(meta["scheduler"])
            for key in ("losses", "train_acc", "val_acc", "lr"):
                setattr(result, key, list(meta["curves"][key]))
            result.epochs_run = start
            result.resumed_from = start

    batches = math.ceil(x.shape[0] / config.batch_size)
    bar = tqdm(
        total=config.epochs * batches,
        initial=start * batches,
        desc=f"train {name}",
        unit="batch",
        disable=not progress,
        leave=False,
    )
    model.train()
    try:
        for epoch in range(start, config.epochs):
            lr = optimizer.param_groups[0]["lr"]
            warming_up = config.adversarial is not None and epoch < config.adversarial.clean_epochs
            # layers that draw from torch's global generator (dropout) draw per epoch from a
            # seed of this training's generator: the same numbers in any process, on resume too
            forward_seed = stage_seed(generator.initial_seed(), f"train_forward_epoch_{epoch}")
            with seeded_global_generator(forward_seed, x.device):
                epoch_loss, train_acc = _train_epoch(
                    model,
                    x,
                    y,
                    config,
                    optimizer,
                    generator,
                    None if warming_up else perturb,
                    bar,
                    step,
                )
            check_epoch(name, epoch + 1, lr, epoch_loss, params, margin_loss=False)
            result.losses.append(epoch_loss)
            result.train_acc.append(train_acc)
            result.lr.append(lr)
            if x_val is not None and y_val is not None:
                result.val_acc.append(
                    evaluate_accuracy(
                        model, x_val, y_val.long(), config.eval_batch_size, config.precision
                    )
                )
            result.epochs_run = epoch + 1
            if scheduler is not None:
                train_metric = config.plateau_metric == "train_loss"
                scheduler.step(epoch_loss if train_metric else result.val_acc[-1])
            postfix = {"loss": f"{epoch_loss:.3g}", "acc": f"{train_acc:.3f}"}
            if result.val_acc:
                postfix["val"] = f"{result.val_acc[-1]:.3f}"
            bar.set_postfix(postfix, refresh=False)
            if folder is not None:
                meta = _checkpoint_meta(run_fingerprint, name, epoch + 1, config, optimizer)
                meta["scheduler"] = scheduler.state_dict() if scheduler is not None else None
                meta["curves"] = {
                    "losses": result.losses,
                    "train_acc": result.train_acc,
                    "val_acc": result.val_acc,
                    "lr": result.lr,
                }
                save_checkpoint(folder, model, optimizer, generator, meta)
    finally:
        bar.close()
    model.eval()
    return result


def _checkpoint_meta(
    run_fingerprint: str,
    name: str,
    epoch: int,
    config: MinibatchConfig,
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """The metadata of a checkpoint written after ``epoch`` (1-based), less the schedule and
    the curves."""
    group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
    return {
        "fingerprint": run_fingerprint,
        "name": name,
        "epoch": epoch,
        "epochs": config.epochs,
        "param_group": group,
    }
