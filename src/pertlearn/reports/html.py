"""``report.html``: one page (figures as base64 PNG, inline CSS, no scripts or external
resources) for a sweep directory or a single run directory. Every figure is also written as
PNG, PDF and SVG files into a folder beside the page (``figures/`` for ``report.html``), which
the page links to; the page itself shows everything without them."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import platform
from collections import defaultdict
from datetime import UTC, datetime
from importlib.metadata import version as metadata_version
from pathlib import Path
from typing import Any

from pertlearn.analysis.plotting import FORMATS, write_figure_files
from pertlearn.atomic import write_text
from pertlearn.errors import RunDirExistsError, cli_worded
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.rundir import FIGURES_DIR, read_run
from pertlearn.experiments.store import SweepStore, collect_results, columns_of, format_cell
from pertlearn.reports.figures import Figure, loss_curves_figure, plotted_metrics, sweep_figures
from pertlearn.reports.hit_table import run_hit_table, sweep_hit_table
from pertlearn.reports.run_figures import decision_map, sample_grid
from pertlearn.reports.spectrum_figures import spectrum_figure, spectrum_per_class_figure
from pertlearn.reports.transfer_figures import transfer_report

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
figcaption a { margin-right: 0.6em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.6em; overflow: auto; max-height: 30em; font-size: 0.8em; }
.scroll { overflow-x: auto; }
.note { color: #8a5300; } .muted { color: #666; font-size: 0.85em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(rows: list[dict[str, Any]], columns: list[str], left: int = 0) -> str:
    """An HTML table; the first ``left`` columns are left-aligned."""
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{_esc(c)}</th>' for i, c in enumerate(columns)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"l" if i < left else ""}">{_esc(format_cell(row.get(c)))}</td>'
            for i, c in enumerate(columns)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def figure_html(figure: Figure, links: dict[str, str] | None = None) -> str:
    """The figure as an inline PNG with its caption and, when given, links (format → href) to
    its files."""
    data = base64.b64encode(figure.png).decode("ascii")
    files = "".join(
        f'<a href="{_esc(href)}">{_esc(fmt.upper())}</a>' for fmt, href in (links or {}).items()
    )
    return (
        f'<figure><img alt="{_esc(figure.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(figure.caption)}"
        + (f'<br><span class="muted">files: {files}</span>' if files else "")
        + "</figcaption></figure>"
    )


class FigureFiles:
    """Writes every figure of one report as ``directory/<name>.{png,pdf,svg}`` (atomically;
    a name taken earlier in the same report gets ``-2``, ``-3``, ...) and gives its HTML with
    links relative to the page in ``page_dir``."""

    def __init__(self, directory: Path, page_dir: Path) -> None:
        self.directory = directory
        self.href = Path(os.path.relpath(directory, page_dir)).as_posix()
        self.written: dict[str, Path] = {}

    def html(self, figure: Figure) -> str:
        """Write ``figure``'s files and return its HTML (:func:`figure_html`) with links."""
        name, n = figure.name, 1
        while any(f"{name}.{fmt}" in self.written for fmt in FORMATS):
            n += 1
            name = f"{figure.name}-{n}"
        paths = write_figure_files(figure.files, self.directory, name)
        links = {}
        for fmt, path in paths.items():
            self.written[path.name] = path
            links[fmt] = f"{self.href}/{path.name}"
        return figure_html(figure, links)

    def remove_stale(self) -> list[Path]:
        """Remove the figure files (:data:`FORMATS`) in the folder that this report did not
        write, left by an earlier report of the same directory; return their paths."""
        if not self.directory.is_dir():
            return []
        stale = [
            entry
            for entry in sorted(self.directory.iterdir())
            if entry.suffix.removeprefix(".") in FORMATS
            and entry.name not in self.written
            and entry.is_file()
            and not entry.is_symlink()
        ]
        for entry in stale:
            entry.unlink(missing_ok=True)
        return stale


def _figure_html(figure: Figure, files: FigureFiles | None) -> str:
    return files.html(figure) if files is not None else figure_html(figure)


def _pre_json(payload: Any) -> str:
    return f"<pre>{_esc(json.dumps(payload, indent=2))}</pre>"


def generator_versions() -> dict[str, str]:
    # imported for their versions only (both are loaded by the figures already)
    import matplotlib
    import torch

    return {
        "pertlearn": metadata_version("pertlearn"),
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
        "python": platform.python_version(),
    }


def _page(title: str, sections: list[str]) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{_esc(title)}</h1><p class="muted">written {stamp} {REPORT_MARK}'
        + "".join(sections)
        + "</body></html>\n"
    )


