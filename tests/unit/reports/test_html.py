"""Reports: figures of a sweep, a self-contained report.html, rendered by headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pertlearn.experiments.execution import run_sweep
from pertlearn.experiments.store import collect_results
from pertlearn.experiments.sweeps import parse_sweep
from pertlearn.reports import sweep_figures, write_report
from sweep_support import tiny_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny sweep: 2 dims (zipped with ε) × 2 widths × 2 seeds, one failed config."""
    out = tmp_path_factory.mktemp("report") / "sweep"
    spec = tiny_spec(seeds=[0, 1], report={"x": ["data.dim", "model.width"]})
    run_sweep(parse_sweep(spec), out)
    return out


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(d)
        for d in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    ]


def test_sweep_figures_one_per_x_axis(sweep_dir: Path) -> None:
    rows, _ = collect_results(sweep_dir)
    figures, notes = sweep_figures(rows, [["data.dim", "attack.eps"], ["model.width"]])
    assert [f.title for f in figures] == ["metrics vs data.dim", "metrics vs model.width"]
    assert not notes
    for figure in figures:
        assert figure.png.startswith(PNG_MAGIC)
        assert "mean over seeds 0, 1" in figure.caption
    too_many = sweep_figures(rows, [["data.dim"], ["model.width"]], ["data.dim"])
    assert len(too_many[0]) == 1


def test_report_is_self_contained(sweep_dir: Path) -> None:
    path = write_report(sweep_dir)
    assert path == sweep_dir / "report.html"
    page = path.read_text()
    images = _images(page)
    assert len(images) == 2 and all(i.startswith(PNG_MAGIC) for i in images)
    # Nothing to fetch: no scripts, stylesheets or remote URLs.
    assert "<script" not in page and "<link" not in page
    assert not re.search(r'src="(?!data:)', page)
    # The only other links: the figure files written beside the page, relative and present.
    links = re.findall(r'href="(?!data:)([^"]+)"', page)
    assert links and all(link.startswith("figures/") for link in links)
    assert all((sweep_dir / link).is_file() for link in links)
    for text in ("data.dim", "model.width", "g_acc_train", "agreement", "Versions", "torch"):
        assert text in page
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert manifest["fingerprint"] in page


def test_report_of_a_single_run(sweep_dir: Path, tmp_path: Path) -> None:
    run = next(p for p in (sweep_dir / "runs").iterdir() if not p.name.startswith("."))
    out = write_report(run, tmp_path / "run.html")
    page = out.read_text()
    assert "g_acc_test" in page and len(_images(page)) == 1  # the loss curves


def test_report_cli_bad_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pertlearn", "report", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "neither a sweep directory" in result.stderr


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var result = Array.prototype.map.call(document.images, function (img) {
    return {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script></body>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "chromium is not installed (scripts/test.sh installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must render the report, never skip silently
        pytest.skip(message)
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_chromium_renders_every_figure(sweep_dir: Path, tmp_path: Path) -> None:
    report = write_report(sweep_dir)
    page = report.read_text()
    expected = len(_images(page))
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK_SCRIPT, 1))
    result = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no result from chromium: {result.stderr[-1500:]}"
    images = json.loads(found.group(1))
    assert len(images) == expected == 2
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0

    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1280,2200", f"--screenshot={shot}", report.as_uri())
    assert shot.read_bytes().startswith(PNG_MAGIC)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    assert pixels.std() > 0.05  # not a blank page
    artifacts = os.environ.get("PERTLEARN_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "report-screenshot.png")


def test_default_axes_fall_back_for_symmetric_class_means() -> None:
    import torch

    from pertlearn.analysis.decision_maps import default_axes

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(100, 30, generator=generator, dtype=torch.float64) + 2.0
    symmetric = torch.cat([x, -x])  # class means ±μ are exactly antiparallel
    labels = torch.cat([torch.ones(100), -torch.ones(100)]).double()
    e1, e2 = default_axes(symmetric, labels)
    axes = torch.stack([e1, e2])
    assert torch.allclose(axes @ axes.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
    for mean in (x.mean(0), -x.mean(0)):  # both means lie in the plane
        assert torch.allclose(axes.T @ (axes @ mean), mean, atol=1e-10)


def test_single_run_report_with_decision_map_and_samples(tmp_path: Path) -> None:
    from pertlearn.experiments.pipelines import run
    from pertlearn.experiments.presets import load_config

    config = load_config(
        preset="quickstart",
        overrides=[
            "data.dim=784",
            "data.n_train=40",
            "data.n_test=50",
            "model.width=8",
            "train_f.epochs=20",
            "train_g.epochs=20",
            "controls=[]",
        ],
    )
    run_dir = run(config).save(tmp_path / "run")
    page = write_report(run_dir).read_text()
    assert "<h2>Decision map</h2>" in page and "<h2>Samples</h2>" in page
    assert "not drawn" not in page
    assert len(_images(page)) == 3  # loss curves, decision map, samples


@pytest.mark.parametrize("save_tensors", [False, True])
def test_single_run_report_says_why_it_has_no_tensor_figures(
    tmp_path: Path, save_tensors: bool
) -> None:
    from pertlearn.experiments.pipelines import run
    from pertlearn.experiments.presets import load_config

    config = load_config(
        preset="quickstart",
        overrides=[
            "data.dim=20",
            "data.n_train=20",
            "data.n_test=20",
            "model.width=8",
            "train_f.epochs=5",
            "train_g.epochs=5",
            "controls=[]",
            f"save_tensors={str(save_tensors).lower()}",
        ],
    )
    run_dir = run(config).save(tmp_path / "run")
    if save_tensors:
        (run_dir / "tensors.safetensors").unlink()  # removed by hand
    page = write_report(run_dir).read_text()
    assert "<h2>Decision map</h2>" not in page
    reason = "tensors.safetensors is missing" if save_tensors else "save_tensors = false"
    assert re.search(rf'<p class="note">The decision map not drawn: [^<]*{reason}', page)
