"""Image loaders: IDX and CIFAR files the tests write, the real MNIST test set, splits,
checksums and the restricted unpickler."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from image_data_support import (
    FIXTURE_MNIST_COUNTS,
    FULL_MNIST_COUNTS,
    cifar_batch,
    fixture_data_dir,
    idx_bytes,
    write_mnist,
)
from pertlearn.data import catalogue, download
from pertlearn.data.catalogue import RemoteFile, resolve_data_dir
from pertlearn.data.cifar_pickle import load_cifar_batch, restricted_load
from pertlearn.data.download import fetch, sha256_file
from pertlearn.data.errors import DataError
from pertlearn.data.idx import load_idx_pair, read_idx
from pertlearn.data.images import (
    binary_labels,
    load_dataset,
    prepare,
    select_classes,
    stratified_split,
)

# ----------------------------------------------------------------------------- IDX


def test_idx_roundtrip_raw_and_gzip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a", magic=2051), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_idx_pair_shapes_and_labels(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=12, gz=False)
    x, y = load_idx_pair(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte")
    assert x.shape == (12, 1, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [i % 10 for i in range(12)]


def test_truncated_idx_names_the_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=5, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*truncated") as err:
        read_idx(path, magic=2051)
    assert "\n" not in str(err.value)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=5, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*(corrupt|truncated)"):
        read_idx(path)


def test_trailing_bytes_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(path)


def test_wrong_magic(tmp_path: Path) -> None:
    labels = np.zeros(3, dtype=np.uint8)
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(labels))  # a valid IDX label file (2049) ...
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        read_idx(path, magic=2051)  # ... where images are expected
    path.write_bytes(b"\x12\x34\x56\x78" + bytes(10))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path, magic=2051)


def test_label_out_of_range(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=4, gz=False)
    bad = np.array([0, 1, 10, 3], dtype=np.uint8)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(bad))
    with pytest.raises(DataError, match=r"label 10 outside 0\.\.9"):
        load_idx_pair(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte")


def test_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, n=4, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"4 images but .* 3 labels"):
        load_idx_pair(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte")


def test_load_dataset_from_written_files_and_missing_partner(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", n=20, prefix="train")
    write_mnist(tmp_path / "mnist", n=10, prefix="t10k")
    data = load_dataset("mnist", tmp_path)
    assert data.x.shape == (30, 1, 28, 28) and data.parts == ("train", "test")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*missing"):
        load_dataset("mnist", tmp_path)


def test_a_folder_where_a_data_file_belongs_is_named(tmp_path: Path) -> None:
    """A folder named like a data file was reported as the file being missing."""
    write_mnist(tmp_path / "mnist", n=10, prefix="t10k")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").mkdir()
    with pytest.raises(DataError, match=r"images-idx3-ubyte' is not a file, .*data download mnist"):
        load_dataset("mnist", tmp_path)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(cifar_batch(2))
    (folder / "data_batch_2").mkdir()
    with pytest.raises(DataError, match=r"data_batch_2' is not a file, but other CIFAR-10 files"):
        load_dataset("cifar10", tmp_path, parts=["train"])


@pytest.mark.parametrize("method", ["iterdir", "is_file"])
def test_an_unreadable_data_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Permission denied on listing the folder, or on looking up a file in it (a raw
    ``PermissionError`` before; simulated, as the tests may run as root)."""
    write_mnist(tmp_path / "mnist", n=10, prefix="t10k")
    original = getattr(Path, method)

    def denied(self: Path) -> object:
        if self == tmp_path / "mnist" or self.parent == tmp_path / "mnist":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, method, denied)
    with pytest.raises(DataError, match=r"cannot read the folder .*mnist': Permission denied; fix"):
        load_dataset("mnist", tmp_path)


