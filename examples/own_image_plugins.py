"""Your own attack and network in the images pipeline (MNIST, natural_rand).

    python examples/own_image_plugins.py [--data-dir DIR] [--tiny]

The attack: a targeted one-step FGSM-L∞, ``x_adv = clip(x − ε · sign(∇_x ℓ(x, target)))``,
registered with ``@register_attack`` and named in the config (``attack.name``). The images
pipeline clips crafted images to the pixel range, so a crafting attack must take ``clip``
(and ``targeted``: robust evaluation and adversarial training run attacks untargeted).
``perturb`` returns inputs of the shape, dtype and device of ``x``; every call checks it.

The network: a LeNet-5-style CNN registered by name with ``@register_network("lenet")`` and
named in the config (``model.name = "lenet"``, ``model.options`` its factory's keyword
arguments). Its ``penultimate(x)`` method is the representation D_R / D_NR are constructed
from; pixels arrive in ``[0, 1]`` (normalise inside the network if it needs to). (From Python
only, ``run_images(config, model_factory=...)`` takes a network without registering it.)

Registered here, the attack and the network are known in this process only (and in the
spawned workers of a local sweep, which re-import this script). To make them known
everywhere, the ``pertlearn`` command included, make them a plug-in: move everything above
``main`` into a module of an installed package, say ``mypkg/pertlearn_plugin.py``, and
declare it in that package's ``pyproject.toml``::

    [project.entry-points."pertlearn.plugins"]
    mypkg = "mypkg.pertlearn_plugin"

then ``pip install -e .`` it. pertlearn imports the module once per process, on the first
look-up of an attack, network or pipeline name; ``pertlearn plugins`` lists what it
registered, and ``pertlearn run --preset iclr-mnist-natural-rand-linf --set
attack.name=fgsm_linf --set model.name=lenet --set 'model.options={}' --set
'attack.options={}'`` runs it. MNIST is read from ``--data-dir``, else ``$PERTLEARN_DATA``.
"""

from __future__ import annotations

import argparse

from torch import Generator, Tensor, nn

import pertlearn
from pertlearn.attacks import Attack, register_attack
from pertlearn.models import register_network


@register_attack
class TargetedFGSM(Attack):
    """One signed gradient step of L∞ size ε towards the target (away from the label when
    ``targeted=False``), clipped to ``clip`` when given."""

    name = "fgsm_linf"

    def __init__(
        self,
        eps: float,
        *,
        loss: str = "logistic",
        targeted: bool = True,
        clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(eps, loss=loss, targeted=targeted)
        self.clip = clip

    def perturb(
        self, model: nn.Module, x: Tensor, target: Tensor, *, generator: Generator | None = None
    ) -> Tensor:
        _, grad = self.loss_and_grad(model, x, target)  # gradient of the objective it minimizes
        x_adv = x - self.eps * grad.sign()
        return x_adv.clamp(*self.clip) if self.clip is not None else x_adv


class LeNet(nn.Module):
    """conv 5×5 (6) · pool · conv 5×5 (16) · pool · 120 · 84 · K, for ``(C, 28, 28)`` images."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_shape[0], 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(84, num_classes)

    def penultimate(self, x: Tensor) -> Tensor:
        """The 84 features the classifier reads, ``(N, 84)``."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@register_network("lenet")
def lenet(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The network ``model.name = "lenet"`` builds: torch's default initialisation, seeded
    from the run seed by the pipeline."""
    return LeNet(in_shape, num_classes)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding mnist/")
    parser.add_argument("--tiny", action="store_true", help="a few seconds (used by the tests)")
    args = parser.parse_args(argv)
    n_train, epochs = (400, 1) if args.tiny else (4000, 8)
    overrides = [
        "attack.name='fgsm_linf'",
        "attack.eps=0.3",
        "attack.options={}",  # the preset's pgd_linf options (steps, batch_size) do not apply
        "model.name='lenet'",
        "model.options={}",  # nor the preset's small_cnn options
        f"data.n_train={n_train}",
        f"train_f.epochs={epochs}",
        f"train_g.epochs={epochs}",
    ]
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir!r}")
    config = pertlearn.load_config(preset="iclr-mnist-natural-rand-linf", overrides=overrides)
    result = pertlearn.run(config)
    m = result.metrics
    t = result.tensors
    linf = (t["x_adv"] - t["x_train"][: t["x_adv"].shape[0]]).abs().max().item()
    print(
        f"{config.attack.name} on LeNet: max |x_adv - x| = {linf:.3f}, hit rate "
        f"{m['fooling_rate']:.3f}, f_acc_test {m['f_acc_test']:.3f}, "
        f"g_acc_test {m['g_acc_test']:.3f}"
    )
    return m


if __name__ == "__main__":
    main()
