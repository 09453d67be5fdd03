"""Your own attack, registered and named in a config.

    python examples/own_attack.py [--tiny]

Subclass ``pertlearn.attacks.Attack``, give it a ``name``, implement ``perturb`` and decorate
the class with ``@register_attack``; configs then use it as ``attack.name`` (options in
``attack.options`` become keyword arguments of the constructor). Here: an L∞ sign step, the
budget ε bounding every coordinate of the perturbation, run in the quickstart experiment.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import pertlearn
from pertlearn.attacks import Attack, register_attack


@register_attack
class SignStep(Attack):
    """x_adv = x − ε · sign(∇_x ℓ(target)), repeated ``steps`` times with step ε/steps."""

    name = "sign_step"

    def __init__(self, eps: float, *, steps: int = 1, loss: str = "logistic") -> None:
        super().__init__(eps, loss=loss)
        self.steps = steps

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        x_adv = x.clone()
        for _ in range(self.steps):
            _, grad = self.loss_and_grad(model, x_adv, target)
            x_adv = x_adv - (self.eps / self.steps) * grad.sign()
        return x_adv


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few seconds (used by the tests)")
    args = parser.parse_args(argv)
    epochs = 100 if args.tiny else 1000
    config = pertlearn.load_config(
        preset="quickstart",
        overrides=[
            "attack.name='sign_step'",
            "attack.eps=0.001",
            "attack.options={steps=2}",
            f"train_f.epochs={epochs}",
            f"train_g.epochs={epochs}",
        ],
    )
    result = pertlearn.run(config)
    m = result.metrics
    t = result.tensors
    linf = (t["x_adv"] - t["x_train"]).abs().max().item()  # crafted inputs minus the originals
    print(
        f"{config.attack.name}: max |r| = {linf:.4f}, g_acc_test {m['g_acc_test']:.3f}, "
        f"agreement {m['agreement']:.3f}"
    )
    return m


if __name__ == "__main__":
    main()
