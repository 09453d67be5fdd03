"""The ICLR24 image pipeline (Kumano et al., arXiv:2402.10470, image experiments).

K-class images (MNIST, Fashion-MNIST, CIFAR-10, or a class subset), a CNN f trained by
mini-batch SGD, an adversarial set crafted against f with any registered attack, a fresh g
trained only on it, and g measured on clean test images. Scenarios (``scenario``; Ilyas et al.
arXiv:1905.02175 call the natural ones D_rand and D_det):

- ``natural_rand``: the training images, each with a target drawn uniformly among the *other*
  classes;
- ``natural_det``: the training images with target ``(y + 1) mod K``;
- ``uniform``: ``data.n_noise`` images from ``U[0,1]^{C×H×W}`` with uniform random targets,
  generated and attacked ``craft_batch_size`` at a time (each batch from its own seeded
  generator, so the control can regenerate the same noise instead of storing it);
- ``robust`` / ``non_robust``: Ilyas et al.'s D_R / D_NR (arXiv:1905.02175, Sec. 3.1): for
  every training image x (label y) an image x_r built by normalized gradient descent on
  ``‖rep(x_r) − rep(x)‖₂`` (``rep``: f's penultimate layer) from another training image or
  noise (``construction``), keeping the label y. ``robust`` needs an adversarially trained f
  (``train_f.adversarial``), ``non_robust`` a standard one. The constructed images are the
  crafted set (``x_adv``, labels ``y_adv = y``; their start points are ``x_start``) and
  ``fooling_rate`` is the share of them that f assigns to y.

Controls (``controls``): ``unperturbed_inputs`` trains g' on g's inputs before the attack or
construction (the clean images, the noise, or the start points) with g's labels;
``mislabeled_clean`` on the clean images g's inputs were made from with g's labels (natural
scenarios: the training images with the targets, the same set as ``unperturbed_inputs``;
``robust`` / ``non_robust``: the start images with the labels of the images they were matched
to). It is refused for ``uniform`` and for noise start points, whose inputs are not images.

Options for the feature studies (Ilyas et al. arXiv:1905.02175):

- ``perturbation_filter = {kind = "low_pass" | "high_pass", cutoff = c}``: g trains on
  ``x + low_pass(δ, c)`` or ``x + high_pass(δ, c)`` with ``δ = x_adv − x`` the crafted
  perturbation (ideal Fourier filters of :mod:`pertlearn.features.spectra`, radial bin ``<= c``
  kept or removed; the two parts add up to δ). The filtered inputs are not clipped back to
  ``[0, 1]``. ``fooling_rate`` is then measured on the filtered set, ``fooling_rate_unfiltered``
  on the crafted one, ``perturbation_energy_kept`` is ``Σ‖filtered δ‖² / Σ‖δ‖²``.
- ``f_weights = "RUN_DIR"`` (or a ``.safetensors`` file): f is loaded instead of trained, so
  that D_R, D_det, D_rand and transfer sets come from one classifier
  (:mod:`pertlearn.experiments.trained_f` says what is checked); ``f_weights_sha256`` records
  the weights used.
- ``transfer_eval = true``: a model of g's architecture trained on the clean training images
  (``train_f`` settings, its own seeding stage, so independent of f even for the same
  architecture) scores the adversarial set: ``transfer_rate`` is the share it assigns to the
  targets (:func:`pertlearn.features.transfer_rate`), ``transfer_model_acc_test`` its clean
  accuracy. With ``model`` × ``model_g`` swept, this is the transfer matrix (sweep preset
  ``transfer-mnist-l2``).

The fooling check: ``fooling_rate`` is the share of adversarial images that f assigns to their
target; ``fooling_rate_per_class`` the same per target class (keys are class indices as
strings; for the natural scenarios ``fooling_rate_per_source_class`` groups by the true class).

Pixels stay in ``[0, 1]`` (the models normalize internally), so attacks clip to ``(0, 1)``
unless ``attack.options.clip`` says otherwise.

Paper scale on a GPU (docs/gpu.md): ``train_f`` / ``train_g`` take ``precision``,
``channels_last`` and ``compile``; ``craft_precision`` runs the crafting attack's forward
passes in bf16/fp16; ``craft_batch_size = "auto"`` attacks as many images at once as half the
free CUDA memory holds (a fixed :data:`CPU_CRAFT_BATCH` on the CPU) and records the size in the
metric ``craft_batch_size``.

:func:`run_images` reads top to bottom: data → f (trained or loaded) → the adversarial or
constructed set → the fooling check → g → metrics → transfer → controls → tensors; what the
stages share (:class:`~.images_stages.ImageRun`), training and crafting are in
:mod:`.images_stages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pertlearn.attacks.base import per_class_hit_rates
from pertlearn.data.catalogue import DATASETS
from pertlearn.data.download import sha256_file
from pertlearn.data.files import image_file_shape
from pertlearn.experiments.image_data import image_split
from pertlearn.experiments.pipelines.images_config import (
    CONSTRUCTED_SCENARIOS,
    ConstructConfig,
    ImageModelConfig,
    ImagesConfig,
)
from pertlearn.experiments.pipelines.images_stages import (
    BAND_FILTERS,
    CPU_CRAFT_BATCH,
    CraftedSet,
    ImageNetworks,
    ImageRun,
    ModelFactory,
    adversarial_perturb,
    attacked_set,
    check_representation,
    clean_batches,
    construct_set,
    constructed_set,
    craft_attack,
    new_model,
    resolve_craft_batch,
    train_model,
    untargeted_attack,
)
from pertlearn.experiments.result import Result
from pertlearn.experiments.stages import CONTROL_STAGE, DTYPES, RunOutputs, split_tensors
from pertlearn.experiments.trained_f import f_weights_file, load_f_weights
from pertlearn.features.transfer import transfer_rate
from pertlearn.metrics import accuracy, predictions
from pertlearn.seeding import resolve_device, stage_generator
from pertlearn.training.adversarial import robust_accuracy
from pertlearn.training.minibatch import MinibatchResult

__all__ = [
    "BAND_FILTERS",
    "CONSTRUCTED_SCENARIOS",
    "CPU_CRAFT_BATCH",
    "TRANSFER_STAGE",
    "ConstructConfig",
    "ImageModelConfig",
    "ImagesConfig",
    "ModelFactory",
    "adversarial_perturb",
    "construct_set",
    "images_networks",
    "resolve_craft_batch",
    "run_images",
    "untargeted_attack",
]

TRANSFER_STAGE = "transfer_model"
"""Seeding stage (and model name) of the independently trained model of ``transfer_eval``."""


# ----------------------------------------------------------------------------- stages


def load_images(
    config: ImagesConfig,
    device: torch.device,
    *,
    progress: bool,
    model_factory: ModelFactory | None,
) -> ImageRun:
    """Stage *data*: the seeded split of ``config.data`` (images ``(N, C, H, W)`` in
    ``[0, 1]``, classes ``0..K-1``) on ``device``, with what every later stage shares (for a
    data file, the SHA-256 of the file, hashed once it was read)."""
    dtype = DTYPES[config.dtype]
    split = image_split(config.data, config.seed, binary=False, center=False, dtype=dtype)
    data_sha256 = sha256_file(config.data.path) if config.data.path is not None else None
    return ImageRun(
        config=config,
        x_train=split.x_train.to(device),
        y_train=split.y_train.to(device),
        x_test=split.x_test.to(device),
        y_test=split.y_test.to(device),
        info=split.info,
        num_classes=len(split.classes),
        device=device,
        dtype=dtype,
        eval_batch=max(config.train_f.eval_batch_size, 1),
        progress=progress,
        model_factory=model_factory,
        checkpoint_root=Path(config.checkpoint_dir) if config.checkpoint_dir else None,
        data_sha256=data_sha256,
        class_names=tuple(split.info.class_names[c] for c in split.classes),
    )


def train_or_load_f(
    run: ImageRun, f_file: Path | None
) -> tuple[nn.Module, MinibatchResult, str | None]:
    """Stage *train_f*: f trained on the clean training images, or (``f_file``) f's weights
    loaded into a fresh ``config.model`` with an empty training record; with the sha256 of
    the weights loaded (else ``None``)."""
    config = run.config
    if f_file is None:
        return (
            *train_model(run, "f", config.model, run.x_train, run.y_train, config.train_f),
            None,
        )
    f = new_model(run, "f", config.model)
    return f, MinibatchResult(), load_f_weights(f_file, f)


@dataclass(frozen=True)
class GSet:
    """g's training set, chosen by the fooling check: ``fooled`` ``(n_adv,)`` (f assigns the
    crafted image to its label), ``kept`` the indices ``(n_kept,)`` of the fooled images under
    ``keep = "fooled"`` (else ``None``: all images), ``x`` ``(n_g, C, H, W)`` and ``y``
    ``(n_g,)`` the images and labels g learns from."""

    fooled: torch.Tensor
    kept: torch.Tensor | None
    x: torch.Tensor
    y: torch.Tensor

    def select(self, inputs: torch.Tensor) -> torch.Tensor:
        """The rows of ``inputs`` ``(n_adv, ...)`` that g learns from."""
        return inputs if self.kept is None else inputs[self.kept]


def fooling_check(run: ImageRun, f: nn.Module, crafted: CraftedSet) -> GSet:
    """The fooling check (ICLR24 arXiv:2402.10470, image experiments): does f predict the
    label (the target) of each crafted image? Under ``keep = "fooled"`` g learns from these
    only; none fooled is an error."""
    fooled = predictions(f, crafted.x_adv, run.eval_batch) == crafted.y_adv
    kept = fooled.nonzero().squeeze(1) if run.config.keep == "fooled" else None
    if kept is not None and kept.numel() == 0:
        raise ValueError("keep = 'fooled' kept no example; raise attack.eps or keep = 'all'")
    if kept is None:
        return GSet(fooled, None, crafted.x_adv, crafted.y_adv)
    return GSet(fooled, kept, crafted.x_adv[kept], crafted.y_adv[kept])


def scores(
    run: ImageRun,
    f: nn.Module,
    g: nn.Module,
    g_history: MinibatchResult,
    crafted: CraftedSet,
    g_set: GSet,
    f_weights_sha256: str | None,
) -> dict[str, Any]:
    """Stage *evaluate*: the metrics of f, g and the crafted set (docs/metrics.md), in the
    contract's order; with ``robust_eval`` also :func:`robust_scores`."""
    config, eval_batch, num_classes = run.config, run.eval_batch, run.num_classes
    x_train, y_train, x_test, y_test = run.x_train, run.y_train, run.x_test, run.y_test
    f_test_pred = predictions(f, x_test, eval_batch)
    g_test_pred = predictions(g, x_test, eval_batch)
    counts = torch.bincount(g_test_pred, minlength=num_classes)
    fooled, n_adv = g_set.fooled, crafted.n_adv
    metrics: dict[str, Any] = {
        "f_acc_train": accuracy(f, x_train, y_train, eval_batch),
        "f_acc_test": (f_test_pred == y_test).double().mean().item(),
        "g_acc_train": accuracy(g, x_train, y_train, eval_batch),
        "g_acc_test": (g_test_pred == y_test).double().mean().item(),
        "g_best_acc_test": g_history.best_val_acc,
        "g_best_epoch": g_history.best_epoch,
        "agreement": (f_test_pred == g_test_pred).double().mean().item(),
        "chance": 1.0 / num_classes,
        "fooling_rate": fooled.double().mean().item(),
        "fooling_rate_per_class": per_class_hit_rates(fooled, crafted.y_adv, num_classes),
        "g_fit_acc": accuracy(g, g_set.x, g_set.y, eval_batch),
        "g_majority_share": int(counts.max().item()) / max(x_test.shape[0], 1),
        "eps": config.eps,
        "scenario": config.scenario,
        "num_classes": num_classes,
        "n_train": x_train.shape[0],
        "n_test": x_test.shape[0],
        "n_adv": n_adv,
        **crafted.distances,
    }
    if config.scenario != "uniform":
        metrics["fooling_rate_per_source_class"] = per_class_hit_rates(fooled, y_train, num_classes)
    metrics["g_degenerate"] = metrics["g_majority_share"] > config.degenerate_threshold
    if config.craft_batch_size == "auto":
        metrics["craft_batch_size"] = crafted.craft_batch
    if f_weights_sha256 is not None:
        metrics["f_weights_sha256"] = f_weights_sha256
    if run.data_sha256 is not None:
        metrics["data_sha256"] = run.data_sha256
    if run.model_factory is not None:  # not in the config: a rerun from it must be refused
        factory = run.model_factory
        metrics["model_factory"] = f"{factory.__module__}.{factory.__qualname__}"
    if g_set.kept is not None:
        metrics["n_kept"] = int(g_set.kept.numel())
        metrics["kept_share"] = g_set.kept.numel() / max(n_adv, 1)
    metrics |= crafted.band
    if config.robust_eval is not None:
        metrics |= robust_scores(run, f, g)
    return metrics


