"""A sweep directory with unreadable files: the file is named in one line; a corrupt run or
failure record is moved into ``corrupt/`` and its configuration runs again, never a crash."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pertlearn.errors import cli_message
from pertlearn.experiments.execution import run_sweep
from pertlearn.experiments.store import (
    CorruptFileError,
    SweepDirError,
    SweepStore,
    collect_results,
    read_json_object,
)
from pertlearn.experiments.sweeps import Sweep, parse_sweep
from sweep_support import tiny_spec

SPEC = tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [4, 8]})


def _sweep() -> Sweep:
    return parse_sweep(SPEC)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete two-configuration sweep directory (copied by each test)."""
    out = tmp_path_factory.mktemp("template") / "s"
    assert run_sweep(_sweep(), out).succeeded == 2
    return out


@pytest.fixture
def sweep_dir(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "s"
    shutil.copytree(finished, out)
    return out


def _first_run(out: Path) -> Path:
    return sorted(p for p in (out / "runs").iterdir() if not p.name.startswith("."))[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pertlearn", *args], capture_output=True, text=True, timeout=300
    )


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "metrics not JSON": (
        lambda run: (run / "metrics.json").write_text(""),
        "metrics.json: not valid JSON (Expecting value: line 1 column 1",
    ),
    "metrics a list": (
        lambda run: (run / "metrics.json").write_text("[1, 2]"),
        "metrics.json: holds a JSON array, not an object",
    ),
    "metrics not UTF-8": (
        lambda run: (run / "metrics.json").write_bytes(b"\xff\xfe{"),
        "metrics.json: not UTF-8 text",
    ),
    "metrics missing": (lambda run: (run / "metrics.json").unlink(), "metrics.json: missing"),
    "config without its config": (
        lambda run: (run / "config.json").write_text('{"versions": {}}'),
        "config.json: holds no 'config' object",
    ),
    "curves missing": (lambda run: (run / "curves.json").unlink(), "curves.json: missing"),
    "weights truncated": (
        lambda run: _truncate(run / "g.safetensors"),
        "g.safetensors: corrupt or truncated (",
    ),
    "weights empty": (
        lambda run: (run / "f.safetensors").write_bytes(b""),
        "f.safetensors: corrupt or truncated (",
    ),
}


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 4)


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_run_is_moved_aside_and_rerun(sweep_dir: Path, case: str) -> None:
    corrupt, message = CORRUPTIONS[case]
    run = _first_run(sweep_dir)
    corrupt(run)
    lines: list[str] = []
    summary = run_sweep(_sweep(), sweep_dir, echo=lines.append)
    assert (summary.skipped_done, summary.succeeded, summary.failed) == (1, 1, [])
    (moved,) = summary.moved_corrupt
    assert message in moved and str(run) in moved and "\n" not in moved
    assert any(line.startswith("warning: ") and message in line for line in lines)
    store = SweepStore(sweep_dir)
    assert sorted(store.completed()) == sorted(p.run_id for p in _sweep().points())
    assert store.broken_runs() == {}
    kept = list((sweep_dir / "corrupt").glob(f"*/{run.name}"))
    assert len(kept) == 1 and kept[0].is_dir()  # moved, not deleted
    rows, _ = collect_results(sweep_dir)
    assert len(rows) == 2


def test_results_leave_a_corrupt_run_out_and_name_it(sweep_dir: Path) -> None:
    run = _first_run(sweep_dir)
    (run / "metrics.json").write_text("[]")
    result = _cli("results", str(sweep_dir))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"warning: left out {run / 'metrics.json'}: holds a JSON array" in result.stderr
    assert "1 runs ->" in result.stdout


def test_corrupt_failure_record_does_not_block_resuming(sweep_dir: Path) -> None:
    run = _first_run(sweep_dir)
    shutil.rmtree(run)
    (sweep_dir / "failed").mkdir()
    record = sweep_dir / "failed" / f"{run.name}.json"
    record.write_text('{"run_id": ')
    other = sweep_dir / "failed" / "0123456789abcdef.json"
    other.write_text("null")
    assert SweepStore(sweep_dir).failed() == {}
    summary = run_sweep(_sweep(), sweep_dir)
    assert (summary.skipped_failed, summary.succeeded) == (0, 1)
    assert len(summary.moved_corrupt) == 2
    assert any(str(record) in line and "not valid JSON" in line for line in summary.moved_corrupt)
    assert not record.exists() and len(list((sweep_dir / "corrupt").glob("*/*.json"))) == 2
    assert SweepStore(sweep_dir).run_problem(run.name) is None


