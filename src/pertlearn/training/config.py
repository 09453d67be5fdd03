"""Settings and record of one full-batch (or mini-batch) training run: :class:`TrainConfig`
(``train_f`` / ``train_g`` in an experiment config) and :class:`TrainResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pertlearn.errors import ConfigError


class StrictConfig(BaseModel):
    """A config section: unknown keys, wrong types (no coercion of ``true`` to ``1``) and
    non-finite floats are rejected when it is built and when a key is assigned
    (``config.train_f.epochs = 50``). A refused assignment leaves the section as it was and
    raises :class:`~pertlearn.errors.ConfigError`, one line naming the key."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        before = dict(self.__dict__)
        fields_set = set(self.__pydantic_fields_set__)
        try:
            super().__setattr__(name, value)
        except ValidationError as err:
            # pydantic has stored the value already when a check of the whole section fails
            self.__dict__.clear()
            self.__dict__.update(before)
            self.__pydantic_fields_set__.clear()
            self.__pydantic_fields_set__.update(fields_set)
            raise ConfigError(assignment_error(type(self).__name__, name, value, err)) from None


def assignment_error(section: str, key: str, value: Any, err: ValidationError) -> str:
    """The one-line message for ``section.key = value`` refused with ``err``."""
    first = err.errors()[0]
    if first["type"] == "no_such_attribute":
        return f"{section} has no key {key!r}; check its spelling (docs/config-reference.md)"
    text = repr(value)
    shown = text[:80] + ("..." if len(text) > 80 else "")
    problem = first["msg"].removeprefix("Value error, ")
    return f"cannot set {section}.{key} = {shown}: {problem}; the config is unchanged"


class TrainConfig(StrictConfig):
    """How one network is trained (``train_f`` / ``train_g`` in an experiment config)."""

    loss: Literal["identity", "logistic", "exponential", "cross_entropy"] = "identity"
    lr: float = Field(1.0, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    epochs: int = Field(1000, ge=1)
    batch_size: int | None = Field(None, ge=1, description="None: full batch")
    plateau_patience: int | None = Field(
        10, ge=0, description="ReduceLROnPlateau patience on the training loss; None disables"
    )
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    stop_tol: float | None = Field(
        None, gt=0, description="stop once the relative change of the loss is below this"
    )


@dataclass
class TrainResult:
    """What a trainer records: ``losses``, the mean training loss of each epoch (full batch:
    evaluated just before that epoch's step; mini-batch: averaged over its batches), the epochs
    actually run, and for margin losses trained full-batch the per-sample weights
    ``∫ ℓ'(-y_k f(x_k; t)) dt ≈ Σ_t lr_t ℓ'(-y_k f(x_k; t))`` (shape ``(N,)``) that weight
    each training sample in the NeurIPS24 gradient-flow theory (arXiv:2410.23677), and the
    learning rate at the end."""

    losses: list[float] = field(default_factory=list)
    epochs_run: int = 0
    loss_weights: torch.Tensor | None = None
    final_lr: float = math.nan
