"""Transfer-matrix heatmaps: labelled axes, the numbers in the cells."""

from __future__ import annotations

import math

import torch

from pertlearn.reports.figures import plt
from pertlearn.reports.transfer_figures import (
    SOURCE_LABEL,
    TARGET_LABEL,
    architectures,
    heatmap,
)


def test_heatmap_labels_axes_and_prints_every_cell() -> None:
    values = torch.tensor([[0.8125, math.nan], [0.25, 0.5]], dtype=torch.float64)
    fig = heatmap(values, ("small_cnn", "mlp"), ("small_cnn", "mlp"), "g accuracy")
    ax = fig.axes[0]
    assert ax.get_xlabel() == TARGET_LABEL == "g architecture (learns)"
    assert ax.get_ylabel() == SOURCE_LABEL == "f architecture (crafted against)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["small_cnn", "mlp"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["small_cnn", "mlp"]
    # row-major: (0, 0), (0, 1), (1, 0), (1, 1)
    assert [t.get_text() for t in ax.texts] == ["0.812", "n/a", "0.250", "0.500"]
    plt.close(fig)


def test_architectures_default_g_to_f() -> None:
    assert architectures({"model": {"name": "mlp"}, "model_g": None}) == ("mlp", "mlp")
    assert architectures({"model": {"name": "mlp"}, "model_g": {"name": "small_cnn"}}) == (
        "mlp",
        "small_cnn",
    )
