"""Figure files: PNG, PDF and SVG that open, written atomically, the same bytes every time."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.pyplot as plt

from pertlearn.analysis.plotting import FORMATS, figure_style, render, write_figure_files


def _figure() -> object:
    with figure_style():
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([1, 2, 3], [0.2, 0.5, 0.9], marker="o", label="g")
        ax.set_xlabel("input dimension d")
        ax.legend()
    return fig


def test_render_gives_openable_png_pdf_and_svg_and_closes_the_figure() -> None:
    fig = _figure()
    files = render(fig)
    assert list(files) == list(FORMATS) == ["png", "pdf", "svg"]
    assert files["png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert files["pdf"].startswith(b"%PDF") and files["pdf"].rstrip().endswith(b"%%EOF")
    root = ET.fromstring(files["svg"])
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not plt.fignum_exists(fig.number)  # type: ignore[attr-defined]


def test_the_same_figure_gives_the_same_bytes() -> None:
    first, second = render(_figure()), render(_figure())
    for fmt in FORMATS:
        assert first[fmt] == second[fmt], fmt


def test_write_figure_files_writes_every_format_and_no_temp_file(tmp_path: Path) -> None:
    paths = write_figure_files(render(_figure()), tmp_path / "figures", "loss")
    assert {fmt: p.name for fmt, p in paths.items()} == {
        "png": "loss.png",
        "pdf": "loss.pdf",
        "svg": "loss.svg",
    }
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "loss.pdf",
        "loss.png",
        "loss.svg",
    ]
    assert all(p.stat().st_size > 1000 for p in paths.values())
