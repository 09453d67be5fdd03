"""The baseline: the straightforward PyTorch a researcher would write for these experiments.

An ``nn.Module`` (``nn.Linear`` + LeakyReLU + a fixed readout), autograd, ``torch.optim.SGD``
with ``ReduceLROnPlateau``, a Python loop over epochs reading the loss every epoch, one
configuration at a time, the attack by ``loss.backward()`` on the inputs, a Monte Carlo
estimate of the kernel Φ. Random draws (data, initial weights, targets, noise) come from
pertlearn's own generators so that both sides compute on identical numbers; the benchmark
suite checks that they produce the same results.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pertlearn.experiments.pipelines.neurips import NeuripsConfig, draw_targets, make_dataset
from pertlearn.experiments.presets import load_config
from pertlearn.experiments.stages import DTYPES, build_model
from pertlearn.seeding import resolve_device, stage_generator
from pertlearn.training import TrainConfig


class Net(nn.Module):
    """``f(x) = a · φ(W x + b)`` with a fixed readout ``a`` (a buffer)."""

    def __init__(self, d: int, m: int, slope: float, bias: bool = True) -> None:
        super().__init__()
        self.hidden = nn.Linear(d, m, bias=bias)
        self.slope = slope
        self.register_buffer("readout", torch.zeros(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.hidden(x), self.slope) @ self.readout

    @classmethod
    def copy_of(cls, model: nn.Module) -> Net:
        """A baseline network with the same weights as a pertlearn TwoLayerNet/OneHiddenNet."""
        weight = model.weight.detach()
        bias = getattr(model, "bias", None)
        net = cls(weight.shape[1], weight.shape[0], model.slope, bias=bias is not None)
        net = net.to(weight.dtype).to(weight.device)
        with torch.no_grad():
            net.hidden.weight.copy_(weight)
            if bias is not None:
                net.hidden.bias.copy_(bias)
            net.readout.copy_(model.readout)
        return net


def margin(loss: str, s: torch.Tensor) -> torch.Tensor:
    if loss == "identity":
        return s
    if loss == "logistic":
        return F.softplus(s)
    return torch.exp(s)


def margin_derivative(loss: str, s: torch.Tensor) -> torch.Tensor:
    if loss == "identity":
        return torch.ones_like(s)
    if loss == "logistic":
        return torch.sigmoid(s)
    return torch.exp(s)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> dict[str, Any]:
    """Full-batch SGD with momentum and ReduceLROnPlateau; loss read every epoch."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    sched = None
    if cfg.plateau_patience is not None:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    losses: list[float] = []
    weights = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    previous = math.inf
    for epoch in range(cfg.epochs):
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad()
        out = model(x)
        loss = margin(cfg.loss, -y * out).mean()
        loss.backward()
        opt.step()
        weights += lr * margin_derivative(cfg.loss, -y * out.detach())
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"training diverged at epoch {epoch + 1}")
        losses.append(value)
        if sched is not None:
            sched.step(value)
        if cfg.stop_tol is not None and math.isfinite(previous):
            if abs(previous - value) / max(abs(previous), 1e-30) < cfg.stop_tol:
                break
        previous = value
    model.eval()
    return {"losses": losses, "loss_weights": weights}


def gradient_step(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float
) -> torch.Tensor:
    """``x - ε ∇ℓ/‖∇ℓ‖`` for the identity loss, by ``backward()`` on the inputs."""
    x = x.clone().requires_grad_(True)
    loss = (-target * model(x)).sum()
    loss.backward()
    grad = x.grad
    assert grad is not None
    norm = grad.norm(dim=1, keepdim=True)
    return (x - eps * grad / norm).detach()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = torch.where(model(x) >= 0, 1.0, -1.0)
    return (pred == y).float().mean().item()


