"""Learning rates, stopping and divergence of ``B`` configurations trained together by
:func:`pertlearn.training.fast.fit_batched`.

Both schedules apply the one ``ReduceLROnPlateau`` rule and the ``stop_tol`` rule of
:mod:`pertlearn.training.schedule` to each configuration's epoch loss:

* :class:`HostSchedule` on Python floats, reading the losses every epoch (free on the CPU), so a
  divergence and the last active configuration's stop are seen at once;
* :class:`DeviceSchedule` on float64 ``(B,)`` tensors kept on the device, with the losses read
  back once per block of epochs only (to name the first diverged epoch and to stop early).

Each epoch also records the largest ``|weight|`` of every configuration after its step; a
configuration diverges at the first epoch whose loss is not finite or whose weights overflow
:data:`~pertlearn.training.divergence.WEIGHT_BOUND`, as in :func:`~pertlearn.training.fit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pertlearn.training.config import TrainConfig, TrainResult
from pertlearn.training.divergence import WEIGHT_BOUND, Divergence, weights_overflow
from pertlearn.training.schedule import (
    PlateauState,
    plateau_start,
    plateau_step,
    stop_by_tolerance,
)


@dataclass
class BatchedTrainResult:
    """What :func:`~pertlearn.training.fast.fit_batched` records for ``B`` configurations.

    ``losses``: float64 ``(E, B)`` on the host, the loss of each epoch (valid up to
    ``epochs_run[b]``); ``epochs_run``: ``(B,)`` ints; ``loss_weights``: ``(B, N)`` on the
    device; ``diverged``: for each configuration None or the :class:`Divergence` (epoch
    1-based, learning rate, loss, largest weight) where it diverged (its later values are
    meaningless); ``final_lr``: each configuration's learning rate after training."""

    losses: torch.Tensor
    epochs_run: list[int]
    loss_weights: torch.Tensor
    diverged: list[Divergence | None]
    final_lr: list[float]

    def result(self, b: int) -> TrainResult:
        """The :class:`TrainResult` of configuration ``b`` (as ``fit`` returns it)."""
        n = self.epochs_run[b]
        return TrainResult(
            losses=self.losses[:n, b].tolist(),
            epochs_run=n,
            loss_weights=self.loss_weights[b].clone(),
            final_lr=self.final_lr[b],
        )


def _patience(config: TrainConfig) -> float:
    return math.inf if config.plateau_patience is None else float(config.plateau_patience)


class HostSchedule:
    """The schedule on the host in Python floats (exactly torch's arithmetic)."""

    def __init__(self, configs: list[TrainConfig], device: torch.device) -> None:
        count = len(configs)
        self.configs, self.device = configs, device
        self.plateau = [plateau_start(c.lr) for c in configs]
        self.previous = [math.inf] * count
        self.active = [True] * count
        self.epochs_run = [0] * count
        self.losses: list[list[float]] = []
        self.diverged: list[Divergence | None] = [None] * count
        self._step_lr = self._rates()

    def _rates(self) -> torch.Tensor:
        rates = [p.lr if on else 0.0 for p, on in zip(self.plateau, self.active, strict=True)]
        return torch.tensor(rates, dtype=torch.float64, device=self.device)

    def step_lr(self) -> torch.Tensor:
        """Learning rates of the next step, 0 for stopped configurations, float64 ``(B,)``."""
        return self._step_lr

    def record(self, epoch: int, loss: torch.Tensor, largest: torch.Tensor) -> bool:
        """Record the losses ``(B,)`` of ``epoch`` (0-based) and the largest ``|weight|``
        ``(B,)`` after its step; True once every configuration has stopped."""
        losses, tops = loss.tolist(), largest.tolist()  # float32 → Python float is exact
        self.losses.append(losses)
        changed = False
        for b, (config, current) in enumerate(zip(self.configs, losses, strict=True)):
            if not self.active[b]:
                continue
            state = self.plateau[b]
            if not math.isfinite(current) or weights_overflow(tops[b]):
                top = None if not math.isfinite(current) else tops[b]
                self.diverged[b] = Divergence(epoch + 1, state.lr, current, top)
                self.epochs_run[b] = epoch
                self.active[b], changed = False, True
                continue
            self.epochs_run[b] = epoch + 1
            new = plateau_step(state, current, _patience(config), config.plateau_factor)
            changed = changed or new.lr != state.lr
            self.plateau[b] = new
            tol = 0.0 if config.stop_tol is None else config.stop_tol
            stop = config.epochs == epoch + 1 or stop_by_tolerance(self.previous[b], current, tol)
            self.previous[b] = current
            if stop:
                self.active[b], changed = False, True
        if changed:
            self._step_lr = self._rates()
        return not any(self.active)

    def end_block(self, start: int, stop: int) -> bool:
        """After epochs ``start..stop-1``: True once every configuration has stopped."""
        del start, stop
        return not any(self.active)

    def last_loss(self, stop: int) -> float:
        """The first configuration's last recorded loss, for the progress bar."""
        del stop
        return self.losses[-1][0]

    def outcome(self, loss_weights: torch.Tensor) -> BatchedTrainResult:
        """The :class:`BatchedTrainResult` of the run."""
        history = torch.tensor(self.losses, dtype=torch.float64).reshape(-1, len(self.configs))
        final = [float(p.lr) for p in self.plateau]
        return BatchedTrainResult(history, self.epochs_run, loss_weights, self.diverged, final)


