"""The user's own binary data from a .safetensors file (data.name = "file"), and the readers
of image data files."""

import hashlib

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from pertlearn import load_config, run
from pertlearn.cli.main import cli
from pertlearn.data import shifted_gauss
from pertlearn.data.files import (
    file_split,
    image_file_shape,
    load_image_file,
    load_tensor_file,
    tensor_file_dim,
)
from pertlearn.experiments import ConfigError


def write(path, **tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


FAST = ["train_f.epochs=50", "train_g.epochs=50", "controls=[]"]


def test_own_data_runs_through_the_pipeline(tmp_path, gen):
    x, y = shifted_gauss(300, 20, gen, shift=1.0)
    xt, yt = shifted_gauss(100, 20, gen, shift=1.0)
    path = write(tmp_path / "d.safetensors", x_train=x, y_train=y, x_test=xt, y_test=yt)
    config = load_config(overrides=["data.name=file", f"data.path='{path}'", *FAST])
    assert config.data.dim == 20  # read from the file
    result = run(config)
    assert torch.equal(result.tensors["x_train"], x)
    assert torch.equal(result.tensors["x_test"], xt)
    assert result.metrics["f_acc_test"] > 0.9 and result.metrics["g_acc_test"] > 0.8


def test_without_a_test_part_a_seeded_share_is_held_out(tmp_path, gen):
    x, y = shifted_gauss(200, 5, gen)
    path = write(tmp_path / "d.safetensors", x_train=x, y_train=y)
    a = file_split(path, 0.25, torch.Generator().manual_seed(3))
    b = file_split(path, 0.25, torch.Generator().manual_seed(3))
    assert a[0].shape == (150, 5) and a[2].shape == (50, 5)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    together = torch.cat([a[0], a[2]])
    assert torch.equal(together.sort(0).values, x.sort(0).values)  # a partition of the samples


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({"x_train": torch.zeros(4, 3)}, "lacks y_train"),
        ({"x_train": torch.zeros(4, 3), "y_train": torch.tensor([0.0, 1, 1, 0])}, r"\{-1, \+1\}"),
        ({"x_train": torch.zeros(4, 3), "y_train": torch.ones(3)}, "must be"),
        ({"x_train": torch.full((2, 3), float("nan")), "y_train": torch.ones(2)}, "NaN"),
        (
            {"x_train": torch.zeros(2, 3), "y_train": torch.ones(2), "x_test": torch.zeros(1, 3)},
            "both x_test and y_test",
        ),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, tensors, message):
    path = write(tmp_path / "bad.safetensors", **tensors)
    with pytest.raises(ValueError, match=message):
        load_tensor_file(path)


def test_corrupt_or_missing_file_and_dim_from_file(tmp_path, gen):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ConfigError, match=r"not a readable \.safetensors file"):
        load_config(overrides=["data.name=file", f"data.path='{broken}'"])
    with pytest.raises(ConfigError, match="not a readable"):
        load_config(overrides=["data.name=file", f"data.path='{tmp_path / 'missing'}'"])
    with pytest.raises(ConfigError, match=r"needs data\.path"):
        load_config(overrides=["data.name=file"])
    x, y = shifted_gauss(10, 7, gen)
    path = write(tmp_path / "d.safetensors", x_train=x, y_train=y)
    config = load_config(overrides=["data.name=file", f"data.path='{path}'", "data.dim=8"])
    assert config.data.dim == 7  # the file decides the dimension


def _valid_file(path, gen):
    x, y = shifted_gauss(40, 6, gen)
    xt, yt = shifted_gauss(10, 6, gen)
    return write(path, x_train=x, y_train=y, x_test=xt, y_test=yt)


@pytest.mark.parametrize("keep", [0, 5, 8, 9, 40, -1, -200])
def test_truncated_file_is_one_line_naming_it(tmp_path, gen, keep):
    """A safetensors file cut short anywhere (inside the length, the header or the data)."""
    path = _valid_file(tmp_path / "cut.safetensors", gen)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep])
    for read in (
        load_tensor_file,
        tensor_file_dim,
        lambda p: file_split(p, 0.2, torch.Generator().manual_seed(0)),
    ):
        with pytest.raises(ValueError, match=r"data file '.*cut\.safetensors'") as err:
            read(path)
        assert "\n" not in str(err.value)


