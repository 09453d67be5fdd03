"""Bad input, one table: each row is one mistake a user can make, the fragment of the one-line
message that must name it, exit status 2, and nothing written (no run directory, no runs/)."""

from __future__ import annotations

import gzip
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from pertlearn.cli.main import cli

FAST = ["--set", "train_f.epochs=3", "--set", "train_g.epochs=3", "--set", "data.n_train=20"]
MNIST_A = ["--preset", "neurips-mnist-a"]
IMAGES = ["--preset", "iclr-mnist-natural-rand-l2"]
IMAGES_FAST = ["run", *IMAGES, "--set", "train_f.epochs=1", "--set", "train_g.epochs=1"]
ARTIFICIAL = ["--preset", "iclr-artificial-l2-uniform"]


def run_set(*pairs: str) -> list[str]:
    args = ["run", "--preset", "quickstart", *FAST]
    for pair in pairs:
        args += ["--set", pair]
    return args


# (id, command line, message fragment)
CONFIG_ROWS: list[tuple[str, list[str], str]] = [
    ("width-bool", run_set("model.width=true"), "model.width"),
    ("width-zero", run_set("model.width=0"), "model.width"),
    ("width-negative", run_set("model.width=-5"), "model.width"),
    ("width-float", run_set("model.width=2.5"), "model.width"),
    ("width-huge", run_set("model.width=1000000000"), "model.width"),
    (
        "allocation-too-large",
        run_set("model.width=1000000", "data.dim=100000", "data.n_test=10"),
        "not enough memory",
    ),
    ("epochs-1e21", run_set("train_f.epochs=1e21"), "train_f.epochs"),
    ("epochs-zero", run_set("train_g.epochs=0"), "train_g.epochs"),
    ("shift-nan", run_set("data.shift=nan"), "data.shift"),
    ("shift-overflows-float32", run_set("data.shift=1e300"), "data.shift"),
    ("eps-inf", run_set("attack.eps=inf"), "attack.eps"),
    ("eps-negative", run_set("attack.eps=-1"), "attack.eps"),
    ("lr-zero", run_set("train_f.lr=0"), "train_f.lr"),
    ("lr-nan", run_set("train_f.lr=nan"), "train_f.lr"),
    ("momentum-1.5", run_set("train_f.momentum=1.5"), "train_f.momentum"),
    ("lr-inf", run_set("train_f.lr=inf"), "train_f.lr: Input should be a finite number"),
    ("lr-string", run_set('train_g.lr="0.5"'), "train_g.lr"),
    ("epochs-bool", run_set("train_f.epochs=true"), "train_f.epochs"),
    ("stop-tol-inf", run_set("train_g.stop_tol=inf"), "train_g.stop_tol"),
    ("dim-zero", run_set("data.dim=0"), "data.dim"),
    ("n-train-one", run_set("data.n_train=1"), "data.n_train"),
    ("n-test-huge", run_set("data.n_test=1000000000000"), "data.n_test"),
    ("seed-negative", run_set("seed=-1"), "seed"),
    ("device-cuda-abc", run_set("device='cuda:abc'"), "device"),
    ("device-mps", run_set("device='mps'"), "device"),
    ("dtype-float16", run_set("dtype='float16'"), "dtype"),
    ("targets-unknown", run_set("targets='sideways'"), "targets"),
    ("scenario-unknown", run_set("scenario='c'"), "scenario"),
    ("control-unknown", run_set("controls=['nope']"), "controls"),
    ("control-of-other-pipeline", run_set("controls=['unperturbed_inputs']"), "controls"),
    ("attack-unknown", run_set("attack.name='nope'"), "unknown attack"),
    (
        "attack-option-unknown",
        run_set("attack.options.stpes=3"),
        "attack.options.stpes is not an option",
    ),
    ("attack-option-value", run_set("attack.options.loss='nope'"), "unknown loss 'nope'"),
    ("pgd-eps-zero", run_set("attack.name='pgd_l2'", "attack.eps=0"), "eps must be positive"),
    ("pgd-steps-zero", run_set("attack.name='pgd_l2'", "attack.options.steps=0"), "steps"),
    ("model-unknown", run_set("model.name='resnet'"), "model.name"),
    ("image-model-in-neurips", run_set("model.name='small_cnn'"), "model.name"),
    ("data-unknown", run_set("data.name='imagenet'"), "data.name"),
    ("classes-on-synthetic", run_set("data.classes=[1, 2]"), "data.classes is not used"),
    ("path-on-synthetic", run_set("data.path='x'"), "data.path is not used"),
    ("images-table-on-neurips", run_set("images.scenario='natural_det'"), "images: unknown key"),
    ("n-noise-on-neurips", run_set("data.n_noise=10"), "data.n_noise: unknown key"),
    ("pipeline-unknown", run_set("pipeline='nope'"), "unknown pipeline"),
    ("odd-one-hidden", run_set("model.name='one_hidden'", "model.width=3"), "even width"),
    ("file-without-path", run_set("data.name='file'"), "needs data.path"),
    ("file-missing", run_set("data.name='file'", "data.path='missing.safetensors'"), "missing"),
    ("image-file-without-path", [*IMAGES_FAST, "--set", "data.name='file'"], "needs data.path"),
    (
        "image-path-with-mnist",
        [*IMAGES_FAST, "--set", "data.path='x.safetensors'"],
        "data.path is not used by data.name = 'mnist'",
    ),
    ("threshold-low", run_set("degenerate_threshold=0.3"), "degenerate_threshold"),
    ("batch-size-zero", run_set("train_f.batch_size=0"), "train_f.batch_size"),
    ("plateau-factor-one", run_set("train_f.plateau_factor=1.0"), "train_f.plateau_factor"),
    ("slope-one", run_set("model.slope=1.0"), "model.slope"),
    ("unknown-top-key", run_set("foo=1"), "foo: unknown key"),
    ("misspelt-key", run_set("model.widht=3"), "model.widht: unknown key"),
    ("override-without-equals", run_set("model.width"), "not of the form key=value"),
    ("override-empty-part", run_set("a..b=1"), "invalid key"),
    ("override-into-value", run_set("model.width.x=1"), "is not a table"),
    ("eps-per-dim-above-one", run_set("attack.eps_per_dim=2"), "attack.eps_per_dim"),
    ("artificial-flip-targets", ["run", *ARTIFICIAL, "--set", "targets='flip'"], "targets"),
    ("artificial-scenario", ["run", *ARTIFICIAL, "--set", "scenario='on_original'"], "scenario"),
    (
        "artificial-cross-entropy",
        ["run", *ARTIFICIAL, "--set", "train_f.loss='cross_entropy'"],
        "margin loss",
    ),
    ("artificial-image-data", ["run", *ARTIFICIAL, "--set", "data.name='mnist'"], "data.name"),
    ("mnist-split", ["run", *MNIST_A, "--set", "data.split=1.5"], "data.split"),
    ("mnist-classes", ["run", *MNIST_A, "--set", "data.classes=[1, 10]"], "classes"),
    ("mnist-dim", ["run", *MNIST_A, "--set", "data.dim=100"], "dimension 784"),
    ("images-craft-batch", ["run", *IMAGES, "--set", "craft_batch_size=0"], "craft_batch_size"),
    (
        "images-f-weights-missing",
        ["run", *IMAGES, "--set", "f_weights='no/such/run'"],
        "/no/such/run' does not exist; give a run directory",
    ),
    ("images-epochs", ["run", *IMAGES, "--set", "train_f.epochs=0"], "train_f.epochs"),
    ("images-lr-inf", ["run", *IMAGES, "--set", "train_g.lr=inf"], "train_g.lr"),
    ("images-epochs-bool", ["run", *IMAGES, "--set", "train_f.epochs=true"], "train_f.epochs"),
    ("images-scenario", ["run", *IMAGES, "--set", "scenario='natural'"], "scenario"),
    ("images-targets-key", ["run", *IMAGES, "--set", "targets='random'"], "targets: unknown key"),
    ("images-binary-model", ["run", *IMAGES, "--set", "model.name='two_layer'"], "model.name"),
    ("images-synthetic-data", ["run", *IMAGES, "--set", "data.name='gauss'"], "data.name"),
    ("preset-unknown", ["run", "--preset", "quickstrat"], "unknown preset"),
    ("sweep-preset-unknown", ["sweep", "neurips-nope", "--dry-run"], "neither a sweep file"),
]

