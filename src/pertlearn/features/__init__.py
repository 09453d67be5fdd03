"""Building blocks of the feature-hypothesis workbench: plain functions over tensors and
``nn.Module`` objects, with no pipeline or config of their own.

- :mod:`pertlearn.features.constructed`: the penultimate-layer representation of a model and
  the robust / non-robust dataset construction of Ilyas et al. 2019 (arXiv:1905.02175).
- :mod:`pertlearn.features.spectra`: radial power spectra of images and perturbations, same-norm
  Gaussian noise, ideal low-/high-pass filters in the 2-D Fourier domain.
- :mod:`pertlearn.features.transfer`: transfer rate of adversarial sets to another model and a
  source × target architecture matrix of results.
"""

from pertlearn.features.constructed import (
    Construction,
    classifier_layer,
    construct_dataset,
    representation,
    start_points,
)
from pertlearn.features.spectra import (
    high_pass,
    low_pass,
    mean_per_class,
    radial_bin_counts,
    radial_bins,
    radial_power_spectrum,
    random_noise_like,
)
from pertlearn.features.transfer import TransferMatrix, transfer_rate

__all__ = [
    "Construction",
    "TransferMatrix",
    "classifier_layer",
    "construct_dataset",
    "high_pass",
    "low_pass",
    "mean_per_class",
    "radial_bin_counts",
    "radial_bins",
    "radial_power_spectrum",
    "random_noise_like",
    "representation",
    "start_points",
    "transfer_rate",
]
