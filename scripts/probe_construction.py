"""How fast does the Ilyas et al. construction converge on MNIST? A small CPU probe.

Trains a standard SmallCNN briefly on the in-repo MNIST subset (as
``measure_perturbation_spectra.py`` does), then builds D̂_NR-style images for ``--n`` training
images: start from another training image (``start_points(..., "other_image")``) and run
normalized gradient descent on ‖g(x_r) − g(x)‖₂ (``construct_dataset``). Prints the mean
representation distance relative to the start, the share of constructed images that f assigns
to the label of x (the label they keep), and how far x_r moved from its start (L2).

    PYTHONPATH=src python scripts/probe_construction.py [--n 200] [--steps 200] [--step-size 0.1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pertlearn.data.images import load_dataset, prepare
from pertlearn.features.constructed import construct_dataset, start_points
from pertlearn.models import SmallCNN
from pertlearn.seeding import stage_generator
from pertlearn.training.minibatch import MinibatchConfig, evaluate_accuracy, fit_minibatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).parents[1] / "tests" / "data"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

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
    x, y = split.x_train[: args.n], split.y_train[: args.n]
    x0 = start_points(x, y, "other_image", generator=stage_generator(args.seed, "start"))
    start = time.perf_counter()
    built = construct_dataset(model, x, x0, steps=args.steps, step_size=args.step_size)
    seconds = time.perf_counter() - start
    relative = built.mean_distance / built.mean_distance[0]
    marks = sorted({0, 10, 25, 50, 100, args.steps} & set(range(args.steps + 1)))
    with torch.no_grad():
        start_label = model(x0).argmax(1)
    result = {
        "f_acc_test": evaluate_accuracy(model, split.x_test, split.y_test),
        "mean_distance_start": float(built.mean_distance[0]),
        "relative_mean_distance": {str(k): round(float(relative[k]), 4) for k in marks},
        "relative_final_kept": float(built.final_distance.mean() / built.mean_distance[0]),
        "f_assigns_label_of_x_start": float((start_label == y).float().mean()),
        "f_assigns_label_of_x_constructed": evaluate_accuracy(model, built.x, y),
        "l2_moved_from_start_mean": float((built.x - x0).flatten(1).norm(dim=1).mean()),
        "seconds_construct": seconds,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
