"""Sweep specs: expansion, hashing, presets and bad input (nothing runs on an error)."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from pertlearn.errors import cli_message
from pertlearn.experiments.config import ConfigError
from pertlearn.experiments.execution import run_sweep
from pertlearn.experiments.presets import PRESETS, load_config
from pertlearn.experiments.store import SweepDirError
from pertlearn.experiments.sweeps import config_hash, load_sweep, parse_sweep, sweep_presets
from pertlearn.seeding import resolved_device_name
from sweep_support import tiny_spec, write_run_record, write_spec_toml

NEURIPS_KINDS = ("dim", "dim-logistic", "width", "slope", "n", "eps", "epochs-f", "epochs-g", "lr")
ICLR_KINDS = ("d", "n", "n-noise", "eps")


def test_grid_times_zip_times_seeds() -> None:
    sweep = parse_sweep(tiny_spec(seeds=[0, 1], grid={"model.width": [4, 8, 16]}))
    points = sweep.points()
    assert len(points) == 2 * 3 * 2
    assert sweep.swept_keys == ["data.dim", "attack.eps", "model.width"]
    pairs = {(p.config.data.dim, p.config.eps) for p in points}
    assert pairs == {(5, 0.01), (10, 0.02)}  # zipped, never crossed
    assert {p.config.model.width for p in points} == {4, 8, 16}
    assert sorted({p.seed for p in points}) == [0, 1]
    for p in points:  # the axis values land in the config, the rest from the base
        assert p.config.data.dim == p.values["data.dim"]
        assert p.config.seed == p.seed
        assert p.config.data.n_train == 40
        assert p.config.attack.eps_per_sqrt_dim is None  # attack.eps replaced the preset's c


def test_nested_axis_tables_and_seed_count() -> None:
    spec = tiny_spec(grid={"model": {"width": [4, 8]}, "train_g": {"lr": [1.0, 0.1]}}, seeds=3)
    sweep = parse_sweep(spec)
    assert sweep.swept_keys == ["data.dim", "attack.eps", "model.width", "train_g.lr"]
    assert len(sweep.points()) == 2 * 2 * 2 * 3


def test_several_zip_groups() -> None:
    spec = tiny_spec(
        zip=[
            {"data.dim": [5, 10], "attack.eps": [0.01, 0.02]},
            {"train_f.lr": [1.0, 0.1], "train_g.lr": [0.5, 0.05]},
        ],
        grid={},
    )
    points = parse_sweep(spec).points()
    assert len(points) == 4
    assert {(p.config.train_f.lr, p.config.train_g.lr) for p in points} == {(1.0, 0.5), (0.1, 0.05)}


def test_config_hash_is_sha256_of_canonical_config_without_cosmetics() -> None:
    config = load_config(preset="quickstart", overrides=["model.width=7"])
    payload = config.model_dump(mode="json")
    del payload["name"], payload["description"]
    payload["device"] = resolved_device_name("auto")  # "auto" hashes as what it runs on
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert config_hash(config) == hashlib.sha256(text.encode()).hexdigest()[:16]
    renamed = config.model_copy(update={"name": "other", "description": "x"})
    assert config_hash(renamed) == config_hash(config)
    assert config_hash(load_config(preset="quickstart", overrides=["model.width=8"])) != (
        config_hash(config)
    )


def test_config_hash_is_stable_across_processes() -> None:
    code = (
        "from pertlearn.experiments.presets import load_config;"
        "from pertlearn.experiments.sweeps import config_hash;"
        "print(config_hash(load_config(preset='quickstart')))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == config_hash(load_config(preset="quickstart"))


def test_fingerprint_ignores_name_and_changes_with_axes() -> None:
    a = parse_sweep(tiny_spec())
    assert parse_sweep(tiny_spec(name="renamed")).fingerprint == a.fingerprint
    assert parse_sweep(tiny_spec(grid={"model.width": [4, 9]})).fingerprint != a.fingerprint
    assert parse_sweep(tiny_spec(), overrides=["data.n_test=60"]).fingerprint != a.fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {"data.dimm": [5, 6]}}, "'data.dimm' names no key of the neurips pipeline"),
        ({"grid": {"model.width.x": [1]}}, "model.width is a value, not a table"),
        ({"grid": {"bogus": [1]}}, "'bogus' is not a key of the top level"),
        ({"grid": {"model.width": []}}, "axis 'model.width' is empty"),
        ({"grid": {"model.width": 4}}, "must be a list of values"),
        ({"zip": {"data.dim": [5, 10, 20], "attack.eps": [0.1, 0.2]}}, "equal lengths"),
        ({"zip": {}}, "zip is empty"),
        ({"grid": {"data.dim": [5]}}, "data.dim appear in more than one axis"),
        ({"grid": {"seed": [0, 1]}}, "seeds = [...]"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [0, 0]}, "repeat a seed"),
        ({"axes": {}}, "unknown sweep key(s) 'axes'"),
        ({"grid": {"model.width": [4, 0]}}, "model.width=0, seed=0: invalid config: model.width"),
        ({"grid": {"model.width": [4, 4]}}, "resolve to the same config"),
        ({"report": {"x": ["model.slope"]}}, "report.x 'model.slope' is not a swept key"),
        ({"preset": "no-such-preset"}, "unknown preset 'no-such-preset'"),
    ],
)
def test_bad_specs_raise_one_clear_error(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sweep(tiny_spec(**change)).points()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_spec_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="zip"):
        run_sweep(load_sweep(tiny_spec(zip={"data.dim": [5, 6], "attack.eps": [0.1]})), out)
    bad = parse_sweep(tiny_spec(grid={"model.widht": [4]}))
    with pytest.raises(ConfigError, match=r"model\.widht"):
        run_sweep(bad, out)
    assert not out.exists()


def test_directory_of_another_sweep_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"name": "other", "fingerprint": "0" * 16}))
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(SweepDirError, match="holds the runs of another sweep"):
        run_sweep(parse_sweep(tiny_spec()), out)
    assert sorted(p.name for p in out.iterdir()) == before


def test_directory_of_the_same_spec_resolving_to_other_configs_is_refused(
    tmp_path: Path,
) -> None:
    # An edited preset (or base file, pertlearn version, device) leaves the spec and so the
    # fingerprint as they were but changes every run id: the resume must not run the new
    # configurations beside the old runs, which the results table would then show twice.
    out = tmp_path / "out"
    spec = tiny_spec(zip={"data.dim": [5]}, grid={"model.width": [4]})
    assert run_sweep(parse_sweep(spec), out).succeeded == 1
    before = sorted(p.name for p in (out / "runs").iterdir())
    edited = parse_sweep(spec)
    edited.base["train_f"]["lr"] = 0.123  # what an edited preset gives
    assert edited.fingerprint == parse_sweep(spec).fingerprint
    with pytest.raises(SweepDirError, match="no longer resolves to") as caught:
        run_sweep(edited, out)
    assert f"runs/{before[0]}" in str(caught.value)
    assert cli_message(caught.value).endswith("choose another --out")
    assert sorted(p.name for p in (out / "runs").iterdir()) == before
    assert run_sweep(parse_sweep(spec), out).skipped_done == 1  # the unchanged spec resumes


def test_non_sweep_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepDirError, match=r"holds no sweep\.json"):
        run_sweep(parse_sweep(tiny_spec()), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pertlearn", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_bad_spec_exits_2_with_one_line(tmp_path: Path) -> None:
    spec = write_spec_toml(
        tmp_path / "bad.toml", tiny_spec(zip={"data.dim": [5, 6, 7], "attack.eps": [0.1, 0.2]})
    )
    result = _cli("sweep", str(spec), "--out", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: sweep zip axes must have equal lengths")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    result = _cli("sweep", "neurips-shifted-gaus-a-dim", cwd=tmp_path)
    assert result.returncode == 2 and "did you mean 'neurips-shifted-gauss-a-dim'" in result.stderr


def test_cli_dry_run_lists_configurations(tmp_path: Path) -> None:
    spec = write_spec_toml(tmp_path / "tiny.toml", tiny_spec())
    result = _cli("sweep", str(spec), "--dry-run", "--set", "data.n_test=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 configurations, all valid" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_neurips_dim_preset_matches_the_reference_settings() -> None:
    sweep = load_sweep("neurips-shifted-gauss-a-dim", scale="cpu")
    points = sweep.points()
    assert len(points) == 40  # 10 dimensions x 2 x 2 learning rates, seed 0
    assert sorted({p.config.data.dim for p in points}) == list(range(10, 101, 10))
    for p in points:
        assert p.config.eps == pytest.approx(0.001 * math.sqrt(p.config.data.dim), rel=1e-5)
        assert p.seed == 0 and p.config.scenario == "perturbation_only"
        assert p.config.data.name == "shifted_gauss"
    lrs = {(p.config.train_f.lr, p.config.train_g.lr) for p in points}
    assert lrs == {(1.0, 1.0), (1.0, 0.1), (0.1, 1.0), (0.1, 0.1)}
    assert sweep.report_x == ["data.dim"]


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_sweep_preset_expands(scale: str) -> None:
    presets = sweep_presets()
    assert len([n for n in presets if n.startswith("neurips-")]) == 4 * len(NEURIPS_KINDS)
    assert len([n for n in presets if n.startswith("iclr-")]) == 6 * len(ICLR_KINDS)
    for name in presets:
        spec = presets[name].build(scale)
        if spec["preset"] not in PRESETS:  # ICLR24 base presets come with that pipeline
            with pytest.raises(ConfigError, match=spec["preset"]):
                load_sweep(name, scale=scale)
            continue
        points = load_sweep(name, scale=scale).points()
        assert len(points) >= 3, name
        assert all(not p.config.save_tensors for p in points)


def test_a_sweep_may_take_its_base_config_from_a_json_file_or_a_run_directory(
    tmp_path: Path,
) -> None:
    config = load_config(overrides=["model.width=7", "train_f.epochs=3"])
    write_run_record(tmp_path / "run", config.model_dump(mode="json"))
    (tmp_path / "base.json").write_text(json.dumps({"preset": "quickstart", "model": {"width": 7}}))
    for base in ("run", "base.json"):
        spec = tmp_path / f"from-{base}.toml"
        spec.write_text(f'config = "{base}"\nseeds = [0, 1]\n')
        points = load_sweep(spec).points()
        assert [point.config.seed for point in points] == [0, 1]
        assert {point.config.model.width for point in points} == {7}


@pytest.mark.parametrize(
    ("override", "setter"), [("model.width=3", "its axis sets"), ("seed=3", "its seeds set")]
)
def test_an_override_of_a_key_the_sweep_varies_is_refused(override: str, setter: str) -> None:
    """The axis (or the seeds) would set the key in every configuration: the override would be
    silently lost."""
    with pytest.raises(ConfigError) as caught:
        load_sweep(tiny_spec(), overrides=[override])
    assert str(caught.value) == (
        f"override {override!r} names a key the sweep varies, which {setter} in every "
        "configuration; change the sweep's values instead"
    )
    (point, *_) = load_sweep(tiny_spec(), overrides=["train_f.lr=0.5"]).points()
    assert point.config.train_f.lr == 0.5
