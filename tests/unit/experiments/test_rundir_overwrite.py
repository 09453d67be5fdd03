"""Overwriting a run directory: the report's figures/ folder is pertlearn's own, a user's file
inside it is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pertlearn.experiments.rundir import RunDirExistsError, check_target


def _run_dir(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"versions": {"pertlearn": "0"}}))
    (path / "metrics.json").write_text("{}")
    (path / "curves.json").write_text("{}")
    (path / "report.html").write_text("<html></html>")
    figures = path / "figures"
    figures.mkdir()
    for fmt in ("png", "pdf", "svg"):
        (figures / f"training-loss.{fmt}").write_bytes(b"x")
    return path


def test_a_run_directory_with_report_figures_may_be_overwritten(tmp_path: Path) -> None:
    check_target(_run_dir(tmp_path / "run"), overwrite=True)  # no error


def test_a_user_file_in_figures_blocks_the_overwrite(tmp_path: Path) -> None:
    out = _run_dir(tmp_path / "run")
    (out / "figures" / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirExistsError, match="'figures'"):
        check_target(out, overwrite=True)


def test_another_folder_blocks_the_overwrite(tmp_path: Path) -> None:
    out = _run_dir(tmp_path / "run")
    (out / "plots").mkdir()
    with pytest.raises(RunDirExistsError, match="'plots'"):
        check_target(out, overwrite=True)
