"""Same science, same numbers: every golden case gives its recorded metrics (tolerance 1e-6).

The metrics were recorded by ``python -m tests.golden.record`` before the experiments package
was restructured; see ``tests/golden/cases.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.golden.cases import CASES
from tests.golden.record import case_metrics, sweep_metrics

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "metrics.json").read_text())


@pytest.fixture
def one_thread() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def assert_same_metrics(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert sorted(got) == sorted(want), f"{where}: metric keys differ"
    for key, expected in want.items():
        value = got[key]
        if isinstance(expected, dict):
            assert_same_metrics(value, expected, f"{where}: {key}")
        elif isinstance(expected, float):
            assert math.isclose(value, expected, rel_tol=0, abs_tol=1e-6), (
                f"{where}: {key} = {value}, recorded {expected}"
            )
        else:
            assert value == expected, f"{where}: {key} = {value!r}, recorded {expected!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_case(name: str, one_thread: None) -> None:
    preset, overrides = CASES[name]
    got = json.loads(json.dumps(case_metrics(preset, overrides)))
    assert_same_metrics(got, GOLDEN["cases"][name], name)


def test_golden_sweep(tmp_path: Path, one_thread: None) -> None:
    got = json.loads(json.dumps(sweep_metrics(tmp_path)))
    assert sorted(got) == sorted(GOLDEN["sweep"])
    for key, want in GOLDEN["sweep"].items():
        assert_same_metrics(got[key], want, key)
