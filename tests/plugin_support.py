"""Fake installed plug-ins for the tests: a folder that, on ``sys.path`` / ``PYTHONPATH``, holds
a distribution (``NAME-VERSION.dist-info`` with ``METADATA`` and ``entry_points.txt``, what
``pip install`` leaves) declaring an entry point of the group ``pertlearn.plugins``, and the
module it names."""

from __future__ import annotations

import textwrap
from pathlib import Path

LOG_VARIABLE = "MYPLUG_LOG"
"""Environment variable naming a file the plug-in :data:`MYPLUG` appends ``WHAT PID`` lines to
(``import``, ``attack``, ``network``): which process imported it and used what."""

MYPLUG = '''
"""A test plug-in: a targeted FGSM-L-inf attack and a small image network, each logging its use."""

import math
import os

from torch import nn

from pertlearn.attacks import Attack, register_attack
from pertlearn.models import register_network


def log(what):
    path = os.environ.get("MYPLUG_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{what} {os.getpid()}\\n")


log("import")


@register_attack
class PlugFGSM(Attack):
    name = "plug_fgsm"

    def __init__(self, eps, *, loss="logistic", targeted=True, clip=None):
        super().__init__(eps, loss=loss, targeted=targeted)
        self.clip = clip

    def perturb(self, model, x, target, *, generator=None):
        log("attack")
        _, grad = self.loss_and_grad(model, x, target)
        x_adv = x - self.eps * grad.sign()
        return x_adv.clamp(*self.clip) if self.clip is not None else x_adv


class PlugNet(nn.Module):
    def __init__(self, in_shape, num_classes, hidden):
        super().__init__()
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(in_shape), hidden), nn.ReLU()
        )
        self.classifier = nn.Linear(hidden, num_classes)

    def penultimate(self, x):
        return self.features(x)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_network("plug_net")
def plug_net(in_shape, num_classes, hidden=16):
    log("network")
    return PlugNet(in_shape, num_classes, hidden)
'''


def write_plugin(
    root: Path,
    source: str = MYPLUG,
    *,
    distribution: str = "myplug",
    version: str = "0.1",
    entry: str = "myplug",
    module: str = "myplug_mod",
    value: str | None = None,
) -> Path:
    """Write the distribution ``distribution`` ``version`` into the folder ``root`` (created):
    its metadata, the entry point ``entry = value`` (default: ``module``) of the group
    ``pertlearn.plugins``, and ``module.py`` holding ``source``. Returns ``root``, the folder
    to put on ``sys.path`` / ``PYTHONPATH``."""
    info = root / f"{distribution}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    (info / "entry_points.txt").write_text(f"[pertlearn.plugins]\n{entry} = {value or module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source).lstrip())
    return root
