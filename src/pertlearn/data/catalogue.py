"""The catalogue of the built-in image data sets and where their files are found.

:data:`DATASETS` names MNIST, Fashion-MNIST and CIFAR-10 with their image shape ``(C, H, W)``,
classes, pixel statistics, official files (URLs in mirror order, SHA-256, size) and the folder
names accepted under the data directory. The data directory is the one the caller names (config
key ``data.data_dir``, CLI flag ``--data-dir``), else ``$PERTLEARN_DATA``, else a cache
directory (``$XDG_CACHE_HOME/pertlearn/data`` or ``~/.cache/pertlearn/data``). Each data set
lives in a sub-folder named like the data set (``mnist``, ``fashion_mnist``, ``cifar10``); a
directory that holds the files itself works too.

Nothing here reads a file's content (see :mod:`pertlearn.data.idx`,
:mod:`pertlearn.data.cifar_pickle`) or touches the network (:mod:`pertlearn.data.download`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


def _mirrored(mirrors: Sequence[str], name: str, sha256: str, size: int) -> RemoteFile:
    return RemoteFile(name, tuple(m + name for m in mirrors), sha256, size)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        shape=(1, 28, 28),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
        files=(
            _mirrored(
                _MNIST_MIRRORS,
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
            ),
            _mirrored(
                _MNIST_MIRRORS,
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
            ),
            _mirrored(
                _MNIST_MIRRORS,
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
            ),
            _mirrored(
                _MNIST_MIRRORS,
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
            ),
        ),
        folders=("mnist", "MNIST", "MNIST/raw"),
        part_sizes=(("train", 60000), ("test", 10000)),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        title="Fashion-MNIST",
        shape=(1, 28, 28),
        num_classes=10,
        class_names=(
            "t-shirt/top",
            "trouser",
            "pullover",
            "dress",
            "coat",
            "sandal",
            "shirt",
            "sneaker",
            "bag",
            "ankle boot",
        ),
        mean=(0.2860,),
        std=(0.3530,),
        files=(
            _mirrored(
                _FASHION_MIRRORS,
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
            ),
            _mirrored(
                _FASHION_MIRRORS,
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
            ),
            _mirrored(
                _FASHION_MIRRORS,
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
            ),
            _mirrored(
                _FASHION_MIRRORS,
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
            ),
        ),
        folders=("fashion_mnist", "fashion-mnist", "FashionMNIST", "FashionMNIST/raw"),
        part_sizes=(("train", 60000), ("test", 10000)),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        title="CIFAR-10",
        shape=(3, 32, 32),
        num_classes=10,
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                170498071,
            ),
        ),
        folders=("cifar10/cifar-10-batches-py", "cifar10", "cifar-10-batches-py"),
        part_sizes=(("train", 50000), ("test", 10000)),
    ),
}
"""Name → :class:`DatasetInfo` of the built-in image data sets (``data.name`` in configs)."""

IMAGE_DATASETS: tuple[str, ...] = tuple(DATASETS)

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
        if available_parts(info, folder):
            return folder
    raise DataError(
        f"{info.title} not found under {str(root)!r} (from {_where(data_dir)}); "
        f"run `pertlearn data download {name}`, or point data.data_dir / --data-dir / "
        f"PERTLEARN_DATA at a directory with a {info.folders[0]}/ folder"
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