def pipeline(config: NeuripsConfig) -> dict[str, Any]:
    """The NeurIPS24 pipeline for one config: f, targets, attack, g, control, metrics."""
    device = resolve_device(config.device)
    dtype = DTYPES[config.dtype]
    seed = config.seed
    x_train, y_train = (
        t.to(device) for t in make_dataset(config, config.data.n_train, "data_train", dtype)
    )
    x_test, y_test = (
        t.to(device) for t in make_dataset(config, config.data.n_test, "data_test", dtype)
    )
    d = x_train.shape[1]

    def new_net(name: str, model_config: Any) -> Net:
        init = build_model(model_config, d, stage_generator(seed, f"init_{name}"), dtype)
        return Net.copy_of(init.to(device))

    f = new_net("f", config.model)
    train(f, x_train, y_train, config.train_f)
    y_adv = draw_targets(config, y_train)
    x_adv = gradient_step(f, x_train, y_adv, config.eps)
    g_inputs = x_adv - x_train if config.scenario == "perturbation_only" else x_adv
    g_config = config.model_g or config.model
    g = new_net("g", g_config)
    train(g, g_inputs, y_adv, config.train_g)
    with torch.no_grad():
        same = torch.where(f(x_test) >= 0, 1.0, -1.0) == torch.where(g(x_test) >= 0, 1.0, -1.0)
        fooled = (torch.where(f(x_adv) >= 0, 1.0, -1.0) == y_adv).float().mean().item()
    metrics = {
        "f_acc_train": accuracy(f, x_train, y_train),
        "f_acc_test": accuracy(f, x_test, y_test),
        "g_acc_train": accuracy(g, x_train, y_train),
        "g_acc_test": accuracy(g, x_test, y_test),
        "agreement": same.float().mean().item(),
        "fooling_rate": fooled,
        "g_fit_acc": accuracy(g, g_inputs, y_adv),
    }
    if "random_l2_noise" in config.controls:
        gen = stage_generator(seed, "control_noise")
        noise = torch.randn(x_train.shape, generator=gen, dtype=dtype).to(device)
        noise = config.eps * noise / noise.norm(dim=1, keepdim=True)
        inputs = noise if config.scenario == "perturbation_only" else x_train + noise
        control = new_net("control_random", g_config)
        train(control, inputs, y_adv, config.train_g)
        metrics["control_g_acc_train"] = accuracy(control, x_train, y_train)
        metrics["control_g_acc_test"] = accuracy(control, x_test, y_test)
        metrics["control_fit_acc"] = accuracy(control, inputs, y_adv)
    return metrics


def phi_monte_carlo(
    x: torch.Tensor, slope: float, draws: int, generator: torch.Generator
) -> torch.Tensor:
    """Monte Carlo estimate of ``Φ(x_i, x_j) = E[φ'(w·x_i + b) φ'(w·x_j + b)]`` over
    ``w ~ N(0, I/d)``, ``b ~ N(0, 1)``: ``(N, N)`` from ``draws`` random units."""
    d = x.shape[1]
    w = torch.randn(draws, d, generator=generator, dtype=x.dtype) / math.sqrt(d)
    b = torch.randn(draws, generator=generator, dtype=x.dtype)
    u = x @ w.T + b
    p = torch.where(u >= 0, 1.0, slope).to(x.dtype)
    return p @ p.T / draws


def pgd_l2(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    clip: tuple[float, float],
) -> torch.Tensor:
    """Targeted L2 PGD on logits, the usual loop: ``loss.backward()`` every step (the model's
    parameters get gradients too), the best iterate by target loss kept per sample."""
    model.eval()

    def target_loss(z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(z), target, reduction="none")

    shape = (-1,) + (1,) * (x.ndim - 1)
    with torch.no_grad():
        best, best_loss = x.clone(), target_loss(x)
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = target_loss(x_adv)
        model.zero_grad()
        loss.sum().backward()
        grad = x_adv.grad
        assert grad is not None
        with torch.no_grad():
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            best = torch.where(better.view(shape), x_adv, best)
            norm = grad.flatten(1).norm(dim=1).view(shape)
            unit = torch.where(norm > 0, grad / norm.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
            delta = (x_adv - step_size * unit - x).flatten(1).renorm(2, 0, eps).view_as(x)
            x_adv = (x + delta).clamp(*clip)
    with torch.no_grad():
        loss = target_loss(x_adv)
        best = torch.where((loss < best_loss).view(shape), x_adv, best)
    return best


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.baseline [--preset NAME] [--set KEY=VALUE ...]``: the baseline
    pipeline as a whole process; prints its metrics and ``seconds`` as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline")
    parser.add_argument("--preset", default="quickstart")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    config = load_config(preset=args.preset, overrides=args.overrides)
    assert isinstance(config, NeuripsConfig), "the baseline implements the neurips pipeline"
    start = time.perf_counter()
    metrics = pipeline(config)
    metrics["seconds"] = time.perf_counter() - start
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
