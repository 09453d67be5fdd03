"""Figures of a single run directory: the decision map of f and g on a 2-D plane (NeurIPS24
arXiv:2410.23677,
"Decision maps") and a grid of clean / adversarial / perturbation samples for image-shaped
inputs. Both need the run's ``tensors.safetensors`` (``save_tensors = true``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from pertlearn.analysis import decision_maps
from pertlearn.analysis.plotting import figure_style
from pertlearn.analysis.theory import read_run_data
from pertlearn.experiments.rundir import read_run
from pertlearn.reports.figures import Figure, make_figure, plt
from pertlearn.reports.summary import class_name

GRID = 160
IMAGE_SHAPES = {784: (1, 28, 28), 3072: (3, 32, 32)}
"""Flattened rows of these lengths are MNIST-sized and CIFAR-10-sized images."""


def saved_images(tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A run's clean training inputs ``x_train`` and their crafted versions ``x_adv``, flattened
    rows of an :data:`IMAGE_SHAPES` length reshaped to images ``(N, C, H, W)``; ``None`` when
    either is missing or their shapes differ."""
    if "x_train" not in tensors or "x_adv" not in tensors:
        return None
    clean, adv = tensors["x_train"], tensors["x_adv"]
    if clean.shape != adv.shape:
        return None
    if clean.dim() == 2 and clean.shape[1] in IMAGE_SHAPES:
        shape = IMAGE_SHAPES[clean.shape[1]]
        clean, adv = clean.reshape(-1, *shape), adv.reshape(-1, *shape)
    return clean, adv


def decision_map(run_dir: Path) -> Figure | None:
    """sign f, sign g and their agreement on the plane of the class means
    (:func:`pertlearn.analysis.decision_maps.default_axes`), with the projected training
    points; ``None`` for runs this does not apply to (not a binary run with inputs ``(N, d)``,
    or no saved tensors)."""
    record = read_run(run_dir)
    if not record.has_tensors() or record.pipeline != "neurips":
        return None
    try:
        run = read_run_data(run_dir)
    except ValueError:  # not a binary run with flat inputs
        return None
    dmap = decision_maps.decision_map(
        {"f": run.f, "g": run.g}, run.x_train, run.y_train, resolution=GRID
    )
    on_plane = dmap.agreement("f", "g")
    value = record.metrics.get("agreement")
    on_test = float(value) if isinstance(value, int | float) else None
    title = (
        "Decision map of f and g on the plane of the class means\n"
        + decision_maps.plane_agreement_text(on_plane, on_test)
    )
    fig = decision_maps.draw_decision_map(
        dmap,
        rows=[["f", "g"]],
        title=title,
        test_agreement={("f", "g"): on_test} if on_test is not None else None,
    )
    caption = (
        f"sign f, sign g and their agreement on the plane through the origin spanned by the "
        f"class means (a, b: coordinates along its two orthonormal axes); training points "
        f"projected (×: +1, ○: −1). f and g agree on {on_plane:.1%} of the plotted plane"
        + (f" and on {on_test:.1%} of the test set." if on_test is not None else ".")
    )
    return make_figure("decision-map", "decision map", fig, caption)


def _label_titles(
    tensors: dict[str, torch.Tensor],
    n: int,
    count: int,
    class_names: Sequence[str] | None = None,
) -> list[str]:
    """``"true → target"`` for the first ``count`` of ``n`` crafted images, from ``y_train`` and
    ``y_adv`` (``(n,)`` each; class ``k`` as ``class_names[k]`` when given, else ±1 labels
    with their sign); empty when either is missing or of another length."""
    y, target = tensors.get("y_train"), tensors.get("y_adv")
    if y is None or target is None or y.shape != (n,) or target.shape != (n,):
        return []

    signed = bool(((y == 1) | (y == -1)).all())

    def name(value: torch.Tensor) -> str:
        k = int(value)
        named = class_name(k, class_names)
        if named is not None:
            return named
        return f"{k:+d}" if signed else str(k)

    return [f"{name(y[i])} → {name(target[i])}" for i in range(count)]


def sample_grid(run_dir: Path, count: int = 8) -> Figure | None:
    """Clean inputs, their adversarial versions and the perturbations (each image scaled to
    its own range so that the perturbation is visible) for image-shaped inputs."""
    record = read_run(run_dir)
    if not record.has_tensors():
        return None
    tensors = record.tensors()
    pair = saved_images(tensors)
    if pair is None:
        return None
    clean, adv = pair
    if clean.dim() != 4 or clean.shape[1] not in (1, 3):
        return None
    count = min(count, clean.shape[0])
    titles = _label_titles(tensors, clean.shape[0], count, record.class_names)
    rows = {
        "clean": clean[:count],
        "adversarial": adv[:count],
        "perturbation": (adv - clean)[:count],
    }
    with figure_style():
        fig, grid = plt.subplots(
            3, count, figsize=(1.4 * count, 4.6), squeeze=False, layout="constrained"
        )
        for r, (label, images) in enumerate(rows.items()):
            for c in range(count):
                image = images[c].double()
                low, high = float(image.min()), float(image.max())
                scaled = (image - low) / (high - low) if high > low else image * 0
                panel = grid[r][c]
                if scaled.shape[0] == 1:
                    panel.imshow(scaled[0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    panel.imshow(scaled.permute(1, 2, 0).numpy())
                panel.set_xticks([])
                panel.set_yticks([])
                panel.spines[:].set_visible(True)  # a full thin frame around every image
                panel.spines[:].set_linewidth(0.5)
                if c == 0:
                    panel.set_ylabel(label)
                if r == 0 and titles:
                    panel.set_title(titles[c], fontsize=9)
    norms = (adv - clean).flatten(1).norm(dim=1)
    caption = (
        f"First {count} training inputs, their adversarial versions and the perturbations "
        f"(each image min–max scaled; mean L2 norm of the perturbation "
        f"{float(norms.mean()):.3g})"
        + ("; above each column: true label → target label." if titles else ".")
    )
    return make_figure("samples", "samples", fig, caption)
