"""Figures for reports (matplotlib, Agg backend, PNG bytes).

:func:`sweep_figures` draws the papers' kind of figure from a sweep's results table: a metric
(accuracy of f and of g, agreement, the control g', theory metrics when present) against one
swept parameter, mean over seeds with a band from the smallest to the largest seed value,
one panel per combination of the other swept parameters. :func:`loss_curves_figure` draws the
training-loss curves of a single run.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MAX_PANELS = 16

# (metric, label, color, line style) in drawing order; other accuracy-like metrics follow.
SERIES: tuple[tuple[str, str, str, str], ...] = (
    ("f_acc_train", "f on D", "tab:blue", "-"),
    ("f_acc_test", "f on test", "tab:blue", "--"),
    ("g_acc_train", "g on D", "tab:red", "-"),
    ("g_acc_test", "g on test", "tab:red", "--"),
    ("agreement", "agreement f/g", "tab:green", "-"),
    ("control_g_acc_train", "control g' on D", "tab:gray", "-"),
    ("control_g_acc_test", "control g' on test", "tab:gray", "--"),
    ("mislabeled_clean_acc_test", "mislabeled_clean g' on test", "tab:brown", "--"),
)
EXTRA_MARKERS = ("acc", "agree", "theory", "cos", "hat", "pred")
EXCLUDED = ("fit_acc", "majority", "degenerate", "seconds", "eps")


@dataclass
class Figure:
    """A rendered figure: ``title``, ``png`` bytes and a ``caption``."""

    title: str
    png: bytes
    caption: str


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def plotted_metrics(rows: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str]]:
    """The series to draw: the known ones present, then other metrics in [0, 1] whose names
    look like accuracies, agreements or theory predictions."""
    present: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            present[key].append(value)
    chosen: list[tuple[str, str, str | None, str]] = [
        (key, label, color, style)
        for key, label, color, style in SERIES
        if any(_is_number(v) for v in present.get(key, []))
    ]
    known = {key for key, *_ in chosen}
    for key, values in present.items():
        if key in known or any(marker in key for marker in EXCLUDED):
            continue
        if not any(marker in key for marker in EXTRA_MARKERS):
            continue
        numbers = [v for v in values if _is_number(v)]
        if numbers and all(-1e-9 <= v <= 1 + 1e-9 for v in numbers):
            chosen.append((key, key, None, ":"))
    return chosen


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_figures(
    rows: list[dict[str, Any]],
    axes: list[list[str]],
    x_keys: list[str] | None = None,
) -> tuple[list[Figure], list[str]]:
    """Metric-vs-parameter figures of a sweep.

    ``rows``: the results table (one dict per run, with the swept keys and ``seed``);
    ``axes``: the keys of each sweep axis (a zip group lists several keys; its first key is
    the x axis); ``x_keys``: the swept keys to use as x axes (default: the first key of every
    axis with at least two values). Returns the figures and notes about figures left out.
    """
    notes: list[str] = []
    series = plotted_metrics(rows)
    if not rows or not series:
        return [], ["no completed runs with plottable metrics yet"]

    def distinct(keys: list[str]) -> list[tuple[Any, ...]]:
        seen: dict[tuple[Any, ...], None] = {}
        for row in rows:
            seen[tuple(row.get(k) for k in keys)] = None
        return list(seen)

    if x_keys:
        chosen = [(next(a for a in axes if key in a), key) for key in x_keys]
    else:
        chosen = [(a, a[0]) for a in axes if len(distinct(a)) >= 2]
    figures = []
    for axis, x_key in chosen:
        others = [a for a in axes if a is not axis]
        other_keys = [k for a in others for k in a]
        facets = distinct(other_keys) if other_keys else [()]
        if len(facets) > MAX_PANELS:
            notes.append(
                f"no figure over {x_key}: {len(facets)} combinations of the other axes "
                f"(more than {MAX_PANELS} panels); set report.x in the sweep spec"
            )
            continue
        raw_xs = [row.get(x_key) for row in rows]
        if not all(_is_number(x) for x in raw_xs):
            notes.append(f"no figure over {x_key}: its values are not numbers")
            continue
        xs_all = [float(x) for x in raw_xs if x is not None]
        ncols = min(len(facets), 2 if len(facets) <= 4 else 4)
        nrows = math.ceil(len(facets) / ncols)
        fig, grid = plt.subplots(
            nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False, sharey=True
        )
        positive = [x for x in xs_all if x > 0]
        log_x = len(positive) == len(xs_all) and max(positive) / min(positive) >= 50
        for index, panel in enumerate(grid.flat):
            if index >= len(facets):
                panel.axis("off")
                continue
            facet = facets[index]
            subset = [row for row in rows if tuple(row.get(k) for k in other_keys) == tuple(facet)]
            for key, label, color, style in series:
                groups: dict[float, list[float]] = defaultdict(list)
                for row in subset:
                    value = row.get(key)
                    if isinstance(value, int | float) and _is_number(value):
                        groups[float(row[x_key])].append(float(value))
                if not groups:
                    continue
                xs = sorted(groups)
                means = [sum(groups[x]) / len(groups[x]) for x in xs]
                line = panel.plot(
                    xs, means, style, color=color, marker="o", markersize=3, label=label
                )[0]
                if any(len(groups[x]) > 1 for x in xs):
                    panel.fill_between(
                        xs,
                        [min(groups[x]) for x in xs],
                        [max(groups[x]) for x in xs],
                        color=line.get_color(),
                        alpha=0.15,
                        linewidth=0,
                    )
            if log_x:
                panel.set_xscale("log")
            panel.set_ylim(-0.02, 1.02)
            panel.axhline(0.5, color="black", linewidth=0.5, alpha=0.4)
            panel.grid(alpha=0.3)
            title = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(other_keys, facet, strict=True))
            panel.set_title(title or x_key, fontsize=9)
            paired = f" (with {', '.join(axis[1:])})" if len(axis) > 1 else ""
            panel.set_xlabel(f"{x_key}{paired}", fontsize=9)
            if index % ncols == 0:
                panel.set_ylabel("accuracy / agreement", fontsize=9)
        handles, labels = grid.flat[0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(len(labels), 4),
            fontsize=8,
            bbox_to_anchor=(0.5, 1.0),
        )
        fig.tight_layout()
        seeds = sorted({row.get("seed") for row in rows}, key=str)
        caption = (
            f"Metrics against {x_key}; mean over seeds {', '.join(map(str, seeds))}"
            + (" (band: min to max over seeds)" if len(seeds) > 1 else "")
            + (f"; x is the zipped axis {' + '.join(axis)}" if len(axis) > 1 else "")
            + ". Horizontal line: chance (0.5)."
        )
        figures.append(Figure(f"metrics vs {x_key}", _png(fig), caption))
    return figures, notes


def loss_curves_figure(curves: dict[str, dict[str, Any]]) -> Figure | None:
    """Training loss per epoch of every network of one run (``curves.json``)."""
    if not curves:
        return None
    fig, panel = plt.subplots(figsize=(6.4, 3.8))
    for name, curve in curves.items():
        losses = curve.get("loss", [])
        if losses:
            panel.plot(range(1, len(losses) + 1), losses, label=name)
    panel.set_xlabel("epoch")
    panel.set_ylabel("training loss")
    panel.set_xscale("log")
    panel.grid(alpha=0.3)
    panel.legend(fontsize=8)
    fig.tight_layout()
    return Figure("training loss", _png(fig), "Mean training loss per epoch of each network.")
