"""report.html of a run writes every figure as PNG, PDF and SVG beside the page and links them."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pertlearn.reports.html import figures_dir, write_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny quickstart run with its tensors (so the decision map is drawn) and a control."""
    from pertlearn.experiments.pipelines import run
    from pertlearn.experiments.presets import load_config

    config = load_config(
        preset="quickstart",
        overrides=[
            "data.dim=10",
            "data.n_train=40",
            "data.n_test=40",
            "model.width=8",
            "train_f.epochs=20",
            "train_g.epochs=20",
        ],
    )
    return run(config).save(tmp_path_factory.mktemp("html") / "run")


def test_figures_dir_beside_the_page() -> None:
    assert figures_dir(Path("runs/a/report.html")) == Path("runs/a/figures")
    assert figures_dir(Path("out/run.html")) == Path("out/run-figures")


def test_run_report_writes_and_links_every_figure_in_three_formats(run_dir: Path) -> None:
    page_path = write_report(run_dir)
    page = page_path.read_text()
    folder = run_dir / "figures"
    names = sorted(p.name for p in folder.iterdir())
    stems, formats = ("decision-map", "training-loss"), ("pdf", "png", "svg")
    assert names == [f"{stem}.{fmt}" for stem in stems for fmt in formats]
    for stem in ("decision-map", "training-loss"):
        assert (folder / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert (folder / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        ET.parse(folder / f"{stem}.svg")  # parses as XML
    links = re.findall(r'<a href="(figures/[^"]+)">', page)
    assert sorted(Path(link).name for link in links) == names
    # the page still shows every figure without the files
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == 2
    assert "agree on" in page and "of the plotted plane" in page
    assert not list(folder.glob(".*"))  # no temporary file left


def test_report_with_another_name_links_its_own_folder(run_dir: Path, tmp_path: Path) -> None:
    page = write_report(run_dir, tmp_path / "pages" / "quick.html").read_text()
    links = re.findall(r'<a href="([^"]+)">', page)
    assert links and all(link.startswith("quick-figures/") for link in links)
    assert all((tmp_path / "pages" / link).is_file() for link in links)


def test_a_new_report_removes_the_figure_files_it_no_longer_draws(
    run_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    write_report(copy)
    folder = copy / "figures"
    assert (folder / "decision-map.png").is_file()
    (copy / "tensors.safetensors").unlink()  # the decision map can no longer be drawn
    (folder / "notes.txt").write_text("a user's file")
    write_report(copy)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["notes.txt", "training-loss.pdf", "training-loss.png", "training-loss.svg"]


def test_run_report_says_when_the_recorded_config_does_not_validate(
    run_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert "does not validate" not in write_report(copy).read_text()
    saved = json.loads((copy / "config.json").read_text())
    saved["config"]["model"]["width"] = -3
    (copy / "config.json").write_text(json.dumps(saved))
    page = write_report(copy).read_text()
    assert "config.json does not validate with this version of pertlearn" in page
    assert "width" in page.split("does not validate", 1)[1].split("</p>", 1)[0]
    assert "g_acc_test" in page  # the rest of the page is still there
