"""Stopping a training run that has blown up: :class:`TrainingDivergedError`.

A run has diverged when its epoch loss is NaN or infinite, or when a weight is non-finite or
larger in magnitude than :data:`WEIGHT_BOUND`. The second test catches what the first misses:
an unbounded loss (identity, or logistic far from the margin) at a huge learning rate keeps a
finite loss while the weights run off to ~1e33 and the network's outputs lose all meaning.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch

from pertlearn.errors import TrainingDivergedError

WEIGHT_BOUND = 1e15
"""Largest ``|w|`` a trained weight may reach. The papers' networks at sane learning rates stay
below ~1e4; past 1e15 a float32 product ``W x`` has lost every digit of the data."""


class Divergence(NamedTuple):
    """Where and how a run diverged: the 1-based ``epoch`` (its loss, computed before its
    step, was not finite, or its step took a weight past :data:`WEIGHT_BOUND`), the learning
    rate of that epoch, its loss, and the largest ``|weight|`` when the weights overflowed
    (else None)."""

    epoch: int
    lr: float
    loss: float
    weight: float | None = None


def diverged_message(name: str, divergence: Divergence, *, margin_loss: bool = True) -> str:
    """The one-line message of :class:`TrainingDivergedError` for network ``name`` that diverged
    as ``divergence`` says; ``margin_loss``: also suggest a bounded margin loss."""
    epoch, lr, loss, weight = divergence
    fix = f"lower the learning rate (now {lr:g})"
    if margin_loss:
        fix += " or use a bounded loss"
    if weight is None:
        return f"training of {name} diverged at epoch {epoch}: the loss is {loss}; {fix}"
    return (
        f"training of {name} diverged at epoch {epoch}: a weight reached {weight:.3g} "
        f"(limit {WEIGHT_BOUND:g}); {fix}"
    )


def weights_overflow(largest: float) -> bool:
    """True when the largest ``|weight|`` is NaN, infinite or above :data:`WEIGHT_BOUND`."""
    return not largest <= WEIGHT_BOUND


@torch.no_grad()
def largest_weight(params: Iterable[torch.Tensor]) -> float:
    """``max |w|`` over every element of ``params`` (NaN if any element is NaN)."""
    tops = [p.detach().abs().amax() for p in params if p.numel()]
    return float(torch.stack(tops).amax()) if tops else 0.0


def check_epoch(
    name: str,
    epoch: int,
    lr: float,
    loss: float,
    params: Iterable[torch.Tensor],
    *,
    margin_loss: bool = True,
) -> None:
    """Raise :class:`TrainingDivergedError` if epoch ``epoch`` (1-based) of network ``name``
    ended with a non-finite ``loss`` or with weights in ``params`` beyond
    :data:`WEIGHT_BOUND`."""
    if not math.isfinite(loss):
        message = diverged_message(name, Divergence(epoch, lr, loss), margin_loss=margin_loss)
        raise TrainingDivergedError(message)
    largest = largest_weight(params)
    if weights_overflow(largest):
        divergence = Divergence(epoch, lr, loss, largest)
        message = diverged_message(name, divergence, margin_loss=margin_loss)
        raise TrainingDivergedError(message)