def robust_scores(run: ImageRun, f: nn.Module, g: nn.Module) -> dict[str, float]:
    """``f_robust_acc`` and ``g_robust_acc``: the shares of the first ``robust_eval.n_test``
    test images still classified correctly under the untargeted ``robust_eval`` attack, each
    with the randomness of the stage ``robust_eval``."""
    robust = run.config.robust_eval
    assert robust is not None  # called with robust_eval set
    perturb = untargeted_attack(robust.attack, robust.eps, robust.steps)
    x_eval, y_eval = run.x_test[: robust.n_test], run.y_test[: robust.n_test]
    return {
        f"{key}_robust_acc": robust_accuracy(
            model, x_eval, y_eval, perturb, run.eval_batch, stage_generator(run.seed, "robust_eval")
        )
        for key, model in (("f", f), ("g", g))
    }


def transfer_scores(run: ImageRun, independent: nn.Module, crafted: CraftedSet) -> dict[str, Any]:
    """Transfer (Ilyas et al. arXiv:1905.02175 Sec. 3): ``transfer_rate``, the share of the
    crafted set that the ``independent`` model assigns to its labels, and
    ``transfer_model_acc_test``, its clean test accuracy."""
    return {
        "transfer_rate": transfer_rate(
            independent, crafted.x_adv, crafted.y_adv, batch_size=run.eval_batch
        ),
        "transfer_model_acc_test": accuracy(independent, run.x_test, run.y_test, run.eval_batch),
    }


