"""``pertlearn compare``: run directories side by side, with the config keys that tell them
apart."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

import pertlearn
from pertlearn.cli.main import cli
from pertlearn.errors import RunDirError
from pertlearn.reports.compare import compare_runs, comparison_columns, run_dirs

SMALL = ["train_f.epochs=20", "train_g.epochs=20", "data.n_train=40", "data.n_test=40"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/`` holding three quickstart runs: widths 8 and 16 at seed 0, width 16 at seed 1,
    and a hidden folder an interrupted write left."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in {
        "w8": ["model.width=8"],
        "w16": ["model.width=16"],
        "w16-seed1": ["model.width=16", "seed=1"],
    }.items():
        config = pertlearn.load_config(preset="quickstart", overrides=[*SMALL, *extra])
        pertlearn.run(config).save(root / name)
    (root / ".w32.x1y2.tmp").mkdir()
    return root


def test_rows_name_the_keys_that_differ_and_keep_every_metric(runs: Path) -> None:
    rows, differing = compare_runs([runs])
    assert [Path(r["run"]).name for r in rows] == ["w16", "w16-seed1", "w8"]  # hidden left out
    assert differing == ["seed", "model.width"]
    assert [r["model.width"] for r in rows] == [16, 16, 8]
    for row in rows:
        metrics = pertlearn.experiments.read_metrics(row["run"])
        assert row["g_acc_test"] == metrics["g_acc_test"]
        assert row["train_f.epochs"] == 20
    columns = comparison_columns(rows, differing)
    assert columns[:3] == ["run", "seed", "model.width"]
    assert "g_acc_test" in columns and "train_f.epochs" not in columns


def test_the_same_run_named_twice_and_paths_that_are_no_runs_are_refused(
    runs: Path, tmp_path: Path
) -> None:
    with pytest.raises(RunDirError, match="named twice"):
        run_dirs([runs / "w8", runs])
    with pytest.raises(RunDirError, match="not a run directory"):
        run_dirs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="neither a run directory nor a folder of run"):
        run_dirs([tmp_path / "empty"])


def test_cli_prints_the_table_writes_the_csv_and_fails_in_one_line(
    runs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "table.csv"
    result = CliRunner().invoke(
        cli, ["compare", str(runs / "w8"), str(runs / "w16"), "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header[:3] == ["run", "model.width", "seed"]
    with out.open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["model.width"] for row in table] == ["8", "16"]
    assert "train_g.lr" in table[0]  # every column in the file
    same = CliRunner().invoke(cli, ["compare", str(runs / "w8")])
    assert same.exit_code == 0 and "same config" not in same.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    failed = CliRunner().invoke(cli, ["compare", str(broken)])
    assert failed.exit_code == 2
    (line,) = failed.output.strip().splitlines()
    assert line.startswith("error:") and "config.json" in line
