"""Decision maps: the signs of several decision functions on a 2-D plane through the origin.

A plane is spanned by two orthonormal axes ``e1, e2`` (``(d,)`` each); the grid point
``(a, b)`` is the input ``a e1 + b e2``. :func:`default_axes` takes the normalized means of
the +1 and −1 training samples and orthonormalizes them (Gram–Schmidt); any two vectors can
be given instead. :func:`decision_map` evaluates scorers (``(M, d) → (M,)``) on the grid and
:func:`plot_decision_map` draws one panel per sign map, agreement panels for chosen pairs,
and the training points projected onto the plane, with the plane coordinates as tick values and
a legend, and writes it as PNG, PDF and SVG (:mod:`pertlearn.analysis.plotting`). The agreement
a map prints is measured on the plotted plane, not on the test set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

Scorer = Callable[[torch.Tensor], torch.Tensor]


def orthonormal_axes(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram–Schmidt on two vectors ``(d,)``: ``e1 = u/‖u‖``, ``e2`` = the normalized part of
    ``v`` orthogonal to ``e1``. Raises ValueError for a zero or (near-)parallel pair."""
    u, v = u.flatten(), v.flatten()
    if u.shape != v.shape:
        raise ValueError(f"axes must have the same size, got {u.numel()} and {v.numel()}")
    nu = u.norm()
    if nu == 0:
        raise ValueError("the first axis is the zero vector; give a nonzero direction")
    e1 = u / nu
    rest = v - (v @ e1) * e1
    if rest.norm() <= 1e-6 * max(v.norm().item(), 1e-30):
        raise ValueError("the two axes are (nearly) parallel; give two independent directions")
    return e1, rest / rest.norm()


