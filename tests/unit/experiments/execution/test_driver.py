"""The sweep driver: attack options checked before anything runs, skipped failures reported
with a non-zero exit, signals turned into :class:`SweepInterrupted`, and the worker side's
parent-death safeguards."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pertlearn.cli.main import cli
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.execution import Outcome, SweepInterrupted, check_attacks, run_sweep
from pertlearn.experiments.execution.driver import stop_on_signals
from pertlearn.experiments.execution.local import children_ignore_sigint
from pertlearn.experiments.store import SweepStore
from pertlearn.experiments.sweeps import Sweep, parse_sweep
from sweep_support import run_file_hashes, run_metrics, tiny_spec, write_spec_toml


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pertlearn", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_attack_option_typos_fail_validation() -> None:
    spec = tiny_spec(zip={"data.dim": [5]}, grid={"attack.options": [{}, {"bogus": 1}]})
    with pytest.raises(ConfigError) as info:
        parse_sweep(spec).points()  # before any run: nothing ran, nothing written
    assert str(info.value) == (
        "sweep 'tiny', configuration data.dim=5, attack.options={'bogus': 1}, seed=0: invalid "
        "config: attack: attack.options.bogus is not an option of attack 'gradient_step' "
        "(it takes: loss, targeted); fix or remove it (attack.options = {} drops the options a "
        "preset set for its own attack)"
    )


def test_attack_option_typo_in_a_pgd_attack_names_the_key() -> None:
    spec = tiny_spec(
        zip={"data.dim": [5]},
        grid={},
        base={**tiny_spec()["base"], "attack": {"name": "pgd_l2", "options": {"stepz": 5}}},
    )
    with pytest.raises(ConfigError, match=r"attack\.options\.stepz is not an option of attack"):
        parse_sweep(spec).points()
    bad_value = tiny_spec(
        zip={"data.dim": [5]},
        grid={},
        base={**tiny_spec()["base"], "attack": {"name": "pgd_l2", "options": {"steps": 0}}},
    )
    with pytest.raises(ConfigError, match=r"invalid config: attack: .*steps"):
        parse_sweep(bad_value).points()


def test_attack_budget_resolved_per_dimension_is_checked_before_any_run(tmp_path: Path) -> None:
    """An L0 budget given per √d is a whole number of coordinates only once d is known: the
    sweep checks every resolved budget before it runs anything."""
    base = {**tiny_spec()["base"], "attack": {"name": "pgd_l0", "eps_per_sqrt_dim": 0.01}}
    points = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={}, base=base)).points()
    with pytest.raises(ConfigError, match=r"^attack: pgd_l0: eps .* whole number") as info:
        check_attacks(points)
    assert str(info.value).endswith("(configuration data.dim=5, seed=0)")
    out = tmp_path / "s"
    with pytest.raises(ConfigError, match="whole number"):
        run_sweep(parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={}, base=base)), out)
    assert not out.exists()


def test_cli_attack_option_typo_is_one_line_exit_2(tmp_path: Path) -> None:
    base = {**tiny_spec()["base"], "attack": {"options": {"bogus": 1}}}
    spec_file = write_spec_toml(tmp_path / "s.toml", tiny_spec(base=base))
    result = _cli("sweep", str(spec_file), "--out", str(tmp_path / "out"), "-q")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "attack.options.bogus" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_rerun_with_skipped_failures_exits_1_and_says_how_to_retry(tmp_path: Path) -> None:
    spec = tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [4, 8]})
    spec_file = write_spec_toml(tmp_path / "s.toml", spec)
    out = tmp_path / "out"
    points = parse_sweep(spec).points()
    store = SweepStore(out)
    with store.lock():
        store.write_manifest(parse_sweep(spec), points)
    store.record_failure(points[1], "RuntimeError: it broke", "Traceback ...")
    first = _cli("sweep", str(spec_file), "--out", str(out), "-q")
    assert first.returncode == 1
    assert "1 failed earlier (skipped; --retry-failed reruns)" in first.stdout
    assert (
        "error: 1 configuration(s) failed in an earlier run and were not retried "
        f"(errors in {out / 'failed'}); rerun with --retry-failed to retry them"
    ) in first.stderr
    assert store.completed() == [points[0].run_id]
    again = _cli("sweep", str(spec_file), "--out", str(out), "-q")
    assert again.returncode == 1  # still skipped, still said
    retry = _cli("sweep", str(spec_file), "--out", str(out), "-q", "--retry-failed")
    assert retry.returncode == 0, retry.stderr
    assert sorted(store.completed()) == sorted(p.run_id for p in points)
    assert store.failed() == {}


@pytest.mark.parametrize("where", ["loading the spec", "validating the configurations"])
def test_ctrl_c_before_the_sweep_starts_exits_130_not_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # Status 1 says that configurations failed; a Ctrl-C (before the sweep's signal handlers
    # are in place) must say it was stopped, like one while it runs.
    def ctrl_c(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    if where == "loading the spec":
        monkeypatch.setattr("pertlearn.experiments.sweeps.load_sweep", ctrl_c)
    else:
        monkeypatch.setattr(Sweep, "points", ctrl_c)
    spec_file = write_spec_toml(tmp_path / "s.toml", tiny_spec())
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(spec_file), "--out", str(out), "-q"])
    assert result.exit_code == 128 + signal.SIGINT, result.output
    assert "error: sweep stopped by SIGINT; rerun the same command to continue" in result.output
    assert "Aborted!" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(("complete", "then"), [(1, "to continue"), (2, "for the summary")])
def test_a_stopped_sweep_says_whether_anything_is_left_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, complete: int, then: str
) -> None:
    def stopped(*_args: object, **_kwargs: object) -> None:
        raise SweepInterrupted(signal.SIGTERM, complete=complete, total=2)

    monkeypatch.setattr("pertlearn.experiments.execution.run_sweep", stopped)
    spec_file = write_spec_toml(tmp_path / "s.toml", tiny_spec())
    result = CliRunner().invoke(cli, ["sweep", str(spec_file), "--out", str(tmp_path / "o")])
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert f"{complete} of 2 configurations are complete" in result.output
    assert result.output.rstrip().endswith(f"rerun the same command {then}")


class _TorchImport(types.ModuleType):
    """Stands in for the sweep machinery while the sweep command imports it: a Ctrl-C arrives
    in the middle of the import (where torch may swallow it)."""

    def __init__(self, real: types.ModuleType, finished: list[str]) -> None:
        super().__init__(real.__name__)
        self._real, self._finished = real, finished

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            return getattr(self._real, name)
        # To this thread: the test process has other threads (torch's) that do not block it.
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        signal.sigtimedwait([], 0.1)  # let a handler run
        self._finished.append(name)
        return getattr(self._real, name)


@pytest.mark.usefixtures("sigint_as_python_default")
def test_ctrl_c_while_the_sweep_command_imports_torch_waits_for_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished: list[str] = []
    name = "pertlearn.experiments.execution"
    monkeypatch.setitem(sys.modules, name, _TorchImport(sys.modules[name], finished))
    spec_file = write_spec_toml(tmp_path / "s.toml", tiny_spec())
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(spec_file), "--out", str(out), "-q"])
    assert set(finished) == {"SweepInterrupted", "run_sweep"}, result.output  # not interrupted
    assert result.exit_code == 128 + signal.SIGINT, result.output
    assert "Aborted!" not in result.output
    assert not out.exists()


@pytest.fixture
def sigint_as_python_default() -> Iterator[None]:
    """Python's own Ctrl-C disposition for the test, whatever the runner inherited: a suite
    started in the background (``nohup … &``) begins with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def sigint_ignored() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("sigint_as_python_default")
