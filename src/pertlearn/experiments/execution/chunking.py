"""Which configurations of a sweep run together as one batched computation."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from pertlearn.experiments.batched import can_batch
from pertlearn.experiments.sweeps import Point

BATCH_SIZE = 10
"""Default number of configurations one batched computation runs (``--batch-size``): large
enough to share the work, small enough that a killed sweep loses little and progress moves."""


def batch_key(point: Point) -> Hashable:
    """Configurations with equal keys have networks of equal shapes (what
    :func:`~pertlearn.experiments.batched.run_many` trains together); learning rates, seeds,
    ε, targets and the like may differ."""
    c: Any = point.config  # a neurips config when batchable; others get their own chunk
    return (
        c.pipeline,
        c.device,
        c.dtype,
        c.data.model_dump_json(exclude={"shift"}),
        c.model.model_dump_json(),
        c.model_g.model_dump_json() if c.model_g is not None else None,
        c.train_f.loss,
        c.train_g.loss,
    )


def chunks(todo: Sequence[Point], batch_size: int) -> list[list[Point]]:
    """Split ``todo`` into the units one worker runs: configurations that
    :func:`~pertlearn.experiments.batched.can_batch` grouped by :func:`batch_key`, ordered by
    seed (so a chunk holds configurations that share data, f or the control, which
    :func:`~pertlearn.experiments.batched.run_many` trains once), in chunks of at most
    ``batch_size``; every other configuration alone. Units in order of first appearance."""
    if batch_size <= 1:
        return [[point] for point in todo]
    groups: dict[Hashable, list[Point]] = {}
    order: list[Point | tuple[Hashable]] = []  # a point alone, or (key,) of a group
    for point in todo:
        if not can_batch(point.config):
            order.append(point)
            continue
        key = batch_key(point)
        if key not in groups:
            order.append((key,))
        groups.setdefault(key, []).append(point)
    out: list[list[Point]] = []
    for item in order:
        if isinstance(item, Point):
            out.append([item])
            continue
        group = sorted(groups[item[0]], key=lambda p: p.config.seed)  # stable
        out += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return out
