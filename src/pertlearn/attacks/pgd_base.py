"""Shared machinery of the PGD attacks (ICLR24, arXiv:2402.10470): validation, the data range,
the iteration loop that keeps each sample's best iterate by its objective, batching, and the
target-hit repair options (random restarts, stepping on until the target is hit, and
noise-averaged gradients).

A concrete attack implements :meth:`TargetedPGD.step` (one update of the adversarial inputs
from the loss gradient, including its projection) and optionally :meth:`TargetedPGD.start`
(the first iterate), :meth:`TargetedPGD.random_start` (a random point of the ε-ball, needed by
``restarts``) and :meth:`TargetedPGD.init_state` (per-batch state such as a mask).
All shapes are ``(N, ...)``: any input shape, norms taken over all non-batch dimensions.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Generator, Tensor, nn

from pertlearn.attacks.base import Attack, draw
from pertlearn.training.accel import (
    FP16_ATTACK_LOSS_SCALE,
    PRECISIONS,
    autocast,
    check_precision,
)
from pertlearn.training.losses import predict

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


def check_count(value: Any, name: str, option: str, minimum: int) -> int:
    """Validate a whole-number option (``restarts``, ``max_steps``, ``eot_samples``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"{name}: {option} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: {option} must be at least {minimum}, got {int(value)}")
    return int(value)


IMAGE_CHUNK = 256
"""Default number of image-shaped samples attacked at once (see ``batch_size``)."""


@dataclass
class _Record:
    """Per-sample best iterate of a whole set: ``best`` ``(N, ...)``, its objective ``(N,)``
    and whether it achieves the attack's goal ``(N,)`` bool."""

    best: Tensor
    objective: Tensor
    success: Tensor

    def offer(
        self,
        idx: Tensor,
        candidate: Tensor,
        objective: Tensor,
        success: Tensor,
    ) -> None:
        """Keep ``candidate`` (the rows ``idx`` of the set) where its objective is lower."""
        better = objective < self.objective[idx]
        sel = idx[better]
        self.objective[sel] = objective[better]
        self.best[sel] = candidate[better]
        self.success[sel] = success[better]


