"""Losses on binary margins, and cross-entropy for multi-class outputs.

A margin loss is written as a function ``ℓ(s)`` of ``s = -y f(x)`` (the convention of NeurIPS24,
arXiv:2410.23677): identity ``ℓ(s) = s``, logistic ``ℓ(s) = log(1 + e^s)``, exponential
``ℓ(s) = e^s``. Its derivative ``ℓ'(s)`` weights each sample in the NeurIPS24 gradient-flow
theory. :func:`margin_loss` averages over samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

_VALUE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda s: s,
    "logistic": F.softplus,
    "exponential": torch.exp,
}
_DERIVATIVE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": torch.ones_like,
    "logistic": torch.sigmoid,
    "exponential": torch.exp,
}
MARGIN_LOSSES: tuple[str, ...] = tuple(_VALUE)


def _check_name(name: str) -> None:
    if name not in _VALUE:
        raise ValueError(f"unknown margin loss {name!r}; choose one of {', '.join(MARGIN_LOSSES)}")


def per_sample_margin_loss(scores: torch.Tensor, labels: torch.Tensor, name: str) -> torch.Tensor:
    """``ℓ(-y_n f(x_n))`` for each sample: ``scores`` and ``labels`` (±1) of shape ``(N,)``."""
    _check_name(name)
    return _VALUE[name](-labels * scores)


def margin_loss(scores: torch.Tensor, labels: torch.Tensor, name: str) -> torch.Tensor:
    """Mean margin loss ``(1/N) Σ_n ℓ(-y_n f(x_n))``, a scalar."""
    return per_sample_margin_loss(scores, labels, name).mean()


def margin_loss_derivative(scores: torch.Tensor, labels: torch.Tensor, name: str) -> torch.Tensor:
    """``ℓ'(-y_n f(x_n))`` for each sample, shape ``(N,)`` (always positive)."""
    _check_name(name)
    return _DERIVATIVE[name](-labels * scores)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for logits ``(N, K)`` and integer labels ``(N,)`` in ``0..K-1``."""
    return F.cross_entropy(logits, labels.long())


LOGIT_MARGIN = "logit_margin"
"""Loss name of :func:`per_sample_logit_margin` (attacks' ``loss`` option)."""


def per_sample_logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``max_{j≠y_n} z_{n,j} − z_{n,y_n}`` for logits ``z`` ``(N, K)`` and labels ``(N,)`` in
    ``0..K-1`` → ``(N,)``: negative exactly when the label wins. The margin objective of
    Carlini & Wagner (arXiv:1608.04644, §V-A, f₆ with κ = 0, unclamped); unlike cross-entropy its
    gradient does not fade once the label leads, so targeted attacks keep pushing toward it."""
    index = labels.long()[:, None]
    label_logit = logits.gather(1, index).squeeze(1)
    others = logits.scatter(1, index, float("-inf"))
    return others.amax(dim=1) - label_logit


def per_sample_loss(
    outputs: torch.Tensor, labels: torch.Tensor, margin: str = "logistic"
) -> torch.Tensor:
    """Per-sample loss for either output convention: binary scores ``(N,)`` with ±1 labels use
    the margin loss ``margin``; logits ``(N, K)`` with class labels use cross-entropy.
    ``margin = "logit_margin"`` gives :func:`per_sample_logit_margin` for logits and the
    identity margin loss ``-y f(x)`` (the same quantity for two classes) for binary scores."""
    if margin == LOGIT_MARGIN:
        if outputs.ndim == 1:
            return per_sample_margin_loss(outputs, labels.to(outputs.dtype), "identity")
        return per_sample_logit_margin(outputs, labels)
    if outputs.ndim == 1:
        return per_sample_margin_loss(outputs, labels.to(outputs.dtype), margin)
    return F.cross_entropy(outputs, labels.long(), reduction="none")


ATTACK_LOSSES: tuple[str, ...] = (*MARGIN_LOSSES, LOGIT_MARGIN)
"""Loss names attacks accept (``loss`` option)."""


def predict(outputs: torch.Tensor) -> torch.Tensor:
    """Predicted labels: the sign (±1, ties to +1) of binary scores ``(N,)``, or the argmax
    class of logits ``(N, K)``."""
    if outputs.ndim == 1:
        return torch.where(outputs >= 0, 1.0, -1.0).to(outputs.dtype)
    return outputs.argmax(dim=1)
