"""Sweep and loss-curve figures: the papers' symbols on the axes, the ε of every point, g told
apart from the agreement, one loss panel per network, files in three formats."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

import matplotlib.pyplot as plt
import pytest

from pertlearn.reports.figures import (
    SERIES,
    axis_label,
    chance_level,
    draw_loss_curves,
    draw_sweep_figure,
    eps_per_x,
    file_stem,
    loss_curves_figure,
    plotted_metrics,
    sweep_figures,
    symbol,
    with_category_index,
)

DIMS = [100, 400, 1600]


def _rows() -> list[dict[str, Any]]:
    """A dim sweep with ε = 0.001·√d zipped to it, 2 learning rates of g, 2 seeds; g equals
    the agreement everywhere (the case where g used to vanish under the agreement line)."""
    rows = []
    for dim in DIMS:
        eps = 0.001 * math.sqrt(dim)
        for lr in (1.0, 0.1):
            for seed in (0, 1):
                value = 0.6 + 0.1 * DIMS.index(dim) + 0.01 * seed
                rows.append(
                    {
                        "data.dim": dim,
                        "attack.eps": eps,
                        "train_g.lr": lr,
                        "seed": seed,
                        "f_acc_train": 1.0,
                        "f_acc_test": 0.5,
                        "g_acc_train": value,
                        "g_acc_test": 0.5,
                        "agreement": value,
                        "control_g_acc_test": 0.5,
                        "eps": eps,
                        "seconds": 1.0,
                    }
                )
    return rows


AXES = [["data.dim", "attack.eps"], ["train_g.lr"]]


def test_symbols_of_the_swept_keys() -> None:
    assert symbol("data.dim") == "d" and symbol("model.width") == "m"
    assert symbol("attack.eps") == "ε" and symbol("model.slope") == "γ"
    assert symbol("data.n_train") == "N" and symbol("train_f.lr") == "η_f"
    assert symbol("train_g.lr", subscript=True) == "η$_{g}$"
    assert axis_label("data.dim") == "input dimension d"
    assert symbol("data.name") == "data.name"  # unknown keys as they are


def test_sweep_axes_carry_the_symbols_and_the_eps_of_every_point() -> None:
    rows = _rows()
    fig, eps_shown = draw_sweep_figure(
        rows, plotted_metrics(rows), AXES[0], "data.dim", ["train_g.lr"], [(1.0,), (0.1,)]
    )
    try:
        assert eps_shown
        panels = [ax for ax in fig.axes if ax.get_xlabel().startswith("input dimension d")]
        assert len(panels) == 2
        assert all("accuracy" in ax.get_ylabel() for ax in panels[:1])
        assert [ax.get_title() for ax in panels] == ["η$_{g}$ = 1", "η$_{g}$ = 0.1"]
        # the ε axis on top of each panel: one tick label per dimension, ε = 0.001·√d
        tops = [top for ax in panels for top in ax.child_axes if "budget ε" in top.get_xlabel()]
        assert len(tops) == 2
        fig.canvas.draw()
        labels = [t.get_text() for t in tops[0].get_xticklabels()]
        assert labels == ["0.01", "0.02", "0.04"]
    finally:
        plt.close(fig)


def test_g_and_the_agreement_differ_in_marker_style_and_g_is_drawn_on_top() -> None:
    rows = _rows()
    fig, _ = draw_sweep_figure(rows, plotted_metrics(rows), AXES[0], "data.dim", [], [()])
    try:
        lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
        g, agree = lines["g, train (D)"], lines["agreement sign f = sign g (test)"]
        assert list(g.get_ydata()) == list(agree.get_ydata())  # the same values ...
        assert g.get_marker() != agree.get_marker()  # ... told apart
        assert g.get_linestyle() != agree.get_linestyle()
        assert g.get_color() != agree.get_color()
        assert agree.get_markerfacecolor() == "white"  # hollow: g shows through
        assert g.get_zorder() > agree.get_zorder()
        control = lines["control g′, test"]
        assert control.get_marker() not in (g.get_marker(), agree.get_marker())
    finally:
        plt.close(fig)


def test_series_styles_are_unique() -> None:
    styles = [(s.color, s.linestyle, s.marker, s.hollow) for s in SERIES]
    assert len(set(styles)) == len(styles)


def test_eps_per_x_only_when_eps_changes_along_x() -> None:
    rows = _rows()
    assert eps_per_x(rows, "data.dim") == pytest.approx({100: 0.01, 400: 0.02, 1600: 0.04})
    assert eps_per_x(rows, "attack.eps") is None  # x is ε itself
    constant = [{**row, "eps": 0.01} for row in rows]
    assert eps_per_x(constant, "data.dim") is None  # nothing to show per point


def test_sweep_figures_are_rendered_in_three_formats() -> None:
    figures, notes = sweep_figures(_rows(), AXES)
    assert not notes
    assert [f.name for f in figures] == ["metrics-vs-data.dim", "metrics-vs-train_g.lr"]
    dim = figures[0]
    assert dim.png.startswith(b"\x89PNG") and dim.files["pdf"].startswith(b"%PDF")
    ET.fromstring(dim.files["svg"])  # parses as XML
    assert "input dimension d" in dim.caption and "budget ε of each point" in dim.caption
    assert "mean over seeds 0, 1" in dim.caption


def test_loss_curves_one_panel_per_network_each_with_its_own_scale() -> None:
    curves = {
        "f": {"loss": [-float(10 * e * e) for e in range(1, 60)]},  # falls to about −35,000
        "g": {"loss": [-0.01 * e for e in range(1, 60)]},
        "random_l2_noise": {"loss": [-1e-5 * e for e in range(1, 60)]},
        "empty": {"loss": []},
    }
    fig = draw_loss_curves(curves)
    try:
        panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
        assert [ax.get_title() for ax in panels] == ["f", "g", "control g′ (random_l2_noise)"]
        assert all(len(ax.lines) == 1 for ax in panels)
        low_f, _ = panels[0].get_ylim()
        low_g, _ = panels[1].get_ylim()
        assert low_f < -30_000 and low_g > -1  # g keeps its own scale
        assert all(ax.get_xlabel() == "epoch" for ax in panels)
    finally:
        plt.close(fig)
    figure = loss_curves_figure(curves)
    assert figure is not None and figure.name == "training-loss"
    assert set(figure.files) == {"png", "pdf", "svg"}
    assert loss_curves_figure({"f": {"loss": []}}) is None


def test_loss_curves_use_a_log_axis_for_long_runs_and_whole_epochs_for_short_ones() -> None:
    long_fig = draw_loss_curves({"f": {"loss": [1.0 / e for e in range(1, 1001)]}})
    short_fig = draw_loss_curves({"g": {"loss": [1.0 / e for e in range(1, 9)]}})
    try:
        assert long_fig.axes[0].get_xscale() == "log"
        short = short_fig.axes[0]
        assert short.get_xscale() == "linear"
        ticks = [t for t in short.get_xticks() if 1 <= t <= 8]
        assert ticks and all(float(t).is_integer() for t in ticks)
    finally:
        plt.close(long_fig)
        plt.close(short_fig)


def test_loss_curve_of_a_single_epoch_is_a_visible_marker_at_epoch_one() -> None:
    fig = draw_loss_curves({"f": {"loss": [2.3, 2.2]}, "g": {"loss": [4.7]}})
    try:
        g_panel = fig.axes[1]
        (line,) = g_panel.lines
        assert line.get_marker() == "o"
        assert list(g_panel.get_xticks()) == [1]
        low, high = g_panel.get_xlim()
        assert low < 1 < high
    finally:
        plt.close(fig)


def test_a_sweep_of_a_single_configuration_says_why_it_has_no_figure() -> None:
    rows = [{"run_id": "a", "seed": 0, "f_acc_train": 1.0, "g_acc_test": 0.9}]
    for axes in ([], [["attack.eps"]]):
        one = [{**rows[0], "attack.eps": 0.1}] if axes else rows
        figures, notes = sweep_figures(one, axes)
        assert figures == []
        assert len(notes) == 1 and "no swept parameter takes two or more values" in notes[0]


def test_file_stem() -> None:
    assert file_stem("metrics vs data.dim") == "metrics-vs-data.dim"
    assert file_stem("Decision map (f, g)") == "decision-map-f-g"
    assert file_stem("///") == "figure"


def _zipped_text_rows() -> list[dict[str, Any]]:
    """A zip of text and numbers (keep, loss, restarts) over 2 seeds, as the hit-repair sweep."""
    points = [
        ("all", "logistic", 0, 0.1),
        ("fooled", "logistic", 0, 0.3),
        ("fooled", "margin", 1, 0.4),
    ]
    return [
        {
            "keep": keep,
            "attack.options.loss": loss,
            "attack.options.restarts": restarts,
            "seed": seed,
            "g_acc_test": value + 0.1 * seed,
            "f_acc_test": 0.9,
        }
        for keep, loss, restarts, value in points
        for seed in (0, 1)
    ]


def test_a_sweep_axis_of_text_values_gets_one_labelled_x_per_value() -> None:
    rows = _zipped_text_rows()
    axis = ["keep", "attack.options.loss", "attack.options.restarts"]
    figures, notes = sweep_figures(rows, [axis])
    assert notes == [] and len(figures) == 1
    assert "values, not a scale" in figures[0].caption and "(bars: min to max" in figures[0].caption
    plotted, categories = with_category_index(rows, axis)
    assert categories == ["all / logistic / 0", "fooled / logistic / 0", "fooled / margin / 1"]
    assert [row["__category__"] for row in plotted] == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    fig, _ = draw_sweep_figure(
        plotted, plotted_metrics(rows), axis, "__category__", [], [()], categories=categories
    )
    try:
        panel = fig.axes[0]
        fig.canvas.draw()
        assert [t.get_text() for t in panel.get_xticklabels()] == categories
        g = next(line for line in panel.get_lines() if line.get_label() == "g, test")
        assert g.get_linestyle() == "None"  # categories are not joined by lines
        assert list(g.get_xdata()) == [0.0, 1.0, 2.0]
        assert list(g.get_ydata()) == pytest.approx([0.15, 0.35, 0.45])  # means over seeds
        assert panel.get_xlabel().count(" / ") == 2
    finally:
        plt.close(fig)


def _dotted_lines(panel: Any) -> list[float]:
    return [line.get_ydata()[0] for line in panel.get_lines() if line.get_linestyle() == ":"]


def test_the_chance_line_is_at_the_runs_chance_level() -> None:
    ten_classes = [{**row, "chance": 0.1} for row in _zipped_text_rows()]
    axis = ["keep", "attack.options.loss", "attack.options.restarts"]
    (figure,), _ = sweep_figures(ten_classes, [axis])
    assert "chance (0.1)" in figure.caption and "chance (0.5)" not in figure.caption
    assert chance_level(ten_classes) == pytest.approx(0.1)
    plotted, categories = with_category_index(ten_classes, axis)
    fig, _ = draw_sweep_figure(
        plotted,
        plotted_metrics(plotted),
        axis,
        "__category__",
        [],
        [()],
        categories=categories,
        chance=chance_level(ten_classes),
    )
    try:
        assert _dotted_lines(fig.axes[0]) == pytest.approx([0.1])
    finally:
        plt.close(fig)
    assert chance_level(_rows()) == 0.5  # binary runs carry no chance metric
    (dim, _), _ = sweep_figures(_rows(), AXES)
    assert "chance (0.5)" in dim.caption
    mixed = [{**row, "chance": 0.1 if row["seed"] else 0.5} for row in _zipped_text_rows()]
    assert chance_level(mixed) is None
    (figure,), _ = sweep_figures(mixed, [axis])
    assert "chance" not in figure.caption


def test_the_loss_figure_takes_a_results_curves_as_well_as_curves_json() -> None:
    from pertlearn.experiments.rundir import curves_record
    from pertlearn.training import TrainResult
    from pertlearn.training.minibatch import MinibatchResult

    curves = {
        "f": TrainResult(losses=[1.0, 0.5, 0.25], epochs_run=3),
        "g": MinibatchResult(losses=[2.0, 1.0], epochs_run=2, val_acc=[0.5, 0.6], final_lr=0.01),
    }
    assert curves_record(curves)["f"]["final_lr"] is None  # not recorded: null, not NaN
    assert curves_record(curves)["g"] == {
        "loss": [2.0, 1.0],
        "epochs_run": 2,
        "final_lr": 0.01,
        "train_acc": [],
        "val_acc": [0.5, 0.6],
        "lr": [],
    }
    for given in (curves, curves_record(curves)):
        fig = draw_loss_curves(given)
        assert [list(panel.lines[0].get_ydata()) for panel in fig.axes] == [
            [1.0, 0.5, 0.25],
            [2.0, 1.0],
        ]
        plt.close(fig)
