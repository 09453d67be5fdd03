"""The user's own binary data set, read from a ``.safetensors`` file (never a pickle).

The file holds ``x_train`` ``(N, d)`` and ``y_train`` ``(N,)`` with labels in ``{-1, +1}``,
and optionally ``x_test`` ``(M, d)`` and ``y_test`` ``(M,)``; each part holds at least one
sample, and every value is finite in the dtype of the run (float32 by default). Write one with::

    from safetensors.torch import save_file
    save_file({"x_train": x, "y_train": y}, "my_data.safetensors")

and run it with ``--set data.name=file --set data.path=my_data.safetensors``. Without a test
part, a seeded share ``data.split`` of the samples is held out as the test set.

An *image* data file (the ``images`` pipeline, :func:`load_image_file`) holds the same keys
with images ``x_train`` ``(N, C, H, W)`` (``C`` = 1 or 3; floats in ``[0, 1]``, or uint8
``0..255``, read as ``x / 255``) and class labels ``y_train`` ``(N,)`` in ``0..K-1``, and may
name its classes in the file's metadata (:data:`CLASS_NAMES_KEY`)::

    save_file({"x_train": x, "y_train": y}, "my_images.safetensors",
              metadata={"class_names": json.dumps(["cat", "dog", "bird"])})
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from pertlearn.data.catalogue import DatasetInfo
from pertlearn.data.images import ImageData

REQUIRED = ("x_train", "y_train")
OPTIONAL = ("x_test", "y_test")


def _open_error(path: Path, err: Exception) -> ValueError:
    if path.is_dir():  # safetensors says "No such device (os error 19)"
        return ValueError(
            f"data file {str(path)!r} is a folder; data.path must name a .safetensors file"
        )
    return ValueError(f"data file {str(path)!r} is not a readable .safetensors file: {err}")


def _empty_part_error(name: str, part: str) -> ValueError:
    """The error for a part (``train`` / ``test``) of the data file ``name`` without samples."""
    fix = "leave both out to hold out a share of x_train" if part == "test" else "add some"
    return ValueError(f"data file {name!r}: x_{part} and y_{part} hold no samples; {fix}")


def _check_finite(name: str, part: str, x: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise ValueError unless ``x_part`` of the data file ``name``, cast to ``dtype``, holds
    finite values only."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"data file {name!r}: x_{part} holds NaN or infinite values, or values too large "
            f"for {str(dtype).removeprefix('torch.')}"
        )


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors of :data:`REQUIRED` and :data:`OPTIONAL` in the file, read
    from its header only; a file without ``x_train`` is an error."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
            if "x_train" not in keys:
                raise ValueError(f"data file {str(path)!r} has no tensor 'x_train'")
            return {
                key: tuple(handle.get_slice(key).get_shape())
                for key in REQUIRED + OPTIONAL
                if key in keys
            }
    except (OSError, SafetensorError) as err:
        raise _open_error(path, err) from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of :data:`REQUIRED` and :data:`OPTIONAL` in the file as stored (real
    values only); a missing required tensor, or a test part without both halves, is an error."""
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
            for key in REQUIRED + OPTIONAL:
                if key in keys:
                    tensor = handle.get_tensor(key)
                    if tensor.is_complex():
                        raise ValueError(
                            f"data file {str(path)!r}: {key} holds complex numbers; "
                            "store real values"
                        )
                    tensors[key] = tensor
    except (OSError, SafetensorError) as err:
        raise _open_error(path, err) from None
    missing = [key for key in REQUIRED if key not in tensors]
    if missing:
        raise ValueError(f"data file {str(path)!r} lacks {', '.join(missing)}")
    if ("x_test" in tensors) != ("y_test" in tensors):
        raise ValueError(f"data file {str(path)!r} must hold both x_test and y_test, or neither")
    return tensors


def tensor_file_dim(path: str | Path) -> int:
    """Input dimension ``d`` of ``x_train`` in the file, read from its header only."""
    path = Path(path)
    shape = _header_shapes(path)["x_train"]
    if len(shape) != 2:
        raise ValueError(f"data file {str(path)!r}: x_train must be (N, d), got shape {shape}")
    return int(shape[1])


