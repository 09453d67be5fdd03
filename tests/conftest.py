"""Shared fixtures and the per-test global seed.

Global seed: before every test the process-wide generators (``torch``, ``random``, ``numpy``)
are seeded from ``PERTLEARN_TEST_SEED`` (default 0) and the test's id. So a test never sees
state left behind by the tests that ran before it on the same process (which differs between
serial and ``pytest -n`` runs), and the suite can be rerun on other global seeds:
``PERTLEARN_TEST_SEED=7 pytest`` (``random`` draws one; the header prints the one used). A test
whose outcome changes with that seed depends on the global seed, which it must not:
``tests/integration/test_project.py`` reruns a part of the suite on two other seeds to check that.
"""

from __future__ import annotations

import os
import random
import secrets
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from image_data_support import fixture_data_dir, full_data_dir


def _base_seed() -> int:
    value = os.environ.get("PERTLEARN_TEST_SEED", "0")
    if value == "random":
        value = str(secrets.randbelow(2**31))
        os.environ["PERTLEARN_TEST_SEED"] = value  # the same for xdist workers started later
    return int(value)


BASE_SEED = _base_seed()


def pytest_report_header(config: pytest.Config) -> str:
    return f"global seed per test: PERTLEARN_TEST_SEED={BASE_SEED}"


@pytest.fixture(autouse=True)
def _global_seed(request: pytest.FixtureRequest) -> None:
    """Seed torch, random and numpy from PERTLEARN_TEST_SEED and the test id."""
    seed = zlib.crc32(f"{BASE_SEED}:{request.node.nodeid}".encode()) % 2**31
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh CPU generator with a fixed seed."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def mnist_subset_dir() -> Path:
    """Data directory of the in-repo MNIST subset (2,000 real test-set images)."""
    return fixture_data_dir()


@pytest.fixture
def full_mnist_dir() -> Path:
    """``$PERTLEARN_DATA`` with the full MNIST test set; skips (or fails under
    ``PERTLEARN_REQUIRE_FULL_DATA=1``) when it is missing. Use with ``@pytest.mark.full_data``."""
    return full_data_dir()
