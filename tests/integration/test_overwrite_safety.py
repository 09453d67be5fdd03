"""A user's files survive every CLI path that writes, removes or replaces directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pertlearn.cli.main import cli

FAST = ["--preset", "quickstart", "--set", "train_f.epochs=5", "--set", "train_g.epochs=5", "-q"]


def invoke(args: list[str]) -> object:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("my thesis")
    return folder


def test_overwrite_refuses_a_folder_that_is_not_a_run_directory(user_dir: Path) -> None:
    result = invoke(["run", *FAST, "--out", str(user_dir), "--overwrite"])
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "not a pertlearn run directory" in result.output  # type: ignore[attr-defined]
    assert (user_dir / "thesis.tex").read_text() == "my thesis"


def test_overwrite_refuses_the_current_directory(
    user_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(user_dir)
    result = invoke(["run", *FAST, "--out", ".", "--overwrite"])
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert (user_dir / "thesis.tex").read_text() == "my thesis"
    assert sorted(p.name for p in user_dir.iterdir()) == ["thesis.tex"]


def test_overwrite_refuses_a_run_directory_holding_a_user_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke(["run", *FAST, "--out", str(out)]).exit_code == 0  # type: ignore[attr-defined]
    (out / "notes.txt").write_text("keep me")
    result = invoke(["run", *FAST, "--out", str(out), "--overwrite"])
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "notes.txt" in result.output  # type: ignore[attr-defined]
    assert (out / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_a_run_directory_by_swapping(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke(["run", *FAST, "--out", str(out)]).exit_code == 0  # type: ignore[attr-defined]
    again = invoke(["run", *FAST, "--seed", "1", "--out", str(out), "--overwrite", "--theory"])
    assert again.exit_code == 0  # type: ignore[attr-defined]
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left beside it
    # A run directory with theory and report files written by pertlearn is still its own.
    assert invoke(["report", str(out)]).exit_code == 0  # type: ignore[attr-defined]
    third = invoke(["run", *FAST, "--out", str(out), "--overwrite"])
    assert third.exit_code == 0  # type: ignore[attr-defined]


def test_sweep_and_report_leave_a_user_folder_alone(user_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(
        'preset = "quickstart"\n[base]\ntrain_f.epochs = 5\ntrain_g.epochs = 5\n'
        '[grid]\n"train_g.lr" = [1.0]\n'
    )
    result = invoke(["sweep", str(spec), "--out", str(user_dir), "-q"])
    assert result.exit_code == 2  # type: ignore[attr-defined]
    for command in (["report", str(user_dir)], ["theory", str(user_dir)]):
        invoke(command)
    assert (user_dir / "thesis.tex").read_text() == "my thesis"


def test_a_failed_write_keeps_the_old_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pertlearn.experiments.rundir as rundir

    out = tmp_path / "run"
    assert invoke(["run", *FAST, "--out", str(out)]).exit_code == 0  # type: ignore[attr-defined]
    before = (out / "metrics.json").read_text()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir, "save_file", disk_full)
    failed = invoke(["run", *FAST, "--seed", "2", "--out", str(out), "--overwrite"])
    assert failed.exit_code == 2  # type: ignore[attr-defined]
    assert (out / "metrics.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_unwritable_out_fails_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    result = invoke(
        [
            "run",
            *FAST,
            "--set",
            "train_f.epochs=100000",
            "--out",
            str(tmp_path / "file.txt" / "run"),
        ]
    )
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "is a file" in result.output  # type: ignore[attr-defined]


def test_a_run_directory_follows_the_umask_and_cleans_stale_temporaries(tmp_path: Path) -> None:
    import os

    (tmp_path / ".run.abc123.tmp").mkdir()  # left by a killed write
    out = tmp_path / "run"
    previous = os.umask(0o022)
    try:
        assert invoke(["run", *FAST, "--out", str(out)]).exit_code == 0  # type: ignore[attr-defined]
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_report_refuses_to_replace_a_file_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke(["run", *FAST, "--out", str(out)]).exit_code == 0  # type: ignore[attr-defined]
    thesis = tmp_path / "thesis.tex"
    thesis.write_text("my thesis")
    config = (out / "config.json").read_text()
    for target in (thesis, out / "config.json"):
        result = invoke(["report", str(out), "--out", str(target)])
        assert result.exit_code == 2  # type: ignore[attr-defined]
        assert "is not a report written by pertlearn" in result.output  # type: ignore[attr-defined]
    assert thesis.read_text() == "my thesis"
    assert (out / "config.json").read_text() == config
    assert not (tmp_path / "thesis-figures").exists()
    # A page it wrote itself is replaced.
    page = tmp_path / "page.html"
    for _ in range(2):
        assert invoke(["report", str(out), "--out", str(page)]).exit_code == 0  # type: ignore[attr-defined]
