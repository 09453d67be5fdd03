"""The sample grid of an images run: clean inputs, adversarial versions, perturbations, and
each column's true and target label, by class name."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import pertlearn
from image_data_support import every_dataset_dir, tiny_images
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.rundir import read_run, read_tensors
from pertlearn.reports.run_figures import sample_grid


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train = {"lr": 0.05, "epochs": 1, "batch_size": 32, "plateau_patience": None}
    tree = tiny_images(
        n_train=30,
        save_tensors=True,
        attack={"name": "pgd_l2", "eps": 3.0, "options": {"steps": 2}},
        train_f=train,
        train_g=train,
    )
    tree["data"]["n_test"] = 10
    return pertlearn.run(validate_config(tree)).save(tmp_path_factory.mktemp("samples") / "run")


def test_each_column_is_titled_with_its_true_and_target_label(run_dir: Path) -> None:
    figure = sample_grid(run_dir, count=5)
    assert figure is not None
    tensors = read_tensors(run_dir)
    svg = figure.files["svg"].decode()
    for i in range(5):
        assert f"{int(tensors['y_train'][i])} → {int(tensors['y_adv'][i])}" in svg
    assert "true label → target label" in figure.caption


def test_without_target_labels_the_columns_are_untitled(run_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    tensors = read_tensors(run_dir)
    del tensors["y_adv"]
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "metrics.json", "curves.json"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    save_file(tensors, str(copy / "tensors.safetensors"))
    figure = sample_grid(copy, count=5)
    assert figure is not None
    assert "→" not in figure.files["svg"].decode()
    assert "target label" not in figure.caption


def test_a_built_in_data_set_titles_the_columns_with_its_class_names(tmp_path: Path) -> None:
    """CIFAR-10 classes 3 and 5 are run classes 0 and 1: the columns say cat and dog."""
    train = {"lr": 0.05, "epochs": 1, "batch_size": 32, "plateau_patience": None}
    tree = tiny_images(
        n_train=20,
        attack={"name": "pgd_l2", "eps": 3.0, "options": {"steps": 1}},
        train_f=train,
        train_g=train,
    )
    data_dir = every_dataset_dir(tmp_path / "data", n=60)
    tree["data"] |= {"name": "cifar10", "classes": [3, 5], "n_test": 6, "data_dir": str(data_dir)}
    run_dir = pertlearn.run(validate_config(tree)).save(tmp_path / "run")
    assert read_run(run_dir).class_names == ("cat", "dog")
    figure = sample_grid(run_dir, count=4)
    assert figure is not None
    tensors = read_tensors(run_dir)
    svg = figure.files["svg"].decode()
    for i in range(4):
        y, target = int(tensors["y_train"][i]), int(tensors["y_adv"][i])
        assert f"{('cat', 'dog')[y]} → {('cat', 'dog')[target]}" in svg
    # the per-class spectrum panels and the printed summary name the classes too
    from pertlearn.reports.spectrum_figures import spectrum_per_class_figure
    from pertlearn.reports.summary import format_summary

    spectra = spectrum_per_class_figure(run_dir)
    assert spectra is not None
    assert "class cat (0)" in spectra.files["svg"].decode()
    assert "class dog (1)" in spectra.files["svg"].decode()
    summary = format_summary(read_run(run_dir).metrics, read_run(run_dir).class_names)
    lines = summary.splitlines()
    per_class = [pairs for key, pairs in itertools.pairwise(lines) if key.endswith("_per_class")]
    assert per_class  # one line of class:value pairs under each per-class metric
    for line in per_class:
        assert "cat:" in line and "dog:" in line and "0:" not in line, line
