"""Every script in examples/ runs, at a tiny size, as a user would run it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: int = 600) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--tiny", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_every_example_has_a_test() -> None:
    tested = {
        "own_data.py",
        "own_model.py",
        "own_attack.py",
        "own_image_plugins.py",
        "own_images.py",
        "theory_on_run.py",
        "ray_sweep.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_own_data(tmp_path: Path) -> None:
    out = run_example("own_data.py", "--out", str(tmp_path / "run"))
    assert "d = 20:" in out and (tmp_path / "run" / "metrics.json").is_file()


def test_own_model() -> None:
    out = run_example("own_model.py")
    values = dict(part.rsplit(" ", 1) for part in out.strip().split(", "))
    assert float(values["g_acc_test"]) > 0.7  # g learns from the perturbations alone


def test_own_attack() -> None:
    out = run_example("own_attack.py")
    assert out.startswith("sign_step: max |r| = 0.0010")


def test_own_image_plugins() -> None:
    """The user's FGSM-L∞ and LeNet in the images pipeline on the in-repo MNIST subset: the
    crafted images stay within ε = 0.3 of the clean ones (in L∞) and the run finishes."""
    out = run_example("own_image_plugins.py", "--data-dir", str(ROOT / "tests" / "data"))
    assert out.startswith("fgsm_linf on LeNet: max |x_adv - x| = 0.300, hit rate ")


def test_own_images(tmp_path: Path) -> None:
    out = run_example("own_images.py", "--out", str(tmp_path / "run"))
    assert out.startswith("3 classes of (3, 8, 8) images: f_acc_test ")
    assert (tmp_path / "run" / "metrics.json").is_file()
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["class_names"] == ["red", "green", "blue"]  # the file's metadata


def test_theory_on_run(tmp_path: Path) -> None:
    out = run_example("theory_on_run.py", "--out", str(tmp_path / "run"))
    assert "cos(r_n, predicted direction)" in out
    assert (tmp_path / "run" / "theory.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")
def test_ray_sweep(tmp_path: Path) -> None:
    out = run_example("ray_sweep.py", "--out", str(tmp_path / "sweep"))
    assert "4 runs" in out
    assert len(list((tmp_path / "sweep" / "runs").iterdir())) == 4
