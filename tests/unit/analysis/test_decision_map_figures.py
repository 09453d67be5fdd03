"""Decision-map figures: tick values, a legend, titles that say the agreement is on the plane,
and the PNG, PDF and SVG files (also through ``pertlearn theory``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from pertlearn.analysis.decision_maps import (
    decision_map,
    draw_decision_map,
    plane_agreement_text,
    plot_decision_map,
)


def _map() -> object:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 4, generator=g, dtype=torch.float64)
    x[:30, 0] += 3
    x[30:, 0] -= 3
    y = torch.where(torch.arange(60) < 30, 1.0, -1.0).double()
    return decision_map(
        {"f": lambda z: z[:, 0], "g": lambda z: z[:, 0] + 0.5 * z[:, 1]}, x, y, resolution=24
    )


def test_plane_agreement_text() -> None:
    assert plane_agreement_text(0.994, 1.0) == "agreement on this plane: 99.4% (test set: 1.000)"
    assert plane_agreement_text(0.5) == "agreement on this plane: 50.0%"


def test_map_has_ticks_a_legend_and_says_the_agreement_is_on_the_plane() -> None:
    dmap = _map()
    fig = draw_decision_map(dmap, rows=[["f", "g"]], title="t", test_agreement={("f", "g"): 0.987})
    try:
        sign_f, sign_g, agree = fig.axes
        assert [sign_f.get_title(), sign_g.get_title()] == ["sign f", "sign g"]
        share = 100 * dmap.agreement("f", "g")
        assert agree.get_title() == (
            f"sign f = sign g\non this plane: {share:.1f}% (test set: 0.987)"
        )
        fig.canvas.draw()
        for ax in fig.axes:  # tick values on both axes, in plane coordinates
            assert len(ax.get_xticks()) >= 3
            assert any(t.get_text() for t in ax.get_xticklabels())
        assert any(t.get_text() for t in sign_f.get_yticklabels())
        assert sign_f.get_xlabel().startswith("a, along the +1 class mean")
        assert sign_f.get_ylabel().startswith("b, along the −1 class mean")
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == [
            "sign +1",
            "sign −1",
            "signs agree",
            "signs disagree",
            "training, y = +1",
            "training, y = −1",
        ]
    finally:
        plt.close(fig)


def test_plot_decision_map_writes_png_pdf_and_svg(tmp_path: Path) -> None:
    path = plot_decision_map(_map(), tmp_path / "decision_map.png", rows=[["f", "g"]], title="t")
    assert path == tmp_path / "decision_map.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "decision_map.pdf").read_bytes().startswith(b"%PDF")
    ET.parse(tmp_path / "decision_map.svg")  # parses as XML
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "decision_map.pdf",
        "decision_map.png",
        "decision_map.svg",
    ]


def test_theory_writes_the_map_in_three_formats(tmp_path: Path) -> None:
    from pertlearn.analysis.theory import write_theory
    from pertlearn.experiments.pipelines import run
    from pertlearn.experiments.presets import load_config

    config = load_config(
        preset="quickstart",
        overrides=[
            "data.dim=10",
            "data.n_train=40",
            "data.n_test=40",
            "model.width=8",
            "train_f.epochs=20",
            "train_g.epochs=20",
            "controls=[]",
        ],
    )
    run_dir = run(config).save(tmp_path / "run")
    write_theory(run_dir, resolution=9)
    entry = json.loads((run_dir / "theory.json").read_text())["decision_map"]
    assert entry["file"] == "decision_map.png"
    assert entry["files"] == ["decision_map.png", "decision_map.pdf", "decision_map.svg"]
    assert all((run_dir / name).stat().st_size > 1000 for name in entry["files"])
