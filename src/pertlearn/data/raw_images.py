"""Reading the image data sets into NumPy arrays, without torch (``pertlearn data info``).

:func:`read_dataset` finds a data set under the data directory, reads every available part
with the validating readers and caches the arrays per folder (invalidated when a file changes);
:func:`pertlearn.data.images.load_dataset` turns the result into tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from pertlearn.data.catalogue import (
    CIFAR_PARTS,
    DATASETS,
    IDX_PARTS,
    DatasetInfo,
    available_parts,
    dataset_dir,
    dataset_info,
    find_file,
    folder_error,
    missing_file,
)
from pertlearn.data.cifar_pickle import load_cifar_batch
from pertlearn.data.errors import DataError
from pertlearn.data.idx import load_idx_pair

Array = TypeVar("Array")


@dataclass(frozen=True)
class ImageSet(Generic[Array]):
    """A data set as read: images ``x`` uint8 ``(N, C, H, W)`` and labels ``y`` int64 ``(N,)`` in
    ``0..K-1``, as NumPy arrays (:data:`RawImages`) or tensors
    (:data:`pertlearn.data.images.ImageData`), with the files and parts they came from."""

    info: DatasetInfo
    x: Array
    y: Array
    sources: tuple[Path, ...]
    parts: tuple[str, ...]

    def class_counts(self) -> list[int]:
        """Number of images of each class ``0..K-1``."""
        counts: list[int] = np.bincount(
            np.asarray(self.y), minlength=self.info.num_classes
        ).tolist()
        return counts


RawImages = ImageSet[np.ndarray]
"""Arrays fresh from the readers (not shared with the cache)."""


@lru_cache(maxsize=16)
def _load_part_cached(
    name: str, folder: str, part: str, stamp: tuple[tuple[str, int, int], ...]
) -> tuple[np.ndarray, np.ndarray, tuple[Path, ...]]:
    info = DATASETS[name]
    base = Path(folder)
    if name == "cifar10":
        xs, ys, paths = [], [], []
        for batch in CIFAR_PARTS[part]:
            path = base / batch
            if not path.is_file():
                raise missing_file(path, name)
            x, y = load_cifar_batch(path, num_classes=info.num_classes)
            xs.append(x)
            ys.append(y)
            paths.append(path)
        return np.concatenate(xs), np.concatenate(ys), tuple(paths)
    images_stem, labels_stem = IDX_PARTS[part]
    images_path = find_file(base, images_stem)
    labels_path = find_file(base, labels_stem)
    if images_path is None or labels_path is None:
        stem = images_stem if images_path is None else labels_stem
        present = [p for p in (base / stem, base / f"{stem}.gz") if p.exists()]
        raise missing_file(present[0] if present else base / f"{stem}(.gz)", name)
    x, y = load_idx_pair(
        images_path,
        labels_path,
        num_classes=info.num_classes,
        image_shape=(info.shape[1], info.shape[2]),
        max_items=info.max_images(part),
    )
    if x.shape[1:] != info.shape:
        raise DataError(f"{str(images_path)!r}: images are {x.shape[1:]}, expected {info.shape}")
    return x, y, (images_path, labels_path)


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def read_dataset(
    name: str, data_dir: str | Path | None = None, *, parts: Sequence[str] | None = None
) -> RawImages:
    """Read every available part (``train``, ``test``) of data set ``name``, concatenated.

    ``parts`` restricts to the named parts (each must be present). Files are validated; a
    missing data set or a bad file raises :class:`DataError`. Results are cached per folder
    (and invalidated when a file changes).
    """
    info = dataset_info(name)
    folder = dataset_dir(name, data_dir)
    available = available_parts(info, folder)
    wanted = list(parts) if parts is not None else available
    for part in wanted:
        if part not in ("train", "test"):
            raise DataError(f"unknown part {part!r}; use 'train' and/or 'test'")
        if part not in available:
            raise DataError(f"{info.title} {part} files are not in {str(folder)!r}")
    try:
        stamp = _stamp(folder)
    except OSError as err:
        raise folder_error(folder, err) from None
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    sources: list[Path] = []
    for part in wanted:
        x, y, paths = _load_part_cached(name, str(folder), part, stamp)
        xs.append(x)
        ys.append(y)
        sources.extend(paths)
    return RawImages(info, np.concatenate(xs), np.concatenate(ys), tuple(sources), tuple(wanted))
