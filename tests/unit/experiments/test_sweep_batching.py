"""The sweep runner batches same-shape configurations: same metrics as one at a time,
and it really calls the batched runner with several configurations."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import pertlearn.experiments.batched as batched
from pertlearn.errors import cli_message
from pertlearn.experiments import IclrArtificialConfig
from pertlearn.experiments.config import ConfigError, ExperimentConfig
from pertlearn.experiments.execution import chunks, run_sweep
from pertlearn.experiments.sweeps import parse_sweep
from sweep_support import run_metrics, tiny_spec, write_spec_toml


def _batchable_spec() -> dict[str, Any]:
    """Six configurations of one shape: 3 learning-rate pairs × 2 seeds, ε zipped with g's lr."""
    return tiny_spec(
        zip={"train_f.lr": [0.5, 1.0, 1.0], "train_g.lr": [1.0, 1.0, 0.5]},
        grid={},
        seeds=[0, 1],
    )


def _assert_close(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    assert sorted(a) == sorted(b)
    for run_id, metrics in a.items():
        assert list(metrics) == list(b[run_id]), run_id
        for key, value in metrics.items():
            other = b[run_id][key]
            if isinstance(value, float) and not isinstance(value, bool):
                assert math.isclose(value, other, abs_tol=0.005), (run_id, key, value, other)
            else:
                assert value == other, (run_id, key)


def test_batched_sweep_matches_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    original = batched.run_each

    def counting(configs: Sequence[ExperimentConfig], **kwargs: Any) -> Any:
        sizes.append(len(configs))
        return original(configs, **kwargs)

    monkeypatch.setattr(batched, "run_each", counting)
    spec = _batchable_spec()
    together = run_sweep(parse_sweep(spec), tmp_path / "batched", batch_size=4)
    assert together.succeeded == 6 and not together.failed
    assert sizes == [4, 2]  # chunks of at most batch_size, in sweep order
    sizes.clear()
    alone = run_sweep(parse_sweep(spec), tmp_path / "alone", batch_size=1)
    assert alone.succeeded == 6 and sizes == []
    _assert_close(run_metrics(tmp_path / "batched"), run_metrics(tmp_path / "alone"))


def test_cli_no_batch_gives_the_same_metrics(tmp_path: Path) -> None:
    spec_file = write_spec_toml(tmp_path / "b.toml", _batchable_spec())
    outs = {}
    for flag in ("--no-batch", "--batch-size=10"):
        out = tmp_path / flag.strip("-").split("=")[0]
        command = [sys.executable, "-m", "pertlearn", "sweep", str(spec_file), "--out", str(out)]
        result = subprocess.run([*command, flag, "-q"], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "6 configurations, 0 already complete, 6 ran now" in result.stdout
        outs[flag] = run_metrics(out)
    _assert_close(outs["--no-batch"], outs["--batch-size=10"])


def test_failure_in_a_chunk_fails_only_its_configuration(tmp_path: Path) -> None:
    # Same shapes, so both land in one chunk; the learning rate of one makes its f diverge.
    spec = tiny_spec(grid={"train_f.lr": [1.0, 1e30]}, zip={"data.dim": [5]})
    summary = run_sweep(parse_sweep(spec), tmp_path / "s", batch_size=10)
    assert summary.succeeded == 1 and len(summary.failed) == 1


def test_chunks_group_by_shape_and_cap_the_size() -> None:
    spec = tiny_spec(zip={"data.dim": [5, 10]}, grid={"train_f.lr": [0.5, 1.0, 2.0]}, seeds=[0])
    points = parse_sweep(spec).points()
    units = chunks(points, 2)
    assert sorted(len(u) for u in units) == [1, 1, 2, 2]
    for unit in units:
        assert len({p.config.data.dim for p in unit}) == 1
    assert [len(u) for u in chunks(points, 1)] == [1] * 6
    assert sum(len(u) for u in chunks(points, 10)) == 6 and len(chunks(points, 10)) == 2


def test_chunks_leave_other_pipelines_alone() -> None:
    points = parse_sweep(tiny_spec(zip={"data.dim": [5]}, grid={}, seeds=[0, 1, 2])).points()
    iclr = [dataclasses.replace(p, config=IclrArtificialConfig(seed=p.config.seed)) for p in points]
    assert [len(u) for u in chunks(iclr, 10)] == [1, 1, 1]


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^batch_size must be at least 1") as caught:
        run_sweep(parse_sweep(tiny_spec()), tmp_path / "s", batch_size=0)
    assert cli_message(caught.value).startswith("--batch-size must be at least 1")
    assert not (tmp_path / "s").exists()


def test_chunks_hold_the_same_seeds_together() -> None:
    # Sweep order is learning rate major; a chunk takes one seed's configurations first, as
    # those share data, f (across g's lr) and the control (across f's lr).
    spec = tiny_spec(zip={"data.dim": [5]}, grid={"train_f.lr": [0.5, 1.0]}, seeds=[0, 1])
    units = chunks(parse_sweep(spec).points(), 2)
    assert [[p.config.seed for p in unit] for unit in units] == [[0, 0], [1, 1]]
