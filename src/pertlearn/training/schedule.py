"""The learning-rate schedule and the stopping rule, written once for every trainer.

:func:`plateau_step` is the rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` with its
defaults (relative threshold ``1e-4``, no cooldown, ``min_lr = 0``, ``eps = 1e-8``), in mode
``min`` or ``max``: a metric ``a`` improves on the best so far when ``a < best (1 - 1e-4)``
(``min``) or ``a > best (1 + 1e-4)`` (``max``); after more than ``patience`` epochs without
improvement the learning rate becomes ``lr · factor`` (skipped if that changes it by at most
``1e-8``) and the count restarts. :func:`stop_by_tolerance` is the ``stop_tol`` rule: stop once
``|L_{t-1} - L_t| / max(|L_{t-1}|, 1e-30) < tol``.

Both are written on a value type ``V`` that is either a Python float (one configuration, on the
host, exactly torch's arithmetic) or a float64 tensor of shape ``(B,)`` (``B`` configurations at
once, on any device, the same IEEE double arithmetic elementwise), so the autograd, mini-batch,
host-scheduled and device-scheduled trainers all share one implementation.
:class:`PlateauScheduler` applies the rule to a ``torch.optim`` optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

import torch

PLATEAU_THRESHOLD = 1e-4
"""``ReduceLROnPlateau`` default relative threshold."""
PLATEAU_EPS = 1e-8
"""``ReduceLROnPlateau`` default ``eps``: smaller learning-rate changes are skipped."""
STOP_FLOOR = 1e-30
"""Floor of the denominator of the relative loss change in :func:`stop_by_tolerance`."""

V = TypeVar("V", float, torch.Tensor)
Mode = Literal["min", "max"]


@overload
def _where(cond: bool, a: float, b: float) -> float: ...
@overload
def _where(
    cond: torch.Tensor, a: torch.Tensor | float, b: torch.Tensor | float
) -> torch.Tensor: ...
def _where(cond: Any, a: Any, b: Any) -> Any:
    """``a`` where ``cond`` else ``b``: ``torch.where`` for tensors, a conditional for bools."""
    if isinstance(cond, torch.Tensor):
        return torch.where(cond, a, b)
    return a if cond else b


def _clamp_min(value: V, floor: float) -> V:
    if isinstance(value, torch.Tensor):
        return value.clamp_min(floor)
    return max(value, floor)


def _isfinite(value: V) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.isfinite(value)
    return math.isfinite(value)


@dataclass(frozen=True)
class PlateauState(Generic[V]):
    """``ReduceLROnPlateau``'s state: the learning rate, the best metric so far and the number
    of epochs since it improved (float or ``(B,)`` float64 tensors)."""

    lr: V
    best: V
    bad_epochs: V


def plateau_start(lr: V, mode: Mode = "min") -> PlateauState[V]:
    """The state before the first epoch: best ``+∞`` (``min``) or ``-∞`` (``max``)."""
    worst = math.inf if mode == "min" else -math.inf
    if isinstance(lr, torch.Tensor):
        return PlateauState(lr, torch.full_like(lr, worst), torch.zeros_like(lr))
    return PlateauState(lr, worst, 0.0)


def plateau_step(
    state: PlateauState[V], metric: V, patience: V, factor: V, mode: Mode = "min"
) -> PlateauState[V]:
    """One ``ReduceLROnPlateau.step(metric)`` (module docstring). ``patience = +∞`` never
    reduces (a disabled scheduler); ``metric``, ``patience``, ``factor`` are like the state's
    values (float, or ``(B,)`` float64 tensors)."""
    if mode == "min":
        better = metric < state.best * (1.0 - PLATEAU_THRESHOLD)
    else:
        better = metric > state.best * (PLATEAU_THRESHOLD + 1.0)
    best = _where(better, metric, state.best)
    bad = _where(better, 0.0, state.bad_epochs + 1)
    reduce = bad > patience
    reduced = state.lr * factor  # max(lr · factor, min_lr = 0) for lr > 0
    lr = _where(reduce & (state.lr - reduced > PLATEAU_EPS), reduced, state.lr)
    return PlateauState(lr, best, _where(reduce, 0.0, bad))


def stop_by_tolerance(previous: V, current: V, tol: V) -> Any:
    """True (bool, or a ``(B,)`` bool tensor) where the relative change from ``previous`` to
    ``current`` is below ``tol`` (``tol = 0`` never stops; an infinite ``previous``, the value
    before the first epoch, never stops)."""
    change = abs(previous - current) / _clamp_min(abs(previous), STOP_FLOOR)
    return _isfinite(previous) & (change < tol)


class PlateauScheduler:
    """:func:`plateau_step` driving the learning rate of every parameter group of a
    ``torch.optim`` optimizer (a drop-in for ``ReduceLROnPlateau(optimizer, mode, factor,
    patience)``, same state-dict keys ``best`` and ``num_bad_epochs``)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, patience: int, factor: float, mode: Mode = "min"
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"plateau mode must be 'min' or 'max', got {mode!r}")
        self.optimizer = optimizer
        self.patience = float(patience)
        self.factor = float(factor)
        self.mode: Mode = mode
        self.state = plateau_start(1.0, mode)  # the lr field is unused: groups hold theirs

    def step(self, metric: float) -> None:
        """Record one epoch's ``metric`` and reduce the learning rates after a plateau."""
        best, bad = self.state.best, self.state.bad_epochs
        for group in self.optimizer.param_groups:  # same best / count for every group
            before = PlateauState(float(group["lr"]), best, bad)
            self.state = plateau_step(before, float(metric), self.patience, self.factor, self.mode)
            group["lr"] = self.state.lr

    def state_dict(self) -> dict[str, Any]:
        """``best`` and ``num_bad_epochs`` (the keys torch's scheduler uses)."""
        return {"best": self.state.best, "num_bad_epochs": int(self.state.bad_epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (also accepts a torch ``ReduceLROnPlateau`` state dict)."""
        self.state = PlateauState(1.0, float(state["best"]), float(state["num_bad_epochs"]))
