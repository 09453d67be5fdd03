"""Golden cases: presets at cpu scale (reduced where needed) whose metrics are pinned.

``python -m tests.golden.record`` runs every case and writes ``metrics.json`` beside this
file; ``tests/integration/test_golden.py`` re-runs them and compares every metric. Recorded
once, before the experiments package was restructured, so that the restructuring provably keeps
the numbers (float tolerance 1e-6 on that machine). The rounding of a few noisy cases depends
on the processor, so each machine kind that runs the suite can hold its own record
(``python -m tests.golden.record --machine`` writes ``machines/<id>.json``), compared to 1e-6
there; a kind without one is compared with ``metrics.json`` at a cross-machine tolerance. Torch
runs on one thread while recording and checking (thread count changes the reduction order of
convolutions).
"""

from __future__ import annotations

from pathlib import Path

FIXTURE_DATA = str(Path(__file__).resolve().parents[1] / "data")
"""The in-repo MNIST subset (``tests/data/mnist``, 2,000 test-set images)."""

IMAGES_SMALL = [
    f"data.data_dir={FIXTURE_DATA!r}",
    "data.n_train=300",
    "data.n_test=100",
    "data.n_noise=200",
    "train_f.epochs=2",
    "train_g.epochs=2",
    "craft_batch_size=100",
]

CASES: dict[str, tuple[str, list[str]]] = {
    # NeurIPS24 binary pipeline
    "quickstart": ("quickstart", []),
    "neurips-shifted-gauss-b": (
        "neurips-shifted-gauss-b",
        ["train_f.epochs=300", "train_g.epochs=300"],
    ),
    "neurips-gauss-a": (
        "neurips-gauss-a",
        ["data.dim=300", "train_f.epochs=200", "train_g.epochs=200"],
    ),
    "neurips-gauss-b": (
        "neurips-gauss-b",
        ["data.dim=300", "train_f.epochs=200", "train_g.epochs=200"],
    ),
    "quickstart-logistic-random": (
        "quickstart",
        [
            "train_f.loss='logistic'",
            "train_g.loss='logistic'",
            "model.slope=0.25",
            "targets='random'",
            "seed=3",
        ],
    ),
    "quickstart-minibatch-pgd": (
        "quickstart",
        [
            "train_f.batch_size=100",
            "train_f.epochs=50",
            "train_g.epochs=300",
            "attack.name='pgd_l2'",
            "attack.options={steps=5}",
        ],
    ),
    "neurips-mnist-a": (
        "neurips-mnist-a",
        [f"data.data_dir={FIXTURE_DATA!r}", "train_f.epochs=30", "train_g.epochs=30"],
    ),
    # ICLR24 artificial pipeline
    "iclr-artificial-l2-uniform": (
        "iclr-artificial-l2-uniform",
        ["data.dim=200", "data.n_noise=300", "train_f.epochs=300", "train_g.epochs=300"],
    ),
    "iclr-artificial-l0-gauss": (
        "iclr-artificial-l0-gauss",
        # recorded when the preset held ε = 50 (5% of d = 1000); its rule now scales with d
        [
            "data.dim=200",
            "attack.eps=50",
            "data.n_noise=300",
            "train_f.epochs=300",
            "train_g.epochs=300",
        ],
    ),
    "iclr-artificial-linf-uniform": (
        "iclr-artificial-linf-uniform",
        ["data.dim=200", "data.n_noise=300", "train_f.epochs=300", "train_g.epochs=300"],
    ),
    # ICLR24 image pipeline (on the in-repo MNIST subset)
    "iclr-mnist-natural-rand-l2": (
        "iclr-mnist-natural-rand-l2",
        [*IMAGES_SMALL, "attack.options={steps=5}"],
    ),
    "iclr-mnist-natural-det-linf": (
        "iclr-mnist-natural-det-linf",
        [*IMAGES_SMALL, "attack.options={steps=5}"],
    ),
    "iclr-mnist-uniform-l0": ("iclr-mnist-uniform-l0", [*IMAGES_SMALL, "attack.eps=20"]),
}

SWEEP_SPEC = """
name = "golden-quickstart"
preset = "quickstart"
seeds = [0, 1]

[base]
save_tensors = false
train_f.epochs = 300
train_g.epochs = 300

[zip]
"train_f.lr" = [1.0, 0.1]
"train_g.lr" = [1.0, 0.1]
"""
"""A small sweep (2 learning-rate pairs × 2 seeds) run through the sweep runner (batched)."""

IGNORED = {"seconds", "stage_seconds"}
"""Metrics that are not pinned (wall times; a results row's ``stage_seconds.STAGE`` columns are
left out with ``stage_seconds``)."""