class DeviceSchedule:
    """The schedule on the device in float64 ``(B,)`` tensors (no host read per epoch)."""

    def __init__(self, configs: list[TrainConfig], device: torch.device, epochs: int) -> None:
        def per_config(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64, device=device)

        batch = len(configs)
        lr = per_config([c.lr for c in configs])
        self.plateau: PlateauState[torch.Tensor] = plateau_start(lr)
        self.patience = per_config([_patience(c) for c in configs])
        self.factor = per_config([c.plateau_factor for c in configs])
        self.stop_tol = per_config([0.0 if c.stop_tol is None else c.stop_tol for c in configs])
        self.last_epoch = torch.tensor([c.epochs for c in configs], device=device)
        self.previous = torch.full((batch,), math.inf, dtype=torch.float64, device=device)
        self.active = torch.ones(batch, dtype=torch.bool, device=device)
        self.epochs_run = torch.zeros(batch, dtype=torch.int64, device=device)
        self.loss_history = torch.empty(epochs, batch, dtype=torch.float64, device=device)
        self.lr_history = torch.empty(epochs, batch, dtype=torch.float64, device=device)
        self.weight_history = torch.empty(epochs, batch, dtype=torch.float64, device=device)
        self.diverged: list[Divergence | None] = [None] * batch

    def step_lr(self) -> torch.Tensor:
        """Learning rates of the next step, 0 for stopped configurations, float64 ``(B,)``."""
        return torch.where(self.active, self.plateau.lr, 0.0)

    def record(self, epoch: int, loss: torch.Tensor, largest: torch.Tensor) -> bool:
        """Record the losses ``(B,)`` of ``epoch`` (0-based) and the largest ``|weight|``
        ``(B,)`` after its step, on the device; never stops by itself (see
        :meth:`end_block`)."""
        self.loss_history[epoch] = loss
        self.lr_history[epoch] = self.plateau.lr
        self.weight_history[epoch] = largest
        new = plateau_step(self.plateau, loss, self.patience, self.factor)
        # Stopped configurations keep their learning rate.
        lr = torch.where(self.active, new.lr, self.plateau.lr)
        self.plateau = PlateauState(lr, new.best, new.bad_epochs)
        last = self.last_epoch == epoch + 1
        stopping = stop_by_tolerance(self.previous, loss, self.stop_tol) | last
        self.epochs_run = torch.where(self.active, epoch + 1, self.epochs_run)
        self.previous = loss
        self.active = self.active & ~stopping
        return False

    def end_block(self, start: int, stop: int) -> bool:
        """One host read per block: name the first diverged epoch in ``start..stop-1`` of each
        configuration; True once every configuration has stopped."""
        losses = self.loss_history[start:stop].cpu()
        tops = self.weight_history[start:stop].cpu()
        runs = self.epochs_run.cpu().tolist()
        for b in range(len(self.diverged)):
            if self.diverged[b] is not None:
                continue
            ran = max(0, runs[b] - start)
            loss_bad = ~torch.isfinite(losses[:ran, b])
            bad = (loss_bad | ~(tops[:ran, b] <= WEIGHT_BOUND)).nonzero()
            if bad.numel():
                i = int(bad[0])
                top = None if loss_bad[i] else float(tops[i, b])
                lr = float(self.lr_history[start + i, b])
                self.diverged[b] = Divergence(start + i + 1, lr, float(losses[i, b]), top)
        if any(d is not None for d in self.diverged):
            keep = [d is None for d in self.diverged]
            self.active &= torch.tensor(keep, device=self.active.device)
        return not bool(self.active.any())

    def last_loss(self, stop: int) -> float:
        """The first configuration's loss at epoch ``stop`` (1-based), for the progress bar."""
        return float(self.loss_history[stop - 1, 0])

    def outcome(self, loss_weights: torch.Tensor) -> BatchedTrainResult:
        """The :class:`BatchedTrainResult` of the run."""
        runs = [int(r) for r in self.epochs_run.cpu()]
        for b, d in enumerate(self.diverged):
            if d is not None:
                runs[b] = d.epoch - 1
        final = self.plateau.lr.tolist()
        return BatchedTrainResult(self.loss_history.cpu(), runs, loss_weights, self.diverged, final)