def test_complex_values_are_refused(tmp_path):
    path = write(
        tmp_path / "c.safetensors",
        x_train=torch.zeros(2, 3, dtype=torch.complex64),
        y_train=torch.ones(2),
    )
    with pytest.raises(ValueError, match=r"c\.safetensors': x_train holds complex numbers"):
        load_tensor_file(path)


def test_cli_run_on_a_truncated_file_is_one_error_line(tmp_path, gen):
    from click.testing import CliRunner

    from pertlearn.cli.main import cli

    path = _valid_file(tmp_path / "cut.safetensors", gen)
    path.write_bytes(path.read_bytes()[:-50])
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        ["run", "-q", "--set", "data.name=file", "--set", f"data.path='{path}'", "--out", str(out)],
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "cut.safetensors" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize(
    "part, fix", [("train", "add some"), ("test", "leave both out to hold out a share")]
)
def test_empty_part_is_one_clear_error(tmp_path, part, fix):
    """An empty part failed deep inside the run (a reshape or max() of no samples)."""
    sizes = {"train": 4, "test": 3, part: 0}
    tensors = {f"x_{p}": torch.zeros(n, 3) for p, n in sizes.items()}
    tensors |= {f"y_{p}": torch.ones(n) for p, n in sizes.items()}
    path = write(tmp_path / "empty_part.safetensors", **tensors)
    with pytest.raises(ValueError, match=rf"x_{part} and y_{part} hold no samples; {fix}"):
        load_tensor_file(path)


def test_values_past_float32_are_named(tmp_path):
    """1e300 is finite in the file's float64, infinite once converted to float32."""
    x = torch.full((2, 3), 1e300, dtype=torch.float64)
    path = write(tmp_path / "big.safetensors", x_train=x, y_train=torch.ones(2))
    with pytest.raises(ValueError, match="infinite values, or values too large for float32"):
        load_tensor_file(path)
    assert load_tensor_file(path, torch.float64)["x_train"].max() == 1e300


def test_a_folder_as_data_file_is_named(tmp_path):
    """safetensors reports a folder as "No such device (os error 19)"."""
    for read in (load_tensor_file, tensor_file_dim):
        with pytest.raises(ValueError, match=r"is a folder; data\.path must name a \.safetensors"):
            read(tmp_path)


def test_image_labels_may_be_whole_floats_but_not_booleans(tmp_path):
    x = torch.rand(4, 1, 2, 2)
    path = write(tmp_path / "f.safetensors", x_train=x, y_train=torch.tensor([0.0, 1.0, 2.0, 1.0]))
    train, test = load_image_file(path)
    assert train.y.tolist() == [0, 1, 2, 1] and train.info.num_classes == 3 and test is None
    path = write(tmp_path / "b.safetensors", x_train=x, y_train=torch.tensor([0, 1, 0, 1]).bool())
    with pytest.raises(
        ValueError, match=r"y_train must hold integer class labels 0\.\.K-1, got booleans"
    ):
        load_image_file(path)


def test_the_image_shape_comes_from_the_header(tmp_path):
    path = write(tmp_path / "h.safetensors", x_train=torch.rand(3, 3, 5, 7), y_train=torch.ones(3))
    assert image_file_shape(path) == (3, 5, 7)


def test_a_constant_channel_is_normalised_by_one(tmp_path):
    x = torch.zeros(4, 1, 2, 2)
    path = write(tmp_path / "c.safetensors", x_train=x, y_train=torch.tensor([0, 1, 0, 1]))
    assert load_image_file(path)[0].info.std == (1.0,)