def default_axes(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized means of the +1 and of the −1 samples of ``x`` ``(N, d)``, orthonormalized.
    Needs both classes. When the two means are (nearly) parallel, as for the symmetric
    ``shifted_gauss`` classes ±μ, a fixed random direction (seed 0) is orthonormalized against
    the first axis instead, so the plane still contains both class means."""
    x = x.flatten(1)
    pos, neg = y > 0, y <= 0
    if not bool(pos.any()) or not bool(neg.any()):
        raise ValueError("default decision-map axes need training samples of both labels")
    m_pos, m_neg = x[pos].mean(0), x[neg].mean(0)
    try:
        return orthonormal_axes(m_pos / m_pos.norm(), m_neg / m_neg.norm())
    except ValueError:
        fallback = torch.randn(x.shape[1], generator=torch.Generator().manual_seed(0))
        return orthonormal_axes(m_pos, fallback.to(x))


@dataclass
class DecisionMap:
    """Signs (±1, ``(R, R)`` each, row = second axis) of named scorers on a grid of the plane
    ``a e1 + b e2``, ``a, b ∈ coords``; ``points``: projected training points ``(N, 2)`` with
    their ``labels``."""

    coords: torch.Tensor
    signs: dict[str, torch.Tensor]
    points: torch.Tensor
    labels: torch.Tensor
    axes: tuple[torch.Tensor, torch.Tensor]
    axis_names: tuple[str, str] = ("axis 1", "axis 2")
    agreements: dict[str, float] = field(default_factory=dict)

    def agreement(self, a: str, b: str) -> float:
        """Share of grid points where the signs of ``a`` and ``b`` agree."""
        return (self.signs[a] == self.signs[b]).double().mean().item()


def plane_points(e1: torch.Tensor, e2: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Grid inputs ``a e1 + b e2`` for ``a, b`` in ``coords`` ``(R,)`` → ``(R·R, d)``, row-major
    with ``b`` (second axis) as the slow index."""
    b, a = torch.meshgrid(coords, coords, indexing="ij")
    return a.reshape(-1, 1) * e1[None, :] + b.reshape(-1, 1) * e2[None, :]


def decision_map(
    scorers: Mapping[str, Scorer],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    axes: tuple[torch.Tensor, torch.Tensor] | None = None,
    axis_names: tuple[str, str] | None = None,
    resolution: int = 81,
    extent: float | None = None,
) -> DecisionMap:
    """Evaluate each scorer on a ``resolution × resolution`` grid of the plane.

    ``axes``: two directions ``(d,)`` (orthonormalized here); default :func:`default_axes`.
    ``extent``: the grid spans ``[−extent, extent]`` on both axes; default 1.2 × the largest
    |coordinate| of the projected training points.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    x = x_train.flatten(1)
    if axes is None:
        e1, e2 = default_axes(x, y_train)
        names = axis_names or ("the +1 class mean", "the −1 class mean (⊥ part)")
    else:
        e1, e2 = orthonormal_axes(axes[0].to(x), axes[1].to(x))
        names = axis_names or ("axis 1", "axis 2 (⊥ part)")
    points = torch.stack([x @ e1, x @ e2], dim=1)
    if extent is None:
        extent = 1.2 * points.abs().max().item()
    if not extent > 0:
        raise ValueError(f"extent must be positive, got {extent}")
    coords = torch.linspace(-extent, extent, resolution, dtype=x.dtype, device=x.device)
    grid = plane_points(e1, e2, coords)
    signs = {}
    with torch.no_grad():
        for name, scorer in scorers.items():
            scores = scorer(grid).reshape(resolution, resolution)
            signs[name] = torch.where(scores >= 0, 1.0, -1.0)
    return DecisionMap(coords, signs, points, y_train.detach(), (e1, e2), names)


def plane_agreement_text(on_plane: float, on_test: float | None = None) -> str:
    """``agreement on this plane: 99.4% (test set: 1.000)``: the share of the plotted grid
    where two signs agree, and (when given) their agreement on the test set, which a map must
    not be mistaken for."""
    test = f" (test set: {on_test:.3f})" if on_test is not None else ""
    return f"agreement on this plane: {100 * on_plane:.1f}%{test}"


def draw_decision_map(
    dmap: DecisionMap,
    *,
    rows: Sequence[Sequence[str]],
    title: str,
    labels: Mapping[str, str] | None = None,
    test_agreement: Mapping[tuple[str, str], float] | None = None,
) -> Any:
    """Draw ``dmap`` as a matplotlib figure (Agg backend, :mod:`pertlearn.analysis.plotting`
    style); the caller saves and closes it.

    ``rows``: names of sign maps per figure row; each row gets a last panel with the agreement
    of its first two maps on this plane (pale: agree, red: disagree), titled with that share
    and, where ``test_agreement`` has the pair, the agreement measured on the test set.
    ``labels``: display names (e.g. ``{"fhat": "f̂"}``). Both axes carry the plane
    coordinates ``a, b`` of the grid inputs ``a e1 + b e2``; training points: × for label +1,
    ○ for −1; a legend below the panels names every colour and marker.
    """
    # lazy: matplotlib is heavy, and only drawing needs it (decision_map() does not)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from pertlearn.analysis.plotting import figure_style

    labels = dict(labels or {})
    tests = dict(test_agreement or {})
    coords = dmap.coords.detach().cpu().double()
    lo, hi = coords[0].item(), coords[-1].item()
    pts = dmap.points.detach().cpu().double()
    ys = dmap.labels.detach().cpu()
    colors = {"+1": "#92c5de", "-1": "#f4a582", "agree": "#f0f0f0", "disagree": "#d6604d"}
    sign_cmap = ListedColormap([colors["-1"], colors["+1"]])
    agree_cmap = ListedColormap([colors["disagree"], colors["agree"]])
    point_colors = {"+1": "#08306b", "-1": "#67000d"}
    ncols = max(len(r) for r in rows) + 1
    with figure_style():
        fig, axes = plt.subplots(
            len(rows),
            ncols,
            figsize=(3.2 * ncols, 3.5 * len(rows) + 1.2),
            squeeze=False,
            sharex=True,
            sharey=True,
            layout="constrained",
        )
        for i, row in enumerate(rows):
            for j in range(ncols):
                ax = axes[i][j]
                ax.grid(False)
                ax.spines[["top", "right"]].set_visible(True)
                if j < len(row):
                    name = row[j]
                    image = dmap.signs[name].cpu().double().numpy()
                    ax.imshow(
                        image,
                        origin="lower",
                        extent=(lo, hi, lo, hi),
                        cmap=sign_cmap,
                        vmin=-1,
                        vmax=1,
                        interpolation="nearest",
                    )
                    ax.set_title(f"sign {labels.get(name, name)}")
                elif len(row) >= 2:
                    a, b = row[0], row[1]
                    same = (dmap.signs[a] == dmap.signs[b]).cpu().double().numpy()
                    ax.imshow(
                        same,
                        origin="lower",
                        extent=(lo, hi, lo, hi),
                        cmap=agree_cmap,
                        vmin=0,
                        vmax=1,
                        interpolation="nearest",
                    )
                    pair = f"sign {labels.get(a, a)} = sign {labels.get(b, b)}"
                    text = plane_agreement_text(float(same.mean()), tests.get((a, b)))
                    ax.set_title(f"{pair}\n{text.removeprefix('agreement ')}")
                else:
                    ax.axis("off")
                    continue
                pos = ys > 0
                ax.scatter(
                    pts[pos, 0],
                    pts[pos, 1],
                    s=5,
                    marker="x",
                    c=point_colors["+1"],
                    linewidths=0.5,
                )
                ax.scatter(
                    pts[~pos, 0],
                    pts[~pos, 1],
                    s=5,
                    marker="o",
                    facecolors="none",
                    edgecolors=point_colors["-1"],
                    linewidths=0.5,
                )
                ax.set_xlim(lo, hi)
                ax.set_ylim(lo, hi)
                ax.set_aspect("auto")  # undo imshow's; figsize keeps panels square
                ax.tick_params(labelbottom=True, labelleft=j == 0)
            axes[i][0].set_ylabel(f"b, along {dmap.axis_names[1]}")
        for j in range(ncols):
            axes[-1][j].set_xlabel(f"a, along {dmap.axis_names[0]}")
        handles = [
            Patch(facecolor=colors["+1"], edgecolor="0.5", label="sign +1"),
            Patch(facecolor=colors["-1"], edgecolor="0.5", label="sign −1"),
            Patch(facecolor=colors["agree"], edgecolor="0.5", label="signs agree"),
            Patch(facecolor=colors["disagree"], edgecolor="0.5", label="signs disagree"),
            Line2D(
                [], [], marker="x", linestyle="", color=point_colors["+1"], label="training, y = +1"
            ),
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                markerfacecolor="none",
                markeredgecolor=point_colors["-1"],
                label="training, y = −1",
            ),
        ]
        fig.suptitle(title)
        fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    return fig


def plot_decision_map(
    dmap: DecisionMap,
    path: str | Path,
    *,
    rows: Sequence[Sequence[str]],
    title: str,
    labels: Mapping[str, str] | None = None,
    test_agreement: Mapping[tuple[str, str], float] | None = None,
) -> Path:
    """Draw ``dmap`` (see :func:`draw_decision_map`) and write it atomically as PNG, PDF and
    SVG: ``path`` with its suffix replaced by ``.png``, ``.pdf`` and ``.svg``. Returns the PNG's
    path (the others lie beside it)."""
    # lazy: matplotlib is heavy, and only drawing needs it (decision_map() does not)
    from pertlearn.analysis.plotting import render, write_figure_files

    path = Path(path)
    fig = draw_decision_map(
        dmap, rows=rows, title=title, labels=labels, test_agreement=test_agreement
    )
    return write_figure_files(render(fig), path.parent, path.stem)["png"]
