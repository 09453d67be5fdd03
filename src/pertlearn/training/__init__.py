"""Losses, the gradient-descent trainers, and adversarial training.

Module map: :mod:`~pertlearn.training.losses` (margin losses, cross-entropy),
:mod:`~pertlearn.training.config` (:class:`TrainConfig`, :class:`TrainResult`),
:mod:`~pertlearn.training.schedule` (the one ``ReduceLROnPlateau`` rule and the ``stop_tol``
rule), :mod:`~pertlearn.training.divergence` (:class:`TrainingDivergedError`),
:mod:`~pertlearn.training.trainer` (:func:`fit`, autograd), :mod:`~pertlearn.training.fast`
(explicit gradients for the papers' networks, with ``fast_kernels``, ``fast_incremental`` and
``fast_schedule``), :mod:`~pertlearn.training.minibatch` (image classifiers, with
``checkpoint``), :mod:`~pertlearn.training.adversarial` (PGD adversarial training, robust
accuracy) and :mod:`~pertlearn.training.accel` (mixed precision, channels last, generators on
the data's device, memory-probed batch sizes: docs/gpu.md).
"""

from pertlearn.training.adversarial import AdversarialConfig, Perturb, robust_accuracy
from pertlearn.training.config import TrainConfig, TrainResult
from pertlearn.training.divergence import WEIGHT_BOUND, TrainingDivergedError
from pertlearn.training.losses import (
    MARGIN_LOSSES,
    cross_entropy,
    margin_loss,
    margin_loss_derivative,
    per_sample_loss,
    per_sample_margin_loss,
    predict,
)
from pertlearn.training.trainer import fit

__all__ = [
    "MARGIN_LOSSES",
    "WEIGHT_BOUND",
    "AdversarialConfig",
    "Perturb",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "cross_entropy",
    "fit",
    "margin_loss",
    "margin_loss_derivative",
    "per_sample_loss",
    "per_sample_margin_loss",
    "predict",
    "robust_accuracy",
]
