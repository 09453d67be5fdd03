"""The IDX file format (MNIST, Fashion-MNIST), read from raw or gzip files as a stream.

An IDX file is a 4-byte magic number (two zero bytes, an element type code, the number of
dimensions), one big-endian ``uint32`` size per dimension, then the elements in C order. The
header is read and checked first (magic, type, dimensions, the sizes a caller expects, and a cap
on the bytes declared); then exactly the declared bytes are read, so neither a truncated nor an
over-long file (nor a gzip file that inflates past its header's sizes) is accepted, and nothing
larger than the header promises is ever decompressed.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pertlearn.data.errors import DataError
from pertlearn.data.readers import DataReader, check_labels

MAX_IDX_BYTES = 1 << 30
"""Default cap on the data bytes an IDX header may declare (1 GiB; MNIST's largest file holds
47 MB)."""

IMAGES_MAGIC = 2051  # uint8, 3 dimensions
LABELS_MAGIC = 2049  # uint8, 1 dimension

_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_header(reader: DataReader, magic: int | None) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """Read and check the magic number and sizes → ``(element dtype, shape)``."""
    path = str(reader.path)
    head = reader.read(4)
    if len(head) < 4:
        raise DataError(f"{path!r} is truncated: {len(head)} bytes, no IDX header")
    found = struct.unpack(">I", head)[0]
    zero, type_code, ndim = head[:2], head[2], head[3]
    if zero != b"\x00\x00" or type_code not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise DataError(
            f"{path!r} is not an IDX file: magic number {found} (0x{found:08x}); "
            f"expected {magic if magic is not None else 'an IDX header'}"
        )
    if magic is not None and found != magic:
        raise DataError(f"{path!r} has magic number {found}, expected {magic}")
    sizes = reader.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path!r} is truncated inside its header")
    return _IDX_TYPES[type_code], struct.unpack(f">{ndim}I", sizes)


def read_idx(
    path: str | Path,
    *,
    magic: int | None = None,
    item_shape: Sequence[int] | None = None,
    max_items: int | None = None,
    max_bytes: int = MAX_IDX_BYTES,
) -> np.ndarray:
    """Read an IDX file (raw or gzip) into an array of the shape its header names.

    ``magic`` (e.g. 2051 for images, 2049 for labels), ``item_shape`` (the sizes after the
    first, e.g. ``(28, 28)``) and ``max_items`` (a cap on the first size) are checked against
    the header when given, and the data the header declares must not exceed ``max_bytes``;
    all before any data is read. A bad header, or data shorter or longer than declared, raises
    :class:`DataError` naming the file. Returns a read-only array ``(n, *item_shape)``.
    """
    path = Path(path)
    with DataReader(path) as reader:
        dtype, shape = _read_header(reader, magic)
        if item_shape is not None and shape[1:] != tuple(item_shape):
            raise DataError(
                f"{str(path)!r}: header says items of shape {shape[1:]}, "
                f"expected {tuple(item_shape)}"
            )
        if max_items is not None and shape[0] > max_items:
            raise DataError(
                f"{str(path)!r}: header declares {shape[0]} items, more than the {max_items} "
                "this data set has; the file is corrupt or not this data set"
            )
        expected = math.prod(shape) * dtype.itemsize  # exact: Python integers do not overflow
        if expected > max_bytes:
            raise DataError(
                f"{str(path)!r}: header declares shape {shape} = {expected} bytes of data, "
                f"more than the {max_bytes} accepted; the file is corrupt"
            )
        body = reader.read(expected)
        got = len(body)
        if got < expected:
            raise DataError(
                f"{str(path)!r} is truncated: header says shape {shape} = {expected} bytes "
                f"of data, file holds {got}"
            )
        if not reader.at_end():
            raise DataError(
                f"{str(path)!r} is corrupt (trailing bytes): header says shape {shape} = "
                f"{expected} bytes of data, file holds more"
            )
    array = np.frombuffer(body, dtype=dtype).reshape(shape)
    array.flags.writeable = False
    return array


def load_idx_pair(
    images_path: str | Path,
    labels_path: str | Path,
    *,
    num_classes: int = 10,
    image_shape: tuple[int, int] | None = None,
    max_items: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style image and label IDX files → ``(images (N, 1, H, W) uint8, labels (N,) int64)``,
    checking magic numbers (2051, 2049), the image size ``(H, W)`` and count cap when given,
    matching counts, and labels in ``0..num_classes-1``."""
    images = read_idx(images_path, magic=IMAGES_MAGIC, item_shape=image_shape, max_items=max_items)
    labels = read_idx(labels_path, magic=LABELS_MAGIC, item_shape=(), max_items=max_items)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{str(images_path)!r}: expected uint8 images (N, H, W), got {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{str(labels_path)!r}: expected uint8 labels (N,), got {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{str(images_path)!r} holds {images.shape[0]} images but {str(labels_path)!r} "
            f"holds {labels.shape[0]} labels"
        )
    check_labels(labels, num_classes, labels_path)
    return images[:, None, :, :], labels.astype(np.int64)
