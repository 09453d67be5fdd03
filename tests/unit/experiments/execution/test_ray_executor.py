"""``--executor ray`` on a local Ray instance gives the same metrics as ``--executor local``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pertlearn.experiments.execution import run_sweep
from pertlearn.experiments.sweeps import parse_sweep
from sweep_support import run_metrics, tiny_spec, write_spec_toml

pytest.importorskip("ray")


def test_ray_matches_local(tmp_path: Path) -> None:
    spec = tiny_spec(seeds=[0, 1])
    # One torch thread per task on both sides, so the floating-point reductions agree.
    local = run_sweep(parse_sweep(spec), tmp_path / "local", workers=2, threads=1)
    assert local.succeeded == 8
    spec_file = write_spec_toml(tmp_path / "tiny.toml", spec)
    result = subprocess.run(
        [
            sys.executable, "-m", "pertlearn", "sweep", str(spec_file),
            "--out", str(tmp_path / "ray"), "--executor", "ray", "--cpus-per-task", "1", "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "8 configurations, 0 already complete, 8 ran now" in result.stdout
    local_metrics, ray_metrics = run_metrics(tmp_path / "local"), run_metrics(tmp_path / "ray")
    assert sorted(local_metrics) == sorted(ray_metrics)  # the same run ids (config hashes)
    assert ray_metrics == local_metrics
    # Ray results land in the same kind of store: a rerun with the local executor skips all.
    again = run_sweep(parse_sweep(spec), tmp_path / "ray")
    assert again.ran == 0 and again.skipped_done == 8


def test_ray_workers_can_write_to_a_shared_store(tmp_path: Path) -> None:
    spec = tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [4, 8]})
    summary = run_sweep(
        parse_sweep(spec), tmp_path / "ray", executor="ray", shared_fs=True, workers=2
    )
    assert summary.succeeded == 2 and not summary.failed
    local = run_sweep(parse_sweep(spec), tmp_path / "local", threads=1)
    assert local.succeeded == 2
    assert run_metrics(tmp_path / "ray") == run_metrics(tmp_path / "local")


def test_unreachable_cluster_is_one_error_and_nothing_written(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec_file = write_spec_toml(tmp_path / "tiny.toml", tiny_spec())
    result = subprocess.run(
        [
            sys.executable, "-m", "pertlearn", "sweep", str(spec_file), "--out",
            str(tmp_path / "out"), "--executor", "ray", "--address", f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: no Ray cluster answers at 127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
@pytest.mark.skipif(
    os.environ.get("PERTLEARN_SIGNAL_TESTS") != "1",
    reason="timing-sensitive under a parallel suite on 2 cores (Ray's own SIGTERM handling can "
    "abort the driver first); run with PERTLEARN_SIGNAL_TESTS=1",
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_a_ray_driver_leaves_no_ray_process_behind(tmp_path: Path, signum: int) -> None:
    """SIGTERM: the driver shuts its local Ray instance down and says so in one line; SIGKILL:
    the instance's processes share the driver's fate (Ray starts them so)."""
    from integration.test_sweep_signals import Sweeps, marked_processes, no_survivors, wait_for

    base = tiny_spec()["base"]
    base["train_f"]["epochs"] = base["train_g"]["epochs"] = 300
    spec = tiny_spec(base=base, grid={"model.width": [4, 6, 8, 10]})
    spec_file = write_spec_toml(tmp_path / "ray.toml", spec)
    out = tmp_path / "out"
    sweeps = Sweeps(tmp_path)
    driver = sweeps.start(spec_file, out, "--executor", "ray", "--no-batch", "--workers", "2")
    try:
        wait_for(lambda: driver.poll() is not None or (out / "runs").is_dir(), 300, "a first run")
        assert driver.poll() is None, "the sweep finished before it could be stopped"
        assert len(sweeps.others(driver)) >= 2  # the local Ray instance's processes
        os.kill(driver.pid, signum)
        status, _, stderr = driver.wait(120)
        if signum == signal.SIGTERM:
            assert status == 128 + signal.SIGTERM, stderr[-2000:]
            assert "error: sweep stopped by SIGTERM" in stderr.splitlines()[-1]
        left = no_survivors(sweeps.marker, grace=90.0)  # Ray's processes notice late under load
        names = [Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in left]
        assert not left, f"Ray processes of the stopped sweep still run: {left} {names}"
    finally:
        for pid in marked_processes(sweeps.marker):
            os.kill(pid, signal.SIGKILL)
