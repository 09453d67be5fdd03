"""IDX files are read header first and streamed: declared sizes are checked against the data
set and a cap before any data is read, exactly the declared bytes are read, and a gzip file is
never inflated past what its header declares."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from pertlearn.data.errors import DataError
from pertlearn.data.idx import read_idx
from pertlearn.data.images import load_dataset


def header(dims: tuple[int, ...], type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def gzip_stream(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` followed by ``zeros`` zero bytes, compressed in 1 MiB pieces."""
    packer = zlib.compressobj(wbits=31)
    parts = [packer.compress(head)]
    for start in range(0, zeros, 1 << 20):
        parts.append(packer.compress(bytes(min(1 << 20, zeros - start))))
    return b"".join(parts) + packer.flush()


def test_gzip_longer_than_its_header_is_refused_without_inflating_it(tmp_path: Path) -> None:
    """One 28x28 image declared, 64 MiB of zeros behind it (a 64 KB file): refused after
    reading 785 bytes of data; the whole content is never held in memory."""
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip_stream(header((1, 28, 28)), 64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"images-idx3-ubyte\.gz.*trailing bytes") as err:
            read_idx(path, magic=2051)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes: the file was inflated whole"
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "dims",
    [
        (1 << 16, 1 << 16, 1 << 16, 1 << 16),  # 2**64: wraps to 0 in int64
        (0xFFFFFFFF,) * 4,  # about 2**128
        (1 << 31, 1 << 31, 2),  # 2**63: negative in int64
        (60000, 1000, 1000),  # 60 GB: no overflow, past the cap
    ],
)
def test_huge_declared_sizes_are_refused_before_reading(
    tmp_path: Path, dims: tuple[int, ...]
) -> None:
    path = tmp_path / "idx"
    path.write_bytes(header(dims))  # no data at all
    with pytest.raises(DataError, match=r"'.*idx': header declares shape .* bytes of data, more"):
        read_idx(path)


def test_declared_size_checked_against_the_data_set(tmp_path: Path) -> None:
    """An MNIST test file declaring 10,001 images is not MNIST's test set (it has 10,000);
    one declaring 32x32 images is not MNIST either. Both refused from the header alone."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    n = 10001
    images.write_bytes(gzip_stream(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28), n * 784))
    labels.write_bytes(gzip_stream(bytes([0, 0, 8, 1]) + struct.pack(">I", n), n))
    with pytest.raises(DataError, match=r"declares 10001 items, more than the 10000"):
        load_dataset("mnist", tmp_path)
    images.write_bytes(gzip.compress(header((2, 32, 32))))  # header only: never read further
    with pytest.raises(DataError, match=r"items of shape \(32, 32\), expected \(28, 28\)"):
        load_dataset("mnist", tmp_path)


def test_gzip_truncated_body_and_bad_crc(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(header((10,)) + bytes(6)))  # a complete gzip, short data
    with pytest.raises(DataError, match=r"labels\.gz' is truncated: .* 10 bytes .* holds 6"):
        read_idx(path, magic=2049)
    blob = bytearray(gzip.compress(header((10,)) + bytes(10)))
    blob[-8] ^= 0xFF  # CRC-32 of the content
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"labels\.gz' is a corrupt or truncated gzip file"):
        read_idx(path, magic=2049)


def test_arrays_are_exact_and_read_only(tmp_path: Path) -> None:
    array = (np.arange(24) * 1000).astype(">i4").reshape(2, 3, 4)
    path = tmp_path / "ints"
    path.write_bytes(header((2, 3, 4), 0x0C) + array.tobytes())
    loaded = read_idx(path)
    np.testing.assert_array_equal(loaded, array)
    assert loaded.dtype == np.dtype(">i4") and not loaded.flags.writeable


def test_unreadable_paths_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot read .*missing"):
        read_idx(tmp_path / "missing")
    with pytest.raises(DataError, match=r"cannot read .*: Is a directory"):
        read_idx(tmp_path)


def test_gzip_compressed_twice_is_named(tmp_path: Path) -> None:
    """It was "not an IDX file: magic number 529205248 (0x1f8b0800)"."""
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.compress(header((3,)) + bytes(3))))
    with pytest.raises(DataError, match=r"labels-idx1-ubyte\.gz' is gzip-compressed twice; dec"):
        read_idx(path, magic=2049)
    path.write_bytes(gzip.compress(header((3,)) + bytes(3)))
    assert read_idx(path, magic=2049).shape == (3,)
    path.write_bytes(gzip.compress(header((3,)) + bytes(3))[:12])  # a truncated gzip header
    with pytest.raises(DataError, match=r"is a corrupt or truncated gzip file"):
        read_idx(path, magic=2049)