class TargetedPGD(Attack):
    """Iterative attack minimizing a per-sample objective (ICLR24 arXiv:2402.10470): the loss of
    the target
    label (targeted, the default), or the negative loss of the true label (``targeted=False``,
    Madry et al. 2018, arXiv:1706.06083 eq. 2.1).

    Each iteration evaluates the objective and its input gradient at the current iterate,
    remembers per sample the iterate with the lowest objective so far (the clean input counts
    as the start), and calls :meth:`step`. After ``steps`` updates the final iterate is
    evaluated too, so ``steps`` updates cost ``steps + 2`` forward and ``steps`` backward
    passes.

    Target-hit repair (all off by default, which gives the plain attack bit for bit). A sample
    *succeeds* when the model assigns its best iterate to the target (targeted) or to any label
    but the given one (untargeted):

    - ``restarts = r``: after the first run, ``r`` more runs from random points of the ε-ball
      (:meth:`random_start`, drawn for the whole set from the ``generator``) for the samples
      that have not succeeded yet; each sample keeps its best iterate over all runs.
    - ``until_fooled = True``: after ``steps`` updates, samples that have not succeeded keep
      stepping, one update at a time, until they succeed or ``max_steps`` updates in all.
    - ``noise_std = σ > 0``: each gradient is the mean over ``eot_samples`` copies
      ``x_adv + σξ``, ``ξ ~ N(0, I)`` drawn from the ``generator`` (noise-augmented PGD,
      expectation over transformation: Athalye et al. 2018, arXiv:1707.07397 §2.1); the best
      iterate is still chosen by the objective at ``x_adv`` itself. Noise is drawn per batch,
      so results then depend on ``batch_size`` as well as the generator.

    The options (``attack.options`` in a config) are the arguments of ``__init__``.

    ``restarts`` and ``noise_std`` need the ``generator`` passed to the call. After each call,
    :attr:`last_success` holds per sample whether the returned input succeeds (``(N,)`` bool)
    and :attr:`last_fooling_rate` its mean (the share assigned to the target when targeted).
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
        targeted: bool = True,
        restarts: int = 0,
        until_fooled: bool = False,
        max_steps: int | None = None,
        noise_std: float = 0.0,
        eot_samples: int = 1,
        precision: str = "fp32",
    ) -> None:
        """A PGD attack of budget ``eps``; the keyword arguments are its options
        (``attack.options`` in a config).

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
                so the result does not depend on it (except with ``noise_std > 0``).
            targeted: ``False``: the labels passed are the true ones and the attack maximizes
                their loss.
            restarts: number of extra runs from random starts, ``>= 0`` (default 0).
            until_fooled: keep stepping samples that have not succeeded (default ``False``).
            max_steps: cap on the updates of one run with ``until_fooled``, ``>= steps``
                (default ``5 * steps``).
            noise_std: standard deviation σ of the gradient-averaging noise, ``>= 0`` (default 0).
            eot_samples: noisy copies per gradient with ``noise_std > 0``, ``>= 1`` (default 1).
            precision: ``"fp32"`` (default, exact), ``"bf16"`` or ``"fp16"`` (CUDA only): the
                model's forward passes run under :func:`torch.autocast`; the inputs, iterates and
                perturbations stay in their own dtype, the outputs are cast back to it before the
                objective, so the input gradient arrives in full precision. Under fp16 the
                objective is scaled by :data:`~pertlearn.training.accel.FP16_ATTACK_LOSS_SCALE`
                before the backward pass (and the gradient unscaled) so it does not underflow.
        """
        if not eps > 0:  # also rejects NaN
            raise ValueError(f"{self.name}: eps must be positive, got {eps}")
        super().__init__(eps, loss=loss, targeted=targeted)
        self.steps = check_steps(self.default_steps if steps is None else steps, self.name)
        if step_size is not None and not step_size > 0:
            raise ValueError(f"{self.name}: step_size must be positive, got {step_size}")
        self.step_size = float(step_size) if step_size is not None else self.default_step_size()
        self.clip = check_clip(clip, self.name)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.restarts = check_count(restarts, self.name, "restarts", 0)
        if self.restarts and type(self).random_start is TargetedPGD.random_start:
            raise ValueError(
                f"{self.name}: restarts need a random start, which this attack does not "
                "define; implement random_start or set restarts = 0"
            )
        if not isinstance(until_fooled, bool):
            raise ValueError(
                f"{self.name}: until_fooled must be true or false, got {until_fooled!r}"
            )
        self.until_fooled = until_fooled
        if max_steps is not None and not until_fooled:
            raise ValueError(
                f"{self.name}: max_steps caps the updates of until_fooled; "
                "set until_fooled = true or drop max_steps"
            )
        self.max_steps = check_count(
            5 * self.steps if max_steps is None else max_steps, self.name, "max_steps", self.steps
        )
        if isinstance(noise_std, bool) or not isinstance(noise_std, int | float):
            raise ValueError(f"{self.name}: noise_std must be a number, got {noise_std!r}")
        if not 0 <= noise_std < math.inf:  # also rejects NaN
            raise ValueError(
                f"{self.name}: noise_std must be finite and >= 0 (0: plain gradients), "
                f"got {noise_std}"
            )
        self.noise_std = float(noise_std)
        self.eot_samples = check_count(eot_samples, self.name, "eot_samples", 1)
        if self.eot_samples > 1 and self.noise_std == 0:
            raise ValueError(
                f"{self.name}: eot_samples = {self.eot_samples} averages gradients over noisy "
                "copies; set noise_std > 0 or eot_samples = 1"
            )
        if precision not in PRECISIONS:
            raise ValueError(
                f"{self.name}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.precision = precision
        self.last_fooling_rate: float | None = None
        self.last_success: Tensor | None = None

    def default_step_size(self) -> float:
        """Step size used when none is given: ``ε/5`` (the ICLR24 reference)."""
        return self.eps / 5

    # ------------------------------------------------------------------ hooks

    def check_input(self, x: Tensor) -> None:
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

    def start(self, x: Tensor, generator: Generator | None) -> Tensor:
        """The first iterate for all of ``x`` (default: ``x`` itself). Drawn once for the whole
        set, so batching does not change random starts."""
        return x.clone()

    def random_start(self, x: Tensor, generator: Generator | None) -> Tensor:
        """A random point of the ε-ball around each sample of ``x`` (``(N, ...)``), inside the
        data range, drawn from ``generator``: the start of each of ``restarts``. Attacks that
        support restarts override it."""
        raise NotImplementedError(f"{self.name} defines no random start")

    def init_state(self, x: Tensor, x_adv: Tensor) -> dict[str, Tensor]:
        """The attack's state for one batch of clean ``x`` and first iterate ``x_adv``, passed
        to every :meth:`step`; each value has the batch as its first dimension (default:
        none)."""
        return {}

    @abstractmethod
    def step(self, x: Tensor, x_adv: Tensor, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        """The next iterate from the clean ``x``, the current ``x_adv`` and the gradient of the
        objective at ``x_adv`` (all of shape ``(N, ...)``), projected and clipped."""

    def clamp(self, x_adv: Tensor) -> Tensor:
        """Clip to the data range (identity without one)."""
        if self.clip is None:
            return x_adv
        return x_adv.clamp(self.clip[0], self.clip[1])

    # ------------------------------------------------------------------ loop

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs at ``x`` (``(N, ...)``) computed in :attr:`precision` and
        returned in ``x``'s dtype (fp32: the plain call)."""
        if self.precision == "fp32":
            return model(x)
        with autocast(self.precision, x.device):
            outputs = model(x)
        return outputs.to(x.dtype)

    def _input_grad(self, objective: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """``∇_x Σ objective`` for the leaf ``x_in``, loss-scaled under fp16."""
        if self.precision != "fp16":
            (grad,) = torch.autograd.grad(objective.sum(), x_in)
            return grad
        (grad,) = torch.autograd.grad(objective.sum() * FP16_ATTACK_LOSS_SCALE, x_in)
        return grad / FP16_ATTACK_LOSS_SCALE

    def perturb(
        self, model: nn.Module, x: Tensor, target: Tensor, *, generator: Generator | None = None
    ) -> Tensor:
        """Adversarial inputs of the shape of ``x`` (see the class docstring)."""
        self.check_input(x)
        check_precision(self.precision, x.device, f"{self.name}: precision")
        if x.shape[0] == 0:
            return x.clone()
        if generator is None and (self.restarts or self.noise_std):
            raise ValueError(
                f"{self.name}: restarts and noise_std draw random numbers; pass "
                "generator=Generator().manual_seed(...) to the call"
            )
        x = x.detach()
        target = target.to(x.device)
        size = self.batch_size or (IMAGE_CHUNK if x.ndim > 2 else x.shape[0])
        first = self.start(x, generator)
        record: _Record | None = None
        for idx in torch.arange(x.shape[0], device=x.device).split(size):
            # The clean objective as the plain attack has always computed it.
            clean = self.objective(self.forward(model, x[idx]), target[idx]).detach()
            with torch.no_grad():
                success = self.success(self._hits(self.forward(model, x[idx]), target[idx]))
            if record is None:
                record = _Record(
                    best=x.clone(),
                    objective=torch.empty(x.shape[0], dtype=clean.dtype, device=clean.device),
                    success=torch.zeros(x.shape[0], dtype=torch.bool, device=clean.device),
                )
            record.objective[idx] = clean
            record.success[idx] = success
            self._descend(model, x[idx], first[idx], target[idx], idx, record, generator)
        assert record is not None  # x has at least one sample
        for _ in range(self.restarts):
            todo = (~record.success).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            starts = self.random_start(x, generator)  # the whole set: batching-independent
            for idx in todo.split(size):
                self._descend(model, x[idx], starts[idx], target[idx], idx, record, generator)
        x_adv = record.best
        with torch.no_grad():
            self.last_success = self.success(self._hits(self.forward(model, x_adv), target))
        self.last_fooling_rate = self.last_success.double().mean().item()
        return x_adv

    @staticmethod
    def _hits(outputs: Tensor, target: Tensor) -> Tensor:
        predicted = predict(outputs)
        return predicted == target.to(predicted.dtype)

    def _objective_and_grad(
        self,
        model: nn.Module,
        x_adv: Tensor,
        target: Tensor,
        generator: Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Objective ``(n,)`` at ``x_adv`` (``(n, ...)``), the gradient that steers the step
        (shape of ``x_adv``) and the outputs at ``x_adv``. With ``noise_std > 0`` the gradient
        is ``(1/S) Σ_s ∇J(x_adv + σξ_s)`` over ``S = eot_samples`` draws
        (EOT, arXiv:1707.07397 §2.1)."""
        if self.noise_std == 0:
            x_in = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                outputs = self.forward(model, x_in)
                objective = self.objective(outputs, target)
                grad = self._input_grad(objective, x_in)
            return objective.detach(), grad, outputs.detach()
        with torch.no_grad():
            outputs = self.forward(model, x_adv)
            objective = self.objective(outputs, target)
        copies = self.eot_samples
        repeated = x_adv.detach().repeat(copies, *([1] * (x_adv.ndim - 1)))
        noise = draw("normal", tuple(repeated.shape), generator, repeated)
        noisy = (repeated + self.noise_std * noise).requires_grad_(True)
        with torch.enable_grad():
            noisy_objective = self.objective(self.forward(model, noisy), target.repeat(copies))
            grad = self._input_grad(noisy_objective, noisy)
        return objective, grad.view(copies, *x_adv.shape).mean(dim=0), outputs

    def _descend(
        self,
        model: nn.Module,
        x: Tensor,
        x_adv: Tensor,
        target: Tensor,
        idx: Tensor,
        record: _Record,
        generator: Generator | None,
    ) -> None:
        """One run from the first iterate ``x_adv`` for the rows ``idx`` of the set (clean
        ``x``, ``target``), offering every iterate to ``record``."""
        state = self.init_state(x, x_adv)
        limit = self.max_steps if self.until_fooled else self.steps
        done = 0
        while True:
            if done < limit:
                objective, grad, outputs = self._objective_and_grad(model, x_adv, target, generator)
            else:
                with torch.no_grad():
                    outputs = self.forward(model, x_adv)
                    objective = self.objective(outputs, target)
            record.offer(idx, x_adv, objective, self.success(self._hits(outputs, target)))
            if done == limit:
                return
            if done >= self.steps:  # until_fooled: only samples not yet successful go on
                going = ~record.success[idx]
                if not bool(going.any()):
                    return
                if not bool(going.all()):
                    x, x_adv, grad, target, idx = (t[going] for t in (x, x_adv, grad, target, idx))
                    state = {key: value[going] for key, value in state.items()}
            x_adv = self.step(x, x_adv.detach(), grad, state).detach()
            done += 1
            if self.step_callback is not None:
                self.step_callback()

    def __repr__(self) -> str:
        extra = "" if self.targeted else ", targeted=False"
        if self.restarts:
            extra += f", restarts={self.restarts}"
        if self.until_fooled:
            extra += f", until_fooled=True, max_steps={self.max_steps}"
        if self.noise_std:
            extra += f", noise_std={self.noise_std:g}, eot_samples={self.eot_samples}"
        if self.precision != "fp32":
            extra += f", precision={self.precision!r}"
        return (
            f"{type(self).__name__}(eps={self.eps:g}, steps={self.steps}, "
            f"step_size={self.step_size:g}, clip={self.clip}, loss={self.loss!r}{extra})"
        )
