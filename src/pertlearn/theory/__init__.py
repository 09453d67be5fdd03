"""Theory next to practice: what the papers predict for a run, and whether its assumptions hold.

* :mod:`pertlearn.theory.kernel`: the NeurIPS24 kernel Φ (closed form :func:`phi`, chunked
  products :func:`phi_matmul`, Monte Carlo :func:`phi_monte_carlo`).
* :mod:`pertlearn.theory.neurips`: predicted perturbation directions and decision functions
  f̂, ĝ of wide two-layer networks.
* :mod:`pertlearn.theory.iclr`: the ICLR24 near-orthogonality condition, max-margin λ, the
  linear surrogate f̃ and its predicted L2/L∞/L0 perturbations, g's two-term surrogate.
* :mod:`pertlearn.analysis.theory` (above this package): all of it for a run directory.
"""

from pertlearn.theory.kernel import phi, phi_diagonal, phi_matmul, phi_monte_carlo
from pertlearn.theory.neurips import (
    cosines,
    fhat,
    ghat,
    predicted_directions,
    predicted_perturbations,
    sign_agreement,
)

__all__ = [
    "cosines",
    "fhat",
    "ghat",
    "phi",
    "phi_diagonal",
    "phi_matmul",
    "phi_monte_carlo",
    "predicted_directions",
    "predicted_perturbations",
    "sign_agreement",
]
