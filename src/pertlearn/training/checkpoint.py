"""Per-epoch checkpoints of :func:`~pertlearn.training.minibatch.fit_minibatch`.

``checkpoint.safetensors`` holds the weights, the optimizer's buffers and the shuffling
generator's state, with the epoch, the learning-rate schedule's state and the curves in its
metadata; ``checkpoint.json`` the same metadata for people. Both are written atomically
(:mod:`pertlearn.atomic`), so a run killed at any point leaves the previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from pertlearn.atomic import atomic_path, write_json

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"

_HASHED_ONLY_OFF_DEFAULT: dict[str, Any] = {
    "adversarial": None,
    "precision": "fp32",
    "channels_last": "off",
    "compile": False,
}


def fingerprint(config: BaseModel, name: str, x: torch.Tensor, model: nn.Module) -> str:
    """A short hash of the training settings, the network's name, the data's shape and the
    model's tensor shapes: a checkpoint resumes only the run that wrote it. The settings of
    :data:`_HASHED_ONLY_OFF_DEFAULT` (``adversarial``, ``precision``, ``channels_last``,
    ``compile``) count only when changed from their defaults, so a checkpoint whose settings
    lack them resumes a run that leaves them at their defaults."""
    settings = config.model_dump()
    for key, default in _HASHED_ONLY_OFF_DEFAULT.items():
        if key in settings and settings[key] == default:
            del settings[key]
    shapes = [list(t.shape) for t in model.state_dict().values()]
    text = json.dumps([settings, name, list(x.shape), shapes], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    meta: dict[str, Any],
) -> None:
    """Write the checkpoint of the epoch just finished into ``folder`` (created if missing)."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().contiguous().cpu()
    tensors["rng"] = generator.get_state()
    with atomic_path(folder / CHECKPOINT) as tmp:
        save_file(tensors, str(tmp), metadata={"pertlearn": json.dumps(meta)})
    write_json(folder / CHECKPOINT_META, meta)


def load_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    expected_fingerprint: str,
) -> dict[str, Any] | None:
    """Restore the model, optimizer and generator from ``folder``'s checkpoint and return its
    metadata; None when there is none. Raises ValueError for another run's checkpoint."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta: dict[str, Any] = json.loads((handle.metadata() or {})["pertlearn"])
        tensors = load_file(str(path), device=str(next(iter(model.parameters())).device))
    except Exception as err:  # safetensors' own errors, a missing key, bad JSON: all corrupt
        raise ValueError(
            f"checkpoint {str(path)!r} is corrupt or not a pertlearn checkpoint ({err}); delete "
            "it to start that training afresh"
        ) from None
    if meta.get("fingerprint") != expected_fingerprint:
        raise ValueError(
            f"checkpoint {str(path)!r} was written by a different training run (other settings, "
            "data or model); delete it or choose another checkpoint directory"
        )
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    )
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    state["param_groups"][0].update(meta["param_group"])
    optimizer.load_state_dict(state)
    generator.set_state(tensors["rng"].cpu())
    return meta