def load_tensor_file(
    path: str | Path, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The validated tensors of a binary data file (see the module docstring), in ``dtype``."""
    path = Path(path)
    tensors = {key: tensor.to(dtype) for key, tensor in _read_tensors(path).items()}
    for part in ("train", "test"):
        if f"x_{part}" not in tensors:
            continue
        x, y = tensors[f"x_{part}"], tensors[f"y_{part}"]
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data file {str(path)!r}: x_{part} must be (N, d) and y_{part} (N,), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[0] == 0:
            raise _empty_part_error(str(path), part)
        if not bool(((y == 1) | (y == -1)).all()):
            raise ValueError(
                f"data file {str(path)!r}: y_{part} must hold binary labels in {{-1, +1}}; "
                "map your classes to ±1 first"
            )
        _check_finite(str(path), part, x, dtype)
    if "x_test" in tensors and tensors["x_test"].shape[1] != tensors["x_train"].shape[1]:
        raise ValueError(f"data file {str(path)!r}: x_test and x_train differ in dimension")
    return tensors


def file_split(
    path: str | Path, split: float, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of a data file; without a test part, a random
    share ``split`` of the samples (drawn from ``generator``) becomes the test set."""
    t = load_tensor_file(path, dtype)
    if "x_test" in t:
        return t["x_train"], t["y_train"], t["x_test"], t["y_test"]
    n = t["x_train"].shape[0]
    n_test = max(1, round(split * n))
    if n_test >= n:
        raise ValueError(f"data file {str(path)!r}: too few samples ({n}) to hold out a test set")
    order = torch.randperm(n, generator=generator)
    test, train = order[:n_test], order[n_test:]
    return t["x_train"][train], t["y_train"][train], t["x_train"][test], t["y_train"][test]


# --------------------------------------------------------------------------- image files

IMAGE_CHANNELS = (1, 3)
"""The channels ``C`` an image data file may hold: grayscale or RGB (what the image figures
of the reports draw)."""

CLASS_NAMES_KEY = "class_names"
"""The key of an image data file's metadata (the safetensors header's string-to-string
``__metadata__``) that names its classes: a JSON list of ``K`` distinct strings, name ``k``
for label ``k``."""


def _file_class_names(path: Path, num_classes: int) -> tuple[str, ...] | None:
    """The class names in the metadata of the image data file ``path`` (``None`` without
    them), checked against the ``num_classes`` classes of its labels; a bad entry raises a
    one-line ValueError saying how to write it."""
    name = str(path)
    try:
        with safe_open(name, framework="pt") as handle:
            raw = (handle.metadata() or {}).get(CLASS_NAMES_KEY)
    except (OSError, SafetensorError) as err:
        raise _open_error(path, err) from None
    if raw is None:
        return None
    how = f'write metadata={{"{CLASS_NAMES_KEY}": json.dumps(["name of 0", "name of 1", ...])}}'
    try:
        names = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(
            f"data file {name!r}: metadata {CLASS_NAMES_KEY} is not JSON; {how}"
        ) from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"data file {name!r}: metadata {CLASS_NAMES_KEY} must be a JSON list of strings; {how}"
        )
    if len(names) != num_classes:
        raise ValueError(
            f"data file {name!r}: metadata {CLASS_NAMES_KEY} holds {len(names)} names, the "
            f"labels {num_classes} classes (0..{num_classes - 1}); give one name per class"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"data file {name!r}: metadata {CLASS_NAMES_KEY} names two classes {repeated[0]!r}; "
            "give every class its own name"
        )
    return tuple(names)


def image_file_shape(path: str | Path) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images of an image data file, read from its header only, with the
    shapes checked: ``x_*`` ``(N, C, H, W)`` with ``C`` in :data:`IMAGE_CHANNELS`, ``y_*``
    ``(N,)`` of the same ``N >= 1``, ``x_test`` of ``x_train``'s ``(C, H, W)``."""
    path = Path(path)
    shapes = _header_shapes(path)
    name = str(path)
    missing = [key for key in REQUIRED if key not in shapes]
    if missing:
        raise ValueError(f"data file {name!r} lacks {', '.join(missing)}")
    if ("x_test" in shapes) != ("y_test" in shapes):
        raise ValueError(f"data file {name!r} must hold both x_test and y_test, or neither")
    for part in ("train", "test"):
        if f"x_{part}" not in shapes:
            continue
        x, y = shapes[f"x_{part}"], shapes[f"y_{part}"]
        if len(x) != 4 or min(x[2:]) < 1:
            raise ValueError(
                f"data file {name!r}: x_{part} must be images (N, C, H, W), got shape {x}"
            )
        if x[1] not in IMAGE_CHANNELS:
            raise ValueError(
                f"data file {name!r}: x_{part} has {x[1]} channels (shape {x}); images are "
                "(N, C, H, W) with C = 1 (grayscale) or 3 (RGB)"
            )
        if y != (x[0],):
            raise ValueError(
                f"data file {name!r}: y_{part} must be one label per image, shape ({x[0]},), "
                f"got {y}"
            )
        if x[0] == 0:
            raise _empty_part_error(name, part)
    if "x_test" in shapes and shapes["x_test"][1:] != shapes["x_train"][1:]:
        raise ValueError(
            f"data file {name!r}: x_test images are {shapes['x_test'][1:]}, x_train images "
            f"{shapes['x_train'][1:]}; both parts need the same (C, H, W)"
        )
    c, h, w = shapes["x_train"][1:]
    return c, h, w


