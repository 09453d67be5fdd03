"""Adversarial training and robust accuracy (Madry et al., arXiv:1706.06083).

PGD adversarial training solves the saddle-point problem of Madry et al. eq. (2.1),

    min_θ  E_{(x, y)} [ max_{‖δ‖ ≤ ε} L(θ, x + δ, y) ],

by replacing every mini-batch with untargeted adversarial examples of the current model (the
inner maximisation, approximated by an attack) before the gradient step on θ. The attack is
given as a :class:`Perturb` callable, so this package needs no attack code: the caller builds it
from :class:`AdversarialConfig` (e.g. from the attack registry, in untargeted mode).
"""

from __future__ import annotations

from typing import Protocol

import torch
from pydantic import Field
from torch import nn

from pertlearn.training.config import StrictConfig
from pertlearn.training.losses import predict


class AdversarialConfig(StrictConfig):
    """PGD adversarial training of an image classifier (``adversarial`` in a
    :class:`~pertlearn.training.minibatch.MinibatchConfig`)."""

    attack: str = Field("pgd_l2", description="attack of the registry, run untargeted")
    eps: float = Field(gt=0, allow_inf_nan=False, description="perturbation budget ε")
    steps: int = Field(10, ge=1, description="attack iterations per mini-batch")
    step_size: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="None: the attack's default step size"
    )
    clean_epochs: int = Field(
        0,
        ge=0,
        description="epochs on clean batches before the adversarial ones (a warm-up: a small "
        "network attacked from its first step can collapse to a constant prediction)",
    )


class Perturb(Protocol):
    """An untargeted attack: ``perturb(model, x, y, generator)`` returns adversarial examples
    ``x_adv`` (shape of ``x``, ``(B, ...)``) that push ``model`` away from the true labels
    ``y`` (``(B,)``) within the attack's budget; ``generator`` drives any random start."""

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor: ...


def adversarial_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    perturb: Perturb,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``perturb``'s adversarial examples of ``x`` (``(B, ...)``) for labels ``y`` (``(B,)``),
    crafted in eval mode (batch-norm statistics neither used from the batch nor updated by the
    attack's forward passes) and detached; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        x_adv = perturb(model, x, y, generator).detach()
    finally:
        model.train(was_training)
    if x_adv.shape != x.shape:
        raise ValueError(
            f"the attack returned inputs of shape {tuple(x_adv.shape)} for a batch of shape "
            f"{tuple(x.shape)}; perturb(model, x, y, generator) must keep x's shape"
        )
    return x_adv


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    perturb: Perturb,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> float:
    """Clean-label accuracy under an untargeted attack: the share of ``x`` (``(N, ...)``) whose
    adversarial example ``perturb(model, x, y)`` is still classified as ``y`` (``(N,)``; class
    labels for logits ``(N, K)``, ±1 for binary scores ``(N,)``), in eval mode, in chunks of
    ``batch_size``."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"robust accuracy: {x.shape[0]} inputs but {y.shape[0]} labels")
    if batch_size < 1:
        raise ValueError(f"robust accuracy: batch_size must be at least 1, got {batch_size}")
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        x_adv = adversarial_batch(model, xb, yb, perturb, generator)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            correct += int((predict(model(x_adv)) == yb).sum())
        model.train(was_training)
    return correct / max(x.shape[0], 1)
