"""PGD adversarial training in the mini-batch trainer (Madry et al. arXiv:1706.06083 eq. 2.1)
and robust accuracy, with a small untargeted PGD-L2 written here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from pertlearn.training import AdversarialConfig, minibatch, robust_accuracy
from pertlearn.training.minibatch import MinibatchConfig, fit_minibatch

EPS = 0.5


def pgd_l2(eps: float, steps: int = 10, step_size: float | None = None):
    """Untargeted PGD in the L2 ball: ascend the cross-entropy of the true label by normalized
    gradient steps from a random start, projecting onto ‖δ‖₂ ≤ ε."""
    alpha = step_size if step_size is not None else 2.5 * eps / steps

    def perturb(model, x, y, generator):
        flat = x.flatten(1)
        start = torch.randn(flat.shape, generator=generator).to(x.device)
        radius = eps * torch.rand(x.shape[0], 1, generator=generator).to(x.device)
        delta = (start / start.norm(dim=1, keepdim=True) * radius).view_as(x)
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
            delta = delta.detach() + alpha * grad / norm
            size = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
            delta = delta * (eps / size.clamp_min(1e-12)).clamp(max=1.0)
        return (x + delta).detach()

    return perturb


def two_feature_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """2-class 1×8×8 images with two features: a faint checkerboard of L2 norm 0.2 that gives
    the label exactly (non-robust: an ε = 0.5 perturbation reverses it), and a bright 4×4 block
    of norm 2 that agrees with the label 75% of the time (robust at ε = 0.5)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * y - 1).float().view(n, 1, 1, 1)
    agree = torch.where(torch.rand(n, generator=g) < 0.75, 1.0, -1.0).view(n, 1, 1, 1)
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = ((rows + cols) % 2 * 2 - 1).float() * 0.025  # norm 0.025 · 8 = 0.2
    block = torch.zeros(8, 8)
    block[:4, :4] = 0.5  # norm 0.5 · 4 = 2
    x = sign * checker + sign * agree * block + 0.02 * torch.randn(n, 1, 8, 8, generator=g)
    return x, y


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))


def _train(seed: int, adversarial: bool) -> nn.Module:
    x, y = two_feature_images(512, seed)
    config = MinibatchConfig(
        lr=0.05,
        batch_size=64,
        epochs=15,
        weight_decay=0.0,
        plateau_patience=None,
        adversarial=AdversarialConfig(eps=EPS, steps=7) if adversarial else None,
    )
    model = mlp(seed)
    fit_minibatch(
        model,
        x,
        y,
        config,
        generator=torch.Generator().manual_seed(seed),
        perturb=pgd_l2(EPS, steps=7) if adversarial else None,
    )
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adversarial_training_buys_robust_accuracy(seed):
    x, y = two_feature_images(500, 100 + seed)
    attack = pgd_l2(EPS, steps=10)
    scores = {}
    for adversarial in (False, True):
        model = _train(seed, adversarial)
        clean = (model(x).argmax(1) == y).float().mean().item()
        robust = robust_accuracy(model, x, y, attack, 128, torch.Generator().manual_seed(9))
        scores[adversarial] = (clean, robust)
    (std_clean, std_robust), (adv_clean, adv_robust) = scores[False], scores[True]
    assert std_clean > 0.97  # the standard model reads the exact, fragile checkerboard
    assert adv_clean > 0.65  # the robust model reads the 75%-reliable block
    assert adv_robust > std_robust + 0.5, scores


def test_robust_accuracy_of_an_identity_attack_is_clean_accuracy():
    x, y = two_feature_images(64, 0)
    model = mlp(0)
    clean = (model(x).argmax(1) == y).float().mean().item()
    unchanged = robust_accuracy(model, x, y, lambda m, xb, yb, g: xb, batch_size=10)
    assert unchanged == pytest.approx(clean)
    binary = nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))  # scores (N,), ±1
    labels = torch.where(y == 1, 1.0, -1.0)
    acc = robust_accuracy(binary, x, labels, lambda m, xb, yb, g: xb)
    assert acc == pytest.approx((torch.where(binary(x) >= 0, 1.0, -1.0) == labels).float().mean())


