"""Mini-batch training of multi-class image classifiers (ICLR24 image experiments, spec §4).

:func:`fit_minibatch` trains a model mapping ``(N, C, H, W)`` to logits ``(N, K)`` with
cross-entropy and SGD (momentum, Nesterov, weight decay), ``ReduceLROnPlateau``, shuffled
mini-batches, optional CIFAR augmentation (random crop with zero padding 4 and horizontal
flip, done on tensors), and records per epoch the training loss, training accuracy (on the
augmented batches, in train mode) and validation accuracy (the curves the paper plots).

With ``checkpoint_dir`` it writes a checkpoint after every epoch (``checkpoint.safetensors``
holding weights, optimizer buffers and the shuffling generator's state, with the epoch,
scheduler state and curves in its metadata; ``checkpoint.json`` the same metadata for people)
and a later call with the same arguments resumes after the last finished epoch, so a killed
run loses at most one epoch and continues with the same random numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from pertlearn.atomic import write_json
from pertlearn.training.trainer import TrainingDivergedError, TrainResult


class MinibatchConfig(BaseModel):
    """How an image classifier is trained (spec §4 reference: lr 0.1, momentum 0.9, Nesterov,
    weight decay 5e-4, batch 128, ReduceLROnPlateau; 100–300 epochs)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    lr: float = Field(0.1, gt=0, description="initial learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(100, ge=1)
    plateau_patience: int | None = Field(
        10, ge=0, description="ReduceLROnPlateau patience in epochs; None disables"
    )
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    plateau_metric: Literal["train_loss", "val_acc"] = Field(
        "train_loss", description="what ReduceLROnPlateau watches"
    )
    augment: bool = Field(False, description="random crop (padding 4) and horizontal flip")
    eval_batch_size: int = Field(1000, ge=1)


@dataclass
class MinibatchResult(TrainResult):
    """:class:`TrainResult` plus per-epoch ``train_acc``, ``val_acc`` (empty without
    validation data) and ``lr``, and the epoch (1-based) and value of the best ``val_acc``."""

    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def best_val_acc(self) -> float | None:
        return max(self.val_acc) if self.val_acc else None

    @property
    def best_epoch(self) -> int | None:
        return self.val_acc.index(max(self.val_acc)) + 1 if self.val_acc else None

    @property
    def curves_extra(self) -> dict[str, Any]:
        """Extra per-epoch curves for ``curves.json``."""
        return {"train_acc": self.train_acc, "val_acc": self.val_acc, "lr": self.lr}


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """CIFAR augmentation on a batch ``(B, C, H, W)``: zero-pad by ``padding``, crop a random
    ``H×W`` window per image, flip each image horizontally with probability 1/2. Randomness
    comes from ``generator`` (on the CPU)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + ox[:, None]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> float:
    """Share of ``x`` (``(N, ...)``) whose argmax logit equals ``y`` (``(N,)``), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            correct += int((model(xb).argmax(1) == yb).sum())
        return correct / max(x.shape[0], 1)
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT = "checkpoint.safetensors"


def _fingerprint(config: MinibatchConfig, name: str, x: torch.Tensor, model: nn.Module) -> str:
    shapes = [list(t.shape) for t in model.state_dict().values()]
    text = json.dumps([config.model_dump(), name, list(x.shape), shapes], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    meta: dict[str, Any],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().contiguous().cpu()
    tensors["rng"] = generator.get_state()
    text = json.dumps(meta)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{CHECKPOINT}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"pertlearn": text})
        os.replace(tmp, folder / CHECKPOINT)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json(folder / "checkpoint.json", meta)


def _load_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    fingerprint: str,
) -> dict[str, Any] | None:
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta: dict[str, Any] = json.loads(handle.metadata()["pertlearn"])
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(
            f"checkpoint {str(path)!r} was written by a different training run (other settings, "
            "data or model); delete it or choose another checkpoint directory"
        )
    device = next(iter(model.parameters())).device
    tensors = load_file(str(path), device=str(device))
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


# ----------------------------------------------------------------------------- training


