"""Shared machinery of the targeted PGD attacks (ICLR24, spec §3): validation, the data range,
the iteration loop that keeps each sample's best iterate by its target loss, and batching.

A concrete attack implements :meth:`TargetedPGD.step` (one update of the adversarial inputs
from the loss gradient, including its projection) and optionally :meth:`TargetedPGD.start`
(the first iterate) and :meth:`TargetedPGD.init_state` (per-batch state such as a mask).
All shapes are ``(N, ...)``: any input shape, norms taken over all non-batch dimensions.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import torch
from torch import nn

from pertlearn.attacks.base import Attack, fooling_rate
from pertlearn.training.losses import MARGIN_LOSSES

Clip = tuple[float, float] | None


def check_clip(clip: Any, name: str) -> tuple[float, float] | None:
    """Validate a data range ``(low, high)`` (or ``None``: no clipping); return it as floats."""
    if clip is None:
        return None
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: clip must be a pair (low, high) or None, got {clip!r}") from None
    if math.isnan(low) or math.isnan(high) or not low < high:
        raise ValueError(
            f"{name}: the data range clip=({low:g}, {high:g}) needs low < high; "
            "give e.g. clip=(-1, 1), or clip=None for no clipping"
        )
    return low, high


def check_steps(steps: Any, name: str) -> int:
    """Validate an iteration count (an integer ``>= 1``)."""
    if isinstance(steps, bool) or not isinstance(steps, int | float) or steps != int(steps):
        raise ValueError(f"{name}: steps must be a whole number, got {steps!r}")
    if steps < 1:
        raise ValueError(f"{name}: steps must be at least 1, got {steps}")
    return int(steps)


def check_targets(outputs: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """Raise ValueError unless ``target`` holds labels the model can output: ±1 for binary
    scores ``(N,)``, integers in ``0..K-1`` for logits ``(N, K)``."""
    if target.ndim != 1 or target.shape[0] != outputs.shape[0]:
        raise ValueError(
            f"{name}: targets must have shape ({outputs.shape[0]},), got {tuple(target.shape)}"
        )
    if outputs.ndim == 1:
        bad = (target != 1) & (target != -1)
        if bool(bad.any()):
            raise ValueError(
                f"{name}: the model outputs binary scores (N,), so targets must be -1 or +1; "
                f"got {target[bad][0].item():g}"
            )
        return
    if outputs.ndim != 2:
        raise ValueError(
            f"{name}: the model must output scores (N,) or logits (N, K), "
            f"got shape {tuple(outputs.shape)}"
        )
    classes = outputs.shape[1]
    bad = (target < 0) | (target >= classes) | (target != target.round())
    if bool(bad.any()):
        raise ValueError(
            f"{name}: the model has {classes} classes, so targets must be integers in "
            f"0..{classes - 1}; got {target[bad][0].item():g}"
        )


def per_sample_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(N,)`` values reshaped to ``(N, 1, ..., 1)`` to broadcast over ``ndim``-d inputs."""
    return t.view(-1, *([1] * (ndim - 1)))


def normalize(t: torch.Tensor, p: float) -> torch.Tensor:
    """``t / ‖t‖_p`` per sample (norm over all non-batch dimensions); zero where the norm is 0."""
    norm = per_sample_view(torch.linalg.vector_norm(t.flatten(1), ord=p, dim=1), t.ndim)
    return torch.where(norm > 0, t / norm.clamp_min(torch.finfo(t.dtype).tiny), 0.0)


IMAGE_CHUNK = 256
"""Default number of image-shaped samples attacked at once (see ``batch_size``)."""


