"""Transfer of adversarial sets between architectures.

An adversarial set crafted against f (architecture A) towards target labels is *transferred*
to an independently trained model of architecture B when B assigns the adversarial inputs to
their targets. Ilyas et al. 2019 (arXiv:1905.02175, Sec. 3, "Transferability can arise from
non-robust features") relate the transfer rate to how well architecture B learns from the set;
perturbation learning (Kumano et al., arXiv:2402.10470) trains g of architecture B on it and
measures g's clean accuracy. :class:`TransferMatrix` holds both numbers for every (A, B) pair.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from pertlearn.training.losses import predict


@torch.no_grad()
def transfer_rate(
    model_b: nn.Module,
    x_adv: torch.Tensor,
    target: torch.Tensor,
    *,
    batch_size: int = 1000,
) -> float:
    """Share of adversarial inputs ``x_adv`` ``(N, ...)`` that ``model_b`` assigns to their
    ``target`` labels ``(N,)``: ``(1/N) Σ_n 1[argmax model_b(x_adv_n) = target_n]`` (labels
    ±1 and the sign for binary models with scores ``(N,)``). Evaluated in eval mode (restored
    afterwards), ``batch_size`` inputs at a time."""
    n = x_adv.shape[0] if x_adv.ndim else 0
    if x_adv.ndim < 2 or n == 0:
        raise ValueError(f"x_adv must be a non-empty batch (N, ...), got {tuple(x_adv.shape)}")
    if target.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {tuple(target.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    was_training = model_b.training
    model_b.eval()
    hits = 0
    try:
        for xb, tb in zip(x_adv.split(batch_size), target.split(batch_size), strict=True):
            predicted = predict(model_b(xb))
            hits += int((predicted == tb.to(predicted.device, predicted.dtype)).sum())
    finally:
        model_b.train(was_training)
    return hits / n


Cell = tuple[str, str]


def _check_rate(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


@dataclass
class TransferMatrix:
    """Results of transfer studies, source architecture (f, which crafted the set) × target
    architecture (g trained on the set, and an independently trained model scoring the
    transfer rate).

    ``sources``, ``targets``: architecture names (``targets`` defaults to ``sources``).
    Cells are filled with :meth:`record`; :meth:`g_acc_matrix` / :meth:`transfer_matrix`
    give ``(len(sources), len(targets))`` tensors with NaN where nothing was recorded (for a
    heatmap), :meth:`to_rows` one dict per recorded cell (for ``metrics.json``).
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...] = ()
    cells: dict[Cell, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sources = tuple(self.sources)
        self.targets = tuple(self.targets) or self.sources
        for name, archs in (("sources", self.sources), ("targets", self.targets)):
            if not archs or not all(isinstance(a, str) and a for a in archs):
                raise ValueError(f"{name} must be a non-empty list of architecture names")
            if len(set(archs)) != len(archs):
                raise ValueError(f"{name} has duplicate architectures: {list(archs)}")
        cells, self.cells = dict(self.cells), {}
        for (source, target), (acc, rate) in cells.items():
            self.record(source, target, g_acc=acc, transfer_rate=rate)

    def record(self, source: str, target: str, *, g_acc: float, transfer_rate: float) -> None:
        """Store g's clean test accuracy and the transfer rate for the pair (source, target)."""
        if source not in self.sources:
            raise ValueError(f"unknown source architecture {source!r}; have {list(self.sources)}")
        if target not in self.targets:
            raise ValueError(f"unknown target architecture {target!r}; have {list(self.targets)}")
        self.cells[(source, target)] = (
            _check_rate(g_acc, "g_acc"),
            _check_rate(transfer_rate, "transfer_rate"),
        )

    def _matrix(self, which: int) -> torch.Tensor:
        out = torch.full((len(self.sources), len(self.targets)), math.nan, dtype=torch.float64)
        for (source, target), values in self.cells.items():
            out[self.sources.index(source), self.targets.index(target)] = values[which]
        return out

    def g_acc_matrix(self) -> torch.Tensor:
        """g's clean test accuracy, ``(len(sources), len(targets))``, NaN where not recorded."""
        return self._matrix(0)

    def transfer_matrix(self) -> torch.Tensor:
        """Transfer rates, ``(len(sources), len(targets))``, NaN where not recorded."""
        return self._matrix(1)

    @property
    def complete(self) -> bool:
        """Whether every (source, target) pair has been recorded."""
        return len(self.cells) == len(self.sources) * len(self.targets)

    def to_rows(self) -> list[dict[str, str | float]]:
        """One row per recorded cell, sources then targets in their listed order:
        ``{"source", "target", "g_acc", "transfer_rate"}``."""
        rows: list[dict[str, str | float]] = []
        for source in self.sources:
            for target in self.targets:
                if (source, target) in self.cells:
                    acc, rate = self.cells[(source, target)]
                    rows.append(
                        {"source": source, "target": target, "g_acc": acc, "transfer_rate": rate}
                    )
        return rows

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, object]],
        *,
        sources: Sequence[str] | None = None,
        targets: Sequence[str] | None = None,
    ) -> TransferMatrix:
        """Rebuild a matrix from :meth:`to_rows` output; architectures default to those named
        in the rows, in order of appearance."""
        rows = list(rows)
        for row in rows:
            missing = {"source", "target", "g_acc", "transfer_rate"} - set(row)
            if missing:
                raise ValueError(f"row {dict(row)} lacks {sorted(missing)}")
        srcs = (
            list(sources) if sources is not None else list(dict.fromkeys(r["source"] for r in rows))
        )
        tgts = (
            list(targets) if targets is not None else list(dict.fromkeys(r["target"] for r in rows))
        )
        matrix = cls(tuple(str(s) for s in srcs), tuple(str(t) for t in tgts))
        for row in rows:
            acc, rate = row["g_acc"], row["transfer_rate"]
            if not isinstance(acc, int | float) or not isinstance(rate, int | float):
                raise ValueError(f"row {dict(row)}: g_acc and transfer_rate must be numbers")
            matrix.record(str(row["source"]), str(row["target"]), g_acc=acc, transfer_rate=rate)
        return matrix
