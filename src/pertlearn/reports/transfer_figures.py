"""Transfer matrices of a sweep: adversarial sets crafted against f of architecture A
(``model``), learned by g of architecture B (``model_g``) and scored by an independent model
of architecture B (``transfer_eval = true`` in the images pipeline).

Ilyas et al. 2019 (arXiv:1905.02175, Sec. 3) relate transfer to non-robust features;
perturbation learning (Kumano et al., arXiv:2402.10470) reads g's clean accuracy. For every
(A, B) cell this module averages g's clean test accuracy (``g_acc_test``) and the transfer rate
(``transfer_rate``) over the seeds, draws both matrices as heatmaps with the numbers in the
cells, and writes ``transfer.json`` into the sweep directory; the report writes the heatmaps
with its other figures (``figures/transfer_g_acc.{png,pdf,svg}``, ``figures/transfer_rate.*``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pertlearn.atomic import write_text
from pertlearn.experiments.rundir import read_run
from pertlearn.experiments.store import SweepStore
from pertlearn.features.transfer import TransferMatrix
from pertlearn.reports.figures import Figure, make_figure, plt

SOURCE_LABEL = "f architecture (crafted against)"
TARGET_LABEL = "g architecture (learns)"
JSON_FILE = "transfer.json"
MATRICES = (
    ("g_acc", "transfer_g_acc", "g's clean test accuracy"),
    ("transfer_rate", "transfer_rate", "transfer rate (independent model of g's architecture)"),
)


def architectures(config: dict[str, Any]) -> tuple[str, str]:
    """``(A, B)``: the network names of f (``model``) and of g (``model_g``, else ``model``)
    in a run's config."""
    f_model = config.get("model") or {}
    g_model = config.get("model_g") or f_model
    return str(f_model.get("name")), str(g_model.get("name"))


def sweep_transfer_matrix(
    root: str | Path, rows: list[dict[str, Any]]
) -> tuple[TransferMatrix, dict[str, int]] | None:
    """The transfer matrix of the sweep directory ``root`` from its result ``rows``
    (:func:`~pertlearn.experiments.store.collect_results`): means over seeds, NaN for planned
    cells without a complete run, and the number of seeds per cell (key ``"A→B"``); ``None``
    when no complete run has a ``transfer_rate``."""
    store = SweepStore(root)
    values: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        rate, acc = row.get("transfer_rate"), row.get("g_acc_test")
        if not isinstance(rate, int | float) or not isinstance(acc, int | float):
            continue
        if not (math.isfinite(rate) and math.isfinite(acc)):
            continue
        cell = architectures(read_run(store.run_dir(row["run_id"])).config)
        values[cell].append((float(acc), float(rate)))
    if not values:
        return None
    planned = _planned(store)
    sources = list(dict.fromkeys([*(a for a, _ in planned), *(a for a, _ in values)]))
    targets = list(dict.fromkeys([*(b for _, b in planned), *(b for _, b in values)]))
    matrix = TransferMatrix(tuple(sources), tuple(targets))
    seeds: dict[str, int] = {}
    for (source, target), pairs in values.items():
        matrix.record(
            source,
            target,
            g_acc=sum(a for a, _ in pairs) / len(pairs),
            transfer_rate=sum(r for _, r in pairs) / len(pairs),
        )
        seeds[f"{source}→{target}"] = len(pairs)
    return matrix, seeds


def _planned(store: SweepStore) -> list[tuple[str, str]]:
    """The (A, B) cells the sweep plans when it sweeps ``model.name`` / ``model_g.name``, in
    point order, so that cells still running show as missing instead of vanishing."""
    manifest = store.read_manifest() or {}
    cells = []
    for point in manifest.get("points", []):
        values = point.get("values", {}) if isinstance(point, dict) else {}
        source = values.get("model.name")
        if isinstance(source, str):
            cells.append((source, str(values.get("model_g.name", source))))
    return cells


MIN_HEATMAP_SIZE = (5.0, 3.4)
"""Smallest heatmap (width, height) in inches: room for the title above and the axis labels
beside a single cell."""


