"""The restricted CIFAR-10 unpickler stays cheap on hostile pickles: shared objects are
converted once ("billion laughs"), and opcodes, memo indices, elements, depth and file size are
bounded, each refusal one line naming the file."""

from __future__ import annotations

import io
import pickle
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pertlearn.data import cifar_pickle
from pertlearn.data.cifar_pickle import load_cifar_batch
from pertlearn.data.errors import DataError


def laughs(width: int, depth: int) -> Any:
    """A list nested ``depth`` deep whose ``width`` items are one shared list each time:
    ``width ** depth`` leaves when copied, ``depth`` lists when shared."""
    node: Any = [b"lol"] * width
    for _ in range(depth - 1):
        node = [node] * width
    return node


def write_batch(path: Path, labels: Any, n: int = 2) -> Path:
    data = np.zeros((n, 3072), dtype=np.uint8)
    path.write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
    return path


def test_shared_lists_are_converted_once_not_copied() -> None:
    """Each shared list is converted once and shared in the result, as in the pickle."""
    payload = pickle.dumps({b"x": laughs(3, 4), b"data": np.zeros(2, np.uint8)}, protocol=2)
    result = cifar_pickle.restricted_load(io.BytesIO(payload))
    top = result[b"x"]
    assert top[0] is top[1] is top[2]  # a copy per reference would give distinct lists
    assert top[0][0] is top[0][1]
    assert isinstance(result[b"data"], np.ndarray)


def test_billion_laughs_batch_loads_instantly(tmp_path: Path) -> None:
    """3**19 ≈ 1.2e9 nominal leaves in a pickle of a few hundred bytes: the batch's extra
    entry costs nothing (before the fix this ran out of memory)."""
    path = tmp_path / "data_batch_1"
    data = np.zeros((2, 3072), dtype=np.uint8)
    batch = {b"data": data, b"labels": [0, 1], b"filenames": laughs(3, 19)}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    start = time.perf_counter()
    x, y = load_cifar_batch(path)
    assert time.perf_counter() - start < 5.0
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 1]


def test_too_deep_nesting_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write_batch(tmp_path / "test_batch", [0, 1])
    deep: Any = [0]
    for _ in range(cifar_pickle.MAX_DEPTH + 5):
        deep = [deep]
    path.write_bytes(pickle.dumps({b"data": np.zeros(3072, np.uint8), b"labels": deep}, protocol=2))
    with pytest.raises(DataError, match=r"test_batch.*nested more than 20 deep") as err:
        load_cifar_batch(path)
    assert "\n" not in str(err.value)


def test_element_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar_pickle, "MAX_ELEMENTS", 100)
    ok = write_batch(tmp_path / "ok_batch", [0] * 50, n=50)
    assert load_cifar_batch(ok)[1].shape == (50,)
    path = write_batch(tmp_path / "test_batch", [0] * 200, n=200)
    with pytest.raises(DataError, match=r"test_batch.*more than 100 container elements"):
        load_cifar_batch(path)


def test_opcode_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar_pickle, "MAX_OPCODES", 1000)
    path = write_batch(tmp_path / "test_batch", list(range(10)) * 200, n=2000)
    with pytest.raises(DataError, match=r"test_batch.*more than 1000 pickle opcodes"):
        load_cifar_batch(path)


@pytest.mark.parametrize("opcode", [b"r", b"j"])  # LONG_BINPUT, LONG_BINGET
def test_huge_memo_index_is_refused_before_allocating(tmp_path: Path, opcode: bytes) -> None:
    """A memo index makes the C unpickler size its memo table to it (here 2**32 entries)."""
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x02N" + opcode + struct.pack("<I", 0xFFFFFFF0) + b".")
    with pytest.raises(DataError, match=r"test_batch.*memo index 4294967280 is out of range"):
        load_cifar_batch(path)


def test_gzip_bomb_batch_is_refused_without_inflating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar_pickle, "MAX_BATCH_BYTES", 1 << 20)
    packer = zlib.compressobj(wbits=31)  # gzip container
    blob = b"".join(packer.compress(bytes(1 << 20)) for _ in range(8)) + packer.flush()
    path = tmp_path / "test_batch"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=r"test_batch.*more than 1048576 bytes"):
        load_cifar_batch(path)


def test_array_shape_overflow_is_refused() -> None:
    """An array record whose shape multiplies past 2**64 (to 4 in int64) with 4 bytes of data
    is refused by its exact size, before any reshape."""
    payload = pickle.dumps(np.zeros(4, dtype=np.uint8), protocol=2)
    shape = b"K\x04\x85"  # BININT1 4, TUPLE1: the shape (4,)
    assert payload.count(shape) == 1
    huge = pickle.dumps((2**62 + 1, 4), protocol=2)[2:-1]  # the tuple's opcodes alone
    payload = payload.replace(shape, huge)
    with pytest.raises(DataError, match=r"needs 18446744073709551620 bytes, has 4"):
        cifar_pickle.restricted_load(io.BytesIO(payload))


