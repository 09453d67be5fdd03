"""Where does the power of targeted L2 PGD perturbations sit? A small CPU measurement.

Trains a SmallCNN briefly on the in-repo MNIST subset (2,000 test-set images, 80/20 split,
seed 0), crafts targeted L2 PGD perturbations towards (y + 1) mod 10 at ε = 2 on training
images, and compares the radial power spectra (``pertlearn.features.spectra``) of the clean
images, the perturbations r = x_adv − x and Gaussian noise of the same per-sample norm.

    PYTHONPATH=src python scripts/measure_perturbation_spectra.py [--epochs 4] [--n-attack 500]
        [--steps 30] [--data-dir tests/data] [--out spectra.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pertlearn.attacks import PgdL2
from pertlearn.data.images import load_dataset, prepare
from pertlearn.features.spectra import (
    high_pass,
    low_pass,
    mean_per_class,
    radial_power_spectrum,
    random_noise_like,
)
from pertlearn.models import SmallCNN
from pertlearn.seeding import stage_generator
from pertlearn.training.minibatch import MinibatchConfig, evaluate_accuracy, fit_minibatch

BANDS = ((0, 0), (1, 3), (4, 7), (8, 13), (14, 20))


def shares(spectrum: torch.Tensor) -> torch.Tensor:
    """Per-bin share of the total power of the mean spectrum ``(R,)``."""
    return spectrum / spectrum.sum()


def half_power_radius(spectrum: torch.Tensor, skip_dc: bool = True) -> int:
    """Smallest bin r with at least half of the (non-DC) power in bins ≤ r."""
    s = spectrum.clone()
    if skip_dc:
        s[0] = 0
    cumulative = torch.cumsum(s / s.sum(), 0)
    return int(torch.nonzero(cumulative >= 0.5)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).parents[1] / "tests" / "data"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n-attack", type=int, default=500)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--eps", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()

    start = time.perf_counter()
    split = prepare(
        load_dataset("mnist", args.data_dir),
        test_fraction=0.2,
        generator=stage_generator(args.seed, "data"),
    )
    model = SmallCNN(
        (1, 28, 28), 10, mean=(0.1307,), std=(0.3081,), generator=stage_generator(args.seed, "f")
    )
    config = MinibatchConfig(lr=0.05, batch_size=64, epochs=args.epochs, plateau_patience=None)
    fit_minibatch(
        model, split.x_train, split.y_train, config, generator=stage_generator(args.seed, "sgd")
    )
    f_acc = evaluate_accuracy(model, split.x_test, split.y_test)
    trained = time.perf_counter()

    x = split.x_train[: args.n_attack]
    y = split.y_train[: args.n_attack]
    target = (y + 1) % 10
    attack = PgdL2(args.eps, steps=args.steps, clip=(0.0, 1.0))
    x_adv = attack(model, x, target)
    r = x_adv - x
    noise = random_noise_like(r, stage_generator(args.seed, "noise"))
    with torch.no_grad():
        hit = model(x_adv).argmax(1) == target
    attacked = time.perf_counter()

    spectra = {
        "clean": radial_power_spectrum(x),
        "perturbation": radial_power_spectrum(r),
        "noise": radial_power_spectrum(noise),
    }
    mean = {k: v.mean(0) for k, v in spectra.items()}
    energy = r.flatten(1).pow(2).sum(1)
    result: dict[str, object] = {
        "n_train": int(split.x_train.shape[0]),
        "f_acc_test": f_acc,
        "fooling_rate": attack.last_fooling_rate,
        "perturbation_l2_mean": float(energy.sqrt().mean()),
        "seconds_train": trained - start,
        "seconds_attack": attacked - trained,
        "half_power_radius": {k: half_power_radius(v) for k, v in mean.items()},
        "bands": {
            k: {f"{lo}-{hi}": float(shares(v)[lo : hi + 1].sum()) for lo, hi in BANDS}
            for k, v in mean.items()
        },
        "share_per_bin": {k: [round(float(s), 4) for s in shares(v)] for k, v in mean.items()},
        "low_pass_energy_share_r": {
            str(c): float((low_pass(r, c).flatten(1).pow(2).sum(1) / energy).mean())
            for c in (3, 7, 13)
        },
        "high_pass_energy_share_r": {
            str(c): float((high_pass(r, c).flatten(1).pow(2).sum(1) / energy).mean())
            for c in (3, 7, 13)
        },
        "perturbation_over_noise_per_bin": [
            round(float(a / b), 2) for a, b in zip(mean["perturbation"], mean["noise"], strict=True)
        ],
        "half_power_radius_perturbation_fooled_missed": [
            half_power_radius(spectra["perturbation"][hit == want].mean(0))
            if bool((hit == want).any())
            else None
            for want in (True, False)
        ],
        "half_power_radius_per_target_class": [
            half_power_radius(row) for row in mean_per_class(spectra["perturbation"], target, 10)
        ],
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
