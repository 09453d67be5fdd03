"""Mini-batch trainer: augmentation, the SGD update, learning, checkpoints and resuming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pertlearn.training import minibatch
from pertlearn.training.minibatch import MinibatchConfig, fit_minibatch, random_crop_flip


def test_random_crop_flip_gives_crops_of_the_padded_image() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    out = random_crop_flip(x, gen, padding=2)
    padded = F.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(16):
        matches = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(
                out[i],
                (padded[i].flip(-1) if flip else padded[i])[
                    :, dy : dy + 8, (4 - dx if flip else dx) : (4 - dx if flip else dx) + 8
                ],
            )
        ]
        assert matches, f"image {i} is not a (flipped) crop"
        flips += matches[0][2]
    assert 2 <= flips <= 14  # both branches are used


def test_one_full_batch_step_is_nesterov_sgd_with_weight_decay() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    w0 = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    lr, mom, wd = 0.1, 0.9, 0.01
    config = MinibatchConfig(
        lr=lr, momentum=mom, weight_decay=wd, batch_size=6, epochs=1, plateau_patience=None
    )
    fit_minibatch(model, x, y, config)
    for p, w, g in zip(model.parameters(), w0, grads, strict=True):
        d = g + wd * w  # first step: momentum buffer = d; Nesterov update d + mom * buf
        torch.testing.assert_close(p.detach(), w - lr * (d + mom * d))


def toy_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.rand(n, 1, 8, 8, generator=gen) * 0.5
    x[:, :, :4, :4] += (y == 1).float()[:, None, None, None] * 0.5
    x[:, :, 4:, 4:] += (y == 2).float()[:, None, None, None] * 0.5
    return x, y


def small_net(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """A tiny CNN initialised from torch's global generator seeded with ``seed`` (which leaves
    the global generator in a state that depends on ``seed``)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(16, 3),
    )


def test_learns_a_simple_task_and_records_curves() -> None:
    x, y = toy_images(300, 0)
    xv, yv = toy_images(200, 1)
    config = MinibatchConfig(lr=0.05, batch_size=32, epochs=15, weight_decay=0.0)
    result = fit_minibatch(
        small_net(), x, y, config, x_val=xv, y_val=yv, generator=torch.Generator().manual_seed(0)
    )
    assert len(result.losses) == len(result.val_acc) == len(result.train_acc) == 15
    assert result.val_acc[-1] >= 0.95 and result.losses[-1] < result.losses[0]
    assert result.best_val_acc == max(result.val_acc)


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_killed_run_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dropout: float
) -> None:
    # with dropout, the resumed training starts from another global random state (small_net
    # seeds it differently) and must still draw the dropout masks of the uninterrupted one
    x, y = toy_images(64, 0)
    config = MinibatchConfig(lr=0.05, batch_size=16, epochs=4, augment=True, plateau_patience=1)

    reference = small_net(dropout=dropout)
    full = fit_minibatch(
        reference, x, y, config, x_val=x, y_val=y, generator=torch.Generator().manual_seed(5)
    )

    save = minibatch.save_checkpoint
    calls = {"n": 0}

    def dying_save(*args: object, **kwargs: object) -> None:
        save(*args, **kwargs)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed right after epoch 2's checkpoint

    monkeypatch.setattr(minibatch, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        fit_minibatch(
            small_net(dropout=dropout),
            x,
            y,
            config,
            x_val=x,
            y_val=y,
            generator=torch.Generator().manual_seed(5),
            checkpoint_dir=tmp_path,
        )
    monkeypatch.setattr(minibatch, "save_checkpoint", save)
    # fresh weights: everything comes from the checkpoint
    resumed_model = small_net(seed=99, dropout=dropout)
    resumed = fit_minibatch(
        resumed_model,
        x,
        y,
        config,
        x_val=x,
        y_val=y,
        generator=torch.Generator().manual_seed(5),
        checkpoint_dir=tmp_path,
    )
    assert resumed.resumed_from == 2
    assert resumed.losses == pytest.approx(full.losses)
    assert resumed.val_acc == full.val_acc
    for p, q in zip(resumed_model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert (tmp_path / "checkpoint.json").is_file()

    other = config.model_copy(update={"lr": 0.01})
    with pytest.raises(ValueError, match="different training run"):
        fit_minibatch(small_net(), x, y, other, checkpoint_dir=tmp_path)


def test_dropout_draws_the_same_masks_whatever_the_global_random_state() -> None:
    x, y = toy_images(64, 0)
    config = MinibatchConfig(lr=0.05, batch_size=16, epochs=2)
    trained = []
    for global_seed in (1, 2):
        model = small_net(dropout=0.5)
        torch.manual_seed(global_seed)
        fit_minibatch(model, x, y, config, generator=torch.Generator().manual_seed(5))
        trained.append(model)
    for p, q in zip(trained[0].parameters(), trained[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_training_leaves_the_global_random_state_as_it_was() -> None:
    x, y = toy_images(32, 0)
    model = small_net(dropout=0.5)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    fit_minibatch(model, x, y, MinibatchConfig(batch_size=16, epochs=1))
    assert torch.equal(torch.rand(4), expected)


def test_divergence_is_reported() -> None:
    x, y = toy_images(32, 0)
    x[0] = float("nan")
    with pytest.raises(minibatch.TrainingDivergedError, match="diverged at epoch 1"):
        fit_minibatch(small_net(), x, y, MinibatchConfig(batch_size=32, epochs=2))
