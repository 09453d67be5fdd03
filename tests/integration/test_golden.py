"""Same science, same numbers: every golden case gives its recorded metrics.

``tests/golden/metrics.json`` was recorded by ``python -m tests.golden.record`` before the
experiments package was restructured; see ``tests/golden/cases.py``. Float rounding depends on
the processor (which vectorized and BLAS kernels run), and two of the cases are short, noisy
trainings in which a last-bit difference moves a prediction or two. So the metrics are compared
with the record of this machine's kind (``tests/golden/machines/``, chosen by
``machine_fingerprint``) where there is one, to 1e-6; on a machine kind without a record, with
``metrics.json`` within :data:`OTHER_MACHINE_TOLERANCE`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.golden.cases import CASES
from tests.golden.record import (
    MACHINES,
    case_metrics,
    fingerprint_id,
    machine_record_path,
    sweep_metrics,
)

ORIGINAL = json.loads((Path(__file__).parents[1] / "golden" / "metrics.json").read_text())
"""The record made before the restructuring (metrics equal to 1e-6 on that machine)."""

SAME_MACHINE_TOLERANCE = 1e-6
OTHER_MACHINE_TOLERANCE = 0.05
"""Largest difference allowed on a machine kind without its own record: 0.05 of a share (five
of the 100 test images of the small image cases; measured across this project's machines: up to
0.03) and 5% of any other number."""


MACHINE_RECORD = machine_record_path()
"""Where the record of this machine's kind is, or would be."""


def golden_record() -> tuple[dict[str, Any], float]:
    """The record to compare with, and the float tolerance that goes with it."""
    if MACHINE_RECORD.exists():
        return json.loads(MACHINE_RECORD.read_text()), SAME_MACHINE_TOLERANCE
    return ORIGINAL, OTHER_MACHINE_TOLERANCE


GOLDEN, TOLERANCE = golden_record()


@pytest.fixture(autouse=True)
def _say_which_record() -> None:
    if TOLERANCE > SAME_MACHINE_TOLERANCE:
        warnings.warn(
            f"golden metrics compared with metrics.json within {TOLERANCE:g}: no record of this "
            f"machine kind ({MACHINE_RECORD.name}); `python -m tests.golden.record "
            "--machine` writes one",
            stacklevel=1,
        )


@pytest.fixture
def one_thread() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def assert_same_metrics(
    got: dict[str, Any], want: dict[str, Any], where: str, tolerance: float = TOLERANCE
) -> None:
    """Floats within ``tolerance`` (absolute; relative for numbers above 1), other values equal,
    except that on another machine kind counts (an early-stopping epoch) are floats too."""
    assert sorted(got) == sorted(want), f"{where}: metric keys differ"
    for key, expected in want.items():
        value = got[key]
        is_count = isinstance(expected, int) and not isinstance(expected, bool)
        if isinstance(expected, dict):
            assert_same_metrics(value, expected, f"{where}: {key}", tolerance)
        elif isinstance(expected, float) or (is_count and tolerance > SAME_MACHINE_TOLERANCE):
            assert math.isclose(value, expected, rel_tol=tolerance, abs_tol=tolerance), (
                f"{where}: {key} = {value}, recorded {expected} (tolerance {tolerance:g})"
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


def test_every_machine_record_is_the_original_within_the_other_machine_tolerance() -> None:
    records = sorted(MACHINES.glob("*.json"))
    assert records, "tests/golden/machines/ holds no record"
    for path in records:
        record = json.loads(path.read_text())
        assert fingerprint_id(record["fingerprint"]) == path.stem, f"{path.name}: wrong name"
        for name, want in ORIGINAL["cases"].items():
            assert_same_metrics(record["cases"][name], want, name, OTHER_MACHINE_TOLERANCE)
        assert sorted(record["sweep"]) == sorted(ORIGINAL["sweep"])
        for key, want in ORIGINAL["sweep"].items():
            assert_same_metrics(record["sweep"][key], want, key, OTHER_MACHINE_TOLERANCE)
