"""Where tests find real MNIST digits.

Two sources:

- ``fixture_data_dir()``: the in-repo subset ``tests/data/mnist`` (the first 2,000 images of
  the real MNIST test set; ``tests/data/README.md`` gives source, license and checksums). Every
  test that needs real digits at a small size reads it, so the suite passes in a clone with
  nothing beside it.
- ``full_data_dir()``: the full 10,000-image MNIST test set in ``$PERTLEARN_DATA``, for the
  tests marked ``full_data`` (figures measured on the whole test set). When it is missing the
  test is skipped with the reason, unless ``PERTLEARN_REQUIRE_FULL_DATA=1`` (set by
  ``scripts/test.sh`` under ``CI=true``), in which case it fails.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FIXTURE_DATA = Path(__file__).resolve().parent / "data"
"""The folder holding the in-repo ``mnist/`` subset."""

FIXTURE_MNIST_COUNTS = [175, 234, 219, 207, 217, 179, 178, 205, 192, 194]
"""Class counts (digits 0–9) of the 2,000-image subset."""

FULL_MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
"""Class counts (digits 0–9) of the full MNIST test set."""


def fixture_data_dir() -> Path:
    """The data directory of the in-repo MNIST subset (always present in a checkout)."""
    assert (FIXTURE_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(), FIXTURE_DATA
    return FIXTURE_DATA


def _idx_count(path: Path) -> int:
    """The record count in the header of a (gzip) IDX label file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        header = handle.read(8)
    return struct.unpack(">II", header)[1] if len(header) == 8 else 0


def full_data_reason() -> str | None:
    """Why the full MNIST test set is not available (``None`` when it is)."""
    env = os.environ.get("PERTLEARN_DATA")
    if not env:
        return "PERTLEARN_DATA is not set (it must name a folder holding the full mnist/ test set)"
    mnist = Path(env) / "mnist"
    for name in ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"):
        labels = mnist / name
        if labels.is_file():
            count = _idx_count(labels)
            if count == 10000:
                return None
            return f"{labels} holds {count} labels, not the full 10,000-image MNIST test set"
    return f"no MNIST test set in PERTLEARN_DATA={env} (run: pertlearn data download mnist)"


def full_data_dir() -> Path:
    """``$PERTLEARN_DATA`` when it holds the full MNIST test set; otherwise skip the test with
    the reason, or fail it when ``PERTLEARN_REQUIRE_FULL_DATA=1``."""
    reason = full_data_reason()
    if reason is None:
        return Path(os.environ["PERTLEARN_DATA"])
    if os.environ.get("PERTLEARN_REQUIRE_FULL_DATA") == "1":
        pytest.fail(f"full-data test, PERTLEARN_REQUIRE_FULL_DATA=1: {reason}")
    pytest.skip(f"full-data test: {reason}")


def tiny_images(
    scenario: str = "natural_rand", *, n_train: int = 150, **extra: Any
) -> dict[str, Any]:
    """An images config tree that runs in seconds: 3 MNIST classes of the in-repo fixture
    (``n_train`` training, 70 noise and 60 test digits), a 4-channel small CNN, PGD-L2 ε = 3 in 3
    steps, 2 epochs of f and g; ``extra`` sets or replaces top-level keys."""
    train = {"lr": 0.05, "epochs": 2, "batch_size": 32, "plateau_patience": None}
    tree: dict[str, Any] = {
        "pipeline": "images",
        "data": {
            "name": "mnist",
            "classes": [0, 1, 2],
            "n_train": n_train,
            "n_noise": 70,
            "n_test": 60,
            "data_dir": str(fixture_data_dir()),
        },
        "model": {"name": "small_cnn", "options": {"width": 4, "hidden": 16}},
        "attack": {"name": "pgd_l2", "eps": 3.0, "options": {"steps": 3}},
        "scenario": scenario,
        "train_f": train,
        "train_g": train,
    }
    tree.update(extra)
    return tree


# ------------------------------------------------------------------ image files the tests write


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """``array`` as an IDX file (uint8; the magic number from its rank unless given)."""
    dims = array.shape
    header = magic if magic is not None else (0x08 << 8) | len(dims)
    return struct.pack(">I", header) + struct.pack(f">{len(dims)}I", *dims) + array.tobytes()


def write_mnist(folder: Path, n: int = 20, *, gz: bool = True, prefix: str = "t10k") -> None:
    """An MNIST-format pair of IDX files in ``folder``: ``n`` random 28×28 images, labels
    ``i mod 10``."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    for stem, data in ((f"{prefix}-images-idx3-ubyte", x), (f"{prefix}-labels-idx1-ubyte", y)):
        raw = idx_bytes(data)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)


def cifar_batch(n: int = 6, *, as_bytes: bool = False, labels: list[int] | None = None) -> bytes:
    """A CIFAR-10 python batch (the pickled dict of the official files): ``n`` random 3×32×32
    images, labels ``i mod 10`` unless given."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": labels if labels is not None else [i % 10 for i in range(n)],
        b"data": data.tobytes() if as_bytes else data,
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def every_dataset_dir(root: Path, n: int = 300) -> Path:
    """A data directory under ``root`` holding every built-in image data set: the in-repo MNIST
    subset (real digits) and ``n`` random images each of Fashion-MNIST and CIFAR-10 in their
    official file formats (test part only)."""
    shutil.copytree(fixture_data_dir() / "mnist", root / "mnist")
    write_mnist(root / "fashion_mnist", n)
    (root / "cifar10").mkdir()
    (root / "cifar10" / "test_batch").write_bytes(cifar_batch(n))
    return root
