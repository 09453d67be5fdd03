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


def test_heatmap_of_a_single_cell_keeps_its_title_and_labels_inside_and_apart() -> None:
    fig = heatmap(
        torch.tensor([[0.017]]),
        ("small_cnn",),
        ("small_cnn",),
        "transfer rate (independent model of g's architecture)",
    )
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        canvas = fig.bbox
        title = ax.title.get_window_extent(renderer)
        ylabel = ax.yaxis.label.get_window_extent(renderer)
        for box in (title, ylabel, ax.xaxis.label.get_window_extent(renderer)):
            assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1
            assert canvas.y0 <= box.y0 and box.y1 <= canvas.y1
        assert not title.overlaps(ylabel)
    finally:
        plt.close(fig)


def test_architectures_default_g_to_f() -> None:
    assert architectures({"model": {"name": "mlp"}, "model_g": None}) == ("mlp", "mlp")
    assert architectures({"model": {"name": "mlp"}, "model_g": {"name": "small_cnn"}}) == (
        "mlp",
        "small_cnn",
    )