def fit_minibatch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: MinibatchConfig,
    *,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    name: str = "model",
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
) -> MinibatchResult:
    """Train ``model`` in place on images ``x`` (``(N, C, H, W)``) with class labels ``y``
    (``(N,)``, ``0..K-1``) by mini-batch SGD on the cross-entropy loss.

    ``x_val``/``y_val`` give the validation accuracy after each epoch. ``generator`` (CPU)
    drives shuffling and augmentation. ``checkpoint_dir``: write a checkpoint after every epoch
    and resume from one left there by an interrupted identical call. Raises
    :class:`TrainingDivergedError` on a NaN/infinite loss.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if (x_val is None) != (y_val is None):
        raise ValueError(f"{name}: give both x_val and y_val, or neither")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    y = y.long()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    mode: Literal["min", "max"] = "min" if config.plateau_metric == "train_loss" else "max"
    scheduler = (
        None
        if config.plateau_patience is None
        else torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=config.plateau_factor, patience=config.plateau_patience
        )
    )
    result = MinibatchResult()
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = _fingerprint(config, name, x, model)
    start = 0
    if folder is not None:
        meta = _load_checkpoint(folder, model, optimizer, generator, fingerprint)
        if meta is not None:
            start = meta["epoch"]
            if scheduler is not None and meta["scheduler"] is not None:
                scheduler.load_state_dict(meta["scheduler"])
            for key in ("losses", "train_acc", "val_acc", "lr"):
                setattr(result, key, list(meta["curves"][key]))
            result.epochs_run = start
            result.resumed_from = start

    n = x.shape[0]
    batches = math.ceil(n / config.batch_size)
    bar = tqdm(
        total=config.epochs * batches,
        initial=start * batches,
        desc=f"train {name}",
        unit="batch",
        disable=not progress,
        leave=False,
    )
    model.train()
    for epoch in range(start, config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        order = torch.randperm(n, generator=generator).to(x.device)
        total_loss = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device, dtype=torch.long)
        for first in range(0, n, config.batch_size):
            idx = order[first : first + config.batch_size]
            xb, yb = x[idx], y[idx]
            if config.augment:
                xb = random_crop_flip(xb, generator)
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * idx.numel()
            correct += (logits.detach().argmax(1) == yb).sum()
            bar.update(1)
        epoch_loss = (total_loss / n).item()
        if not math.isfinite(epoch_loss):
            bar.close()
            raise TrainingDivergedError(
                f"training of {name} diverged at epoch {epoch + 1}: the loss is {epoch_loss}; "
                f"lower the learning rate (now {lr:g})"
            )
        result.losses.append(epoch_loss)
        result.train_acc.append(correct.item() / n)
        result.lr.append(lr)
        if x_val is not None and y_val is not None:
            result.val_acc.append(
                evaluate_accuracy(model, x_val, y_val.long(), config.eval_batch_size)
            )
            model.train()
        result.epochs_run = epoch + 1
        if scheduler is not None:
            watched = epoch_loss if config.plateau_metric == "train_loss" else result.val_acc[-1]
            scheduler.step(watched)
        postfix = {"loss": f"{epoch_loss:.3g}", "acc": f"{result.train_acc[-1]:.3f}"}
        if result.val_acc:
            postfix["val"] = f"{result.val_acc[-1]:.3f}"
        bar.set_postfix(postfix, refresh=False)
        if folder is not None:
            group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
            meta = {
                "fingerprint": fingerprint,
                "name": name,
                "epoch": epoch + 1,
                "epochs": config.epochs,
                "param_group": group,
                "scheduler": _jsonable(scheduler.state_dict()) if scheduler else None,
                "curves": {
                    "losses": result.losses,
                    "train_acc": result.train_acc,
                    "val_acc": result.val_acc,
                    "lr": result.lr,
                },
            }
            _save_checkpoint(folder, model, optimizer, generator, meta)
    bar.close()
    model.eval()
    return result


def _jsonable(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler state dict with infinities written as strings JSON accepts back."""
    return json.loads(json.dumps(state, default=str))