def test_uint8_images_are_read_as_pixels_over_255(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 4, 4), generator=gen, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    xt = torch.randint(0, 256, (3, 3, 4, 4), generator=gen, dtype=torch.uint8)
    yt = torch.tensor([2, 1, 0])
    as_bytes = write(tmp_path / "u8.safetensors", x_train=x, y_train=y, x_test=xt, y_test=yt)
    as_floats = write(
        tmp_path / "f.safetensors",
        x_train=x.float() / 255,
        y_train=y,
        x_test=xt.float() / 255,
        y_test=yt,
    )
    (train, test), (want_train, want_test) = load_image_file(as_bytes), load_image_file(as_floats)
    assert test is not None and want_test is not None
    assert train.x.dtype == torch.float32 and float(train.x.max()) <= 1.0
    assert torch.equal(train.x, want_train.x) and torch.equal(test.x, want_test.x)
    assert train.info.mean == want_train.info.mean and train.info.std == want_train.info.std
    as_double = load_image_file(as_bytes, torch.float64)[0].x
    assert as_double.dtype == torch.float64 and torch.equal(as_double, x.double() / 255)


def test_float_pixels_past_one_name_the_uint8_way(tmp_path):
    x = torch.full((2, 1, 2, 2), 255.0)
    path = write(tmp_path / "big.safetensors", x_train=x, y_train=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"pixels must lie in \[0, 1\], found 255\.\.255; store "):
        load_image_file(path)


def write_named(path, names: str | None, y=(0, 1, 2, 0)):
    """Three-class images (labels ``y``) with the metadata ``class_names = names``."""
    tensors = {"x_train": torch.rand(len(y), 1, 2, 2), "y_train": torch.tensor(y)}
    save_file(tensors, str(path), metadata=None if names is None else {"class_names": names})
    return path


def test_the_file_names_its_classes_in_its_metadata(tmp_path):
    train, _ = load_image_file(write_named(tmp_path / "n.safetensors", '["cat", "dog", "bird"]'))
    assert train.info.class_names == ("cat", "dog", "bird")
    plain, _ = load_image_file(write_named(tmp_path / "p.safetensors", None))
    assert plain.info.class_names == ("0", "1", "2")


@pytest.mark.parametrize(
    "names, message",
    [
        ("cat, dog, bird", "metadata class_names is not JSON; write metadata="),
        ('{"0": "cat"}', "metadata class_names must be a JSON list of strings"),
        ('["cat", 1, "bird"]', "metadata class_names must be a JSON list of strings"),
        ('["cat", "dog"]', r"holds 2 names, the labels 3 classes \(0\.\.2\); give one name per"),
        ('["cat", "dog", "cat"]', "names two classes 'cat'; give every class its own name"),
    ],
)
def test_bad_class_names_are_one_clear_error(tmp_path, names, message):
    path = write_named(tmp_path / "bad.safetensors", names)
    with pytest.raises(ValueError, match=message) as err:
        load_image_file(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_binary_run_records_the_sha256_of_its_file(tmp_path, gen):
    x, y = shifted_gauss(60, 5, gen, shift=1.0)
    path = write(tmp_path / "d.safetensors", x_train=x, y_train=y)
    fast = ["train_f.epochs=2", "train_g.epochs=2", "controls=[]"]
    metrics = run(load_config(overrides=["data.name=file", f"data.path='{path}'", *fast])).metrics
    assert metrics["data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    synthetic = run(load_config(overrides=["data.n_train=20", "data.n_test=10", *fast])).metrics
    assert "data_sha256" not in synthetic


def test_a_binary_rerun_warns_when_the_data_file_changed_since_the_run(tmp_path, gen):
    x, y = shifted_gauss(60, 5, gen, shift=1.0)
    path = write(tmp_path / "d.safetensors", x_train=x, y_train=y)
    sets = ["data.name=file", f"data.path='{path}'", "train_f.epochs=2", "train_g.epochs=2"]
    args = [a for s in sets for a in ("--set", s)]
    runner = CliRunner()
    first = runner.invoke(cli, ["run", "-q", *args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    same = runner.invoke(cli, ["run", "-q", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert same.exit_code == 0 and "changed since run" not in same.output
    write(path, x_train=x + 1, y_train=y)  # other samples under the same name
    again = runner.invoke(cli, ["run", "-q", str(tmp_path / "a"), "--out", str(tmp_path / "c")])
    assert again.exit_code == 0, again.output
    assert f"warning: the data file {str(path)!r} changed since run" in again.output