def test_attack_and_config_must_come_together():
    x, y = two_feature_images(16, 0)
    with_adv = MinibatchConfig(epochs=1, adversarial=AdversarialConfig(eps=0.5))
    with pytest.raises(ValueError, match="no attack was given; pass perturb"):
        fit_minibatch(mlp(0), x, y, with_adv)
    with pytest.raises(ValueError, match="adversarial training is not configured"):
        fit_minibatch(mlp(0), x, y, MinibatchConfig(epochs=1), perturb=pgd_l2(0.5))


def test_attack_must_keep_the_shape():
    x, y = two_feature_images(16, 0)
    config = MinibatchConfig(epochs=1, adversarial=AdversarialConfig(eps=0.5))
    with pytest.raises(ValueError, match="must keep x's shape"):
        fit_minibatch(mlp(0), x, y, config, perturb=lambda m, xb, yb, g: xb[:1])


@pytest.mark.parametrize(
    "bad",
    [{"eps": 0.0}, {"eps": float("inf")}, {"eps": 1.0, "steps": 0}, {"eps": 1.0, "typo": 1}],
)
def test_adversarial_config_rejects_bad_values(bad):
    with pytest.raises(ValidationError):
        AdversarialConfig(**bad)


def test_clean_epochs_train_on_clean_batches_before_the_attack():
    x, y = two_feature_images(64, 0)
    calls: list[int] = []

    def counting(model, xb, yb, generator):
        calls.append(xb.shape[0])
        return pgd_l2(EPS, steps=2)(model, xb, yb, generator)

    def config(epochs: int, adversarial: AdversarialConfig | None) -> MinibatchConfig:
        return MinibatchConfig(
            lr=0.05,
            batch_size=16,
            epochs=epochs,
            weight_decay=0.0,
            plateau_patience=None,
            adversarial=adversarial,
        )

    warm = AdversarialConfig(eps=EPS, steps=2, clean_epochs=2)
    warmed = fit_minibatch(
        mlp(0), x, y, config(3, warm), generator=torch.Generator().manual_seed(0), perturb=counting
    )
    assert calls == [16] * 4  # the attack runs in the third epoch only: 4 batches of 16
    clean = fit_minibatch(mlp(0), x, y, config(2, None), generator=torch.Generator().manual_seed(0))
    assert warmed.losses[:2] == clean.losses  # the warm-up epochs are plain training
    with pytest.raises(ValidationError, match=r"clean_epochs \(3\) must be below epochs \(3\)"):
        config(3, AdversarialConfig(eps=EPS, clean_epochs=3))
    with pytest.raises(ValidationError):
        AdversarialConfig(eps=EPS, clean_epochs=-1)


def test_resuming_an_adversarial_run_is_exact(tmp_path, monkeypatch):
    """A run killed after epoch 1 resumes to the same weights: the attack's random starts come
    from the checkpointed generator."""
    x, y = two_feature_images(64, 0)
    config = MinibatchConfig(
        batch_size=16, epochs=2, adversarial=AdversarialConfig(eps=EPS, steps=2)
    )

    def run(model: nn.Module, folder=None) -> nn.Module:
        generator = torch.Generator().manual_seed(3)
        fit_minibatch(
            model, x, y, config, generator=generator, checkpoint_dir=folder, perturb=pgd_l2(EPS, 2)
        )
        return model

    full = run(mlp(0))
    save = minibatch.save_checkpoint

    def dying_save(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    monkeypatch.setattr(minibatch, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run(mlp(0), tmp_path)
    monkeypatch.setattr(minibatch, "save_checkpoint", save)
    resumed = run(mlp(5), tmp_path)  # other initial weights: all comes from the checkpoint
    for p, q in zip(resumed.parameters(), full.parameters(), strict=True):
        torch.testing.assert_close(p, q)