def load_image_file(
    path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[ImageData, ImageData | None]:
    """The validated train part and (``None`` without one) test part of an image data file.

    Images come out as ``dtype`` ``(N, C, H, W)`` in ``[0, 1]`` (a uint8 part divided by 255,
    a float part checked to lie in ``[0, 1]``), labels int64 ``(N,)``. The
    number of classes ``K`` is read from the labels: ``1 +`` the largest label. There is no
    separate count in the file, so nothing can disagree with the labels; in exchange every class
    ``0..K-1`` must have a training image (a gap is a labeling mistake, and the chance level
    ``1/K`` and the target rules ``(y + 1) mod K`` assume ``K`` real classes), ``K >= 2``, and
    the test labels lie in ``0..K-1``. The returned ``info`` (name ``"file"``) carries the
    per-channel pixel mean and std of ``x_train`` for the networks' input normalization, as a
    built-in data set carries those of its training set, and the class names of the file's
    metadata :data:`CLASS_NAMES_KEY` (else ``"0"``..``"K-1"``)."""
    path = Path(path)
    name = str(path)
    c, h, w = image_file_shape(path)
    raw = _read_tensors(path)
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for part in ("train", "test"):
        if f"x_{part}" not in raw:
            continue
        stored, y = raw[f"x_{part}"], raw[f"y_{part}"]
        if stored.dtype == torch.uint8:  # 8-bit pixels 0..255
            x = stored.to(dtype) / 255
        else:
            x = stored.to(dtype)
            _check_finite(name, part, x, dtype)
            if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
                raise ValueError(
                    f"data file {name!r}: x_{part} pixels must lie in [0, 1], found "
                    f"{float(x.min()):g}..{float(x.max()):g}; store 8-bit images as uint8 "
                    "(read as x / 255) or divide them by 255"
                )
        whole = y.to(torch.int64) if y.dtype != torch.bool else None
        if whole is None or not torch.equal(whole.to(y.dtype), y):
            got = "booleans" if whole is None else "values that are not whole numbers"
            raise ValueError(
                f"data file {name!r}: y_{part} must hold integer class labels 0..K-1, got {got}"
            )
        parts[part] = (x, whole)
    y_train = parts["train"][1]
    low = min(int(y.min()) for _, y in parts.values())
    if low < 0:
        raise ValueError(
            f"data file {name!r}: labels must lie in 0..K-1, found {low}; relabel the classes"
        )
    num_classes = int(y_train.max()) + 1
    if num_classes > y_train.numel():  # some class has no image (and no bincount of 10⁹ bins)
        raise ValueError(
            f"data file {name!r}: y_train holds class {num_classes - 1} but only "
            f"{y_train.numel()} images; number the classes present 0..K-1"
        )
    if num_classes < 2:
        raise ValueError(f"data file {name!r}: y_train holds 1 class; a task needs at least 2")
    counts = torch.bincount(y_train, minlength=num_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"data file {name!r}: class {empty[0]} of 0..{num_classes - 1} has no training "
            "image; number the classes present 0..K-1"
        )
    if "test" in parts and int(parts["test"][1].max()) >= num_classes:
        raise ValueError(
            f"data file {name!r}: y_test holds class {int(parts['test'][1].max())}, y_train only "
            f"0..{num_classes - 1}"
        )
    x_train = parts["train"][0]
    pixels = x_train.transpose(0, 1).reshape(c, -1).double()
    mean = tuple(float(v) for v in pixels.mean(1))
    std = tuple(float(v) if v > 0 else 1.0 for v in pixels.std(1, correction=0))
    info = DatasetInfo(
        name="file",
        title=f"data file {name!r}",
        shape=(c, h, w),
        num_classes=num_classes,
        class_names=_file_class_names(path, num_classes)
        or tuple(str(k) for k in range(num_classes)),
        mean=mean,
        std=std,
        files=(),
        folders=(),
    )
    return ImageData(info, x_train, y_train, (path,), ("train",)), (
        ImageData(info, *parts["test"], (path,), ("test",)) if "test" in parts else None
    )
