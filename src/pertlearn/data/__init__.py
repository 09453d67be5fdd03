"""Data sets: the papers' synthetic distributions, re-exported here, and image data sets.

Modules: :mod:`~pertlearn.data.synthetic` (the papers' distributions),
:mod:`~pertlearn.data.files` (the user's own ``.safetensors`` data), and for MNIST,
Fashion-MNIST and CIFAR-10: :mod:`~pertlearn.data.catalogue` (names, shapes, files, checksums,
data directory), :mod:`~pertlearn.data.readers` (bounded raw/gzip reads),
:mod:`~pertlearn.data.idx` (IDX files), :mod:`~pertlearn.data.cifar_pickle` (the restricted
unpickler), :mod:`~pertlearn.data.download` (mirrors, checksums, safe extraction) and
:mod:`~pertlearn.data.images` (loading and preparing; errors are
:class:`~pertlearn.data.errors.DataError`).
"""

from pertlearn.data.synthetic import (
    SYNTHETIC,
    balanced_signs,
    gauss,
    random_signs,
    shifted_gauss,
    uniform,
)

__all__ = ["SYNTHETIC", "balanced_signs", "gauss", "random_signs", "shifted_gauss", "uniform"]
