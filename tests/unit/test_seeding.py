"""Per-stage generators and the seeded global generator."""

from __future__ import annotations

import torch

from pertlearn.seeding import seeded_global_generator, stage_generator, stage_seed


def test_stage_seeds_are_stable_and_differ_between_stages() -> None:
    assert stage_seed(0, "data") == stage_seed(0, "data")
    assert len({stage_seed(0, "data"), stage_seed(0, "attack"), stage_seed(1, "data")}) == 3
    first = torch.rand(3, generator=stage_generator(0, "data"))
    assert torch.equal(torch.rand(3, generator=stage_generator(0, "data")), first)


def test_the_seeded_global_generator_draws_the_same_numbers_whatever_ran_before() -> None:
    draws = []
    for earlier in (1, 2):
        torch.manual_seed(earlier)
        with seeded_global_generator(7):
            draws.append(torch.rand(3))
    assert torch.equal(draws[0], draws[1])


def test_the_global_generator_gets_its_state_back() -> None:
    torch.manual_seed(4)
    expected = torch.rand(3)
    torch.manual_seed(4)
    with seeded_global_generator(7):
        torch.rand(10)
    assert torch.equal(torch.rand(3), expected)
