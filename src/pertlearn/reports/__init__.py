"""Reports: the end-of-run summary, metric-vs-parameter figures of sweeps and a
self-contained ``report.html``.

:mod:`~pertlearn.reports.summary` imports neither torch nor matplotlib (the CLI prints it); the
figures and the page are loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pertlearn.reports.summary import format_summary, reading_notes

if TYPE_CHECKING:
    from pertlearn.reports.compare import compare_runs
    from pertlearn.reports.figures import Figure, loss_curves_figure, sweep_figures
    from pertlearn.reports.html import write_report

_LAZY = {
    "compare_runs": "pertlearn.reports.compare",
    "Figure": "pertlearn.reports.figures",
    "loss_curves_figure": "pertlearn.reports.figures",
    "sweep_figures": "pertlearn.reports.figures",
    "write_report": "pertlearn.reports.html",
}

__all__ = [
    "Figure",
    "compare_runs",
    "format_summary",
    "loss_curves_figure",
    "reading_notes",
    "sweep_figures",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pertlearn.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
