import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pertlearn.cli.main import cli

FAST = ["--set", "train_f.epochs=20", "--set", "train_g.epochs=20", "--set", "data.n_train=100"]


def invoke(args):
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "model.width=-3"], "model.width"),
        (["--set", "model.colour=3"], "model.colour: unknown key"),
        (["--preset", "quickstrat"], "unknown preset 'quickstrat'"),
        (["--set", "attack.eps=-1"], "attack.eps"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_bad_input_one_line_exit_2_no_run_dir(tmp_path, args, fragment):
    out = tmp_path / "run"
    result = invoke(["run", *args, "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_toml_syntax_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nwidth = 3\n")
    result = invoke(["run", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert (
        result.output.strip().startswith("error: config file") and "not valid TOML" in result.output
    )
    assert not (tmp_path / "run").exists()


def test_run_writes_complete_run_dir(tmp_path):
    out = tmp_path / "run"
    result = invoke(["run", "-q", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "g_acc_test" in result.output and "agreement" in result.output
    names = {p.name for p in out.iterdir()}
    assert names == {
        "config.json",
        "metrics.json",
        "curves.json",
        "f.safetensors",
        "g.safetensors",
        "random_l2_noise.safetensors",
        "tensors.safetensors",
    }
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["train_f"]["epochs"] == 20
    assert config["resolved"]["eps"] == pytest.approx(0.01)
    assert {"pertlearn", "torch", "python"} <= set(config["versions"])
    curves = json.loads((out / "curves.json").read_text())
    assert len(curves["f"]["loss"]) == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left
    # An existing run directory is never overwritten silently.
    again = invoke(["run", "-q", *FAST, "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_presets_lists_one_line_each():
    result = invoke(["presets"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {
        "quickstart",
        "neurips-shifted-gauss-a",
        "neurips-shifted-gauss-b",
        "neurips-gauss-a",
        "neurips-gauss-b",
    } <= set(names)
    shown = invoke(["presets", "--show", "neurips-gauss-b", "--scale", "paper"])
    assert json.loads(shown.output)["data"]["dim"] == 10000


@pytest.mark.parametrize(
    "args, fragments",
    [
        # report reads a sweep directory as well as a run directory
        (["report", "--help"], ["report [OPTIONS] DIR", "Default: DIR/report.html"]),
        (["presets", "--help"], ["Scale of the config --show prints"]),
        # with Ray, --workers sizes the local instance; --threads says its default
        (["sweep", "--help"], ["local instance's CPUs", "cpu_count // workers"]),
    ],
)
def test_help_names_what_an_option_does(args, fragments):
    result = invoke(args)
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # click wraps the help text
    for fragment in fragments:
        assert fragment in text


def test_console_entry_point_exit_code(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pertlearn",
            "run",
            "--set",
            "model.width=-3",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: invalid config: model.width")
    assert not (tmp_path / "r").exists()


def test_a_run_directory_runs_again_to_the_same_numbers(tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    assert invoke(["run", "-q", *FAST, "--seed", "2", "--out", str(first)]).exit_code == 0
    result = invoke(["run", "-q", str(first), "--out", str(again)])
    assert result.exit_code == 0, result.output
    metrics = [json.loads((out / "metrics.json").read_text()) for out in (first, again)]
    for saved in metrics:
        saved.pop("seconds"), saved.pop("stage_seconds", None)
    assert metrics[0] == metrics[1]
    configs = [json.loads((out / "config.json").read_text())["config"] for out in (first, again)]
    assert configs[0] == configs[1] and configs[0]["seed"] == 2


def test_a_damaged_run_is_made_again_from_its_config(tmp_path):
    run_dir, again = tmp_path / "run", tmp_path / "again"
    assert invoke(["run", "-q", *FAST, "--out", str(run_dir)]).exit_code == 0
    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])  # truncated
    for command in (["report", str(run_dir)], ["theory", "--no-maps", str(run_dir)]):
        result = invoke(command)
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "metrics.json: not valid JSON" in lines[0]
        assert lines[0].endswith(
            f"make the run again from its config: pertlearn run {run_dir} --out NEW_DIR"
        )
    assert invoke(["run", "-q", str(run_dir), "--out", str(again)]).exit_code == 0
    assert json.loads((again / "metrics.json").read_text())["g_acc_test"] >= 0


def test_a_damaged_run_config_gets_no_rerun_hint(tmp_path):
    run_dir = tmp_path / "run"
    assert invoke(["run", "-q", *FAST, "--out", str(run_dir)]).exit_code == 0
    (run_dir / "config.json").write_text("{")
    result = invoke(["report", str(run_dir)])
    assert result.exit_code == 2 and "config.json" in result.output
    assert "make the run again" not in result.output
