"""The catalogue of the built-in image data sets and where their files are found.

:data:`DATASETS` (read from the package's ``datasets.toml``) names MNIST, Fashion-MNIST and
CIFAR-10 with their image shape ``(C, H, W)``, classes, pixel statistics, official files (URLs in
mirror order, SHA-256, size) and the folder names accepted under the data directory. The data
directory is the one the caller names (config key ``data.data_dir``, CLI flag ``--data-dir``), else
``$PERTLEARN_DATA``, else a cache directory (``$XDG_CACHE_HOME/pertlearn/data`` or
``~/.cache/pertlearn/data``). Each data set lives in a sub-folder named like the data set
(``mnist``, ``fashion_mnist``, ``cifar10``); a directory that holds the files itself works too.

Nothing here reads a file's content (see :mod:`pertlearn.data.idx`,
:mod:`pertlearn.data.cifar_pickle`) or touches the network (:mod:`pertlearn.data.download`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pertlearn.data.errors import DataError

# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, the URLs to try in order, and its SHA-256."""

    name: str
    urls: tuple[str, ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a data set before reading it."""

    name: str
    title: str
    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per-channel pixel mean in [0, 1] (training set)
    std: tuple[float, ...]  # per-channel pixel std in [0, 1] (training set)
    files: tuple[RemoteFile, ...]
    folders: tuple[str, ...]  # folder names accepted under the data directory
    part_sizes: tuple[tuple[str, int], ...] = ()  # (part, number of images) of the official set

    def max_images(self, part: str) -> int | None:
        """The number of images in the official ``part`` (``train``/``test``): a file declaring
        more is not this data set. ``None`` when unknown."""
        return dict(self.part_sizes).get(part)

    @property
    def dim(self) -> int:
        """Flattened input dimension ``C·H·W``."""
        c, h, w = self.shape
        return c * h * w


def _dataset_info(name: str, entry: dict[str, Any]) -> DatasetInfo:
    """One ``[name]`` table of ``datasets.toml`` as a :class:`DatasetInfo`."""
    mirrors = tuple(entry["mirrors"])
    files = tuple(
        RemoteFile(f["name"], tuple(m + f["name"] for m in mirrors), f["sha256"], f["size"])
        for f in entry["files"]
    )
    c, h, w = entry["shape"]
    return DatasetInfo(
        name=name,
        title=entry["title"],
        shape=(c, h, w),
        num_classes=len(entry["class_names"]),
        class_names=tuple(entry["class_names"]),
        mean=tuple(entry["mean"]),
        std=tuple(entry["std"]),
        files=files,
        folders=tuple(entry["folders"]),
        part_sizes=tuple(entry["part_sizes"].items()),
    )


_CATALOGUE = tomllib.loads(resources.files("pertlearn.data").joinpath("datasets.toml").read_text())
DATASETS: dict[str, DatasetInfo] = {
    name: _dataset_info(name, entry) for name, entry in _CATALOGUE.items()
}
"""Name → :class:`DatasetInfo` of the built-in image data sets (``data.name`` in configs)."""

IDX_PARTS: dict[str, tuple[str, str]] = {
    # part -> (images file stem, labels file stem); a ".gz" suffix is accepted too
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_PARTS: dict[str, tuple[str, ...]] = {
    # part -> the python batch files that make it up
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; unknown names raise :class:`DataError`."""
    if name not in DATASETS:
        raise DataError(f"unknown image data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def check_classes(classes: Sequence[int], num_classes: int) -> None:
    """Raise ``ValueError`` unless ``classes`` names at least two distinct classes of
    ``0..num_classes-1`` (a class selection of a data set with ``num_classes`` classes)."""
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(
            f"classes must be at least two distinct classes in 0..{num_classes - 1}, got {classes}"
        )


# --------------------------------------------------------------------------- directories


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pertlearn/data``, else ``~/.cache/pertlearn/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pertlearn" / "data"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$PERTLEARN_DATA``, else the cache."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("PERTLEARN_DATA")
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def _where(data_dir: str | Path | None) -> str:
    """Which setting chose the data directory, for error messages."""
    if data_dir is not None and str(data_dir) != "":
        return "the given data directory"
    if os.environ.get("PERTLEARN_DATA"):
        return "PERTLEARN_DATA"
    return "the cache directory"


def find_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem``, else ``folder/stem.gz``, else ``None``."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder holding data set ``name``'s files under the data directory (or the data
    directory itself when it holds them). Raises :class:`DataError` when none has them."""
    info = dataset_info(name)
    root = resolve_data_dir(data_dir)
    candidates = [root / folder for folder in info.folders] + [root]
    for folder in candidates:
        try:
            if available_parts(info, folder):
                return folder
        except OSError as err:
            raise folder_error(folder, err) from None
    parts = CIFAR_PARTS if info.name == "cifar10" else IDX_PARTS
    suffix = "" if info.name == "cifar10" else "(.gz)"
    files = " and/or ".join(", ".join(n + suffix for n in names) for names in parts.values())
    raise DataError(
        f"{info.title} not found under {str(root)!r} (from {_where(data_dir)}); "
        f"run `pertlearn data download {name}`, or point data.data_dir / --data-dir / "
        f"PERTLEARN_DATA at a directory with a {info.folders[0]}/ folder holding {files}"
    )


def folder_error(folder: Path, err: OSError) -> DataError:
    """The one-line error for a data folder that cannot be read (``err``: why)."""
    return DataError(
        f"cannot read the folder {str(folder)!r}: {err.strerror or err}; fix its permissions, "
        "or point data.data_dir / --data-dir / PERTLEARN_DATA elsewhere"
    )


def missing_file(path: Path, name: str) -> DataError:
    """The one-line error for a file of data set ``name`` that is absent from its folder (or
    is a folder itself) while other files of the set are there."""
    state = "is missing" if not path.exists() else "is not a file"
    return DataError(
        f"{str(path)!r} {state}, but other {dataset_info(name).title} files are there; put the "
        f"file there, or run `pertlearn data download {name}`"
    )


def available_parts(info: DatasetInfo, folder: Path) -> list[str]:
    """The parts (``train``, ``test``) of which ``folder`` holds at least one file."""
    if not folder.is_dir():
        return []
    if info.name == "cifar10":
        return [
            part
            for part, names in CIFAR_PARTS.items()
            if any((folder / n).is_file() for n in names)
        ]
    parts = []
    for part, (images, labels) in IDX_PARTS.items():
        has_images = find_file(folder, images) is not None
        has_labels = find_file(folder, labels) is not None
        if has_images or has_labels:
            parts.append(part)
    return parts
