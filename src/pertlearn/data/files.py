"""The user's own binary data set, read from a ``.safetensors`` file (never a pickle).

The file holds ``x_train`` ``(N, d)`` and ``y_train`` ``(N,)`` with labels in ``{-1, +1}``,
and optionally ``x_test`` ``(M, d)`` and ``y_test`` ``(M,)``; each part holds at least one
sample, and every value is finite in the dtype of the run (float32 by default). Write one with::

    from safetensors.torch import save_file
    save_file({"x_train": x, "y_train": y}, "my_data.safetensors")

and run it with ``--set data.name=file --set data.path=my_data.safetensors``. Without a test
part, a seeded share ``data.split`` of the samples is held out as the test set.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

REQUIRED = ("x_train", "y_train")
OPTIONAL = ("x_test", "y_test")


def _open_error(path: Path, err: Exception) -> ValueError:
    if path.is_dir():  # safetensors says "No such device (os error 19)"
        return ValueError(
            f"data file {str(path)!r} is a folder; data.path must name a .safetensors file"
        )
    return ValueError(f"data file {str(path)!r} is not a readable .safetensors file: {err}")


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
            fix = "leave both out to hold out a share of x_train" if part == "test" else "add some"
            raise ValueError(
                f"data file {str(path)!r}: x_{part} and y_{part} hold no samples; {fix}"
            )
        if not bool(((y == 1) | (y == -1)).all()):
            raise ValueError(
                f"data file {str(path)!r}: y_{part} must hold binary labels in {{-1, +1}}; "
                "map your classes to ±1 first"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"data file {str(path)!r}: x_{part} holds NaN or infinite values, or values "
                f"too large for {str(dtype).removeprefix('torch.')}"
            )
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
