"""Deterministic per-stage random generators derived from one run seed.

Every stage of an experiment (data, initialisation of f, target labels, ...) draws from its own
``torch.Generator`` whose seed is a stable hash of ``(run_seed, stage)``. Changing one stage's
settings therefore never shifts the random numbers of another stage, and the same config and
seed give the same numbers on the same machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def stage_seed(seed: int, stage: str) -> int:
    """A 63-bit seed for ``stage``, derived from ``seed`` by SHA-256 (stable across runs)."""
    digest = hashlib.sha256(f"pertlearn:{seed}:{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def stage_generator(seed: int, stage: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`stage_seed`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(stage_seed(seed, stage))
    return generator


@contextmanager
def seeded_global_generator(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run the block with torch's global generator seeded with ``seed`` (the CPU's, and
    ``device``'s own when it is a GPU), and give the global generators their state back
    afterwards. Modules that take no generator, such as ``nn.Dropout``, draw from the global
    one: inside the block they draw the same numbers whatever the process ran before, and
    the caller's global random state is left as it was."""
    device = torch.device(device)
    index = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.random.fork_rng(devices=[] if index is None else [index]):
        torch.default_generator.manual_seed(seed)
        if index is not None:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def resolved_device_name(device: str) -> str:
    """The device name a run on this machine uses: ``"auto"`` becomes ``"cuda"`` when CUDA is
    available, else ``"cpu"`` (as :func:`resolve_device` decides); any other name is returned
    unchanged (not validated)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"`` into CUDA when available, else CPU; validate anything else."""
    resolved = torch.device(resolved_device_name(device))
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but CUDA is not available; use device='cpu' or 'auto'"
        )
    return resolved
