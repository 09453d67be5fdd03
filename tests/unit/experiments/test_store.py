"""The results store: resumable runs, failures, the aggregated table, and the kill test."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pertlearn.experiments.execution import run_sweep
from pertlearn.experiments.store import SweepDirError, SweepStore, collect_results, write_results
from pertlearn.experiments.sweeps import parse_sweep
from sweep_support import run_metrics, tiny_spec, write_spec_toml

RUN_FILES = {"config.json", "metrics.json", "curves.json", "f.safetensors", "g.safetensors"}


def test_sweep_runs_once_and_resumes(tmp_path: Path) -> None:
    sweep = parse_sweep(tiny_spec())
    first = run_sweep(sweep, tmp_path / "s")
    assert (first.total, first.succeeded, first.skipped_done) == (4, 4, 0)
    store = SweepStore(tmp_path / "s")
    ids = sorted(p.run_id for p in sweep.points())
    assert store.completed() == ids
    for run_id in ids:
        assert RUN_FILES <= {p.name for p in store.run_dir(run_id).iterdir()}
        saved = json.loads((store.run_dir(run_id) / "config.json").read_text())["config"]
        assert saved["data"]["n_train"] == 40
    again = run_sweep(parse_sweep(tiny_spec()), tmp_path / "s")
    assert (again.succeeded, again.skipped_done, again.ran) == (0, 4, 0)
    manifest = store.read_manifest()
    assert manifest is not None and manifest["fingerprint"] == sweep.fingerprint
    assert sorted(p["run_id"] for p in manifest["points"]) == ids


def test_failed_run_is_recorded_and_retried_only_on_request(tmp_path: Path) -> None:
    # A learning rate that makes f's training diverge: a configuration that fails while it runs.
    spec = tiny_spec(grid={"train_f.lr": [1.0, 1e30]}, zip={"data.dim": [5]})
    out = tmp_path / "s"
    summary = run_sweep(parse_sweep(spec), out)
    assert summary.succeeded == 1 and len(summary.failed) == 1
    store = SweepStore(out)
    (bad_id,) = summary.failed
    record = store.failed()[bad_id]
    assert "diverged" in record["error"] and "Traceback" in record["traceback"]
    assert record["values"]["train_f.lr"] == 1e30
    assert bad_id not in store.completed()
    rerun = run_sweep(parse_sweep(spec), out)
    assert rerun.ran == 0 and rerun.skipped_failed == 1 and rerun.skipped_done == 1
    retry = run_sweep(parse_sweep(spec), out, retry_failed=True)
    assert retry.ran == 1 and retry.failed == [bad_id]
    rows, _ = collect_results(out)
    assert len(rows) == 1  # only complete runs are rows


def test_a_failure_record_beside_a_finished_run_does_not_count_as_failed(tmp_path: Path) -> None:
    """A retry that finished its run and was killed before it removed the failure record."""
    from click.testing import CliRunner

    from pertlearn.cli.main import cli

    out = tmp_path / "s"
    sweep = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [3, 4]}))
    run_sweep(sweep, out)
    store = SweepStore(out)
    finished, open_failure = sweep.points()
    store.record_failure(finished, "WorkerCrashedError: died", "")
    shutil.rmtree(store.run_dir(open_failure.run_id))
    store.record_failure(open_failure, "RuntimeError: diverged", "")
    assert set(store.failed()) == {finished.run_id, open_failure.run_id}
    assert set(store.failed_unfinished(store.completed())) == {open_failure.run_id}
    result = CliRunner().invoke(cli, ["results", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 configuration(s) failed" in result.output
    assert "have no finished run" not in result.output


def test_results_table_csv_and_parquet(tmp_path: Path) -> None:
    out = tmp_path / "s"
    run_sweep(parse_sweep(tiny_spec(seeds=[0, 1])), out)
    rows, swept, paths = write_results(out)
    assert swept == ["data.dim", "attack.eps", "model.width"]
    assert len(rows) == 8
    assert [p.name for p in paths] == ["results.csv", "results.parquet"]
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    table_pq = pq.read_table(out / "results.parquet").to_pylist()
    metrics = run_metrics(out)
    assert len(table) == len(table_pq) == 8
    for row, row_pq in zip(table, table_pq, strict=True):
        assert list(row)[:5] == ["run_id", "data.dim", "attack.eps", "model.width", "seed"]
        expected = metrics[row["run_id"]]
        assert row_pq["g_acc_test"] == expected["g_acc_test"]
        assert float(row["agreement"]) == pytest.approx(expected["agreement"])
        assert int(row["data.dim"]) * 0.002 == pytest.approx(float(row["attack.eps"]))
        assert set(expected) <= set(row)  # every metric is a column
    assert {(r["seed"]) for r in table_pq} == {0, 1}


def test_results_cli(tmp_path: Path) -> None:
    out = tmp_path / "s"
    run_sweep(parse_sweep(tiny_spec()), out)
    result = subprocess.run(
        [sys.executable, "-m", "pertlearn", "results", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:4] == ["data.dim", "attack.eps", "model.width", "seed"]
    assert "g_acc_train" in header and "agreement" in header
    assert "4 runs ->" in result.stdout and "no finished run" not in result.stdout
    assert (out / "results.parquet").exists()
    shutil.rmtree(next((out / "runs").iterdir()))  # a run directory removed by hand
    fewer = subprocess.run(
        [sys.executable, "-m", "pertlearn", "results", str(out)], capture_output=True, text=True
    )
    assert fewer.returncode == 0, fewer.stderr
    assert "1 configuration(s) have no finished run" in fewer.stdout
    assert "3 runs ->" in fewer.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "pertlearn", "results", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "not a sweep directory" in missing.stderr


def test_second_sweep_process_is_locked_out(tmp_path: Path) -> None:
    store = SweepStore(tmp_path / "s")
    with store.lock(), pytest.raises(SweepDirError, match="another sweep process"):
        run_sweep(parse_sweep(tiny_spec()), tmp_path / "s")


def _visible_runs(out: Path) -> dict[str, tuple[int, int]]:
    """Visible run dirs → (inode, mtime) of their metrics.json; asserts each is complete."""
    runs = out / "runs"
    if not runs.exists():
        return {}
    found = {}
    for run in runs.iterdir():
        if run.name.startswith("."):
            continue
        assert RUN_FILES <= {p.name for p in run.iterdir()}, f"partial run visible: {run}"
        stat = (run / "metrics.json").stat()
        found[run.name] = (stat.st_ino, stat.st_mtime_ns)
    return found


def test_kill_and_rerun(tmp_path: Path) -> None:
    """SIGKILL a sweep part-way; the rerun completes it without recomputing finished runs."""
    base = tiny_spec()["base"]
    base["train_f"]["epochs"] = base["train_g"]["epochs"] = 150
    spec = tiny_spec(base=base, grid={"model.width": [4, 6, 8, 10]}, seeds=[0])
    spec_file = write_spec_toml(tmp_path / "kill.toml", spec)
    out = tmp_path / "out"
    total = len(parse_sweep(spec).points())
    command = [sys.executable, "-m", "pertlearn", "sweep", str(spec_file), "--out", str(out), "-q"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if len(_visible_runs(out)) >= 2:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    finished = _visible_runs(out)
    assert 2 <= len(finished) < total

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{total} configurations, {len(finished)} already complete" in rerun.stdout
    after = _visible_runs(out)
    assert sorted(after) == sorted(p.run_id for p in parse_sweep(spec).points())
    for run_id, identity in finished.items():
        assert after[run_id] == identity, f"{run_id} was recomputed"
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]
    rows, _ = collect_results(out)
    assert len(rows) == total
