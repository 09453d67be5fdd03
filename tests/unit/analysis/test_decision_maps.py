"""Decision maps: axes, grid signs, agreement and the PNG."""

from __future__ import annotations

import pytest
import torch

from pertlearn.analysis.decision_maps import (
    decision_map,
    default_axes,
    orthonormal_axes,
    plane_points,
    plot_decision_map,
)


def test_orthonormal_axes() -> None:
    e1, e2 = orthonormal_axes(torch.tensor([2.0, 0.0, 0.0]), torch.tensor([1.0, 3.0, 0.0]))
    assert e1.tolist() == [1.0, 0.0, 0.0] and e2.tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="parallel"):
        orthonormal_axes(torch.tensor([1.0, 1.0]), torch.tensor([-2.0, -2.0]))
    with pytest.raises(ValueError, match="zero"):
        orthonormal_axes(torch.zeros(2), torch.ones(2))


def test_default_axes_are_the_class_means_orthonormalized() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.where(torch.arange(40) < 20, 1.0, -1.0).double()
    e1, e2 = default_axes(x, y)
    mean_pos = x[:20].mean(0)
    torch.testing.assert_close(e1, mean_pos / mean_pos.norm())
    assert abs(float(e1 @ e2)) < 1e-12 and float(e2.norm()) == pytest.approx(1.0)
    mean_neg = x[20:].mean(0)  # the −1 mean lies in the plane
    residual = mean_neg - (mean_neg @ e1) * e1 - (mean_neg @ e2) * e2
    assert residual.norm().item() < 1e-12
    with pytest.raises(ValueError, match="both labels"):
        default_axes(x, torch.ones(40, dtype=torch.float64))


def test_grid_signs_of_linear_scorers_and_agreement() -> None:
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    y = torch.tensor([1.0, -1.0, -1.0])
    axes = (torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))
    dmap = decision_map(
        {"a": lambda z: z[:, 0], "b": lambda z: z[:, 1], "c": lambda z: 2 * z[:, 0]},
        x,
        y,
        axes=axes,
        resolution=20,  # even: no grid point on the axes
        extent=1.0,
    )
    a = dmap.signs["a"]
    assert a.shape == (20, 20)
    assert bool((a[:, 10:] == 1).all()) and bool((a[:, :10] == -1).all())  # columns = axis 1
    assert bool((dmap.signs["b"][10:] == 1).all())  # rows = axis 2
    assert dmap.agreement("a", "c") == 1.0
    assert dmap.agreement("a", "b") == pytest.approx(0.5)
    torch.testing.assert_close(dmap.points, x[:, :2])
    grid = plane_points(axes[0], axes[1], torch.tensor([-1.0, 1.0]))
    assert grid.tolist() == [[-1, -1, 0], [1, -1, 0], [-1, 1, 0], [1, 1, 0]]


def test_plot_writes_a_png(tmp_path) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 5, generator=g)
    y = torch.where(x[:, 0] > 0, 1.0, -1.0)
    dmap = decision_map({"f": lambda z: z[:, 0], "g": lambda z: z[:, 0] + 0.3}, x, y, resolution=15)
    path = plot_decision_map(dmap, tmp_path / "maps" / "m.png", rows=[["f", "g"]], title="t")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    # PDF and SVG beside the PNG, no temp file left
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pdf", "m.png", "m.svg"]
