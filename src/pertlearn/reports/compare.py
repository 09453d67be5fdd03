"""Runs side by side: one row per run directory, with the config keys in which they differ.

``pertlearn compare runs/a runs/b`` (or ``pertlearn compare runs/``, a folder of run
directories) is the table a researcher writes by hand after a few ``pertlearn run --out``: the
keys that tell the runs apart, the seed and the headline metrics. A sweep has its own table
(``pertlearn results``); its ``runs/`` folder can be compared like any folder of runs.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pertlearn.atomic import atomic_path
from pertlearn.errors import RunDirError
from pertlearn.experiments.config_tree import RUN_CONFIG_FILE
from pertlearn.experiments.rundir import read_run
from pertlearn.experiments.store import HEADLINE_METRICS, columns_of, flat_scalars

IGNORED_KEYS = ("name", "description")
"""Config keys left out of the differences: labels, not settings."""


def run_dirs(paths: list[Path]) -> list[Path]:
    """The run directories named by ``paths``: each a run directory (it holds ``config.json``)
    or a folder whose visible subfolders holding one are taken, sorted by name. Raises
    :class:`RunDirError` for a path that is neither, and when the same run is named twice."""
    found: list[Path] = []
    for path in paths:
        if (path / RUN_CONFIG_FILE).is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise RunDirError(f"{str(path)!r} is not a run directory (not a directory)")
        inside = sorted(
            p
            for p in path.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / RUN_CONFIG_FILE).is_file()
        )
        if not inside:
            raise RunDirError(
                f"{str(path)!r} is neither a run directory nor a folder of run directories "
                f"(no {RUN_CONFIG_FILE} in it or in its subfolders)"
            )
        found.extend(inside)
    seen: set[Path] = set()
    for path in found:
        if path.resolve() in seen:
            raise RunDirError(f"run {str(path)!r} is named twice; name each run once")
        seen.add(path.resolve())
    return found


def compare_runs(paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (one per run of :func:`run_dirs`: ``run``, every config key flattened to dotted
    names, every metric) and the config keys whose values differ between the runs (a key one
    run lacks differs), in first-seen order. :class:`RunDirError` (one line naming the file)
    for an incomplete or corrupt run directory."""
    configs, metrics = [], []
    dirs = run_dirs(paths)
    for path in dirs:
        record = read_run(path)
        configs.append(
            {k: v for k, v in flat_scalars(record.config).items() if k not in IGNORED_KEYS}
        )
        metrics.append(flat_scalars(record.metrics))
    keys = columns_of(configs)
    differing = [key for key in keys if len({repr(c.get(key)) for c in configs}) > 1]
    rows = [
        {"run": str(path), **config, **metric}
        for path, config, metric in zip(dirs, configs, metrics, strict=True)
    ]
    return rows, differing


def comparison_columns(rows: list[dict[str, Any]], differing: list[str]) -> list[str]:
    """The columns ``pertlearn compare`` prints: the run, the differing config keys, the seed
    (when it is not among them) and the headline metrics present."""
    present = set(columns_of(rows))
    seed = [] if "seed" in differing else ["seed"]
    return ["run", *differing, *seed, *(m for m in HEADLINE_METRICS if m in present)]


def write_comparison_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Every column of ``rows`` into the CSV file ``path`` (written atomically)."""
    columns = columns_of(rows)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
