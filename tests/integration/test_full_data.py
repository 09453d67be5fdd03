"""Figures measured on the full MNIST test set (``full_data``: ``$PERTLEARN_DATA`` must hold
it; see tests/image_data_support.py). Skipped with the reason when it is missing, failed under
``PERTLEARN_REQUIRE_FULL_DATA=1`` (CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pertlearn


@pytest.mark.full_data
@pytest.mark.slow
def test_neurips_mnist_a_accuracies(full_mnist_dir: Path) -> None:
    """NeurIPS24 scenario (a) on MNIST 1 vs 2 at cpu scale (80/20 split of the test set):
    measured f_acc_test 0.98, g_acc_test 0.935, agreement 0.95 (seed 0)."""
    config = pertlearn.load_config(
        preset="neurips-mnist-a", overrides=[f"data.data_dir={str(full_mnist_dir)!r}"]
    )
    metrics = pertlearn.run(config).metrics
    assert metrics["f_acc_test"] >= 0.97
    assert metrics["g_acc_test"] >= 0.90
    assert metrics["agreement"] >= 0.92
    assert not metrics["g_degenerate"]
