"""Data sets: the papers' synthetic distributions, re-exported here, and image data sets.

Modules: :mod:`~pertlearn.data.synthetic` (the papers' distributions),
:mod:`~pertlearn.data.files` (the user's own ``.safetensors`` data), and for MNIST,
Fashion-MNIST and CIFAR-10: :mod:`~pertlearn.data.catalogue` (names, shapes, files, checksums,
data directory), :mod:`~pertlearn.data.readers` (bounded raw/gzip reads),
:mod:`~pertlearn.data.idx` (IDX files), :mod:`~pertlearn.data.cifar_pickle` (the restricted
unpickler), :mod:`~pertlearn.data.download` (mirrors, checksums, safe extraction) and
:mod:`~pertlearn.data.images` (loading and preparing; errors are
:class:`~pertlearn.data.errors.DataError`).

The synthetic distributions are loaded on first use (PEP 562): they import torch, and the
catalogue and downloads do not need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pertlearn.data.synthetic import (
        SYNTHETIC,
        balanced_signs,
        gauss,
        random_signs,
        shifted_gauss,
        uniform,
    )

__all__ = ["SYNTHETIC", "balanced_signs", "gauss", "random_signs", "shifted_gauss", "uniform"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'pertlearn.data' has no attribute {name!r}")
    return getattr(importlib.import_module("pertlearn.data.synthetic"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
