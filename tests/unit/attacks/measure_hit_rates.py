"""Target-hit rates of PGD-L2 before and after repair (restarts, until_fooled, noise-averaged
gradients) on the ICLR24 ``natural_det`` task (target ``(y + 1) mod 10``), the paper's MNIST
budget ε = 2, a briefly trained :class:`~pertlearn.models.SmallCNN` and the in-repo MNIST subset
(``tests/data/mnist``: 2,000 images, 80/20 split, seed 0). Not a test; run it as::

    PYTHONPATH=src python -m tests.unit.attacks.measure_hit_rates [--n 400] [--epochs 3]
        [--width 16] [--data DIR] [--only TEXT]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from pertlearn.attacks import make_attack, per_class_hit_rates, target_hits
from pertlearn.data.images import load_dataset, prepare
from pertlearn.models import SmallCNN
from pertlearn.training.minibatch import MinibatchConfig, fit_minibatch

DATA = Path(__file__).resolve().parents[2] / "data"

SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("plain, 30 steps (cpu preset)", {"steps": 30}),
    ("plain, 100 steps (paper)", {"steps": 100}),
    (
        "until_fooled, 30 steps, max_steps 300",
        {"steps": 30, "until_fooled": True, "max_steps": 300},
    ),
    ("restarts 4, 30 steps", {"steps": 30, "restarts": 4}),
    ("noise_std 0.1, eot_samples 4, 30 steps", {"steps": 30, "noise_std": 0.1, "eot_samples": 4}),
    (
        "until_fooled 150 + restarts 2 + noise 0.1",
        {"steps": 30, "until_fooled": True, "max_steps": 150, "restarts": 2, "noise_std": 0.1},
    ),
    ("logit_margin loss, 30 steps", {"steps": 30, "loss": "logit_margin"}),
    ("logit_margin loss, 100 steps", {"steps": 100, "loss": "logit_margin"}),
    (
        "logit_margin + until_fooled 150 + restarts 2",
        {
            "steps": 30,
            "loss": "logit_margin",
            "until_fooled": True,
            "max_steps": 150,
            "restarts": 2,
        },
    ),
    (
        "fine steps: logit_margin, 400 steps of eps/40",
        {"steps": 400, "step_size_fraction": 1 / 40, "loss": "logit_margin"},
    ),
]
SWEEP = (3.0, 4.0, 5.0)
"""Budgets at which the plain 30-step attack is also run: is the hit rate bound by ε?"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="training images attacked")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of f")
    parser.add_argument("--width", type=int, default=16, help="channels of f's first layer")
    parser.add_argument("--eps", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(DATA), help="data directory holding mnist/")
    parser.add_argument("--only", default="", help="run the settings whose label has this text")
    args = parser.parse_args()
    torch.set_num_threads(1)
    split = prepare(
        load_dataset("mnist", args.data),
        test_fraction=0.2,
        generator=torch.Generator().manual_seed(args.seed),
    )
    f = SmallCNN(width=args.width, generator=torch.Generator().manual_seed(args.seed + 1))
    config = MinibatchConfig(lr=0.05, batch_size=64, epochs=args.epochs, plateau_patience=None)
    fit_minibatch(
        f, split.x_train, split.y_train, config, generator=torch.Generator().manual_seed(2)
    )
    f.eval()
    with torch.no_grad():
        acc = (f(split.x_test).argmax(1) == split.y_test).float().mean().item()
    print(
        f"f: width {args.width}, {args.epochs} epochs on {len(split.x_train)} images, "
        f"clean test accuracy {acc:.3f}"
    )
    x, y = split.x_train[: args.n], split.y_train[: args.n]
    target = (y + 1) % 10
    print(f"natural_det, pgd_l2 eps={args.eps:g}, clip (0, 1), {len(x)} training images")
    runs = [(args.eps, label, options) for label, options in SETTINGS]
    runs += [(eps, f"plain, 30 steps, eps={eps:g}", {"steps": 30}) for eps in SWEEP]
    runs = [run for run in runs if args.only in run[1]]
    for eps, label, options in runs:
        options = dict(options)
        if "step_size_fraction" in options:
            options["step_size"] = eps * options.pop("step_size_fraction")
        attack = make_attack("pgd_l2", eps, clip=(0.0, 1.0), **options)
        start = time.perf_counter()
        x_adv = attack(f, x, target, generator=torch.Generator().manual_seed(3))
        seconds = time.perf_counter() - start
        hits = target_hits(f, x_adv, target)
        rates = per_class_hit_rates(hits, target, 10)
        per_class = " ".join(f"{v:.2f}" for v in rates.values() if v is not None)
        print(
            f"{label:45s} hit rate {hits.float().mean().item():.3f}  "
            f"per target class [{per_class}]  ({seconds:.0f} s)"
        )


if __name__ == "__main__":
    main()