def test_a_wrong_layout_names_the_files_expected(tmp_path: Path) -> None:
    """MNIST one folder too deep (mnist/raw/): the message named only "a mnist/ folder", which
    the user has."""
    write_mnist(tmp_path / "mnist" / "raw", n=10, prefix="t10k")
    with pytest.raises(DataError, match=r"mnist/ folder holding .*t10k-images-idx3-ubyte\(\.gz\)"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match=r"cifar-10-batches-py/ folder holding data_batch_1, "):
        load_dataset("cifar10", tmp_path)


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="pertlearn data download fashion_mnist"):
        load_dataset("fashion_mnist", tmp_path)


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERTLEARN_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(tmp_path / "given") == tmp_path / "given"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("PERTLEARN_DATA")
    assert resolve_data_dir(None) == tmp_path / "cache" / "pertlearn" / "data"


# ----------------------------------------------------------------------------- CIFAR


def test_cifar_batch_with_numpy_array(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(cifar_batch(6))
    x, y = load_cifar_batch(path)
    expected = np.random.default_rng(1).integers(0, 256, (6, 3072), dtype=np.uint8)
    np.testing.assert_array_equal(x, expected.reshape(6, 3, 32, 32))
    assert y.tolist() == [0, 1, 2, 3, 4, 5]


def test_cifar_batch_with_plain_bytes(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(cifar_batch(3, as_bytes=True))
    x, _ = load_cifar_batch(path)
    assert x.shape == (3, 3, 32, 32)


def test_cifar_label_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(cifar_batch(3, labels=[0, 11, 2]))
    with pytest.raises(DataError, match="label 11"):
        load_cifar_batch(path)


def test_cifar_truncated(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(cifar_batch(3)[:-500])
    with pytest.raises(DataError, match=r"test_batch.*(truncated|corrupt)"):
        load_cifar_batch(path)


class _Marker:
    """Unpickling this would create a file (a harmless stand-in for arbitrary code)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.path,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Marker(str(marker)), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1.*refused.*(posix|os)\.mkdir"):
        load_cifar_batch(path)
    assert not marker.exists()


def test_pickled_object_is_refused() -> None:
    payload = pickle.dumps({"x": torch.nn.Linear(1, 1)})
    with pytest.raises(DataError, match="refused to construct"):
        restricted_load(io.BytesIO(payload))


def test_object_dtype_array_is_refused() -> None:
    payload = pickle.dumps(np.array([1, "a"], dtype=object), protocol=2)
    with pytest.raises(DataError, match=r"refused|not a plain number type"):
        restricted_load(io.BytesIO(payload))


def test_cifar_folder_loads(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(cifar_batch(4))
    data = load_dataset("cifar10", tmp_path)
    assert data.x.shape == (4, 3, 32, 32) and data.parts == ("test",)


# ----------------------------------------------------------------------------- real MNIST


@pytest.mark.full_data
def test_real_mnist_test_set(full_mnist_dir: Path) -> None:
    root = full_mnist_dir
    assert sha256_file(root / "mnist" / "t10k-images-idx3-ubyte.gz") == (
        "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b"
    )
    data = load_dataset("mnist", root)
    assert data.x.shape == (10000, 1, 28, 28) and data.x.dtype == torch.uint8
    assert data.class_counts() == FULL_MNIST_COUNTS
    assert data.x.float().mean().item() == pytest.approx(33.79, abs=0.01)


def test_in_repo_mnist_subset() -> None:
    """tests/data/mnist: the first 2,000 images of the real test set (see its README)."""
    root = fixture_data_dir()
    assert sha256_file(root / "mnist" / "t10k-images-idx3-ubyte.gz") == (
        "fa2fa0f453d30da7368de1b3d971c4d7d337993bb97663d604822d2b60473905"
    )
    assert sha256_file(root / "mnist" / "t10k-labels-idx1-ubyte.gz") == (
        "9016d84c0ff2a402884fc39ac1dfcb3ec411c5581759174110390192c6e1c7b5"
    )
    data = load_dataset("mnist", root)
    assert data.x.shape == (2000, 1, 28, 28) and data.x.dtype == torch.uint8
    assert data.class_counts() == FIXTURE_MNIST_COUNTS


def test_real_mnist_binary_task_split() -> None:
    data = load_dataset("mnist", fixture_data_dir())
    split = prepare(
        data,
        classes=[1, 2],
        binary=True,
        center=True,
        flatten=True,
        generator=torch.Generator().manual_seed(0),
    )
    n_ones, n_twos = FIXTURE_MNIST_COUNTS[1], FIXTURE_MNIST_COUNTS[2]
    assert split.x_train.shape[1] == 784
    assert split.x_train.shape[0] + split.x_test.shape[0] == n_ones + n_twos
    assert (split.y_test == 1).sum().item() == round(0.2 * n_ones)
    assert (split.y_test == -1).sum().item() == round(0.2 * n_twos)
    assert split.x_train.min().item() == pytest.approx(-0.1307, abs=1e-6)


# ----------------------------------------------------------------------------- preparation


def test_select_and_binary_labels() -> None:
    x = torch.arange(6).float()
    y = torch.tensor([0, 3, 9, 3, 0, 5])
    xs, ys = select_classes(x, y, [3, 0])
    assert xs.tolist() == [0, 1, 3, 4] and ys.tolist() == [1, 0, 0, 1]
    assert binary_labels(ys).tolist() == [-1, 1, 1, -1]


def test_stratified_split_is_seeded_disjoint_and_proportional() -> None:
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    train, test = stratified_split(y, 0.2, torch.Generator().manual_seed(3))
    again, _ = stratified_split(y, 0.2, torch.Generator().manual_seed(3))
    other, _ = stratified_split(y, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(train, again) and not torch.equal(train, other)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(100))
    assert torch.bincount(y[test]).tolist() == [10, 6, 4]
    capped, _ = stratified_split(y, 0.2, torch.Generator().manual_seed(3), n_train=40)
    assert torch.bincount(y[capped]).tolist() == [20, 12, 8]


# ----------------------------------------------------------------------------- download


def test_fetch_tries_mirrors_and_verifies(tmp_path: Path) -> None:
    good = tmp_path / "good.bin"
    bad = tmp_path / "bad.bin"
    good.write_bytes(b"abc")
    bad.write_bytes(b"abd")
    remote = RemoteFile(
        "file.bin",
        (bad.as_uri(), (tmp_path / "absent").as_uri(), good.as_uri()),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        3,
    )
    out = fetch(remote, tmp_path / "dl")
    assert out.read_bytes() == b"abc"
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["file.bin"]  # no partial files
    only_bad = RemoteFile("other.bin", (bad.as_uri(),), remote.sha256, 3)
    with pytest.raises(DataError, match=r"could not download other.bin.*SHA-256"):
        fetch(only_bad, tmp_path / "dl")
    assert not (tmp_path / "dl" / "other.bin").exists()


def test_download_catalogue_is_complete() -> None:
    for info in catalogue.DATASETS.values():
        for remote in info.files:
            assert len(remote.sha256) == 64 and remote.urls and remote.size > 0


def test_unsafe_tar_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DataError, match="unsafe entry"):
        download.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_cli_data_info_and_missing_data(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pertlearn.cli.main import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["data", "info", "mnist", "--data-dir", str(fixture_data_dir())])
    assert ok.exit_code == 0, ok.output
    assert "2000 images" in ok.output and "class 1 (1): 234" in ok.output
    missing = runner.invoke(cli, ["data", "info", "cifar10", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 2
    assert "pertlearn data download cifar10" in missing.output


def test_download_verifies_extracts_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole `pertlearn data download cifar10` path on a tiny archive served by file://."""
    import dataclasses
    import hashlib

    folder = tmp_path / "src" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(cifar_batch(5))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    info = catalogue.DATASETS["cifar10"]
    remote = dataclasses.replace(info.files[0], urls=(archive.as_uri(),), sha256=digest)
    monkeypatch.setitem(catalogue.DATASETS, "cifar10", dataclasses.replace(info, files=(remote,)))
    out = download.download("cifar10", tmp_path / "data")
    assert out == tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    assert load_dataset("cifar10", tmp_path / "data").x.shape == (5, 3, 32, 32)
    bad = dataclasses.replace(remote, sha256="0" * 64, name="other.tar.gz")
    monkeypatch.setitem(catalogue.DATASETS, "cifar10", dataclasses.replace(info, files=(bad,)))
    with pytest.raises(DataError, match="SHA-256"):
        download.download("cifar10", tmp_path / "data2")