def _seed_summary(
    rows: list[dict[str, Any]], swept: list[str], metrics: list[str]
) -> list[dict[str, Any]]:
    """Mean and min–max over seeds of ``metrics`` per configuration of the swept keys."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(k) for k in swept)].append(row)
    summary = []
    for key, members in groups.items():
        entry: dict[str, Any] = dict(zip(swept, key, strict=True))
        entry["seeds"] = len(members)
        for metric in metrics:
            values = [m[metric] for m in members if isinstance(m.get(metric), int | float)]
            if values:
                mean = sum(values) / len(values)
                spread = f" [{min(values):.3g}, {max(values):.3g}]" if len(values) > 1 else ""
                entry[metric] = f"{mean:.4g}{spread}"
        summary.append(entry)
    return summary


def _csv_link(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    data = base64.b64encode(buffer.getvalue().encode()).decode("ascii")
    return f'<p><a download="results.csv" href="data:text/csv;base64,{data}">results.csv</a></p>'


def _shared_class_names(store: SweepStore, rows: list[dict[str, Any]]) -> list[str] | None:
    """The class names every run of ``rows`` records (``resolved.class_names``), when they all
    record the same; else ``None`` (the classes are then shown by index)."""
    names = {read_run(store.run_dir(row["run_id"])).class_names for row in rows}
    shared = names.pop() if len(names) == 1 else None
    return list(shared) if shared is not None else None


def sweep_report(root: Path, files: FigureFiles | None = None) -> str:
    """The HTML of the report of the sweep directory ``root``; with ``files``, every figure is
    also written as files and linked (a transfer study's heatmaps too), and a transfer study
    writes ``transfer.json`` into ``root``."""

    store = SweepStore(root)
    manifest = store.read_manifest()
    assert manifest is not None
    rows, swept = collect_results(root)
    axes = [list(a["keys"]) for a in manifest.get("axes", [])]
    figures, notes = sweep_figures(rows, axes, manifest.get("report_x") or None)
    failed = store.failed_unfinished([row["run_id"] for row in rows])
    total = len(manifest.get("points", []))
    sections = [
        f"<p>{_esc(manifest.get('description') or '')}</p>",
        f"<p>{len(rows)} of {total} configurations complete, {len(failed)} failed. "
        f"Swept: {_esc(', '.join(swept) or 'nothing')}; fingerprint "
        f"{_esc(manifest.get('fingerprint'))}.</p>",
        "<h2>Figures</h2>",
        *[_figure_html(f, files) for f in figures],
        *[f'<p class="note">{_esc(n)}</p>' for n in notes],
    ]
    transfer = transfer_report(root, rows)
    if transfer is not None:
        sections += [
            "<h2>Transfer matrix</h2>",
            *[_figure_html(f, files) for f in transfer.figures],
        ]
        sections.append(html_table(*transfer.table(), left=2))
        if files is not None:
            transfer.write(root)  # transfer.json beside the sweep's results
    metrics = [series.key for series in plotted_metrics(rows)]
    if rows:
        sections += [
            "<h2>Mean over seeds</h2>",
            html_table(_seed_summary(rows, swept, metrics), [*swept, "seeds", *metrics]),
            "<h2>All runs</h2>",
            html_table(rows, ["run_id", *swept, "seed", *metrics], left=1),
            _csv_link(rows, columns_of(rows)),
            sweep_hit_table(rows, swept, class_names=_shared_class_names(store, rows)),
        ]
    if failed:
        sections += [
            "<h2>Failed configurations</h2>",
            html_table(
                [
                    {
                        "run_id": run_id,
                        "configuration": json.dumps(rec.get("values")),
                        "seed": rec.get("seed"),
                        "error": rec.get("error"),
                    }
                    for run_id, rec in failed.items()
                ],
                ["run_id", "configuration", "seed", "error"],
                left=4,
            ),
        ]
    sections.append("<h2>Sweep spec</h2>" + _pre_json(manifest.get("spec")))
    run_versions: dict[str, dict[str, Any]] = {}
    if rows:
        first = read_run(store.run_dir(rows[0]["run_id"]))
        sections.append(
            f"<h2>Config of the first run ({_esc(rows[0]['run_id'])})</h2>"
            + _pre_json(first.config)
        )
        for row in rows:
            versions = read_run(store.run_dir(row["run_id"])).versions
            run_versions[json.dumps(versions, sort_keys=True)] = versions
    sections.append(
        "<h2>Versions</h2><p>runs:</p>"
        + "".join(_pre_json(v) for v in run_versions.values())
        + "<p>report:</p>"
        + _pre_json(generator_versions())
    )
    return _page(f"Sweep {manifest.get('name')}", sections)


TENSOR_FIGURES = {"neurips": "The decision map", "images": "Samples and perturbation spectra"}
"""Per pipeline, the run figures drawn from the run's ``tensors.safetensors``."""


def missing_tensors_note(pipeline: str, config: dict[str, Any], has_tensors: bool) -> str:
    """Why a run report leaves out its tensor figures (:data:`TENSOR_FIGURES`): the run saved
    no tensors, or its ``tensors.safetensors`` is gone; empty when they are there or the
    pipeline has none."""
    if has_tensors or pipeline not in TENSOR_FIGURES:
        return ""
    figures = TENSOR_FIGURES[pipeline]
    if config.get("save_tensors") is False:
        return (
            f"{figures} not drawn: the run saved no tensors (save_tensors = false); rerun "
            "with save_tensors = true to draw them."
        )
    return (
        f"{figures} not drawn: tensors.safetensors is missing from the run directory; "
        "restore it, or rerun the run."
    )


def invalid_config_note(config: dict[str, Any]) -> str:
    """Why the recorded config of a run does not validate with this version of pertlearn (an
    edit by hand, or a run of another version); empty when it validates."""
    try:
        validate_config(config)
    except ConfigError as err:
        return (
            f"config.json does not validate with this version of pertlearn ({err}); the page "
            "shows the run as recorded, and pertlearn run RUN_DIR would refuse its config."
        )
    return ""


def run_report(run_dir: Path, files: FigureFiles | None = None) -> str:
    """The HTML of the report of a single run directory; with ``files``, every figure is also
    written as files and linked."""
    record = read_run(run_dir)
    metrics = record.metrics
    invalid = invalid_config_note(record.config)
    sections = [
        *([f'<p class="note">{_esc(invalid)}</p>'] if invalid else []),
        "<h2>Metrics</h2>",
        html_table(
            [{"metric": k, "value": v} for k, v in metrics.items()], ["metric", "value"], left=1
        ),
        run_hit_table(metrics, class_names=record.class_names),
    ]
    curves = record.curves()
    if curves is not None:
        figure = loss_curves_figure(curves)
        if figure is not None:
            sections += ["<h2>Training</h2>", _figure_html(figure, files)]

    for title, make in (
        ("Decision map", decision_map),
        ("Samples", sample_grid),
        ("Perturbation spectrum", spectrum_figure),
        ("Perturbation spectrum per class", spectrum_per_class_figure),
    ):
        try:
            extra = make(run_dir)
        except Exception as err:  # a figure that cannot be drawn must not stop the report
            sections.append(f'<p class="note">{title} not drawn: {_esc(err)}</p>')
            continue
        if extra is not None:
            sections += [f"<h2>{title}</h2>", _figure_html(extra, files)]
    missing = missing_tensors_note(record.pipeline, record.config, record.has_tensors())
    if missing:
        sections.append(f'<p class="note">{_esc(missing)}</p>')
    sections += [
        "<h2>Config</h2>",
        _pre_json(record.config),
        "<h2>Resolved</h2>",
        _pre_json(record.resolved),
        "<h2>Versions</h2><p>run:</p>",
        _pre_json(record.versions),
        "<p>report:</p>",
        _pre_json(generator_versions()),
    ]
    return _page(f"Run {record.name} ({run_dir.name})", sections)


def figures_dir(page: Path) -> Path:
    """The folder of a report page's figure files: ``figures/`` beside ``report.html``,
    ``<stem>-figures/`` beside any other page name."""
    name = FIGURES_DIR if page.name == "report.html" else f"{page.stem}-figures"
    return page.parent / name


REPORT_MARK = "by pertlearn report</p>"
"""Written near the top of every report page (:func:`_page`): the sign that a file at the
report's path may be replaced."""


def check_report_target(target: Path) -> None:
    """Raise :class:`RunDirExistsError` when ``target`` exists and is not a page written by
    ``pertlearn report`` (a user's file is never replaced by a report)."""
    if not target.exists():
        return
    if target.is_file():
        with target.open("rb") as handle:
            if REPORT_MARK.encode() in handle.read(64 * 1024):
                return
    problem = f"{str(target)!r} exists and is not a report written by pertlearn"
    raise cli_worded(
        RunDirExistsError(f"{problem}; pass another out path, or move that file"),
        f"{problem}; pass another --out, or move that file",
    )


def write_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a sweep directory (``sweep.json``) or a run directory
    (``metrics.json``) atomically, with every figure also as PNG, PDF and SVG in
    :func:`figures_dir`; return the page's path (default ``directory/report.html``)."""
    directory = Path(directory)
    target = Path(out) if out is not None else directory / "report.html"
    check_report_target(target)
    files = FigureFiles(figures_dir(target), target.parent)
    if (directory / "sweep.json").exists():
        page = sweep_report(directory, files)
    elif (directory / "metrics.json").exists():
        page = run_report(directory, files)
    else:
        raise ConfigError(
            f"{str(directory)!r} is neither a sweep directory (sweep.json) nor a run directory "
            "(metrics.json)"
        )
    write_text(target, page)
    files.remove_stale()
    return target