def unperturbed_inputs(run: ImageRun, crafted: CraftedSet) -> torch.Tensor:
    """g's inputs before the attack or construction, ``(n_adv, C, H, W)``: D_R / D_NR's start
    points, the ``uniform`` noise (regenerated batch by batch from its stages), or the
    training images."""
    if crafted.x_start is not None:
        return crafted.x_start
    if run.config.scenario != "uniform":
        return run.x_train
    noise = torch.empty_like(crafted.x_adv)
    for start, clean in clean_batches(run, crafted.n_adv, crafted.craft_batch):
        noise[start : start + clean.shape[0]] = clean
    return noise


def source_images(run: ImageRun, crafted: CraftedSet) -> torch.Tensor:
    """The clean images g's inputs were made from, ``(N, C, H, W)``: D_R / D_NR's start
    images, else the training images."""
    return crafted.x_start if crafted.x_start is not None else run.x_train


def control_scores(
    run: ImageRun,
    prefix: str,
    control: nn.Module,
    history: MinibatchResult,
    fit: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The metrics of a control ``PREFIX_acc_train``, ``PREFIX_acc_test``,
    ``PREFIX_best_acc_test`` and, given its training set ``fit`` (``(n, C, H, W)``,
    ``(n,)``), ``PREFIX_fit_acc``."""
    metrics = {
        f"{prefix}_acc_train": accuracy(control, run.x_train, run.y_train, run.eval_batch),
        f"{prefix}_acc_test": accuracy(control, run.x_test, run.y_test, run.eval_batch),
        f"{prefix}_best_acc_test": history.best_val_acc,
    }
    if fit is not None:
        metrics[f"{prefix}_fit_acc"] = accuracy(control, *fit, run.eval_batch)
    return metrics


def run_tensors(run: ImageRun, crafted: CraftedSet, g_set: GSet) -> dict[str, torch.Tensor]:
    """The tensors a run saves: the split, ``y_adv`` ``(n_adv,)``, ``x_adv``
    ``(n_adv, C, H, W)``, ``kept`` ``(n_kept,)`` under ``keep = "fooled"`` and D_R / D_NR's
    ``x_start`` ``(n_adv, C, H, W)``."""
    tensors = split_tensors(run.x_train, run.y_train, run.x_test, run.y_test)
    tensors |= {"y_adv": crafted.y_adv, "x_adv": crafted.x_adv}
    if g_set.kept is not None:
        tensors["kept"] = g_set.kept
    if crafted.x_start is not None:
        tensors["x_start"] = crafted.x_start
    return tensors


def images_networks(
    config: ImagesConfig, metrics: dict[str, Any], *, model_factory: ModelFactory | None = None
) -> dict[str, nn.Module]:
    """The untrained networks of a run of ``config`` as :func:`run_images` builds them (the
    pipeline's ``networks``, :class:`~pertlearn.experiments.pipeline.NetworksFunction`): f, g,
    the ``transfer_eval`` model and each control of ``config.controls``, images
    ``(N, C, H, W)`` → logits ``(N, K)``, on the CPU. The image shape comes from the data set
    (a data file: its header), the number of classes from ``data.classes``, the data set, or
    (a data file) the run's metric ``num_classes``. A data file's pixel mean and std are not
    read here: the networks' normalisation buffers hold them, loaded with the weights."""
    data = config.data
    info = DATASETS.get(data.name)
    known: Any
    if info is not None:
        in_shape, mean, std, known = info.shape, info.mean, info.std, info.num_classes
    else:
        assert data.path is not None  # checked by ImageDataConfig
        in_shape, mean, std = image_file_shape(data.path), (0.0,), (1.0,)
        known = metrics.get("num_classes")
    num_classes = len(data.classes) if data.classes else known
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"its metrics record no number of classes (num_classes, got {num_classes!r}), "
            "which its networks' outputs need"
        )
    networks = ImageNetworks(
        in_shape,
        num_classes,
        mean,
        std,
        config.seed,
        torch.device("cpu"),
        DTYPES[config.dtype],
        model_factory,
    )
    g_model_config = config.model_g or config.model
    built = {"f": networks.build("f", config.model), "g": networks.build("g", g_model_config)}
    if config.transfer_eval:
        built[TRANSFER_STAGE] = networks.build(TRANSFER_STAGE, g_model_config)
    if "unperturbed_inputs" in config.controls:
        built["unperturbed_inputs"] = networks.build(CONTROL_STAGE, g_model_config)
    if "mislabeled_clean" in config.controls:
        built["mislabeled_clean"] = networks.build("mislabeled_clean", g_model_config)
    return built


# ----------------------------------------------------------------------------- pipeline


def run_images(
    config: ImagesConfig,
    *,
    progress: bool = False,
    model_factory: ModelFactory | None = None,
) -> Result:
    """The ICLR24 image pipeline (ICLR24 arXiv:2402.10470, image experiments): train f →
    adversarial set → train g → evaluate.

    ``model_factory`` (Python API only) replaces ``config.model``/``model_g`` with your own
    network: it is called as ``model_factory(in_shape, num_classes, generator)`` for f, g and
    the control (torch's global generator seeded from ``generator``'s seed meanwhile, so
    default initialisation is reproducible too) and must return an ``nn.Module`` mapping
    ``(N, C, H, W)`` pixels in ``[0, 1]`` to logits ``(N, K)``. The run directory's config
    records ``config.model``, not the factory; the metric ``model_factory`` names it, and
    ``pertlearn run RUN_DIR`` refuses such a run (rerun it from Python with the factory).
    """
    out = RunOutputs(config, resolve_device(config.device))
    clock = out.clock
    # a trained f to load is checked before any work is done
    f_file = None
    if config.f_weights is not None:
        f_file = f_weights_file(config.f_weights, config.model_dump(mode="json"))
    with clock("data"):
        run = load_images(config, out.device, progress=progress, model_factory=model_factory)
        out.class_names = run.class_names
        if config.construction is not None:  # checked before f is trained
            check_representation(run)

    # 1. f on the clean training images (or a trained f, loaded).
    with clock("train_f"):
        f, f_history, f_weights_sha256 = train_or_load_f(run, f_file)

    # 2.-3. the adversarial set crafted against f (D_R / D_NR: constructed), then the
    # fooling check that chooses g's training set.
    with clock("craft"):
        attack, craft_batch = craft_attack(run, f)
        if config.construction is not None:
            crafted = constructed_set(run, f, config.construction, craft_batch)
        else:
            crafted = attacked_set(run, f, attack, craft_batch)
        g_set = fooling_check(run, f, crafted)

    # 4. a fresh g on the adversarial set only.
    g_model_config = config.model_g or config.model
    with clock("train_g"):
        g, g_history = train_model(run, "g", g_model_config, g_set.x, g_set.y, config.train_g)
    with clock("evaluate"):
        out.metrics = scores(run, f, g, g_history, crafted, g_set, f_weights_sha256)
    out.add("f", (f, f_history))
    out.add("g", (g, g_history))

    # Transfer (Ilyas et al. arXiv:1905.02175 Sec. 3): an independent model of g's network,
    # trained on the clean images, scores the adversarial set.
    if config.transfer_eval:
        with clock("transfer"):
            trained = train_model(
                run, TRANSFER_STAGE, g_model_config, run.x_train, run.y_train, config.train_f
            )
            independent = out.add(TRANSFER_STAGE, trained)
            out.metrics |= transfer_scores(run, independent, crafted)

    # Control g': the same inputs without the perturbation, the same labels.
    if "unperturbed_inputs" in config.controls:
        with clock("controls"):
            inputs = g_set.select(unperturbed_inputs(run, crafted))
            trained = train_model(
                run,
                "unperturbed_inputs",
                g_model_config,
                inputs,
                g_set.y,
                config.train_g,
                stage=CONTROL_STAGE,
            )
            del inputs
            control = out.add("unperturbed_inputs", trained)
            out.metrics |= control_scores(run, "control_g", control, trained[1])

    # Leakage control: the clean images g's inputs were made from, with g's labels.
    if "mislabeled_clean" in config.controls:
        with clock("controls"):
            inputs = g_set.select(source_images(run, crafted))
            trained = train_model(
                run, "mislabeled_clean", g_model_config, inputs, g_set.y, config.train_g
            )
            leak = out.add("mislabeled_clean", trained)
            out.metrics |= control_scores(
                run, "mislabeled_clean", leak, trained[1], fit=(inputs, g_set.y)
            )

    return out.result(run_tensors(run, crafted, g_set))