# Rows whose input is a file: (id, writer(tmp) -> command line, fragment)
FileRow = tuple[str, Callable[[Path], list[str]], str]


def _toml(text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "c.toml"
        path.write_text(text)
        return ["run", str(path), *FAST]

    return make


def _bytes(data: bytes, command: str = "run") -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "c.toml"
        path.write_bytes(data)
        return [command, str(path)] + (FAST if command == "run" else ["--dry-run"])

    return make


def _sweep(text: str, *extra: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "s.toml"
        path.write_text(text)
        return ["sweep", str(path), *(extra or ["--dry-run"])]

    return make


def test_a_config_file_with_a_byte_order_mark_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'\xef\xbb\xbfpreset = "quickstart"\n[model]\nwidth = "wide"\n')
    result = invoke_in(tmp_path, ["run", str(path), *FAST], monkeypatch)
    assert_one_line_error(result, "model.width")  # read as TOML, not "Invalid statement"


def _missing_config(tmp: Path) -> list[str]:
    return ["run", str(tmp / "nope.toml")]


def _json(text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "c.json"
        path.write_text(text)
        return ["run", str(path), *FAST]

    return make


def _directory_config(tmp: Path) -> list[str]:
    (tmp / "dir.toml").mkdir()
    return ["run", str(tmp / "dir.toml")]


def _file_data(content: bytes) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "data.safetensors"
        path.write_bytes(content)
        return run_set("data.name='file'", f"data.path={json.dumps(str(path))}")

    return make


def _image_file(**changes: Any) -> Callable[[Path], list[str]]:
    """An images run on a data file of 6 valid 1×4×4 images of 2 classes with ``changes``
    (``None`` drops a tensor)."""

    def make(tmp: Path) -> list[str]:
        tensors: dict[str, Any] = {
            "x_train": torch.rand(6, 1, 4, 4),
            "y_train": torch.arange(6) % 2,
            **changes,
        }
        path = tmp / "images.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items() if v is not None}, str(path))
        return [
            *IMAGES_FAST,
            "--set",
            "data.name='file'",
            "--set",
            f"data.path={json.dumps(str(path))}",
        ]

    return make


def _truncated_mnist(tmp: Path) -> list[str]:
    folder = tmp / "data" / "mnist"
    folder.mkdir(parents=True)
    source = Path(__file__).parents[1] / "data" / "mnist"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        raw = gzip.decompress((source / name).read_bytes())
        (folder / name).write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return ["run", *MNIST_A, "--data-dir", str(tmp / "data")]


def _cifar_batch(content: bytes) -> Callable[[Path], list[str]]:
    """An images run on a data directory whose only CIFAR-10 batch is ``content``."""

    def make(tmp: Path) -> list[str]:
        folder = tmp / "data" / "cifar10"
        folder.mkdir(parents=True)
        (folder / "test_batch").write_bytes(content)
        return ["run", "--preset", "iclr-cifar10-natural-rand-l2", "--data-dir", str(tmp / "data")]

    return make


NESTED_TUPLES = b"\x80\x02}N" + b"\x85" * 300_000 + b"Ns."
"""A dict keyed by 300,000 nested tuples: hashing the key crashed the unpickler."""


def _pickled_batch(data_shape: tuple[int, ...], labels: list[int]) -> bytes:
    return pickle.dumps({b"data": np.zeros(data_shape, np.uint8), b"labels": labels}, protocol=2)


def _empty_data_dir(tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return ["run", *MNIST_A, "--data-dir", str(tmp / "empty")]


def _out_under_a_file(tmp: Path) -> list[str]:
    (tmp / "file.txt").write_text("x")
    return ["run", "--preset", "quickstart", *FAST, "--out", str(tmp / "file.txt" / "run")]


def _theory_on_folder(tmp: Path) -> list[str]:
    (tmp / "folder").mkdir()
    return ["theory", str(tmp / "folder")]


def _damaged_run(damage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        run = tmp / "run"
        result = CliRunner().invoke(
            cli, ["run", "--preset", "quickstart", *FAST, "-q", "--out", str(run)]
        )
        assert result.exit_code == 0
        damage(run)
        return ["theory", str(run)]

    return make


def _truncate_tensors(run: Path) -> None:
    path = run / "tensors.safetensors"
    path.write_bytes(path.read_bytes()[:100])


def _drop_config_key(run: Path) -> None:
    (run / "config.json").write_text('{"versions": {"pertlearn": "0.1.0"}}')


GOOD_SWEEP = 'preset = "quickstart"\n[base]\ntrain_f.epochs = 3\n'

FILE_ROWS: list[FileRow] = [
    ("toml-missing", _missing_config, "does not exist"),
    ("toml-directory", _directory_config, "is a directory"),
    ("toml-syntax", _toml("[model\nwidth = 3"), "is not valid TOML"),
    ("json-syntax", _json('{"model": '), "is not valid JSON"),
    ("json-array", _json("[1, 2]"), "holds no JSON object"),
    ("json-unknown-key", _json('{"preset": "quickstart", "foo": 1}'), "foo: unknown key"),
    ("json-null-for-number", _json('{"preset": "quickstart", "seed": null}'), "seed"),
    ("toml-binary", _bytes(b"\x00\xff\xfe\x80 binary"), "not UTF-8"),
    ("toml-oversized", _toml("# " + "x" * 2_000_000), "larger than"),
    ("toml-nested-deep", _toml("a = " + "[" * 100_000), "c.toml"),
    ("toml-unknown-preset", _toml('preset = "nope"'), "unknown preset"),
    ("toml-unknown-key", _toml('preset = "quickstart"\nfoo = 1'), "foo: unknown key"),
    ("toml-unknown-scale", _toml('preset = "quickstart"\nscale = "huge"'), "unknown scale"),
    ("toml-wrong-type", _toml('preset = "quickstart"\n[model]\nwidth = "wide"'), "model.width"),
    ("toml-table-as-value", _toml('preset = "quickstart"\nmodel = 3'), "model"),
    ("toml-preset-number", _toml("preset = 3"), "preset must be the name of a preset"),
    ("toml-preset-table", _toml("[preset]\nname = 1"), "preset must be the name of a preset"),
    ("sweep-binary", _bytes(b"\x00\xff\xfe", command="sweep"), "not UTF-8"),
    ("data-file-garbage", _file_data(b"not a safetensors file at all"), "data.safetensors"),
    (
        "data-file-truncated",
        _file_data(b'\x10\x00\x00\x00\x00\x00\x00\x00{"x_tr'),
        "data.safetensors",
    ),
    ("mnist-truncated", _truncated_mnist, "t10k-images-idx3-ubyte.gz"),
    ("mnist-missing", _empty_data_dir, "mnist"),
    ("cifar-nested-tuples", _cifar_batch(NESTED_TUPLES), "tuples nested more than 20 deep"),
    ("cifar-label-past-64-bits", _cifar_batch(_pickled_batch((2, 3072), [0, 2**70])), "64 bits"),
    ("cifar-channels-last", _cifar_batch(_pickled_batch((2, 32, 32, 3), [0, 1])), "(2, 32, 32, 3)"),
    ("image-file-ndim", _image_file(x_train=torch.rand(6, 16)), "must be images (N, C, H, W)"),
    ("image-file-channels", _image_file(x_train=torch.rand(6, 2, 4, 4)), "has 2 channels"),
    ("image-file-range", _image_file(x_train=torch.full((6, 1, 4, 4), 255.0)), "in [0, 1]"),
    (
        "image-file-nan",
        _image_file(x_train=torch.full((6, 1, 4, 4), float("nan"))),
        "x_train holds NaN",
    ),
    ("image-file-labels-float", _image_file(y_train=torch.rand(6)), "integer class labels"),
    ("image-file-labels-negative", _image_file(y_train=torch.arange(6) % 2 - 1), "found -1"),
    ("image-file-one-class", _image_file(y_train=torch.zeros(6, dtype=torch.long)), "1 class"),
    (
        "image-file-class-gap",
        _image_file(y_train=torch.arange(6) % 2 * 2),
        "class 1 of 0..2 has no training image",
    ),
    (
        "image-file-label-huge",
        _image_file(y_train=torch.tensor([0, 1, 0, 1, 0, 10**12])),
        "y_train holds class 1000000000000 but only 6 images",
    ),
    (
        "image-file-test-label-out-of-range",
        _image_file(x_test=torch.rand(2, 1, 4, 4), y_test=torch.tensor([0, 5])),
        "y_test holds class 5",
    ),
    ("image-file-length", _image_file(y_train=torch.arange(5) % 2), "one label per image"),
    (
        "image-file-test-shape",
        _image_file(x_test=torch.rand(2, 1, 5, 5), y_test=torch.tensor([0, 1])),
        "x_test images are (1, 5, 5), x_train images (1, 4, 4)",
    ),
    ("image-file-no-labels", _image_file(y_train=None), "lacks y_train"),
    (
        "image-file-class-not-in-file",
        lambda tmp: [*_image_file()(tmp), "--set", "data.classes=[0, 5]"],
        "class 5 does not exist in data file",
    ),
    ("out-under-a-file", _out_under_a_file, "file.txt"),
    ("theory-not-a-run", _theory_on_folder, "folder"),
    ("theory-truncated-tensors", _damaged_run(_truncate_tensors), "tensors.safetensors"),
    ("theory-config-without-config", _damaged_run(_drop_config_key), "config.json"),
    ("sweep-axis-unknown", _sweep(GOOD_SWEEP + '[grid]\n"model.widht" = [1, 2]\n'), "names no key"),
    ("sweep-axis-empty", _sweep(GOOD_SWEEP + '[grid]\n"model.width" = []\n'), "model.width"),
    (
        "sweep-zip-unequal",
        _sweep(GOOD_SWEEP + '[zip]\n"model.width" = [1, 2]\n"data.dim" = [3]\n'),
        "zip",
    ),
    ("sweep-duplicates", _sweep(GOOD_SWEEP + '[grid]\n"model.width" = [5, 5]\n'), "same config"),
    ("sweep-seed-axis", _sweep(GOOD_SWEEP + "[grid]\nseed = [1, 2]\n"), "seeds"),
    ("sweep-bad-value", _sweep(GOOD_SWEEP + '[grid]\n"model.width" = [0, 2]\n'), "model.width"),
    (
        "sweep-other-pipeline-key",
        _sweep(GOOD_SWEEP + '[grid]\n"scenario" = ["natural_det"]\n'),
        "scenario",
    ),
    ("sweep-preset-list", _sweep('preset = ["quickstart"]\n'), "sweep preset must be"),
    ("sweep-config-number", _sweep("config = 3\n" + GOOD_SWEEP), "sweep config must be"),
    ("sweep-report-x-number", _sweep("report = {x = 3}\n" + GOOD_SWEEP), "report.x"),
    (
        "sweep-report-x-string",
        _sweep('report = {x = "model.width"}\n' + GOOD_SWEEP + '[grid]\n"model.width" = [1, 2]\n'),
        "report.x must be a list",
    ),
    (
        "sweep-attack-option-unknown",
        _sweep(GOOD_SWEEP + '[grid]\n"attack.options.stpes" = [1, 2]\n'),
        "attack.options.stpes is not an option of attack",
    ),
    ("sweep-workers-zero", _sweep(GOOD_SWEEP, "--workers", "0", "--out", "sweep"), "--workers"),
]


def assert_one_line_error(result: object, fragment: str) -> None:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == 2, f"exit {result.exit_code}: {stderr[-500:]}"  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    # Ours: "error: ..."; click's usage errors (an option of the wrong type): "Error: ...".
    errors = [line for line in stderr.splitlines() if line.lower().startswith("error: ")]
    assert len(errors) == 1, stderr[-500:]
    assert fragment in errors[0], errors[0]


def invoke_in(tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERTLEARN_DATA", str(Path(__file__).parents[1] / "data"))
    if args[0] == "run" and "--out" not in args:
        args = [*args, "--out", str(tmp_path / "out")]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def assert_nothing_written(tmp_path: Path, before: set[str]) -> None:
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "runs").exists()
    assert {p.name for p in tmp_path.iterdir()} == before


CHECKED_WHEN_THE_RUN_STARTS = {"allocation-too-large", "images-f-weights-missing"}
"""Rows found only once the run has started; every other row is refused by the config
validation, before ``running ...`` (and before f is trained)."""


@pytest.mark.parametrize(("row", "args", "fragment"), CONFIG_ROWS, ids=[r[0] for r in CONFIG_ROWS])
def test_bad_config_is_one_line(
    row: str, args: list[str], fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke_in(tmp_path, args, monkeypatch)
    assert_one_line_error(result, fragment)
    if row not in CHECKED_WHEN_THE_RUN_STARTS:
        assert "running " not in result.stderr  # type: ignore[attr-defined]
    assert_nothing_written(tmp_path, set())


@pytest.mark.parametrize(
    ("make", "fragment"), [r[1:] for r in FILE_ROWS], ids=[r[0] for r in FILE_ROWS]
)
def test_bad_file_is_one_line(
    make: Callable[[Path], list[str]],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = make(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    result = invoke_in(tmp_path, args, monkeypatch)
    assert_one_line_error(result, fragment)
    assert_nothing_written(tmp_path, before)


def test_the_table_has_at_least_sixty_rows() -> None:
    assert len(CONFIG_ROWS) + len(FILE_ROWS) >= 60