class TargetedPGD(Attack):
    """Iterative targeted attack minimizing the per-sample target loss (spec §3).

    Each iteration evaluates the target loss and its input gradient at the current iterate,
    remembers per sample the iterate with the lowest loss so far (the clean input counts as
    the start), and calls :meth:`step`. After ``steps`` updates the final iterate is evaluated
    too, so ``steps`` updates cost ``steps + 2`` forward and ``steps`` backward passes.

    Args:
        eps: budget, ``> 0`` (its meaning depends on the attack).
        steps: number of updates, ``>= 1``.
        step_size: size of one update (attack-specific default when ``None``).
        clip: data range ``(low, high)`` the adversarial inputs are clipped to, or ``None``.
            Clean inputs must lie inside it.
        loss: margin loss for binary models (any of them gives the same normalized direction,
            since ``∇ℓ = -ℓ'·y∇f`` with ``ℓ' > 0``; ``logistic`` does not overflow); models with
            logits use cross-entropy.
        batch_size: attack at most this many samples at once. ``None``: all at once for flat
            inputs ``(N, d)``, and :data:`IMAGE_CHUNK` at a time for image-shaped inputs, whose
            convolutional activations otherwise overflow the CPU caches (on the small CNN and
            1000 MNIST images, chunks of 250 make PGD twice as fast). Samples are independent,
            so the result does not depend on it.

    After each call, :attr:`last_fooling_rate` holds the share of returned inputs that the
    model assigns to their target.
    """

    default_steps: int = 100

    def __init__(
        self,
        eps: float,
        *,
        steps: int | None = None,
        step_size: float | None = None,
        clip: Clip = None,
        loss: str = "logistic",
        batch_size: int | None = None,
    ) -> None:
        if not eps > 0:  # also rejects NaN
            raise ValueError(f"{self.name}: eps must be positive, got {eps}")
        if loss not in MARGIN_LOSSES:
            raise ValueError(
                f"{self.name}: unknown loss {loss!r}; choose one of {', '.join(MARGIN_LOSSES)} "
                "(models with logits always use cross-entropy)"
            )
        super().__init__(eps, loss=loss)
        self.steps = check_steps(self.default_steps if steps is None else steps, self.name)
        if step_size is not None and not step_size > 0:
            raise ValueError(f"{self.name}: step_size must be positive, got {step_size}")
        self.step_size = float(step_size) if step_size is not None else self.default_step_size()
        self.clip = check_clip(clip, self.name)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.last_fooling_rate: float | None = None

    def default_step_size(self) -> float:
        """Step size used when none is given: ``ε/5`` (the ICLR24 reference)."""
        return self.eps / 5

    # ------------------------------------------------------------------ hooks

    def check_input(self, x: torch.Tensor) -> None:
        """Validate clean inputs ``x`` (shape ``(N, ...)``); overridden to add checks."""
        if x.ndim < 2:
            raise ValueError(
                f"{self.name}: inputs must have shape (N, ...) with a batch dimension, "
                f"got {tuple(x.shape)}"
            )
        if self.clip is not None and x.numel():
            low, high = self.clip
            if x.min().item() < low or x.max().item() > high:
                raise ValueError(
                    f"{self.name}: inputs range over [{x.min().item():g}, {x.max().item():g}], "
                    f"outside the data range clip=({low:g}, {high:g}); widen clip or pass None"
                )

    def start(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The first iterate for all of ``x`` (default: ``x`` itself). Drawn once for the whole
        set, so batching does not change random starts."""
        return x.clone()

    def init_state(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The attack's state for one batch ``x``, passed to every :meth:`step` (default: none)."""
        return {}

    @abstractmethod
    def step(
        self,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        grad: torch.Tensor,
        state: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The next iterate from the clean ``x``, the current ``x_adv`` and the gradient of the
        target loss at ``x_adv`` (all of shape ``(N, ...)``), projected and clipped."""

    def clamp(self, x_adv: torch.Tensor) -> torch.Tensor:
        """Clip to the data range (identity without one)."""
        if self.clip is None:
            return x_adv
        return x_adv.clamp(self.clip[0], self.clip[1])

    # ------------------------------------------------------------------ loop

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Adversarial inputs of the shape of ``x`` (see the class docstring)."""
        self.check_input(x)
        if x.shape[0] == 0:
            return x.clone()
        size = self.batch_size or (IMAGE_CHUNK if x.ndim > 2 else x.shape[0])
        first = self.start(x.detach(), generator)
        chunks = [
            self._perturb_batch(model, xb, fb, tb)
            for xb, fb, tb in zip(x.split(size), first.split(size), target.split(size), strict=True)
        ]
        x_adv = torch.cat(chunks)
        self.last_fooling_rate = fooling_rate(model, x_adv, target.to(x_adv.device))
        return x_adv

    def _perturb_batch(
        self,
        model: nn.Module,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        target: torch.Tensor,
    ) -> torch.Tensor:
        x = x.detach()
        with torch.no_grad():
            outputs = model(x)
        check_targets(outputs, target, self.name)
        target = target.to(device=outputs.device)
        if outputs.ndim == 1:
            target = target.to(outputs.dtype)
        best = x.clone()
        best_loss = self.target_loss(model, x, target).detach()

        def keep_best(candidate: torch.Tensor, loss: torch.Tensor) -> None:
            better = loss < best_loss
            best_loss.copy_(torch.where(better, loss, best_loss))
            best.copy_(torch.where(per_sample_view(better, x.ndim), candidate, best))

        state = self.init_state(x)
        for _ in range(self.steps):
            loss, grad = self.loss_and_grad(model, x_adv, target)
            keep_best(x_adv, loss)
            x_adv = self.step(x, x_adv.detach(), grad, state).detach()
        with torch.no_grad():
            keep_best(x_adv, self.target_loss(model, x_adv, target))
        return best

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps:g}, steps={self.steps}, "
            f"step_size={self.step_size:g}, clip={self.clip}, loss={self.loss!r})"
        )
