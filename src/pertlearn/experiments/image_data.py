"""Image data for the pipelines: a seeded stratified split of a loaded image data set (a
built-in one or the user's image data file, ``data.name = "file"``)."""

from __future__ import annotations

from typing import Protocol

import torch

from pertlearn.data.files import load_image_file
from pertlearn.data.images import ImageSplit, load_dataset, prepare
from pertlearn.seeding import stage_generator


class ImageDataSection(Protocol):
    """The ``data`` keys an image split reads."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def data_dir(self) -> str | None: ...
    @property
    def classes(self) -> list[int] | None: ...
    @property
    def split(self) -> float: ...
    @property
    def n_train(self) -> int: ...
    @property
    def n_test(self) -> int: ...


def image_split(
    data: ImageDataSection, seed: int, *, binary: bool, center: bool, dtype: torch.dtype
) -> ImageSplit:
    """Load ``data.name`` (``"file"``: the image data file ``data.path``, its test part kept
    when it has one) and split it stratified with the stage ``data_split`` of ``seed``.

    ``binary``: ±1 labels and flattened images ``(N, C·H·W)``, mean-centered when ``center``
    (NeurIPS24 tasks); otherwise class labels ``0..K-1`` and images ``(N, C, H, W)`` with
    pixels in ``[0, 1]``."""
    test = None
    if data.name == "file":
        assert data.path is not None  # checked by the config
        loaded, test = load_image_file(data.path, dtype)
    else:
        loaded = load_dataset(data.name, data.data_dir)
    if binary and data.classes is None:
        raise ValueError(
            "the neurips pipeline needs a binary task: set data.classes to two classes, "
            "e.g. [1, 2] for MNIST 1 vs 2"
        )
    return prepare(
        loaded,
        classes=data.classes,
        test_fraction=data.split,
        generator=stage_generator(seed, "data_split"),
        n_train=data.n_train,
        n_test=data.n_test,
        binary=binary,
        center=binary and center,
        flatten=binary,
        dtype=dtype,
        test=test,
    )


class BinaryImageSection(ImageDataSection, Protocol):
    @property
    def center(self) -> bool: ...


def binary_image_data(
    data: BinaryImageSection, seed: int, stage: str, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (N, C·H·W), y (N,) ±1)`` of the train (``stage = "data_train"``) or test part of a
    binary image task."""
    split = image_split(data, seed, binary=True, center=data.center, dtype=dtype)
    if stage == "data_train":
        return split.x_train, split.y_train
    return split.x_test, split.y_test


def draw_image_targets(
    scenario: str, y: torch.Tensor, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Target classes ``(N,)`` for ``natural_rand`` (uniform over the other ``K-1`` classes)
    or ``natural_det`` (``(y + 1) mod K``)."""
    if scenario == "natural_det":
        return (y + 1) % num_classes
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_classes


def noise_batches(
    n: int, shape: tuple[int, ...], batch_size: int, seed: int
) -> list[tuple[int, int, torch.Generator]]:
    """``(start, size, generator)`` of each noise batch; batch ``b`` draws from stage
    ``noise_b``, so any batch can be regenerated on its own."""
    return [
        (start, min(batch_size, n - start), stage_generator(seed, f"noise_{b}"))
        for b, start in enumerate(range(0, n, batch_size))
    ]


def make_noise(size: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``size`` images from ``U[0,1]^shape``, shape ``(size, *shape)`` (CPU)."""
    return torch.rand((size, *shape), generator=generator)
