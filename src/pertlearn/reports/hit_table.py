"""Per-class target-hit tables: the share of adversarial examples that f assigns to their
target, per target class (the images pipeline's ``fooling_rate_per_class``; ICLR24
arXiv:2402.10470, image experiments), with the classes below
:data:`~pertlearn.reports.summary.LOW_HIT_RATE` (where the run summary warns) highlighted. g's
accuracy says little about a class whose perturbations mostly miss."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from pertlearn.experiments.store import format_cell
from pertlearn.reports.summary import LOW_HIT_RATE, class_name

PER_CLASS_KEY = "fooling_rate_per_class"
LOW_STYLE = "background:#f8d0c8;font-weight:bold"


def _rate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _cell(value: Any, threshold: float) -> str:
    rate = _rate(value)
    style = f' style="{LOW_STYLE}"' if rate is not None and rate < threshold else ""
    return f"<td{style}>{html.escape(format_cell(value))}</td>"


def _table(head: list[str], body: list[str]) -> str:
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f'<div class="scroll"><table><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _note(threshold: float, low: int) -> str:
    return (
        f'<p class="muted">Highlighted: below {threshold:.0%} of the adversarial examples at '
        f"their target ({low} cell(s)).</p>"
    )


def class_label(key: str, class_names: Sequence[str] | None) -> str:
    """The label of the class with index ``key`` (``"3"``): its name with the index,
    ``"cat (3)"``, when ``class_names`` names it otherwise, else the index."""
    name = class_name(key, class_names)
    return key if name is None or name == key else f"{name} ({key})"


def run_hit_table(
    metrics: dict[str, Any],
    threshold: float = LOW_HIT_RATE,
    *,
    class_names: Sequence[str] | None = None,
) -> str:
    """HTML of a run's per-class hit rates (one row per target class, by its name in
    ``class_names`` when given, then the overall ``fooling_rate``); empty when the run has no
    ``fooling_rate_per_class``."""
    per_class = metrics.get(PER_CLASS_KEY)
    if not isinstance(per_class, dict) or not per_class:
        return ""
    body = [
        f'<tr><td class="l">{html.escape(class_label(str(k), class_names))}</td>'
        f"{_cell(v, threshold)}</tr>"
        for k, v in per_class.items()
    ]
    if "fooling_rate" in metrics:
        body.append(f'<tr><td class="l">all</td>{_cell(metrics["fooling_rate"], threshold)}</tr>')
    low = sum(1 for v in per_class.values() if (r := _rate(v)) is not None and r < threshold)
    return (
        "<h2>Target hits per class</h2>"
        + _table(["target class", "hit rate"], body)
        + _note(threshold, low)
    )


def sweep_hit_table(
    rows: list[dict[str, Any]],
    swept: list[str],
    threshold: float = LOW_HIT_RATE,
    *,
    class_names: Sequence[str] | None = None,
) -> str:
    """HTML of the per-class hit rates of every run of a sweep (flattened result rows with
    columns ``fooling_rate_per_class.K``): one row per run, one column per target class (by
    its name in ``class_names`` when given: the names every run of the sweep shares); empty
    when no run has them."""
    prefix = f"{PER_CLASS_KEY}."
    classes = list(dict.fromkeys(k for row in rows for k in row if k.startswith(prefix)))
    if not classes:
        return ""
    classes.sort(key=lambda k: (len(k), k))
    body = []
    low = 0
    for row in rows:
        cells = "".join(
            f'<td class="l">{html.escape(format_cell(row.get(k)))}</td>'
            for k in ["run_id", *swept, "seed"]
        )
        cells += "".join(_cell(row.get(k), threshold) for k in classes)
        cells += _cell(row.get("fooling_rate"), threshold)
        low += sum(1 for k in classes if (r := _rate(row.get(k))) is not None and r < threshold)
        body.append(f"<tr>{cells}</tr>")
    names = [class_label(k[len(prefix) :], class_names) for k in classes]
    head = ["run_id", *swept, "seed", *names, "all"]
    return "<h2>Target hits per class</h2>" + _table(head, body) + _note(threshold, low)