def heatmap(
    values: torch.Tensor, sources: tuple[str, ...], targets: tuple[str, ...], title: str
) -> Any:
    """A matplotlib figure of ``values`` ``(len(sources), len(targets))`` in [0, 1]: rows are
    f's architecture, columns g's, the value printed in each cell (``n/a`` for NaN)."""
    rows, cols = values.shape
    # at least the room of the title and the axis labels, which a 1 × 1 matrix would cut
    width = max(MIN_HEATMAP_SIZE[0], 1.6 + 1.5 * cols)
    height = max(MIN_HEATMAP_SIZE[1], 1.3 + 1.1 * rows)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(values.numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(rows):
        for j in range(cols):
            value = float(values[i, j])
            text = "n/a" if math.isnan(value) else f"{value:.3f}"
            color = "black" if math.isnan(value) or value > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=11)
    ax.set_xticks(range(cols), list(targets))
    ax.set_yticks(range(rows), list(sources))
    ax.set_xlabel(TARGET_LABEL)
    ax.set_ylabel(SOURCE_LABEL)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def _figures(matrix: TransferMatrix) -> list[tuple[str, str, Any]]:
    tensors = {"g_acc": matrix.g_acc_matrix(), "transfer_rate": matrix.transfer_matrix()}
    return [
        (stem, title, heatmap(tensors[key], matrix.sources, matrix.targets, title))
        for key, stem, title in MATRICES
    ]


def transfer_figures(matrix: TransferMatrix) -> list[Figure]:
    """The two heatmaps (g's accuracy, transfer rate) as report figures."""
    captions = {
        "transfer_g_acc": "Clean test accuracy of g (architecture of the column) trained only on "
        "the adversarial set crafted against f (architecture of the row); mean over seeds.",
        "transfer_rate": "Share of the adversarial set crafted against f (row) that an "
        "independently trained model of the column's architecture assigns to the target "
        "labels; mean over seeds.",
    }
    return [make_figure(stem, title, fig, captions[stem]) for stem, title, fig in _figures(matrix)]


@dataclass(frozen=True)
class TransferReport:
    """The transfer matrix of a sweep with its seeds per cell and its two heatmaps, built once
    for the report page, its table and the files beside it."""

    matrix: TransferMatrix
    seeds: dict[str, int]
    figures: list[Figure]

    def table(self) -> tuple[list[dict[str, Any]], list[str]]:
        """One table row per cell and the table's columns."""
        rows: list[dict[str, Any]] = [
            {
                SOURCE_LABEL: row["source"],
                TARGET_LABEL: row["target"],
                "g_acc": row["g_acc"],
                "transfer_rate": row["transfer_rate"],
                "seeds": self.seeds.get(f"{row['source']}→{row['target']}"),
            }
            for row in self.matrix.to_rows()
        ]
        return rows, [SOURCE_LABEL, TARGET_LABEL, "g_acc", "transfer_rate", "seeds"]

    def write(self, root: str | Path) -> Path:
        """Write ``transfer.json`` (labels, both matrices, the cells and their seeds) into the
        sweep directory ``root``; return its path."""
        matrix = self.matrix
        payload = {
            "sources": list(matrix.sources),
            "targets": list(matrix.targets),
            "source_label": SOURCE_LABEL,
            "target_label": TARGET_LABEL,
            "g_acc": _nested(matrix.g_acc_matrix()),
            "transfer_rate": _nested(matrix.transfer_matrix()),
            "cells": matrix.to_rows(),
            "seeds_per_cell": self.seeds,
        }
        json_path = Path(root) / JSON_FILE
        write_text(json_path, json.dumps(payload, indent=2) + "\n")
        return json_path


def _nested(values: torch.Tensor) -> list[list[float | None]]:
    return [[None if math.isnan(v) else v for v in row] for row in values.tolist()]


def transfer_report(root: str | Path, rows: list[dict[str, Any]]) -> TransferReport | None:
    """The :class:`TransferReport` of the sweep directory ``root`` from its result ``rows``;
    ``None`` without transfer results."""
    found = sweep_transfer_matrix(root, rows)
    if found is None:
        return None
    matrix, seeds = found
    return TransferReport(matrix, seeds, transfer_figures(matrix))
