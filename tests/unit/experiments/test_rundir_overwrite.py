"""Overwriting a run directory: the report's figures/ folder is pertlearn's own, a user's file
inside it is not; an overwrite killed between its two renames loses neither run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pertlearn.experiments.rundir import RunDirExistsError, check_target, set_aside, write_run_dir


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


def _overwrite_killed_between_renames(out: Path) -> Path:
    """The state an overwrite of ``out`` leaves when killed between its two renames: the old
    run set aside in ``.NAME.*.old/run``, the new one complete in a hidden temporary."""
    aside = out.parent / f".{out.name}.k1ll3d.old"
    aside.mkdir()
    out.rename(aside / "run")
    new = _run_dir(out.parent / f".{out.name}.n3w.tmp")
    (new / "metrics.json").write_text('{"new": 1}')
    return aside


def test_a_run_set_aside_by_a_killed_overwrite_is_put_back(tmp_path: Path) -> None:
    out = _run_dir(tmp_path / "run")
    (out / "metrics.json").write_text('{"old": 1}')
    aside = _overwrite_killed_between_renames(out)
    assert not out.exists()
    with pytest.raises(RunDirExistsError, match="already exists"):
        check_target(out, overwrite=False)  # the old run is back, and not replaced
    assert json.loads((out / "metrics.json").read_text()) == {"old": 1}
    assert not aside.exists()


def test_a_new_run_replaces_a_run_set_aside_by_a_killed_overwrite(tmp_path: Path) -> None:
    out = _run_dir(tmp_path / "run")
    _overwrite_killed_between_renames(out)
    written = write_run_dir(_tiny_result(), out, overwrite=True)
    assert "g_acc_test" in json.loads((written / "metrics.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing hidden left


def test_a_set_aside_run_of_a_finished_overwrite_is_removed_by_the_next_write(
    tmp_path: Path,
) -> None:
    out = _run_dir(tmp_path / "run")  # the new run is in place: killed before the cleanup
    aside = tmp_path / ".run.k1ll3d.old"
    aside.mkdir()
    _run_dir(aside / "run")
    assert set_aside(out) == [aside]
    with pytest.raises(RunDirExistsError):
        check_target(out, overwrite=False)
    assert (aside / "run").is_dir()  # out exists: the old run is not put back
    write_run_dir(_tiny_result(), out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _tiny_result() -> Any:
    from pertlearn.experiments.pipelines import run
    from pertlearn.experiments.presets import load_config

    config = load_config(
        preset="quickstart",
        overrides=[
            "data.dim=5",
            "data.n_train=10",
            "data.n_test=10",
            "model.width=4",
            "train_f.epochs=2",
            "train_g.epochs=2",
            "controls=[]",
        ],
    )
    return run(config)
