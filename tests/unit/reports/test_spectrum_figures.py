"""The spectrum figures of an images run and their place in its report.html."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import pertlearn
from image_data_support import tiny_images
from pertlearn.experiments.pipelines import validate_config
from pertlearn.features.spectra import radial_bin_counts
from pertlearn.reports import write_report
from pertlearn.reports.spectrum_figures import half_power_radius, run_spectra, spectrum_figure


def _tiny_run(out: Path, n_train: int, steps: int, **extra: Any) -> Path:
    """An images run of ``n_train`` training and ``n_train // 3`` test images (one epoch for
    f and g, an L2 attack of ``steps`` steps at ε = 3) saved with its tensors in ``out``."""
    train = {"lr": 0.05, "epochs": 1, "batch_size": 32, "plateau_patience": None}
    tree = tiny_images(
        n_train=n_train,
        save_tensors=True,
        attack={"name": "pgd_l2", "eps": 3.0, "options": {"steps": steps}},
        train_f=train,
        train_g=train,
        **extra,
    )
    tree["data"]["n_test"] = n_train // 3
    return pertlearn.run(validate_config(tree)).save(out)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_run(tmp_path_factory.mktemp("spectrum") / "run", n_train=90, steps=2)


def test_spectra_of_perturbations_clean_images_and_same_norm_noise(run_dir: Path) -> None:
    found = run_spectra(run_dir)
    assert found is not None
    spectra, y_true, y_target, counts = found
    assert set(spectra) == {"clean images", "perturbations", "same-norm Gaussian noise"}
    assert all(s.shape == (90, 21) for s in spectra.values())
    assert torch.equal(counts, radial_bin_counts(28, 28))
    assert bool((y_true != y_target).all())  # natural_rand: targets are other classes
    # Parseval with the per-frequency means: bins times their sizes sum to ‖·‖²; the noise has
    # each perturbation's norm
    energy = {k: (v * counts).sum(dim=1) for k, v in spectra.items()}
    torch.testing.assert_close(
        energy["same-norm Gaussian noise"], energy["perturbations"], rtol=1e-5, atol=1e-6
    )


def test_half_power_radius() -> None:
    counts = torch.ones(5, dtype=torch.int64)
    assert half_power_radius(torch.tensor([0.1, 0.1, 0.6, 0.1, 0.1]), counts) == 2
    assert half_power_radius(torch.tensor([0.5, 0.0, 0.0, 0.0, 0.5]), counts) == 0


def test_half_power_radius_of_a_spectrum_without_power_is_none() -> None:
    assert half_power_radius(torch.zeros(5), torch.ones(5, dtype=torch.int64)) is None


def test_a_run_whose_perturbations_are_all_filtered_out_says_so_in_its_spectra(
    tmp_path: Path,
) -> None:
    high_pass = {"kind": "high_pass", "cutoff": 100.0}
    run_dir = _tiny_run(tmp_path / "run", n_train=20, steps=1, perturbation_filter=high_pass)
    for per_class in (False, True):
        figure = spectrum_figure(run_dir, per_class=per_class)
        assert figure is not None
        assert "Every perturbation is zero" in figure.caption
    page = write_report(run_dir).read_text()
    assert "<h2>Perturbation spectrum</h2>" in page
    assert "perturbations none (no power)" in page
    assert "not drawn:" not in page


def test_figures_are_drawn_and_in_the_run_report(run_dir: Path) -> None:
    for per_class in (False, True):
        figure = spectrum_figure(run_dir, per_class=per_class)
        assert figure is not None and figure.png.startswith(b"\x89PNG")
    page = write_report(run_dir).read_text()
    assert "<h2>Perturbation spectrum</h2>" in page
    assert "<h2>Perturbation spectrum per class</h2>" in page
    assert "Half-power radius" in page
    assert "<h2>Target hits per class</h2>" in page


def test_every_class_of_the_data_gets_a_panel_even_one_no_sample_has(
    run_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["num_classes"] = 12  # two more classes than any label of the run
    (copy / "metrics.json").write_text(json.dumps(metrics))
    figure = spectrum_figure(copy, per_class=True)
    assert figure is not None
    svg = figure.files["svg"].decode()
    assert "class 11: no samples" in svg and "class 12" not in svg
