"""Loading and preparing the image data sets (MNIST, Fashion-MNIST, CIFAR-10).

:func:`load_dataset` finds a data set under the data directory (see
:mod:`pertlearn.data.catalogue`), reads every available part with the validating readers
(:mod:`pertlearn.data.idx` for IDX files, :mod:`pertlearn.data.cifar_pickle` for CIFAR-10
batches) and caches the result per folder. A missing data set or a bad file raises
:class:`~pertlearn.data.errors.DataError` with one line naming it; :mod:`pertlearn.data.download`
fetches the official files.

Preparation for experiments (NeurIPS24 arXiv:2410.23677; ICLR24 arXiv:2402.10470): class selection
and relabeling (``0..K-1``, or ±1 for
binary tasks), scaling to ``[0, 1]``, optional mean-centering with the data set's pixel mean,
flattening, and a seeded stratified train/test split of whatever images are available (so the
10,000-image MNIST test set can stand in for a full download).

Shapes: images ``(N, C, H, W)`` (uint8 as loaded, float after :func:`prepare`), labels ``(N,)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pertlearn.data.catalogue import DatasetInfo
from pertlearn.data.raw_images import ImageSet, read_dataset

# --------------------------------------------------------------------------- loading


ImageData = ImageSet[torch.Tensor]
"""A loaded data set as tensors: ``x`` uint8 ``(N, C, H, W)``, ``y`` int64 ``(N,)``."""


def load_dataset(
    name: str, data_dir: str | Path | None = None, *, parts: Sequence[str] | None = None
) -> ImageData:
    """Load every available part (``train``, ``test``) of data set ``name``, concatenated, as
    tensors (see :func:`~pertlearn.data.raw_images.read_dataset`).

    ``parts`` restricts to the named parts (each must be present). Files are validated; a
    missing data set or a bad file raises :class:`DataError`. Results are cached per folder
    (and invalidated when a file changes).
    """
    raw = read_dataset(name, data_dir, parts=parts)
    # read_dataset's arrays are fresh (np.concatenate copies): the tensors share no cache
    return ImageData(
        raw.info, torch.from_numpy(raw.x), torch.from_numpy(raw.y), raw.sources, raw.parts
    )


# --------------------------------------------------------------------------- preparation


def select_classes(
    x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the samples of ``classes`` and relabel them ``0..len(classes)-1`` in that order."""
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes must name at least two distinct classes, got {list(classes)}")
    mapping = torch.full((int(max(max(classes), int(y.max())) + 1),), -1, dtype=torch.long)
    for new, old in enumerate(classes):
        if old < 0:
            raise ValueError(f"class {old} is negative")
        mapping[old] = new
    new_y = mapping[y]
    keep = new_y >= 0
    return x[keep], new_y[keep]


