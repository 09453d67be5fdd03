"""The command line's help and listings start without importing torch, matplotlib or pyarrow,
and without loading plug-ins (or scanning the installed distributions for them).

Each case runs in a fresh interpreter (the test process itself has torch loaded) and reports
which heavy modules ended up in ``sys.modules``; an installed plug-in that leaves a file behind
and fails when imported shows whether plug-ins were looked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pertlearn
from plugin_support import write_plugin

TRIPWIRE = """
import os
open(os.environ["TRIPWIRE_MARK"], "w").close()
raise RuntimeError("plug-in loaded")
"""

HEAVY = ("torch", "matplotlib", "pyarrow", "pandas", "safetensors")

PROBE = """
import json, sys
from pertlearn.cli.main import cli
args = json.loads(sys.argv[1])
if args is not None:
    try:
        cli(prog_name="pertlearn", args=args)
    except SystemExit as exit:
        code = exit.code
    else:
        code = 0
else:
    code = 0
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def probe(args: list[str] | None, tmp_path: Path) -> dict[str, object]:
    src = str(Path(pertlearn.__file__).resolve().parents[1])
    site = write_plugin(tmp_path / "site", TRIPWIRE, distribution="tripwire", module="tripwire")
    mark = tmp_path / "plugin-loaded"
    path = os.pathsep.join([src, str(site), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "TRIPWIRE_MARK": str(mark)}
    env.pop("PERTLEARN_PRESETS", None)
    env.pop("PERTLEARN_DISABLE_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    report["plugins_loaded"] = mark.exists()
    return report


@pytest.mark.parametrize(
    "args",
    [
        None,  # importing the CLI module only
        ["--help"],
        ["--version"],
        ["presets"],
        ["sweep", "--list"],
        ["run", "--help"],
        ["data", "--help"],
        ["data", "info", "mnist", "--data-dir", str(Path(__file__).parents[2] / "data")],
    ],
    ids=lambda args: "import" if args is None else " ".join(args[:3]),
)
def test_cli_starts_without_heavy_imports(args: list[str] | None, tmp_path: Path) -> None:
    report = probe(args, tmp_path)
    assert report["code"] == 0
    assert report["heavy"] == []
    assert report["plugins_loaded"] is False


def test_bad_preset_name_is_reported_without_heavy_imports(tmp_path: Path) -> None:
    report = probe(["presets", "--show", "quickstrat"], tmp_path)
    assert report["code"] == 2
    assert report["heavy"] == []
    assert report["plugins_loaded"] is False


def test_the_tripwire_plugin_is_seen_where_names_are_looked_up(tmp_path: Path) -> None:
    """The probe's plug-in is installed where the probe looks: a command that looks a name up
    loads it (and fails in one line naming it)."""
    report = probe(["presets", "--show", "quickstart"], tmp_path)
    assert report["code"] == 2
    assert report["plugins_loaded"] is True


def test_lazy_package_names_still_resolve() -> None:
    import pertlearn.experiments as experiments

    for name in pertlearn.__all__:
        assert getattr(pertlearn, name) is not None
    for name in experiments.__all__:
        assert getattr(experiments, name) is not None
    assert "load_config" in dir(pertlearn)
    assert isinstance(pertlearn.__version__, str)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        pertlearn.missing  # noqa: B018
    assert experiments.ConfigError is pertlearn.ConfigError
    # a sweep from Python: read a spec (file, dict or sweep preset), then run it
    from pertlearn.experiments.execution.driver import run_sweep
    from pertlearn.experiments.sweeps import load_sweep

    assert experiments.load_sweep is load_sweep and experiments.run_sweep is run_sweep


def test_errors_are_one_class_wherever_imported() -> None:
    from pertlearn import errors
    from pertlearn.data.errors import DataError
    from pertlearn.experiments.config import ConfigError
    from pertlearn.experiments.rundir import RunDirError, RunDirExistsError
    from pertlearn.training.trainer import TrainingDivergedError

    assert ConfigError is errors.ConfigError
    assert DataError is errors.DataError
    assert RunDirError is errors.RunDirError
    assert RunDirExistsError is errors.RunDirExistsError
    assert TrainingDivergedError is errors.TrainingDivergedError
