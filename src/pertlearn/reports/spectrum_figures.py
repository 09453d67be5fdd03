"""Radial power spectra of a run's perturbations next to the clean images and Gaussian noise of
the same norm (the frequency content of what g learns from; feature hypothesis, Ilyas et al.
2019, arXiv:1905.02175; perturbation learning, Kumano et al., arXiv:2402.10470).

Needs a run of the natural scenarios with saved tensors (``x_train``, ``x_adv``, ``y_adv``):
the perturbation of sample n is ``δ_n = x_adv_n − x_train_n``. Spectra are
:func:`pertlearn.features.spectra.radial_power_spectrum` with ``reduce="mean"`` (power per
DFT frequency of the radial bin, so white noise is flat), averaged over samples, log-scaled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pertlearn.analysis.plotting import OKABE_ITO, figure_style
from pertlearn.data.catalogue import DATASETS
from pertlearn.experiments.rundir import RunRecord, read_run
from pertlearn.features.spectra import (
    mean_per_class,
    radial_bin_counts,
    radial_power_spectrum,
    random_noise_like,
)
from pertlearn.reports.figures import Figure, make_figure, panel_grid, plt
from pertlearn.reports.hit_table import class_label
from pertlearn.reports.run_figures import saved_images
from pertlearn.seeding import stage_generator

MAX_SAMPLES = 2000
"""Samples used (the first ones): enough for smooth means, quick on a CPU."""
RADIUS_LABEL = "radial frequency r = round(√(k_y² + k_x²)) (cycles per image)"
POWER_LABEL = "mean power per frequency (log scale)"
SERIES = (
    ("clean images", OKABE_ITO["blue"], "-"),
    ("perturbations", OKABE_ITO["vermillion"], "-"),
    ("same-norm Gaussian noise", OKABE_ITO["black"], "--"),
)


Spectra = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]
"""What :func:`run_spectra` returns."""


def run_spectra(run_dir: Path, max_samples: int = MAX_SAMPLES) -> Spectra | None:
    """Per-sample spectra ``(N, R)`` of the clean images, the perturbations and same-norm
    noise (keys of :data:`SERIES`), with the true labels ``(N,)``, the targets ``(N,)`` of the
    first ``max_samples`` samples and the frequencies per radial bin ``(R,)``; ``None`` when
    the run has no image perturbations (no saved tensors, the uniform scenario, or inputs that
    are not images of a built-in data set)."""
    return record_spectra(read_run(run_dir), max_samples)


def record_spectra(record: RunRecord, max_samples: int = MAX_SAMPLES) -> Spectra | None:
    """:func:`run_spectra` of a run directory already read."""
    if not record.has_tensors() or record.metrics.get("scenario") == "uniform":
        return None
    tensors = record.tensors()
    if not {"y_train", "y_adv"} <= set(tensors):
        return None
    flat_rows = "x_train" in tensors and tensors["x_train"].dim() == 2
    if flat_rows and record.config.get("data", {}).get("name") not in DATASETS:
        return None  # flat synthetic inputs are not images, whatever their length
    images = saved_images(tensors)
    if images is None:
        return None
    clean, adv = images[0][:max_samples], images[1][:max_samples]
    if clean.dim() != 4 or not clean.is_floating_point() or clean.shape[-1] < 2:
        return None
    delta = adv - clean
    noise = random_noise_like(delta, stage_generator(0, "spectrum_noise"))
    spectra = {
        "clean images": radial_power_spectrum(clean, reduce="mean"),
        "perturbations": radial_power_spectrum(delta, reduce="mean"),
        "same-norm Gaussian noise": radial_power_spectrum(noise, reduce="mean"),
    }
    n = clean.shape[0]
    counts = radial_bin_counts(*clean.shape[-2:])
    return spectra, tensors["y_train"][:n].long(), tensors["y_adv"][:n].long(), counts


def half_power_radius(spectrum: torch.Tensor, counts: torch.Tensor) -> int | None:
    """Smallest radius whose bins up to it hold half of the power of ``spectrum`` ``(R,)``
    (power per frequency, multiplied back by the bin sizes ``counts`` ``(R,)``); ``None`` when
    the spectrum holds no power (a zero perturbation)."""
    total = spectrum * counts.to(spectrum)
    power = total.sum()
    if not bool(power > 0):
        return None
    cumulative = total.cumsum(0) / power
    return int((cumulative >= 0.5).nonzero()[0])


def _format_radius(radius: int | None) -> str:
    return "none (no power)" if radius is None else str(radius)


def _draw(ax: Any, curves: dict[str, torch.Tensor], title: str, legend: bool) -> None:
    """The curves of :data:`SERIES` on a log axis; a curve without positive power (a zero
    perturbation, and its same-norm noise) has nothing to draw there and is named in the
    panel instead."""
    without_power = []
    for name, color, style in SERIES:
        values = curves[name]
        radius = torch.arange(values.shape[0])
        keep = values > 0  # log axis: DC of zero-mean noise can be exactly 0
        if not bool(keep.any()):
            without_power.append(name)
            continue
        ax.plot(radius[keep].numpy(), values[keep].numpy(), style, color=color, label=name)
    if without_power:
        ax.text(
            0.97,
            0.97,
            "zero power, not drawn:\n" + "\n".join(without_power),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color=OKABE_ITO["vermillion"],
        )
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)  # radii are whole bins
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize=8)


def _zero_perturbation_note(perturbation_spectra: torch.Tensor) -> str:
    """A caption sentence when no perturbation carries power (the attack moved no image, or
    the perturbation filter removed all of it); empty otherwise."""
    if bool((perturbation_spectra > 0).any()):
        return ""
    return (
        " Every perturbation is zero (the attack moved no image, or perturbation_filter "
        "removed all of it), so neither the perturbations nor their same-norm noise are drawn."
    )


def spectrum_figure(run_dir: Path, per_class: bool = False) -> Figure | None:
    """Radial power spectra (log power against the radial frequency) of the perturbations,
    the clean images and same-norm noise; ``per_class``: one panel per target class (the
    perturbations and noise of the samples with that target, the clean images of that
    class). ``None`` when the run has no image perturbations (and, per class, for the ±1
    labels of binary runs)."""
    record = read_run(run_dir)
    found = record_spectra(record)
    if found is None:
        return None
    spectra, y_true, y_target, counts = found
    size = spectra["clean images"].shape[1]
    if not per_class:
        means = {name: values.mean(dim=0) for name, values in spectra.items()}
        with figure_style():
            fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
            _draw(ax, means, "Radial power spectrum", legend=True)
            ax.set_xlabel(RADIUS_LABEL)
            ax.set_ylabel(POWER_LABEL)
        radii = ", ".join(
            f"{name} {_format_radius(half_power_radius(v, counts))}" for name, v in means.items()
        )
        caption = (
            f"Mean over the first {spectra['clean images'].shape[0]} training samples of the "
            f"power per DFT frequency in each radial bin (orthonormal 2-D DFT, {size} bins); "
            f"the noise has each perturbation's L2 norm. Half-power radius: {radii}."
            + _zero_perturbation_note(spectra["perturbations"])
        )
        return make_figure("perturbation-spectrum", "perturbation spectrum", fig, caption)
    if int(min(int(y_true.min()), int(y_target.min()))) < 0:
        return None  # ±1 labels of a binary run: no class panels
    # every class of the data set gets a panel, also those no sample of this run has
    num_classes = record.metrics.get("num_classes")
    observed = int(max(int(y_true.max()), int(y_target.max()))) + 1
    classes = max(observed, num_classes if isinstance(num_classes, int) else 0)
    grouped = {
        "clean images": mean_per_class(spectra["clean images"], y_true, classes),
        "perturbations": mean_per_class(spectra["perturbations"], y_target, classes),
        "same-norm Gaussian noise": mean_per_class(
            spectra["same-norm Gaussian noise"], y_target, classes
        ),
    }
    cols = min(5, classes)
    rows = -(-classes // cols)
    with figure_style():
        fig, panels = panel_grid(classes, cols, (2.6, 2.3), sharex=True, sharey=True)
        for k, ax in enumerate(panels):
            curves = {name: values[k] for name, values in grouped.items()}
            label = f"class {class_label(str(k), record.class_names)}"
            if any(bool(torch.isnan(v).all()) for v in curves.values()):
                ax.set_title(f"{label}: no samples", fontsize=9)
                continue
            _draw(ax, curves, label, legend=False)
            if k // cols == rows - 1:
                ax.set_xlabel("radius r (cycles/image)", fontsize=8)
            if k % cols == 0:
                ax.set_ylabel("power (log)", fontsize=8)
        fig.suptitle("Radial power spectrum per class (perturbations and noise by target class)")
        drawn = [ax for ax in panels if ax.get_lines()]
        if drawn:  # a class without samples draws nothing
            handles, labels = drawn[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)
    caption = (
        "Per class k: mean spectrum of the perturbations whose target is k, of same-norm noise "
        "for the same samples, and of the clean training images of class k; power per DFT "
        f"frequency of the radial bin, log scale; first {spectra['clean images'].shape[0]} "
        "training samples." + _zero_perturbation_note(spectra["perturbations"])
    )
    return make_figure(
        "perturbation-spectrum-per-class", "perturbation spectrum per class", fig, caption
    )


def spectrum_per_class_figure(run_dir: Path) -> Figure | None:
    """:func:`spectrum_figure` with one panel per target class."""
    return spectrum_figure(run_dir, per_class=True)
