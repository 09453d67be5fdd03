"""Figures for reports (matplotlib, Agg backend; PNG, PDF and SVG bytes).

:func:`sweep_figures` draws the papers' kind of figure from a sweep's results table: a metric
(accuracy of f and of g, agreement, the control g', theory metrics when present) against one
swept parameter, mean over seeds with a band from the smallest to the largest seed value,
one panel per combination of the other swept parameters. Axes carry the papers' symbols
(d, m, N, ε, γ, η); where the budget ε changes along the x axis, a second axis on top gives
the ε of every point. :func:`loss_curves_figure` draws the training-loss curves of a single
run, one panel per network. Style and file formats: :mod:`pertlearn.analysis.plotting`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pertlearn.analysis.plotting import OKABE_ITO, figure_style, plt, render
from pertlearn.experiments.rundir import curves_record

MAX_PANELS = 16
MAX_EPS_LABELS = 12
"""Above this many x values, the ε axis on top labels every other point."""


@dataclass(frozen=True)
class Series:
    """How one metric is drawn: legend ``label``, ``color``, ``linestyle``, ``marker``;
    ``hollow`` markers and a lower ``zorder`` let a series lying on another show both."""

    key: str
    label: str
    color: str
    linestyle: str
    marker: str
    hollow: bool = False
    zorder: float = 3.0
    linewidth: float = 1.5
    markersize: float = 4.5


# The known series in drawing order; f, g and the control differ in colour AND marker, train
# and test in line style. The agreement line is wide, dash-dotted with large hollow markers and
# drawn under g, so that g stays visible where the two coincide. Other accuracy-like metrics
# follow in the remaining colours, dotted.
SERIES: tuple[Series, ...] = (
    Series("f_acc_train", "f, train (D)", OKABE_ITO["blue"], "-", "o"),
    Series("f_acc_test", "f, test", OKABE_ITO["blue"], "--", "o", hollow=True),
    Series("g_acc_train", "g, train (D)", OKABE_ITO["vermillion"], "-", "s", zorder=5),
    Series("g_acc_test", "g, test", OKABE_ITO["vermillion"], "--", "s", hollow=True, zorder=5),
    Series(
        "agreement",
        "agreement sign f = sign g (test)",
        OKABE_ITO["bluish green"],
        "-.",
        "^",
        hollow=True,
        zorder=2,
        linewidth=2.6,
        markersize=8,
    ),
    Series("control_g_acc_train", "control g′, train (D)", "#555555", "-", "D", markersize=3.5),
    Series(
        "control_g_acc_test", "control g′, test", "#555555", "--", "D", hollow=True, markersize=3.5
    ),
    Series(
        "mislabeled_clean_acc_test",
        "mislabeled_clean g′, test",
        OKABE_ITO["sky blue"],
        "--",
        "v",
        hollow=True,
        markersize=3.5,
    ),
)
EXTRA_COLORS = tuple(OKABE_ITO[c] for c in ("reddish purple", "orange", "sky blue", "black"))
EXTRA_MARKERS_CYCLE = ("v", "P", "X", "*", "<", ">", "h")
EXTRA_MARKERS = ("acc", "agree", "theory", "cos", "hat", "pred")
EXCLUDED = ("fit_acc", "majority", "degenerate", "seconds", "eps")

PARAMETERS: dict[str, tuple[str, str]] = {
    "data.dim": ("d", "input dimension"),
    "data.n_train": ("N", "training samples"),
    "data.n_noise": ("N_noise", "noise samples"),
    "model.width": ("m", "hidden width"),
    "model.slope": ("γ", "LeakyReLU slope"),
    "attack.eps": ("ε", "perturbation budget"),
    "attack.eps_per_sqrt_dim": ("ε/√d", "budget per √d"),
    "attack.eps_per_dim": ("ε/d", "budget per d"),
    "train_f.lr": ("η_f", "learning rate of f"),
    "train_g.lr": ("η_g", "learning rate of g"),
    "train_f.epochs": ("T_f", "epochs of f"),
    "train_g.epochs": ("T_g", "epochs of g"),
}
"""Swept config key → (the papers' symbol, what it is); keys not listed are shown as is. In
figures, the part after ``_`` is drawn as a subscript."""

EPS_KEYS = ("eps", "attack.eps")
"""Where a results row holds the resolved budget ε: the run's ``eps`` metric, else the swept
``attack.eps``."""


@dataclass
class Figure:
    """A rendered figure: file stem ``name``, ``title``, ``files`` (format → bytes: png, pdf,
    svg) and a ``caption``."""

    name: str
    title: str
    files: dict[str, bytes]
    caption: str

    @property
    def png(self) -> bytes:
        """The PNG bytes (the format shown inside report.html)."""
        return self.files["png"]


def make_figure(name: str, title: str, fig: Any, caption: str) -> Figure:
    """Render the matplotlib figure ``fig`` (and close it) into a :class:`Figure`."""
    return Figure(name, title, render(fig), caption)


def file_stem(text: str) -> str:
    """A file name stem from a figure title: lower case, runs of other characters → ``-``."""
    return re.sub(r"[^a-z0-9_.]+", "-", text.lower()).strip("-.") or "figure"


def symbol(key: str, *, subscript: bool = False) -> str:
    """The papers' symbol of a swept config key (``data.dim`` → ``d``), else the key. With
    ``subscript``, ``η_f`` becomes matplotlib's ``η$_{f}$`` (a subscript f in figures)."""
    if key not in PARAMETERS:
        return key
    sym = PARAMETERS[key][0]
    if subscript and "_" in sym:
        base, sub = sym.split("_", 1)
        return f"{base}$_{{{sub}}}$"
    return sym


def axis_label(key: str, *, subscript: bool = False) -> str:
    """An axis label: what the key is and its symbol (``input dimension d``), else the key."""
    if key not in PARAMETERS:
        return key
    return f"{PARAMETERS[key][1]} {symbol(key, subscript=subscript)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def plotted_metrics(rows: list[dict[str, Any]]) -> list[Series]:
    """The series to draw: the known ones present, then other metrics in [0, 1] whose names
    look like accuracies, agreements or theory predictions."""
    present: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            present[key].append(value)
    chosen = [s for s in SERIES if any(_is_number(v) for v in present.get(s.key, []))]
    known = {s.key for s in chosen}
    extra = 0
    for key, values in present.items():
        if key in known or any(marker in key for marker in EXCLUDED):
            continue
        if not any(marker in key for marker in EXTRA_MARKERS):
            continue
        numbers = [v for v in values if _is_number(v)]
        if numbers and all(-1e-9 <= v <= 1 + 1e-9 for v in numbers):
            color = EXTRA_COLORS[extra % len(EXTRA_COLORS)]
            marker = EXTRA_MARKERS_CYCLE[extra % len(EXTRA_MARKERS_CYCLE)]
            chosen.append(Series(key, key, color, ":", marker, markersize=4))
            extra += 1
    return chosen


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _eps_of(row: dict[str, Any]) -> float | None:
    for key in EPS_KEYS:
        if _is_number(row.get(key)):
            return float(row[key])
    return None


def eps_per_x(rows: list[dict[str, Any]], x_key: str) -> dict[float, float] | None:
    """x → the budget ε of the rows at that x, when every x has one ε and ε is not the same
    everywhere (and x is not ε itself); else ``None``."""
    if x_key in EPS_KEYS:
        return None
    found: dict[float, set[float]] = defaultdict(set)
    for row in rows:
        eps = _eps_of(row)
        if eps is None or not _is_number(row.get(x_key)):
            return None
        found[float(row[x_key])].add(round(eps, 12))
    if not found or any(len(v) != 1 for v in found.values()):
        return None
    per_x = {x: next(iter(v)) for x, v in found.items()}
    return per_x if len(set(per_x.values())) > 1 else None


def _constant_eps(rows: list[dict[str, Any]]) -> float | None:
    values = {round(e, 12) for row in rows if (e := _eps_of(row)) is not None}
    return next(iter(values)) if len(values) == 1 else None


def _draw_series(
    panel: Any, subset: list[dict[str, Any]], x_key: str, series: Series, *, connect: bool = True
) -> None:
    """The mean of ``series`` over the rows at each x (a band from min to max over seeds);
    ``connect = False``: markers only (x values that are categories, not a scale)."""
    groups: dict[float, list[float]] = defaultdict(list)
    for row in subset:
        value = row.get(series.key)
        if isinstance(value, int | float) and _is_number(value):
            groups[float(row[x_key])].append(float(value))
    if not groups:
        return
    xs = sorted(groups)
    means = [sum(groups[x]) / len(groups[x]) for x in xs]
    panel.plot(
        xs,
        means,
        linestyle=series.linestyle if connect else "none",
        color=series.color,
        marker=series.marker,
        markersize=series.markersize,
        markerfacecolor="white" if series.hollow else series.color,
        markeredgecolor=series.color,
        linewidth=series.linewidth,
        zorder=series.zorder,
        label=series.label,
    )
    if not any(len(groups[x]) > 1 for x in xs):
        return
    lows, highs = [min(groups[x]) for x in xs], [max(groups[x]) for x in xs]
    if connect:
        panel.fill_between(xs, lows, highs, color=series.color, alpha=0.12, linewidth=0, zorder=1)
    else:  # bars from min to max over seeds at each category
        below = [mean - low for mean, low in zip(means, lows, strict=True)]
        above = [high - mean for mean, high in zip(means, highs, strict=True)]
        panel.errorbar(
            xs, means, yerr=[below, above], fmt="none", ecolor=series.color, alpha=0.5, zorder=1
        )


def _eps_axis(panel: Any, eps: dict[float, float]) -> None:
    """A second x axis on top of ``panel`` with the budget ε at every plotted x."""
    top = panel.secondary_xaxis("top")
    xs = sorted(eps)
    step = 1 if len(xs) <= MAX_EPS_LABELS else 2
    top.set_xticks(xs, labels=[f"{eps[x]:.3g}" if i % step == 0 else "" for i, x in enumerate(xs)])
    top.tick_params(axis="x", labelsize=7, labelrotation=45 if len(xs) > 5 else 0)
    top.minorticks_off()
    top.set_xlabel("budget ε at each point", fontsize=8)


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
        if not chosen:
            notes.append(
                "no metric-vs-parameter figure: no swept parameter takes two or more values "
                "among the completed runs (the tables below hold every result)"
            )
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
        chance = chance_level(rows)
        if all(_is_number(row.get(x_key)) for row in rows):
            fig, eps_shown = draw_sweep_figure(
                rows, series, axis, x_key, other_keys, facets, chance=chance
            )
            caption = _sweep_caption(rows, axis, x_key, eps_shown, chance=chance)
        else:  # values that are not numbers (or a zip with such keys): one x per value
            plotted, categories = with_category_index(rows, axis)
            fig, _ = draw_sweep_figure(
                plotted,
                series,
                axis,
                CATEGORY_KEY,
                other_keys,
                facets,
                categories=categories,
                chance=chance,
            )
            caption = _sweep_caption(rows, axis, x_key, False, categorical=True, chance=chance)
        figures.append(
            make_figure(file_stem(f"metrics vs {x_key}"), f"metrics vs {x_key}", fig, caption)
        )
    return figures, notes


def chance_level(rows: list[dict[str, Any]]) -> float | None:
    """The chance accuracy shared by every run of ``rows``: their ``chance`` metric (1/K of
    the images pipeline), 0.5 for binary runs (no such metric); ``None`` when runs differ."""
    levels = {row["chance"] if _is_number(row.get("chance")) else 0.5 for row in rows}
    return levels.pop() if len(levels) == 1 else None


CATEGORY_KEY = "__category__"
"""Row key of the category index of :func:`with_category_index`."""


def with_category_index(
    rows: list[dict[str, Any]], axis: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows with :data:`CATEGORY_KEY` = the index of their values of the sweep ``axis``
    (all its keys, in the order they first appear), and the label of each index (the values
    joined by " / ")."""
    labels: dict[str, int] = {}
    plotted = []
    for row in rows:
        label = " / ".join(_fmt(row.get(key)) for key in axis)
        index = labels.setdefault(label, len(labels))
        plotted.append({**row, CATEGORY_KEY: float(index)})
    return plotted, list(labels)


def panel_grid(
    count: int, ncols: int, panel_size: tuple[float, float], *, extra_height: float = 0.0, **kw: Any
) -> tuple[Any, list[Any]]:
    """A constrained-layout figure of ``count`` panels (axes) in ``ncols`` columns, each
    ``panel_size`` inches (width, height), plus ``extra_height`` inches for captions; cells past
    ``count`` are switched off. ``kw`` goes to :func:`matplotlib.pyplot.subplots`."""
    nrows = math.ceil(count / ncols)
    width, height = panel_size
    fig, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(width * ncols, height * nrows + extra_height),
        squeeze=False,
        layout="constrained",
        **kw,
    )
    cells = list(grid.flat)
    for unused in cells[count:]:
        unused.axis("off")
    return fig, cells[:count]


def draw_sweep_figure(
    rows: list[dict[str, Any]],
    series: list[Series],
    axis: list[str],
    x_key: str,
    other_keys: list[str],
    facets: list[tuple[Any, ...]],
    *,
    categories: list[str] | None = None,
    chance: float | None = 0.5,
) -> tuple[Any, bool]:
    """Draw ``series`` against ``x_key`` (the first key of the sweep ``axis``), one panel per
    combination ``facets`` of the values of ``other_keys``; the caller renders and closes the
    matplotlib figure. Returns it and whether a panel got the top axis of budgets ε. With
    ``categories``, ``x_key`` holds category indices (:func:`with_category_index`): markers at
    each labelled category, not joined by lines. ``chance``: height of the dotted chance line
    (:func:`chance_level`; ``None``: no line)."""
    xs_all = [float(row[x_key]) for row in rows]
    ncols = min(len(facets), 2 if len(facets) <= 4 else 4)
    positive = [x for x in xs_all if x > 0]
    log_x = (
        categories is None and len(positive) == len(xs_all) and max(positive) / min(positive) >= 50
    )
    eps_shown = False
    with figure_style():
        fig, panels = panel_grid(len(facets), ncols, (4.6, 3.4), extra_height=0.9, sharey=True)
        for index, (facet, panel) in enumerate(zip(facets, panels, strict=True)):
            subset = [row for row in rows if tuple(row.get(k) for k in other_keys) == tuple(facet)]
            for one in series:
                _draw_series(panel, subset, x_key, one, connect=categories is None)
            if log_x:
                panel.set_xscale("log")
            if categories is not None:
                long = sum(len(label) for label in categories) > 40
                panel.set_xticks(
                    range(len(categories)),
                    labels=categories,
                    rotation=25 if long else 0,
                    ha="right" if long else "center",
                )
                panel.set_xlim(-0.5, len(categories) - 0.5)
            panel.set_ylim(-0.02, 1.02)
            if chance is not None:
                panel.axhline(
                    chance, color="black", linewidth=0.8, linestyle=":", alpha=0.6, zorder=0
                )
            eps = eps_per_x(subset, x_key) if categories is None else None
            if eps is not None:
                _eps_axis(panel, eps)
                eps_shown = True
            title = ", ".join(
                f"{symbol(k, subscript=True)} = {_fmt(v)}"
                for k, v in zip(other_keys, facet, strict=True)
            )
            if title:
                panel.set_title(title)
            if categories is not None:
                panel.set_xlabel(" / ".join(axis_label(k, subscript=True) for k in axis))
            else:
                paired = [k for k in axis[1:] if k not in EPS_KEYS or eps is None]
                with_paired = (
                    f" (with {', '.join(symbol(k, subscript=True) for k in paired)})"
                    if paired
                    else ""
                )
                panel.set_xlabel(f"{axis_label(x_key, subscript=True)}{with_paired}")
            if index % ncols == 0:
                panel.set_ylabel("accuracy / agreement (fraction)")
        handles, labels = panels[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncol=4, frameon=False)
    return fig, eps_shown


def _sweep_caption(
    rows: list[dict[str, Any]],
    axis: list[str],
    x_key: str,
    eps_shown: bool,
    *,
    categorical: bool = False,
    chance: float | None = 0.5,
) -> str:
    chance_line = f". Dotted horizontal line: chance ({chance:g})" if chance is not None else ""
    seeds = sorted({row.get("seed") for row in rows}, key=str)
    constant = _constant_eps(rows)
    if categorical:
        return (
            f"Metrics for each value of {' / '.join(axis)} (values, not a scale: markers are "
            f"not joined); mean over seeds {', '.join(map(str, seeds))}"
            + (" (bars: min to max over seeds)" if len(seeds) > 1 else "")
            + (f"; budget ε = {constant:.3g} throughout" if constant is not None else "")
            + chance_line
            + "."
        )
    return (
        f"Metrics against {axis_label(x_key)} ({x_key}); mean over seeds "
        f"{', '.join(map(str, seeds))}"
        + (" (band: min to max over seeds)" if len(seeds) > 1 else "")
        + (f"; x is the zipped axis {' + '.join(axis)}" if len(axis) > 1 else "")
        + ("; top axis: the budget ε of each point" if eps_shown else "")
        + (f"; budget ε = {constant:.3g} throughout" if constant is not None else "")
        + chance_line
        + "."
    )


def loss_curves_figure(curves: Mapping[str, Any]) -> Figure | None:
    """Training loss per epoch of every network of one run, one panel per network
    (:func:`draw_loss_curves`); ``None`` when no network has a loss curve. ``curves``: a
    run's training records by network (``Result.curves``) or its ``curves.json`` as read."""
    fig = draw_loss_curves(curves)
    if fig is None:
        return None
    return make_figure(
        "training-loss",
        "training loss",
        fig,
        "Mean training loss per epoch, one panel per network (each on its own y axis; a "
        "network loaded rather than trained, such as f with f_weights, has none).",
    )


def draw_loss_curves(curves: Mapping[str, Any]) -> Any | None:
    """The matplotlib figure of :func:`loss_curves_figure`: one panel per network with its own
    y axis, since the losses differ by orders of magnitude (f's identity loss falls far below
    zero) and a shared axis would flatten all but one. The caller renders and closes it."""
    drawn = {
        name: curve.get("loss", [])
        for name, curve in curves_record(curves).items()
        if curve.get("loss")
    }
    if not drawn:
        return None
    colors = [OKABE_ITO[c] for c in ("blue", "vermillion", "black", "reddish purple", "orange")]
    titles = {"f": "f", "g": "g"}
    # thousands of full-batch epochs read best on a log axis, a few mini-batch epochs on whole
    # numbers
    log_x = max(len(losses) for losses in drawn.values()) >= 50
    with figure_style():
        ncols = min(len(drawn), 3)
        fig, panels = panel_grid(len(drawn), ncols, (3.6, 2.9))
        for index, ((name, losses), panel) in enumerate(zip(drawn.items(), panels, strict=True)):
            panel.plot(
                range(1, len(losses) + 1),
                losses,
                color=colors[index % len(colors)],
                # a line through one point draws nothing: one epoch is a marker
                marker="o" if len(losses) == 1 else None,
                label=name,
            )
            if log_x:
                panel.set_xscale("log")
            elif len(losses) == 1:
                panel.set_xticks([1])
                panel.set_xlim(0.5, 1.5)
            else:
                panel.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
            panel.set_title(titles.get(name, f"control g′ ({name})"))
            panel.set_xlabel("epoch")
            if index % ncols == 0:
                panel.set_ylabel("training loss (mean over samples)")
    return fig
