"""Shared helpers of the sweep, store, Ray and report tests: a tiny sweep that runs in about a
second per configuration on one core."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

TINY_BASE: dict[str, Any] = {
    "data": {"dim": 5, "n_train": 40, "n_test": 50},
    "model": {"width": 8},
    "train_f": {"epochs": 30},
    "train_g": {"epochs": 30},
    "save_tensors": False,
}


def tiny_spec(**extra: Any) -> dict[str, Any]:
    """quickstart shrunk to d = 5, N = 40, m = 8, 30 epochs; zip d with ε, grid over width."""
    spec: dict[str, Any] = {
        "name": "tiny",
        "preset": "quickstart",
        "base": copy.deepcopy(TINY_BASE),
        "zip": {"data.dim": [5, 10], "attack.eps": [0.01, 0.02]},
        "grid": {"model.width": [4, 8]},
        "seeds": [0],
    }
    spec.update(extra)
    return spec


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_spec_toml(path: Path, spec: dict[str, Any]) -> Path:
    """Write a (flat-enough) spec dict as TOML: top-level scalars, then one table per dict."""
    lines = []
    tables = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {toml_value(value)}")

    def emit(prefix: str, table: dict[str, Any]) -> None:
        lines.append(f"[{prefix}]")
        nested = {}
        for key, value in table.items():
            if isinstance(value, dict):
                nested[key] = value
            else:
                lines.append(f"{json.dumps(key)} = {toml_value(value)}")
        for key, value in nested.items():
            emit(f"{prefix}.{key}", value)

    for key, table in tables.items():
        emit(key, table)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_file_hashes(sweep_dir: Path) -> dict[str, dict[str, str]]:
    """``run id → {file name: SHA-256}`` of the curves and the saved tensors (networks, data)
    of every complete run of a sweep dir: equal exactly when the runs computed the same bits."""
    out = {}
    for run in sorted((sweep_dir / "runs").iterdir()):
        if run.name.startswith("."):
            continue
        files = [run / "curves.json", *sorted(run.glob("*.safetensors"))]
        out[run.name] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return out


def run_metrics(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """``run id → metrics`` (without the wall times) of every complete run of a sweep dir."""
    runs = sweep_dir / "runs"
    out = {}
    for run in sorted(runs.iterdir()):
        if run.name.startswith("."):
            continue
        metrics = json.loads((run / "metrics.json").read_text())
        metrics.pop("seconds", None)
        metrics.pop("stage_seconds", None)
        out[run.name] = metrics
    return out


def write_run_record(run_dir: Path, config: dict[str, Any]) -> Path:
    """A run directory ``run_dir`` holding only the ``config.json`` record of ``config`` (a
    config tree), as a run writes it: enough to run it again."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"config": config, "resolved": {}}))
    return run_dir
