"""``python -m benchmarks.gpu``: refuses without CUDA (exit 2, one line) and, with
``--allow-cpu``, runs every case at its smoke size and writes the JSON record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from benchmarks import gpu

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")


@no_cuda
def test_refuses_politely_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a CUDA device" in err and "--allow-cpu" in err


def test_unknown_case_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main(["--allow-cpu", "--only", "resnet"]) == 2
    assert "unknown case 'resnet'" in capsys.readouterr().err


@no_cuda
@pytest.mark.slow
def test_cpu_smoke_run_writes_every_case(tmp_path: Path) -> None:
    out = tmp_path / "results-gpu.json"
    assert gpu.main(["--allow-cpu", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["smoke"] is True and record["device"] == "cpu"
    assert {"device_name", "torch", "pertlearn"} <= set(record)
    assert set(record["cases"]) == {"wrn", "pgd", "iclr"}
    wrn, pgd, iclr = (record["cases"][k] for k in ("wrn", "pgd", "iclr"))
    assert wrn["baseline_seconds"] > 0 and wrn["ours_seconds"] > 0
    assert wrn["epoch_seconds_ours"] == pytest.approx(
        wrn["ours_seconds"] * 3125 / wrn["batches_timed"]
    )
    assert pgd["steps"] == 100 and pgd["ours_images_per_s"] > 0
    assert 0 <= pgd["ours_fooling_rate"] <= 1
    assert iclr["paper_epochs"] == 100_000 and len(iclr["seconds_capped"]) == 2


def test_help_keeps_the_usage_lines_of_the_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gpu.main(["--help"])
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    command, comment = ".venv/bin/python -m benchmarks.gpu --allow-cpu", "on any machine"
    # the usage line and its comment stay one line: not reflowed into the next one
    assert any(line.startswith(command) and line.endswith(comment) for line in lines)