@pytest.mark.parametrize(
    "container",
    [
        b"}N%sNs",  # EMPTY_DICT, the tuple as a key, SETITEM
        b"\x8f(N%s\x90",  # EMPTY_SET, MARK, the tuple, ADDITEMS
    ],
)
def test_deeply_nested_tuple_is_refused_before_it_is_hashed(
    tmp_path: Path, container: bytes
) -> None:
    """The unpickler hashes a dict key or set item; hashing a tuple recurses in C without a
    limit, so 300,000 nested tuples (300 KB) crashed the process with a segmentation fault."""
    tuples = b"N" + b"\x85" * 300_000  # None, then TUPLE1 around it 300,000 times
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x04" + container.replace(b"N%s", tuples) + b".")
    with pytest.raises(DataError, match=r"test_batch.*tuples nested more than 20 deep"):
        load_cifar_batch(path)


def test_nested_tuples_are_followed_through_the_memo() -> None:
    """A tuple's depth is remembered when it is memoized and counts again when fetched."""
    payload = b"\x80\x02N" + b"\x85q\x00h\x00" * (cifar_pickle.MAX_DEPTH + 1) + b"."
    with pytest.raises(DataError, match=r"tuples nested more than 20 deep"):
        cifar_pickle.restricted_load(io.BytesIO(payload))
    shallow = pickle.dumps({b"t": ((1, (2,)), (3,)), b"data": np.zeros(2, np.uint8)}, protocol=2)
    assert cifar_pickle.restricted_load(io.BytesIO(shallow))[b"t"] == ((1, (2,)), (3,))


def test_label_past_64_bits_is_one_line(tmp_path: Path) -> None:
    path = write_batch(tmp_path / "test_batch", [0, 10**30])
    with pytest.raises(DataError, match=r"test_batch' holds a label outside 0\.\.9 \(past 64"):
        load_cifar_batch(path)


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (3072, 2), (2, 96, 32)])
def test_pixel_data_in_another_layout_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """Images stored channels-last (N, 32, 32, 3), or transposed, were reshaped to (N, 3, 32,
    32) as if they were rows of the official layout: silently scrambled pixels."""
    path = tmp_path / "test_batch"
    data = np.zeros(shape, dtype=np.uint8)
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match=r"'data' has shape .*; a CIFAR-10 batch holds one row"):
        load_cifar_batch(path)
    for good in [(2, 3072), (2, 3, 32, 32)]:
        path.write_bytes(pickle.dumps({b"data": np.zeros(good, np.uint8), b"labels": [0, 1]}))
        assert load_cifar_batch(path)[0].shape == (2, 3, 32, 32)


def shared_string_pickle(size: int, references: int, *, as_array: bool) -> bytes:
    """A protocol-2 pickle of a list whose ``references`` items each convert one memoized
    ``size``-character string to bytes: by ``_codecs.encode``, or as the data of an array."""
    text = b"X" + struct.pack("<I", size) + b"a" * size + b"q\x01"  # BINUNICODE, PUT 1
    if as_array:
        head = b"cnumpy\ndtype\nq\x02X\x02\x00\x00\x00u1\x85Rq\x03"  # dtype("u1") as memo 3
        item = (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            + b"(K\x01J"
            + struct.pack("<i", size)
            + b"\x85h\x03\x89h\x01tb"  # BUILD with (1, (size,), dtype, False, the string)
        )
    else:
        head = b"c_codecs\nencode\nq\x00"
        item = b"h\x00h\x01X\x06\x00\x00\x00latin1\x86R"  # encode(the string, "latin1")
    return b"\x80\x02" + head + text + b"]" + (item + b"a") * references + b"."


@pytest.mark.parametrize("as_array", [False, True])
def test_a_shared_string_is_not_copied_without_bound(
    monkeypatch: pytest.MonkeyPatch, as_array: bool
) -> None:
    """A string converted to bytes at every reference multiplied the file: 16 MB referenced
    1,000 times made 16 GB. The copies now count against MAX_BATCH_BYTES in all."""
    monkeypatch.setattr(cifar_pickle, "MAX_BATCH_BYTES", 1 << 20)
    fits = cifar_pickle.restricted_load(
        io.BytesIO(shared_string_pickle(1 << 16, 15, as_array=as_array))
    )
    assert len(fits) == 15
    payload = shared_string_pickle(1 << 16, 17, as_array=as_array)  # 17 * 64 KiB > 1 MiB
    with pytest.raises(DataError, match=r"more than 1048576 bytes of strings converted to bytes"):
        cifar_pickle.restricted_load(io.BytesIO(payload))


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02NQ.",  # BINPERSID: the unpickler's message spans two lines
        b"\x80\x02(cos\nsystem\nX\x02\x00\x00\x00ido.",  # OBJ os.system("id")
        b"\x80\x02\x82\x01.",  # EXT1: an unregistered extension code
    ],
)
def test_refusals_are_one_line(payload: bytes) -> None:
    with pytest.raises(DataError) as err:
        cifar_pickle.restricted_load(io.BytesIO(payload), source="test_batch")
    assert "\n" not in str(err.value) and str(err.value).startswith("'test_batch'")
