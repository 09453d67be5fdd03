"""The transfer study end to end through the command line, at a tiny size on the in-repo MNIST
subset: ``pertlearn sweep transfer-mnist-l2`` (f architecture × g architecture) then
``pertlearn report`` (transfer.json, heatmaps as PNG and PDF, report.html)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pertlearn.cli.main import cli
from pertlearn.experiments.sweeps import load_sweep

DATA = str(Path(__file__).parents[1] / "data")
TINY = [
    f'data.data_dir="{DATA}"',
    "data.classes=[0, 1, 2]",
    "data.n_train=90",
    "data.n_test=45",
    "train_f.epochs=2",
    "train_g.epochs=2",
    "attack.options.steps=3",
    "model_g.options={hidden=16}",
]


def test_transfer_matrix_command_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "transfer"
    args = ["sweep", "transfer-mnist-l2", "--out", str(out), "--quiet"]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output

    payload = json.loads((out / "transfer.json").read_text())
    assert payload["sources"] == ["small_cnn", "mlp"]
    assert payload["targets"] == ["small_cnn", "mlp"]
    assert payload["source_label"] == "f architecture (crafted against)"
    assert payload["target_label"] == "g architecture (learns)"
    for key in ("g_acc", "transfer_rate"):
        values = [v for row in payload[key] for v in row]
        assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values)
    # the matrices are the runs' own metrics, cell by cell
    runs = {}
    for run in (out / "runs").iterdir():
        config = json.loads((run / "config.json").read_text())["config"]
        metrics = json.loads((run / "metrics.json").read_text())
        cell = (config["model"]["name"], (config.get("model_g") or config["model"])["name"])
        runs[cell] = metrics
    assert len(runs) == 4
    for i, source in enumerate(payload["sources"]):
        for j, target in enumerate(payload["targets"]):
            metrics = runs[(source, target)]
            assert payload["g_acc"][i][j] == pytest.approx(metrics["g_acc_test"])
            assert payload["transfer_rate"][i][j] == pytest.approx(metrics["transfer_rate"])
    # the same architecture scores with the same independent model whatever f was
    cnn = [runs[(s, "small_cnn")]["transfer_model_acc_test"] for s in ("small_cnn", "mlp")]
    assert cnn[0] == cnn[1]

    for stem in ("transfer_g_acc", "transfer_rate"):
        assert (out / "figures" / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / "figures" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        assert not (out / f"{stem}.png").exists()  # one copy, with the report's other figures
    page = (out / "report.html").read_text()
    assert "<h2>Transfer matrix</h2>" in page
    assert "f architecture (crafted against)" in page and "g architecture (learns)" in page
    assert page.count('alt="transfer rate') == 1 and page.count('alt="g&#x27;s clean') == 1
    assert "<h2>Target hits per class</h2>" in page


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_transfer_and_band_limited_presets_are_valid(scale: str) -> None:
    for name, cells in (
        ("transfer-mnist-l2", 4),
        ("transfer-cifar10-l2", 4),
        ("band-limited-mnist-l2", 4),
        ("band-limited-cifar10-l2", 4),
    ):
        points = load_sweep(name, scale=scale).points()
        assert len(points) == cells
    for name, top_bin in (("band-limited-mnist-l2", 20), ("band-limited-cifar10-l2", 23)):
        filters = [
            p.config.perturbation_filter  # type: ignore[attr-defined]
            for p in load_sweep(name, scale=scale).points()
        ]
        assert {f.kind for f in filters} == {"low_pass", "high_pass"}
        # the references: all of δ (low_pass at the top bin) and none of it (high_pass there)
        assert {(f.kind, f.cutoff) for f in filters if f.cutoff == top_bin} == {
            ("low_pass", top_bin),
            ("high_pass", top_bin),
        }


@pytest.mark.parametrize("scale", ["cpu", "paper"])
@pytest.mark.parametrize(
    ("name", "eps"),
    [
        ("hit-repair-mnist-l2", {"cpu": 2.0, "paper": 2.0}),
        ("hit-repair-cifar10-l2", {"cpu": 1.0, "paper": 0.5}),
    ],
)
def test_hit_repair_presets_compare_plain_and_repaired_attacks(
    name: str, eps: dict[str, float], scale: str
) -> None:
    configs = [p.config for p in load_sweep(name, scale=scale).points()]
    settings = [
        (c.keep, c.attack.options.get("loss"), c.attack.options.get("restarts"))  # type: ignore[attr-defined]
        for c in configs
    ]
    assert settings == [
        ("all", "logistic", 0),
        ("fooled", "logistic", 0),
        ("fooled", "logit_margin", 1),
    ]
    # one budget and one scenario across the points: only the attack and `keep` differ
    assert {c.attack.eps for c in configs} == {eps[scale]}  # type: ignore[attr-defined]
    assert {c.scenario for c in configs} == {"natural_det"}
