"""Plug-ins seen by the ``pertlearn`` command and by spawned sweep workers: a fake installed
distribution (``tests/plugin_support.py``) on ``PYTHONPATH`` declares an entry point of the
group ``pertlearn.plugins`` whose module registers an attack and an image network; each case
runs the command in a fresh interpreter, as a user would, and the plug-in logs which process
imported it and used what."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

import pertlearn
from image_data_support import tiny_images
from plugin_support import LOG_VARIABLE, write_plugin
from sweep_support import write_spec_toml

SRC = str(Path(pertlearn.__file__).resolve().parents[1])


def pertlearn_command(
    args: list[str], cwd: Path, *sites: Path, timeout: float = 120
) -> tuple[int, str, str, int]:
    """Run ``python -m pertlearn ARGS`` in ``cwd`` with the plug-in folders ``sites`` on
    ``PYTHONPATH``; return its exit status, stdout, stderr and pid."""
    path = os.pathsep.join([SRC, *map(str, sites), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, LOG_VARIABLE: str(cwd / "plugin.log")}
    env.pop("PERTLEARN_DISABLE_PLUGINS", None)
    with subprocess.Popen(
        [sys.executable, "-m", "pertlearn", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err, process.pid


def plugin_log(cwd: Path) -> list[tuple[str, int]]:
    """The ``(what, pid)`` lines the plug-in wrote (``import``, ``attack``, ``network``)."""
    path = cwd / "plugin.log"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(what, int(pid)) for what, pid in (line.split() for line in lines if line)]


def tiny_config(cwd: Path, **extra: Any) -> Path:
    """The tiny images config (3 MNIST classes of the in-repo fixture, 2 epochs) as JSON;
    ``extra`` sets top-level keys."""
    tree = tiny_images(n_train=90, **extra)
    path = cwd / "tiny.json"
    path.write_text(json.dumps(tree))
    return path


def test_the_command_runs_a_plugin_attack_and_network(tmp_path: Path) -> None:
    site = write_plugin(tmp_path / "site")
    config = tiny_config(tmp_path)
    args = ["run", str(config), "-q", "--out", str(tmp_path / "run")]
    args += ["--set", "attack.name='plug_fgsm'", "--set", "attack.eps=0.25"]
    args += ["--set", "attack.options={}", "--set", "model={name='plug_net', options={hidden=8}}"]
    code, _, err, pid = pertlearn_command(args, tmp_path, site)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["attack"]["name"] == "plug_fgsm"
    assert saved["config"]["model"] == {"name": "plug_net", "options": {"hidden": 8}}
    assert saved["versions"]["plugins"] == "myplug 0.1"
    used = plugin_log(tmp_path)
    assert ("import", pid) in used and ("attack", pid) in used and ("network", pid) in used
    tensors = load_file(str(tmp_path / "run" / "tensors.safetensors"))
    step = (tensors["x_adv"] - tensors["x_train"][: tensors["x_adv"].shape[0]]).abs()
    assert step.max().item() == pytest.approx(0.25)  # one signed step of ε (then clipped)


@pytest.mark.parametrize(
    "executor",
    [
        "local",
        pytest.param(
            "ray",
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(
                    importlib.util.find_spec("ray") is None, reason="needs the ray extra"
                ),
            ],
        ),
    ],
)
def test_sweep_workers_load_the_plugin(tmp_path: Path, executor: str) -> None:
    """``--workers 2``: the workers (spawned local processes, or Ray's worker processes) are
    interpreters that never ran the driver's code; they import the plug-in themselves, on
    their first look-up."""
    site = write_plugin(tmp_path / "site")
    tiny_config(
        tmp_path,
        attack={"name": "plug_fgsm", "eps": 0.2},
        model={"name": "plug_net", "options": {"hidden": 8}},
    )
    spec = {"name": "plug", "config": "tiny.json", "seeds": [0], "grid": {"attack.eps": [0.2, 0.3]}}
    spec_file = write_spec_toml(tmp_path / "sweep.toml", spec)
    out = tmp_path / "sweep"
    args = ["sweep", str(spec_file), "--out", str(out), "--workers", "2", "--no-batch", "-q"]
    args += ["--executor", executor]
    code, stdout, err, driver = pertlearn_command(args, tmp_path, site, timeout=240)
    assert code == 0, err
    assert "2 ran now" in stdout
    runs = [p for p in (out / "runs").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 2
    log = plugin_log(tmp_path)
    importers = {pid for what, pid in log if what == "import"}
    users = {pid for what, pid in log if what in ("attack", "network")}
    assert driver in importers  # it validated the configurations
    assert users and driver not in users and users <= importers  # the workers ran them
    assert {what for what, pid in log if pid in users} == {"import", "attack", "network"}


BROKEN = {
    "import": ("import no_such_module_for_pertlearn\n", "ModuleNotFoundError: No module named"),
    "name clash": (
        "from pertlearn.attacks import PgdL2, register_attack\n\n\n"
        "@register_attack\nclass Mine(PgdL2):\n    pass\n",
        "ValueError: attack name 'pgd_l2' is taken by pertlearn.attacks.pgd_l2.PgdL2",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_plugin_stops_the_command_in_one_line(tmp_path: Path, kind: str) -> None:
    source, reason = BROKEN[kind]
    broken = write_plugin(
        tmp_path / "broken", source, distribution="brokenplug", entry="broken", module="broken"
    )
    out = tmp_path / "run"
    code, _, err, _ = pertlearn_command(
        ["run", "--preset", "quickstart", "-q", "--out", str(out)], tmp_path, broken
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: plug-in 'broken' (entry point broken = broken of ")
    assert "brokenplug 0.1" in lines[0] and reason in lines[0]
    assert "PERTLEARN_DISABLE_PLUGINS=1" in lines[0]
    assert not out.exists()


def test_plugins_lists_what_each_plugin_registered(tmp_path: Path) -> None:
    """A healthy plug-in is listed with its distribution and names; a broken one beside it is
    listed with its error, and the command then fails in one line (exit status 2)."""
    site = write_plugin(tmp_path / "site")
    code, out, err, _ = pertlearn_command(["plugins"], tmp_path, site)
    assert code == 0, err
    assert out.splitlines() == [
        "myplug = myplug_mod  (myplug 0.1)",
        "  attacks: plug_fgsm",
        "  networks: plug_net",
    ]
    broken = write_plugin(
        tmp_path / "broken",
        "raise RuntimeError('boom')\n",
        distribution="brokenplug",
        entry="broken",
        module="broken",
    )
    code, out, err, _ = pertlearn_command(["plugins"], tmp_path, site, broken)
    assert code == 2
    assert out.splitlines() == [
        "broken = broken  (brokenplug 0.1)",
        "  failed: RuntimeError: boom",
        "myplug = myplug_mod  (myplug 0.1)",
        "  attacks: plug_fgsm",
        "  networks: plug_net",
    ]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: plug-in 'broken'"), err