def binary_labels(y: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Labels ``0`` → ``+1`` and ``1`` → ``-1`` (the first selected class is positive)."""
    if y.numel() and int(y.max()) > 1:
        raise ValueError("binary relabeling needs exactly two classes (labels 0 and 1)")
    return (1 - 2 * y).to(dtype)


def _allot(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Split ``total`` over classes proportionally to ``counts`` (largest remainders)."""
    share = counts.double() * total / max(int(counts.sum()), 1)
    base = share.floor().long()
    rest = total - int(base.sum())
    if rest > 0:
        order = torch.argsort(share - base, descending=True, stable=True)
        base[order[:rest]] += 1
    return torch.minimum(base, counts)


def stratified_split(
    y: torch.Tensor,
    test_fraction: float,
    generator: torch.Generator,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified split of labels ``y`` (``(N,)``, classes ``0..K-1``) into train and
    test index tensors. Each class puts ``round(test_fraction · n_c)`` samples in the test part;
    ``n_train`` / ``n_test`` then cap each part, keeping class proportions. Both index tensors
    come out shuffled."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"split (test fraction) must lie strictly between 0 and 1, got {test_fraction}"
        )
    train_parts: list[torch.Tensor] = []
    test_parts: list[torch.Tensor] = []
    for idx in _per_class(y, generator):
        k = round(test_fraction * idx.numel())
        test_parts.append(idx[:k])
        train_parts.append(idx[k:])
    return _capped(train_parts, n_train, generator), _capped(test_parts, n_test, generator)


def _per_class(y: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """The indices of each class ``0..K-1`` of ``y`` ``(N,)``, each shuffled by ``generator``."""
    num_classes = int(y.max()) + 1 if y.numel() else 0
    parts = []
    for c in range(num_classes):
        idx = torch.nonzero(y == c).flatten()
        parts.append(idx[torch.randperm(idx.numel(), generator=generator)])
    return parts


def _capped(
    parts: list[torch.Tensor], limit: int | None, generator: torch.Generator
) -> torch.Tensor:
    """The per-class indices ``parts`` capped at ``limit`` in all (keeping class proportions),
    joined and shuffled."""
    if limit is not None:
        counts = torch.tensor([p.numel() for p in parts])
        if limit < int(counts.sum()):
            sizes = _allot(counts, limit)
            parts = [p[: int(s)] for p, s in zip(parts, sizes, strict=True)]
    joined = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    return joined[torch.randperm(joined.numel(), generator=generator)]


@dataclass
class ImageSplit:
    """Prepared train and test tensors. ``x_*``: float ``(N, C, H, W)`` or ``(N, C·H·W)`` when
    flattened; ``y_*``: int64 classes ``0..K-1`` or ±1 floats for binary tasks."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: DatasetInfo
    classes: tuple[int, ...]
    offset: float  # the constant subtracted from every pixel (0 when not centered)


def prepare(
    data: ImageData,
    *,
    classes: Sequence[int] | None = None,
    test_fraction: float = 0.2,
    generator: torch.Generator,
    n_train: int | None = None,
    n_test: int | None = None,
    binary: bool = False,
    center: bool = False,
    flatten: bool = False,
    dtype: torch.dtype = torch.float32,
    test: ImageData | None = None,
) -> ImageSplit:
    """Select ``classes`` (default: all, relabeled in the order given), split stratified with
    ``generator``, scale pixels to ``[0, 1]``, and optionally relabel two classes to ±1
    (``binary``: first class +1), subtract the data set's mean pixel (``center``, NeurIPS24
    arXiv:2410.23677) and
    flatten to ``(N, C·H·W)``.

    uint8 pixels are divided by 255; float pixels (a data file) are taken as in ``[0, 1]``.
    ``test``: a fixed test part (``data`` is then the training part only); each part is then
    only capped (``n_train`` / ``n_test``, stratified), not split."""
    info = data.info
    chosen = tuple(classes) if classes is not None else tuple(range(info.num_classes))
    for c in chosen:
        if not 0 <= c < info.num_classes:
            raise ValueError(
                f"class {c} does not exist in {info.title} (0..{info.num_classes - 1})"
            )
    if binary and len(chosen) != 2:
        raise ValueError(f"a binary task needs exactly two classes, got {list(chosen)}")

    def select(part: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
        if classes is None:
            return part.x, part.y
        return select_classes(part.x, part.y, chosen)

    x, y = select(data)
    if test is None:
        train_idx, test_idx = stratified_split(
            y, test_fraction, generator, n_train=n_train, n_test=n_test
        )
        x_test, y_test = x, y
    else:
        x_test, y_test = select(test)
        train_idx = _capped(_per_class(y, generator), n_train, generator)
        test_idx = _capped(_per_class(y_test, generator), n_test, generator)
    if train_idx.numel() < 2 or test_idx.numel() < 1:
        available = y.numel() + (0 if test is None else y_test.numel())
        raise ValueError(
            f"{info.title} classes {list(chosen)}: only {available} images available, too few "
            "to split"
        )
    offset = float(np.mean(info.mean)) if center else 0.0

    def convert(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = images[idx].to(dtype)
        if not images.is_floating_point():
            out = out / 255.0
        if center:
            out = out - offset
        return out.flatten(1) if flatten else out

    def labels(y_part: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return binary_labels(y_part[idx], dtype) if binary else y_part[idx].clone()

    return ImageSplit(
        convert(x, train_idx),
        labels(y, train_idx),
        convert(x_test, test_idx),
        labels(y_test, test_idx),
        info,
        chosen,
        offset,
    )
