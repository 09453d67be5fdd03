"""Evaluation metrics shared by all experiments. Models follow the output conventions of
:mod:`pertlearn.models` (binary scores ``(N,)`` or logits ``(N, K)``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pertlearn.training.losses import predict


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Predicted labels of ``model`` on ``x`` (``(N, ...)``), shape ``(N,)``; evaluated in
    batches of ``batch_size`` in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([predict(model(chunk)) for chunk in x.split(batch_size)])
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192) -> float:
    """Share of samples of ``x`` (``(N, ...)``) whose predicted label equals ``y`` (``(N,)``:
    ±1 for binary scores, ties to +1; class indices for logits): ``(1/N) Σ_n 1[ŷ_n = y_n]``;
    NaN for no samples. Evaluated in batches of ``batch_size`` (:func:`predictions`)."""
    if x.shape[0] == 0:
        return math.nan
    predicted = predictions(model, x, batch_size)
    return (predicted == y.to(predicted.dtype)).double().mean().item()


def agreement(f: nn.Module, g: nn.Module, x: torch.Tensor) -> float:
    """Share of inputs ``x`` (``(N, ...)``) on which ``f`` and ``g`` predict the same label
    (sign f = sign g, ties to +1; or the same argmax class): ``(1/N) Σ_n 1[f̂_n = ĝ_n]``."""
    return (predictions(f, x) == predictions(g, x)).double().mean().item()


def majority_share(model: nn.Module, x: torch.Tensor) -> float:
    """Share of inputs ``x`` (``(N, ...)``) given the most frequent predicted label:
    ``max_c |{n: ŷ_n = c}| / N`` (1.0: a constant classifier)."""
    _, counts = predictions(model, x).unique(return_counts=True)
    return int(counts.max().item()) / x.shape[0]
