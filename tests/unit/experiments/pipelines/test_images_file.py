"""The images pipeline on the user's own image data file (``data.name = "file"``): 60 random
images written by each test, every scenario, the fixed test part, 8-bit pixels, class names,
the CLI, the rerun from the run directory and a sweep."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import pertlearn
from pertlearn.cli.main import cli
from pertlearn.data.files import load_image_file
from pertlearn.errors import ConfigError
from pertlearn.experiments.pipelines import validate_config
from pertlearn.experiments.rundir import read_run
from pertlearn.reports.html import run_report
from pertlearn.reports.run_figures import sample_grid
from pertlearn.reports.spectrum_figures import record_spectra


def write_images(
    path: Path, shape: tuple[int, int, int] = (3, 8, 8), n: int = 60, test: int = 0
) -> Path:
    """``n`` random images ``(n, *shape)`` in [0, 1] of 3 classes (class k a little brighter
    by k/4), the last ``test`` of them as the file's test part."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = (0.5 * torch.rand((n, *shape), generator=gen) + 0.25 * y.view(-1, 1, 1, 1)).clamp(0, 1)
    tensors = {"x_train": x[: n - test], "y_train": y[: n - test]}
    if test:
        tensors |= {"x_test": x[n - test :], "y_test": y[n - test :]}
    save_file(tensors, str(path))
    return path


def tree(path: Path, scenario: str = "natural_rand", **extra: Any) -> dict[str, Any]:
    """A config tree on the data file ``path`` that runs in about a second."""
    train = {"lr": 0.05, "epochs": 2, "batch_size": 16, "plateau_patience": None}
    config: dict[str, Any] = {
        "pipeline": "images",
        "data": {"name": "file", "path": str(path), "n_noise": 20},
        "model": {"name": "small_cnn", "options": {"width": 4, "hidden": 8}},
        "attack": {"name": "pgd_l2", "eps": 1.0, "options": {"steps": 2}},
        "scenario": scenario,
        "train_f": train,
        "train_g": train,
        "craft_batch_size": 16,
    }
    return config | extra


