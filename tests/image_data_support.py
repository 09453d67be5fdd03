"""Where tests find real MNIST digits.

Two sources:

- ``fixture_data_dir()``: the in-repo subset ``tests/data/mnist`` (the first 2,000 images of
  the real MNIST test set; ``tests/data/README.md`` gives source, license and checksums). Every
  test that needs real digits at a small size reads it, so the suite passes in a clone with
  nothing beside it.
- ``full_data_dir()``: the full 10,000-image MNIST test set in ``$PERTLEARN_DATA``, for the
  tests marked ``full_data`` (figures measured on the whole test set). When it is missing the
  test is skipped with the reason, unless ``PERTLEARN_REQUIRE_FULL_DATA=1`` (set by
  ``scripts/test.sh`` under ``CI=true``), in which case it fails.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest

FIXTURE_DATA = Path(__file__).resolve().parent / "data"
"""The folder holding the in-repo ``mnist/`` subset."""

FIXTURE_MNIST_COUNTS = [175, 234, 219, 207, 217, 179, 178, 205, 192, 194]
"""Class counts (digits 0–9) of the 2,000-image subset."""

FULL_MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
"""Class counts (digits 0–9) of the full MNIST test set."""


def fixture_data_dir() -> Path:
    """The data directory of the in-repo MNIST subset (always present in a checkout)."""
    assert (FIXTURE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(), FIXTURE_DATA
    return FIXTURE_DATA


def _idx_count(path: Path) -> int:
    """The record count in the header of a (gzip) IDX label file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        header = handle.read(8)
    return struct.unpack(">II", header)[1] if len(header) == 8 else 0


def full_data_reason() -> str | None:
    """Why the full MNIST test set is not available (``None`` when it is)."""
    env = os.environ.get("PERTLEARN_DATA")
    if not env:
        return "PERTLEARN_DATA is not set (it must name a folder holding the full mnist/ test set)"
    mnist = Path(env) / "mnist"
    for name in ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"):
        labels = mnist / name
        if labels.is_file():
            count = _idx_count(labels)
            if count == 10000:
                return None
            return f"{labels} holds {count} labels, not the full 10,000-image MNIST test set"
    return f"no MNIST test set in PERTLEARN_DATA={env} (run: pertlearn data download mnist)"


def full_data_dir() -> Path:
    """``$PERTLEARN_DATA`` when it holds the full MNIST test set; otherwise skip the test with
    the reason, or fail it when ``PERTLEARN_REQUIRE_FULL_DATA=1``."""
    reason = full_data_reason()
    if reason is None:
        return Path(os.environ["PERTLEARN_DATA"])
    if os.environ.get("PERTLEARN_REQUIRE_FULL_DATA") == "1":
        pytest.fail(f"full-data test, PERTLEARN_REQUIRE_FULL_DATA=1: {reason}")
    pytest.skip(f"full-data test: {reason}")
