"""ICLR24 artificial-experiment presets (spec §3): ``iclr-artificial-{l0,l2,linf}-{uniform,gauss}``.

cpu scale: d = 1000, m = 100, N = 100, N_noise = 1000, 3000 epochs; paper scale: d = 10000,
m = 1000, N = 1000, N_noise = 10000, 100,000 epochs. Both: OneHiddenNet with γ = 0.01,
exponential loss, full-batch SGD lr 0.01 with momentum 0.9 and ReduceLROnPlateau (the
reference settings), i.i.d. random labels and targets. At cpu scale f trains the full 3000
epochs (stopping it early costs g accuracy on gauss data), while g and the control g' stop
once their loss changes by less than 0.1% per epoch (``stop_tol = 1e-3``, after ~800 epochs:
same accuracies as 3000 epochs, a third of the time). Budgets: L2 ε = 0.0078·√d, L∞
ε = 0.03 (the reference's rescaled variant, ``pgd_linf_rescaled``), L0 k = 5% of d.
"""

from __future__ import annotations

from typing import Any

from pertlearn.experiments.presets import Scale, register_preset

SIZES: dict[str, dict[str, int]] = {
    "cpu": {"dim": 1000, "width": 100, "n_train": 100, "n_noise": 1000, "epochs": 3000},
    "paper": {"dim": 10000, "width": 1000, "n_train": 1000, "n_noise": 10000, "epochs": 100000},
}
G_STOP_TOL = 1e-3
"""cpu scale: g and g' stop once the relative change of their loss per epoch is below this."""
LABEL = {"l0": "L0", "l2": "L2", "linf": "L∞"}
L0_FRACTION = 0.05
"""L0 budget: the share of the d coordinates that may change."""


def attack_tree(norm: str, dim: int) -> dict[str, Any]:
    """The attack section for ``norm`` (``l0``, ``l2``, ``linf``) at input dimension ``dim``."""
    if norm == "l2":
        return {"name": "pgd_l2", "eps_per_sqrt_dim": 0.0078}
    if norm == "linf":
        return {"name": "pgd_linf_rescaled", "eps": 0.03}
    return {"name": "pgd_l0", "eps": float(max(1, round(L0_FRACTION * dim)))}


def iclr_artificial(scale: Scale, norm: str, data: str) -> dict[str, Any]:
    """Config tree of the ICLR24 artificial experiment with ``norm`` on ``data``."""
    size = SIZES[scale]
    train = {
        "loss": "exponential",
        "lr": 0.01,
        "momentum": 0.9,
        "epochs": size["epochs"],
        "plateau_patience": 10,
    }
    train_g = dict(train)
    if scale == "cpu":
        # g's accuracy on D is stable long before 3000 epochs (the exponential loss then
        # only shrinks like 1/t); stop once it changes by less than 0.1% per epoch.
        train_g["stop_tol"] = G_STOP_TOL
    return {
        "pipeline": "iclr_artificial",
        "description": f"ICLR24 artificial: g learns from {LABEL[norm]}-perturbed {data} noise",
        "data": {
            "name": data,
            "dim": size["dim"],
            "n_train": size["n_train"],
            "n_noise": size["n_noise"],
            "n_test": 1000,
        },
        "model": {"name": "one_hidden", "width": size["width"], "slope": 0.01},
        "train_f": dict(train),
        "train_g": train_g,
        "attack": attack_tree(norm, size["dim"]),
        "targets": "random",
        "controls": ["unperturbed_inputs"],
    }


def _register(norm: str, data: str) -> None:
    budget = {"l0": "k = 5% of d", "l2": "ε = 0.0078·√d", "linf": "ε = 0.03 (rescaled)"}[norm]

    @register_preset(
        f"iclr-artificial-{norm}-{data}",
        f"ICLR24 artificial, {LABEL[norm]} attack on {data} noise, {budget}",
    )
    def build(scale: Scale) -> dict[str, Any]:
        return iclr_artificial(scale, norm, data)


for _norm in ("l0", "l2", "linf"):
    for _data in ("uniform", "gauss"):
        _register(_norm, _data)