def test_the_config_reads_dim_from_the_file_and_records_the_path(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors")
    config = validate_config(tree(path, data={"name": "file", "path": str(path), "dim": 5}))
    assert config.data.dim == 3 * 8 * 8  # the file decides, not a preset's dim
    assert config.model_dump()["data"]["path"] == str(path)
    builtin = validate_config({"pipeline": "images"}).model_dump()["data"]
    assert "path" not in builtin  # configs of the built-in sets are unchanged


def test_the_reader_takes_classes_and_pixel_statistics_from_the_file(tmp_path: Path) -> None:
    train, test = load_image_file(write_images(tmp_path / "img.safetensors", test=15))
    assert test is not None
    assert train.info.shape == (3, 8, 8) and train.info.num_classes == 3
    assert (train.x.shape, test.x.shape) == ((45, 3, 8, 8), (15, 3, 8, 8))
    assert train.y.dtype == torch.int64 and len(train.info.mean) == 3
    assert train.info.mean[0] == pytest.approx(float(train.x[:, 0].mean()), abs=1e-6)


def test_run_from_python_and_rerun_from_the_run_directory(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors")
    config = validate_config(tree(path, controls=["unperturbed_inputs", "mislabeled_clean"]))
    result = pertlearn.run(config)
    m = result.metrics
    assert (m["num_classes"], m["n_train"], m["n_test"]) == (3, 48, 12)  # seeded 80/20 split
    assert m["chance"] == pytest.approx(1 / 3)
    assert result.tensors["x_train"].shape == (48, 3, 8, 8)
    assert m["data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    saved = read_run(result.save(tmp_path / "run"))
    assert saved.config["data"]["path"] == str(path)
    again = dict(pertlearn.run(pertlearn.load_config(saved.path)).metrics)
    first = dict(m)
    first.pop("seconds"), again.pop("seconds")
    assert again == first


def test_the_file_test_part_is_the_test_set(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors", test=15)
    _, test = load_image_file(path)
    assert test is not None
    result = pertlearn.run(validate_config(tree(path, data={"name": "file", "path": str(path)})))
    assert (result.metrics["n_train"], result.metrics["n_test"]) == (45, 15)
    got = result.tensors["x_test"]
    assert torch.equal(
        got[got.flatten(1)[:, 0].argsort()], test.x[test.x.flatten(1)[:, 0].argsort()]
    )


def test_classes_and_caps_apply_to_a_file(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors", shape=(1, 8, 8))
    data = {"name": "file", "path": str(path), "classes": [2, 0], "n_train": 20, "n_test": 6}
    m = pertlearn.run(validate_config(tree(path, data=data))).metrics
    assert (m["num_classes"], m["n_train"], m["n_test"]) == (2, 20, 6)


@pytest.mark.parametrize(
    "scenario, extra",
    [
        ("natural_det", {"transfer_eval": True, "robust_eval": {"eps": 0.5, "steps": 2}}),
        ("uniform", {"controls": ["unperturbed_inputs"]}),
        ("non_robust", {"construction": {"steps": 2, "batch_size": 16}}),
        (
            "robust",
            {
                "construction": {"steps": 2},
                "train_f": {"epochs": 1, "batch_size": 16, "adversarial": {"eps": 0.5, "steps": 2}},
            },
        ),
    ],
)
def test_every_scenario_runs_on_a_file(tmp_path: Path, scenario: str, extra: Any) -> None:
    path = write_images(tmp_path / "img.safetensors", shape=(1, 8, 8))
    m = pertlearn.run(validate_config(tree(path, scenario, **extra))).metrics
    assert m["num_classes"] == 3 and 0 <= m["g_acc_test"] <= 1


def test_spectra_of_a_run_on_odd_sized_images(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors", shape=(1, 12, 8))
    config = validate_config(tree(path, perturbation_filter={"kind": "low_pass", "cutoff": 3}))
    record = read_run(pertlearn.run(config).save(tmp_path / "run"))
    spectra = record_spectra(record)
    assert spectra is not None
    assert spectra[0]["perturbations"].shape[-1] == round((6**2 + 4**2) ** 0.5) + 1


def test_a_network_that_does_not_fit_the_images_is_named(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors", shape=(1, 10, 6))
    with pytest.raises(ValueError, match="SmallCNN needs H and W divisible by 4, got 10×6"):
        pertlearn.run(validate_config(tree(path)))


def cli_args(path: Path) -> list[str]:
    sets = [
        f"data.path={json.dumps(str(path))}",
        "data.name='file'",
        "model.name='mlp'",
        "model.options={hidden=8}",
        "train_f.epochs=1",
        "train_g.epochs=1",
        "controls=[]",
    ]
    return ["--preset", "iclr-mnist-natural-rand-l2", *(a for s in sets for a in ("--set", s))]


def test_cli_run_and_rerun_from_the_run_directory(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors")
    runner = CliRunner()
    first = runner.invoke(cli, ["run", "-q", *cli_args(path), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli, ["run", "-q", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    for timing in ("seconds", "stage_seconds"):
        a.pop(timing), b.pop(timing)
    assert a == b and a["num_classes"] == 3
    assert "changed since run" not in again.output


def test_a_rerun_warns_when_the_data_file_changed_since_the_run(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors")
    runner = CliRunner()
    first = runner.invoke(cli, ["run", "-q", *cli_args(path), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    write_images(path, n=63)  # other images under the same name
    again = runner.invoke(cli, ["run", "-q", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    warning = f"warning: the data file {str(path)!r} changed since run"
    assert warning in again.output and "learns from the file as it is now" in again.output
    recorded = json.loads((tmp_path / "a" / "metrics.json").read_text())["data_sha256"]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["data_sha256"] != recorded


def test_a_sweep_over_a_file_config(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors")
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        'preset = "iclr-mnist-natural-rand-l2"\n[base]\n'
        f'data.name = "file"\ndata.path = {json.dumps(str(path))}\n'
        "model.options = {width = 4, hidden = 8}\n"
        "train_f.epochs = 1\ntrain_g.epochs = 1\ncontrols = []\n"
        '[grid]\nscenario = ["natural_rand", "natural_det"]\n'
    )
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli, ["sweep", str(sweep), "--workers", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*/metrics.json")]
    assert sorted(m["scenario"] for m in runs) == ["natural_det", "natural_rand"]


def test_a_uint8_file_gives_the_metrics_of_its_float_file(tmp_path: Path) -> None:
    """8-bit pixels are read as ``x / 255``: the run is the run of that float file."""
    float_path = write_images(tmp_path / "float.safetensors")
    x = load_file(str(float_path))["x_train"]
    x_u8 = (x * 255).round().to(torch.uint8)
    y = load_file(str(float_path))["y_train"]
    save_file({"x_train": x_u8, "y_train": y}, str(tmp_path / "u8.safetensors"))
    save_file({"x_train": x_u8.float() / 255, "y_train": y}, str(float_path))
    got, want = (
        dict(pertlearn.run(validate_config(tree(tmp_path / name))).metrics)
        for name in ("u8.safetensors", "float.safetensors")
    )
    for key in ("seconds", "data_sha256"):  # the files differ in bytes, not in images
        got.pop(key), want.pop(key)
    assert got == want


def test_the_file_names_its_classes_in_the_report_and_figures(tmp_path: Path) -> None:
    path = write_images(tmp_path / "img.safetensors")
    tensors = load_file(str(path))
    names = ["cat", "dog", "bird"]
    save_file(tensors, str(path), metadata={"class_names": json.dumps(names)})
    data = {"name": "file", "path": str(path), "classes": [2, 0]}  # bird → 0, cat → 1
    run_dir = pertlearn.run(validate_config(tree(path, data=data))).save(tmp_path / "run")
    record = read_run(run_dir)
    assert record.class_names == ("bird", "cat")
    page = run_report(run_dir)
    assert '<td class="l">bird (0)</td>' in page and '<td class="l">cat (1)</td>' in page
    figure = sample_grid(run_dir, count=4)
    assert figure is not None
    saved = record.tensors()
    svg = figure.files["svg"].decode()
    for i in range(4):
        y, target = int(saved["y_train"][i]), int(saved["y_adv"][i])
        assert f"{('bird', 'cat')[y]} → {('bird', 'cat')[target]}" in svg


def test_f_weights_of_a_run_on_another_file_are_refused(tmp_path: Path) -> None:
    first = write_images(tmp_path / "a.safetensors")
    source = pertlearn.run(validate_config(tree(first))).save(tmp_path / "run")
    other = tmp_path / "b.safetensors"
    other.write_bytes(first.read_bytes())  # the same images under another name
    config = validate_config(tree(other, f_weights=str(source)))
    with pytest.raises(ConfigError, match=r"f_weights: .* trained f on other images .*data\.path"):
        pertlearn.run(config)