def test_temporary_files_of_a_killed_write_are_removed_on_resume(sweep_dir: Path) -> None:
    """A sweep killed while it wrote sweep.json or a failure record leaves a hidden temporary
    file (``pertlearn.atomic``); the next sweep removes them and leaves the user's own hidden
    files and other temporaries alone."""
    (sweep_dir / "failed").mkdir()
    stale = [
        sweep_dir / ".sweep.json.k3j2x9.tmp",
        sweep_dir / "failed" / ".0123456789abcdef.json.a1b2c3.tmp",
    ]
    kept = [sweep_dir / ".notes", sweep_dir / ".results.csv.q7w8e9.tmp"]
    for path in [*stale, *kept]:
        path.write_text("{")
    summary = run_sweep(_sweep(), sweep_dir)
    assert summary.skipped_done == 2
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_deleted_sweep_json_is_written_anew_when_only_the_sweeps_files_are_there(
    sweep_dir: Path,
) -> None:
    (sweep_dir / "sweep.json").unlink()
    (sweep_dir / "report.html").write_text("<html>")
    summary = run_sweep(_sweep(), sweep_dir)
    assert (summary.skipped_done, summary.ran) == (2, 0)
    manifest = SweepStore(sweep_dir).read_manifest()
    assert manifest is not None and manifest["fingerprint"] == _sweep().fingerprint


def test_deleted_sweep_json_beside_other_files_is_refused(sweep_dir: Path) -> None:
    (sweep_dir / "sweep.json").unlink()
    (sweep_dir / "thesis.tex").write_text("mine")
    with pytest.raises(SweepDirError, match=r"is not empty and holds no sweep\.json"):
        run_sweep(_sweep(), sweep_dir)
    other = parse_sweep(tiny_spec(zip={"data.dim": [6]}, grid={"model.width": [4]}))
    (sweep_dir / "thesis.tex").unlink()
    with pytest.raises(SweepDirError, match=r"is not empty and holds no sweep\.json"):
        run_sweep(other, sweep_dir)  # the runs there are another sweep's


def test_corrupt_sweep_json_is_named(sweep_dir: Path, tmp_path: Path) -> None:
    manifest = sweep_dir / "sweep.json"
    manifest.write_text("")
    with pytest.raises(CorruptFileError, match=r"sweep\.json: not valid JSON"):
        SweepStore(sweep_dir).read_manifest()
    result = _cli("results", str(sweep_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {manifest}: not valid JSON (Expecting value")
    # Runs of another sweep: refused, naming the file; nothing moved.
    other = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [6]}))
    with pytest.raises(
        SweepDirError, match=rf"{manifest}: not valid JSON.*choose another sweep directory"
    ) as caught:
        run_sweep(other, sweep_dir)
    assert cli_message(caught.value).endswith("choose another --out")
    assert manifest.read_text() == "" and not (sweep_dir / "corrupt").exists()


def test_corrupt_sweep_json_over_this_sweeps_runs_is_rebuilt(sweep_dir: Path) -> None:
    (sweep_dir / "sweep.json").write_text("[]")
    summary = run_sweep(_sweep(), sweep_dir)
    assert (summary.skipped_done, summary.ran) == (2, 0)
    manifest = SweepStore(sweep_dir).read_manifest()
    assert manifest is not None and manifest["fingerprint"] == _sweep().fingerprint
    assert [p.read_text() for p in (sweep_dir / "corrupt").glob("*/sweep.json")] == ["[]"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        (b"1", "holds a JSON number, not an object"),
        (b"null", "holds a JSON null, not an object"),
        (b"\x80", "not UTF-8 text"),
        (b"[" * 100_000, "not valid JSON (nested too deeply)"),
    ],
)
def test_read_json_object_names_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError) as info:
        read_json_object(path)
    assert str(info.value) == f"{path}: {reason}"
    path.write_text('{"a": 1}')
    assert read_json_object(path) == {"a": 1}
