"""The house style of pertlearn's figures and their files (matplotlib, Agg backend).

:func:`figure_style` is the one matplotlib style every figure is drawn under (font sizes, a
colour-blind-safe palette, light grids); :func:`render` saves a drawn figure as PNG, PDF and SVG
bytes, deterministically (no creation dates in the PDF or SVG, a fixed SVG id salt), and
:func:`write_figure_files` writes them atomically as ``<directory>/<name>.{png,pdf,svg}``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.rcsetup import cycler

from pertlearn.atomic import write_bytes

FORMATS = ("png", "pdf", "svg")
"""The file formats of every figure, the PNG first (it is also the one shown in report.html)."""

PNG_DPI = 150

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
"""The Okabe–Ito palette: eight colours told apart under the common colour-vision deficiencies."""

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(
        color=[OKABE_ITO[c] for c in ("blue", "vermillion", "bluish green", "reddish purple")]
        + [OKABE_ITO[c] for c in ("orange", "sky blue", "black", "yellow")]
    ),
    "lines.linewidth": 1.5,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "pdf.fonttype": 42,  # TrueType: text stays text (and editable) in the PDF
    "svg.hashsalt": "pertlearn",  # fixed element ids: the same figure gives the same SVG
    "image.interpolation": "nearest",
}
"""matplotlib rc parameters of every pertlearn figure."""


@contextmanager
def figure_style() -> Iterator[None]:
    """Draw (and save) the figures of the block in pertlearn's style (:data:`STYLE`)."""
    rc: Any = STYLE  # matplotlib types rc as a dict of literal keys
    with matplotlib.rc_context(rc):
        yield


def render(fig: Any) -> dict[str, bytes]:
    """Save the matplotlib figure ``fig`` as PNG (:data:`PNG_DPI`), PDF and SVG bytes and close
    it. The same figure gives the same bytes: the PDF and SVG carry no date."""
    files: dict[str, bytes] = {}
    metadata: dict[str, dict[str, Any]] = {
        "png": {},
        "pdf": {"CreationDate": None, "ModDate": None},
        "svg": {"Date": None},
    }
    try:
        with figure_style():
            for fmt in FORMATS:
                buffer = io.BytesIO()
                fig.savefig(buffer, format=fmt, dpi=PNG_DPI, metadata=metadata[fmt])
                files[fmt] = buffer.getvalue()
    finally:
        plt.close(fig)
    return files


def write_figure_files(
    files: Mapping[str, bytes], directory: str | Path, name: str
) -> dict[str, Path]:
    """Write ``files`` (format → bytes, from :func:`render`) atomically as
    ``directory/name.<format>``; return format → path."""
    paths = {}
    for fmt, data in files.items():
        path = Path(directory) / f"{name}.{fmt}"
        write_bytes(path, data)
        paths[fmt] = path
    return paths
