"""The fast trainer runs small problems on one CPU thread and restores the thread count."""

from __future__ import annotations

import pytest
import torch

from pertlearn.training.fast import SMALL_WORK, small_work_threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_small_work_runs_on_one_thread_and_restores(two_threads) -> None:
    with small_work_threads(SMALL_WORK, torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_large_work_keeps_the_threads(two_threads) -> None:
    with small_work_threads(SMALL_WORK + 1, torch.device("cpu")):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


def test_thread_count_restored_after_an_error(two_threads) -> None:
    with pytest.raises(RuntimeError), small_work_threads(10, torch.device("cpu")):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
