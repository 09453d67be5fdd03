"""A corrupt or foreign checkpoint file is one line naming it, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pertlearn.training.checkpoint import CHECKPOINT, load_checkpoint


@pytest.mark.parametrize("kind", ["truncated", "no-metadata"])
def test_a_corrupt_checkpoint_is_named(tmp_path: Path, kind: str) -> None:
    path = tmp_path / CHECKPOINT
    if kind == "truncated":
        path.write_bytes(b'\x40\x00\x00\x00\x00\x00\x00\x00{"model.w')
    else:
        save_file({"x": torch.zeros(2)}, str(path))
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"checkpoint .* is corrupt or not a pertlearn checkpoint"):
        load_checkpoint(tmp_path, model, optimizer, torch.Generator(), "fingerprint")