def test_signals_raise_sweep_interrupted_once_and_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(SweepInterrupted) as info, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.1)  # let the handler run
    assert info.value.signum == signal.SIGTERM and str(info.value) == "SIGTERM"
    assert isinstance(info.value, KeyboardInterrupt)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with stop_on_signals():  # a second signal while stopping is ignored
        with pytest.raises(SweepInterrupted):
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0.1)
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0.1)


@pytest.mark.usefixtures("sigint_ignored")
def test_an_ignored_sigint_stays_ignored_while_stopping_on_signals() -> None:
    with stop_on_signals():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # nothing happens
        signal.sigtimedwait([], 0.1)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.usefixtures("sigint_as_python_default")
def test_processes_started_for_workers_ignore_ctrl_c() -> None:
    code = "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"
    with children_ignore_sigint():
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.stdout.strip() == "True"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert plain.stdout.strip() == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_worker_initializer_sets_the_parent_death_signal_and_checks_the_parent() -> None:
    code = (
        "import ctypes, os, sys\n"
        "from pertlearn.experiments.execution.worker import init_worker\n"
        "init_worker(1, int(sys.argv[1]))\n"
        "value = ctypes.c_int()\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG\n"
        "print(value.value)\n"
    )
    alive = subprocess.run(
        [sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True
    )
    assert alive.returncode == 0, alive.stderr
    assert alive.stdout.strip() == str(int(signal.SIGKILL))
    orphan = subprocess.run(  # started by a parent that is not the driver it names: exits
        [sys.executable, "-c", code, "1"], capture_output=True, text=True
    )
    assert orphan.returncode == 1 and orphan.stdout == ""


def test_outcome_failure_keeps_the_first_line_and_the_traceback() -> None:
    try:
        raise ValueError("first line\nsecond line")
    except ValueError as err:
        outcome = Outcome.failure("abc", err)
    assert (outcome.run_id, outcome.status, outcome.ok) == ("abc", "failed", False)
    assert outcome.error == "ValueError: first line"
    assert "Traceback" in outcome.traceback and "second line" in outcome.traceback
    assert Outcome.failure("abc", RuntimeError()).error == "RuntimeError"
    done = Outcome.done("abc", files={"metrics.json": b"{}"})
    assert done.ok and done.files == {"metrics.json": b"{}"} and done.error == ""


def test_a_run_has_the_same_bits_alone_in_a_larger_sweep_and_rerun_after_its_deletion(
    tmp_path: Path,
) -> None:
    # identity loss on the CPU: the batched chunk of the larger sweep trains each network on
    # its own, so its runs equal the same configuration run alone (docs/reproduce.md)
    larger = tiny_spec(zip={"data.dim": [5]}, grid={"train_f.lr": [0.5, 1.0]}, seeds=[0, 1])
    alone = tiny_spec(zip={"data.dim": [5]}, grid={"train_f.lr": [1.0]}, seeds=[1])
    run_sweep(parse_sweep(larger), tmp_path / "larger", threads=1)
    run_sweep(parse_sweep(alone), tmp_path / "alone", threads=1)
    (run_id,) = run_file_hashes(tmp_path / "alone")
    before = run_file_hashes(tmp_path / "larger")
    metrics = run_metrics(tmp_path / "larger")
    assert before[run_id] == run_file_hashes(tmp_path / "alone")[run_id]
    assert metrics[run_id] == run_metrics(tmp_path / "alone")[run_id]

    shutil.rmtree(SweepStore(tmp_path / "larger").run_dir(run_id))
    again = run_sweep(parse_sweep(larger), tmp_path / "larger", threads=1)
    assert (again.ran, again.skipped_done) == (1, 3)
    assert run_file_hashes(tmp_path / "larger") == before
    assert run_metrics(tmp_path / "larger") == metrics
