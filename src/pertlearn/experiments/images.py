"""Perturbation learning on real images (spec §2 binary tasks, §4 ICLR24 image experiments).

:func:`run_images` is the ``images`` pipeline (``pipeline = "images"``): K-class data
(MNIST, Fashion-MNIST, CIFAR-10, or a class subset), a CNN f trained by mini-batch SGD, an
adversarial set crafted against f with any registered attack, a fresh g trained only on it,
and g measured on clean test images. Scenarios (``images.scenario``):

- ``natural_rand``: the training images, each with a target drawn uniformly among the *other*
  classes;
- ``natural_det``: the training images with target ``(y + 1) mod K``;
- ``uniform``: ``data.n_noise`` images from ``U[0,1]^{C×H×W}`` with uniform random targets,
  generated and attacked ``images.batch_size`` at a time (each batch from its own seeded
  generator, so the control can regenerate the same noise instead of storing it).

The fooling check (spec §4): ``fooling_rate`` is the share of adversarial images that f
assigns to their target; ``fooling_rate_per_class`` the same per target class (keys are
class indices as strings; for the natural scenarios ``fooling_rate_per_source_class`` groups
by the true class as well).

:func:`binary_image_data` serves the NeurIPS24 binary tasks (MNIST 1 vs 2, Fashion-MNIST 0 vs
9) to the ``neurips`` pipeline: flattened, ±1 labels, mean-centered pixels.

Pixels stay in ``[0, 1]`` in this pipeline (the models normalize internally), so attacks clip
to ``(0, 1)`` unless ``attack.options.clip`` says otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pertlearn.attacks import Attack, make_attack
from pertlearn.data.images import ImageSplit, load_dataset, prepare
from pertlearn.experiments.config import ExperimentConfig, ModelConfig
from pertlearn.experiments.runner import DTYPES, Result
from pertlearn.metrics import predictions
from pertlearn.models.cnn import build_image_model
from pertlearn.seeding import resolve_device, stage_generator
from pertlearn.training.minibatch import MinibatchConfig, MinibatchResult, fit_minibatch

ModelFactory = Callable[[tuple[int, int, int], int, torch.Generator], nn.Module]
"""``(in_shape (C, H, W), num_classes, generator) -> nn.Module`` returning logits ``(N, K)``."""


# ----------------------------------------------------------------------------- data


def image_split(config: ExperimentConfig, *, binary: bool, dtype: torch.dtype) -> ImageSplit:
    """Load ``config.data`` and split it stratified with the run seed (stage ``data_split``).

    ``binary``: ±1 labels, flattened, mean-centered when ``data.center`` (NeurIPS24 tasks);
    otherwise class labels ``0..K-1`` and images ``(N, C, H, W)`` with pixels in ``[0, 1]``."""
    data = config.data
    loaded = load_dataset(data.name, data.data_dir)
    classes = data.classes
    if binary and classes is None:
        raise ValueError(
            "the neurips pipeline needs a binary task: set data.classes to two classes, "
            "e.g. [1, 2] for MNIST 1 vs 2"
        )
    return prepare(
        loaded,
        classes=classes,
        test_fraction=data.split,
        generator=stage_generator(config.seed, "data_split"),
        n_train=data.n_train,
        n_test=data.n_test,
        binary=binary,
        center=binary and data.center,
        flatten=binary,
        dtype=dtype,
    )


def binary_image_data(
    config: ExperimentConfig, stage: str, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (N, C·H·W), y (N,) ±1)`` of the train (``stage = "data_train"``) or test part of a
    binary image task, for :func:`pertlearn.experiments.runner.make_dataset`."""
    split = image_split(config, binary=True, dtype=dtype)
    if stage == "data_train":
        return split.x_train, split.y_train
    return split.x_test, split.y_test


# ----------------------------------------------------------------------------- targets


def draw_image_targets(
    scenario: str, y: torch.Tensor, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Target classes ``(N,)`` for ``natural_rand`` (uniform over the other ``K-1`` classes)
    or ``natural_det`` (``(y + 1) mod K``)."""
    if scenario == "natural_det":
        return (y + 1) % num_classes
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_classes


def noise_batches(
    n: int, shape: tuple[int, ...], batch_size: int, seed: int
) -> list[tuple[int, int, torch.Generator]]:
    """``(start, size, generator)`` of each noise batch; batch ``b`` draws from stage
    ``noise_b``, so any batch can be regenerated on its own."""
    return [
        (start, min(batch_size, n - start), stage_generator(seed, f"noise_{b}"))
        for b, start in enumerate(range(0, n, batch_size))
    ]


def make_noise(size: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``size`` images from ``U[0,1]^shape``, shape ``(size, *shape)`` (CPU)."""
    return torch.rand((size, *shape), generator=generator)


# ----------------------------------------------------------------------------- metrics


def per_class_rates(hits: torch.Tensor, classes: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Mean of boolean ``hits`` per class index (``None`` for a class with no samples)."""
    rates: dict[str, Any] = {}
    for k in range(num_classes):
        mask = classes == k
        rates[str(k)] = hits[mask].float().mean().item() if bool(mask.any()) else None
    return rates


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    if x.shape[0] == 0:
        return math.nan
    return (predictions(model, x, batch) == y).float().mean().item()


# ----------------------------------------------------------------------------- pipeline


def run_images(
    config: ExperimentConfig,
    *,
    progress: bool = False,
    model_factory: ModelFactory | None = None,
) -> Result:
    """The ICLR24 image pipeline (spec §4): train f → adversarial set → train g → evaluate.

    ``model_factory`` (Python API only) replaces ``config.model``/``model_g`` with your own
    network: it is called as ``model_factory(in_shape, num_classes, generator)`` for f, g and
    the control and must return an ``nn.Module`` mapping ``(N, C, H, W)`` pixels in ``[0, 1]``
    to logits ``(N, K)``.
    """
    start_time = time.perf_counter()
    from pertlearn.data.catalogue import DATASETS

    if config.data.name not in DATASETS:
        raise ValueError(
            f"the images pipeline needs image data (mnist, fashion_mnist, cifar10), "
            f"got data.name = {config.data.name!r}"
        )
    device = resolve_device(config.device)
    dtype = DTYPES[config.dtype]
    seed = config.seed
    cfg = config.images
    split = image_split(config, binary=False, dtype=dtype)
    info = split.info
    num_classes = len(split.classes)
    in_shape = info.shape
    x_train, y_train = split.x_train.to(device), split.y_train.to(device)
    x_test, y_test = split.x_test.to(device), split.y_test.to(device)
    ckpt_root = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    eval_batch = max(cfg.train_f.eval_batch_size, 1)

    def new_model(name: str, model_config: ModelConfig) -> nn.Module:
        generator = stage_generator(seed, f"init_{name}")
        if model_factory is not None:
            model = model_factory(in_shape, num_classes, generator)
        else:
            if model_config.name in ("two_layer", "one_hidden"):
                raise ValueError(
                    f"model.name = {model_config.name!r} is a binary network; the images "
                    "pipeline needs an image model (small_cnn, iclr_resnet, wide_resnet, custom)"
                )
            model = build_image_model(
                model_config.name,
                in_shape,
                num_classes,
                mean=info.mean,
                std=info.std,
                options=model_config.options,
                generator=generator,
            )
        return model.to(device=device, dtype=dtype)

    def train(
        name: str,
        model_config: ModelConfig,
        x: torch.Tensor,
        y: torch.Tensor,
        train_cfg: MinibatchConfig,
    ) -> tuple[nn.Module, MinibatchResult]:
        model = new_model(name, model_config)
        history = fit_minibatch(
            model,
            x,
            y,
            train_cfg,
            x_val=x_test,
            y_val=y_test,
            generator=stage_generator(seed, f"batches_{name}"),
            name=name,
            progress=progress,
            checkpoint_dir=ckpt_root / name if ckpt_root else None,
        )
        return model, history

    # 1. f on the clean training images.
    f, f_history = train("f", config.model, x_train, y_train, cfg.train_f)

    # 2.-3. targets and the adversarial set, crafted in batches.
    options = dict(config.attack.options)
    options.setdefault("clip", (0.0, 1.0))
    eps = config.eps
    attack: Attack = make_attack(config.attack.name, eps, **options)
    attack_gen = stage_generator(seed, "attack")
    targets_gen = stage_generator(seed, "targets")
    scenario = cfg.scenario
    if scenario == "uniform":
        n_adv = config.data.n_noise
        y_adv = torch.randint(0, num_classes, (n_adv,), generator=targets_gen).to(device)
        batches = noise_batches(n_adv, in_shape, cfg.batch_size, seed)
    else:
        n_adv = x_train.shape[0]
        y_adv = draw_image_targets(scenario, y_train, num_classes, targets_gen)
        batches = [
            (s, min(cfg.batch_size, n_adv - s), attack_gen) for s in range(0, n_adv, cfg.batch_size)
        ]

    def clean_batch(start: int, size: int, generator: torch.Generator) -> torch.Tensor:
        if scenario == "uniform":
            return make_noise(size, in_shape, generator).to(device=device, dtype=dtype)
        return x_train[start : start + size]

    x_adv = torch.empty((n_adv, *in_shape), dtype=dtype, device=device)
    bar = _bar(n_adv, f"attack ({config.attack.name})", progress)
    for start, size, generator in batches:
        clean = clean_batch(start, size, generator)
        x_adv[start : start + size] = attack(
            f, clean, y_adv[start : start + size], generator=attack_gen
        )
        bar.update(size)
    bar.close()

    # Fooling check (spec §4): does f predict the target on the adversarial set?
    predicted_adv = predictions(f, x_adv, eval_batch)
    fooled = predicted_adv == y_adv

    # 4. a fresh g on the adversarial set only.
    g_model_config = config.model_g or config.model
    g, g_history = train("g", g_model_config, x_adv, y_adv, cfg.train_g)
    f_test_pred = predictions(f, x_test, eval_batch)
    g_test_pred = predictions(g, x_test, eval_batch)
    counts = torch.bincount(g_test_pred, minlength=num_classes)

    metrics: dict[str, Any] = {
        "f_acc_train": _accuracy(f, x_train, y_train, eval_batch),
        "f_acc_test": (f_test_pred == y_test).float().mean().item(),
        "g_acc_train": _accuracy(g, x_train, y_train, eval_batch),
        "g_acc_test": (g_test_pred == y_test).float().mean().item(),
        "g_best_acc_test": g_history.best_val_acc,
        "g_best_epoch": g_history.best_epoch,
        "agreement": (f_test_pred == g_test_pred).float().mean().item(),
        "chance": 1.0 / num_classes,
        "fooling_rate": fooled.float().mean().item(),
        "fooling_rate_per_class": per_class_rates(fooled, y_adv, num_classes),
        "g_fit_acc": _accuracy(g, x_adv, y_adv, eval_batch),
        "g_majority_share": (counts.max() / max(x_test.shape[0], 1)).item(),
        "eps": eps,
        "scenario": scenario,
        "num_classes": num_classes,
        "n_train": x_train.shape[0],
        "n_test": x_test.shape[0],
        "n_adv": n_adv,
    }
    if scenario != "uniform":
        metrics["fooling_rate_per_source_class"] = per_class_rates(fooled, y_train, num_classes)
    metrics["g_degenerate"] = metrics["g_majority_share"] > config.degenerate_threshold
    models: dict[str, nn.Module] = {"f": f, "g": g}
    curves: dict[str, Any] = {"f": f_history, "g": g_history}

    # Control g': the same inputs without the perturbation, the same targets.
    if "control_random" in config.controls:
        if scenario == "uniform":
            clean_inputs = torch.empty_like(x_adv)
            for start, size, generator in noise_batches(n_adv, in_shape, cfg.batch_size, seed):
                clean_inputs[start : start + size] = clean_batch(start, size, generator)
        else:
            clean_inputs = x_train
        control, control_history = train(
            "control_random", g_model_config, clean_inputs, y_adv, cfg.train_g
        )
        del clean_inputs
        models["control_random"] = control
        curves["control_random"] = control_history
        metrics["control_g_acc_train"] = _accuracy(control, x_train, y_train, eval_batch)
        metrics["control_g_acc_test"] = _accuracy(control, x_test, y_test, eval_batch)
        metrics["control_g_best_acc_test"] = control_history.best_val_acc

    metrics["seconds"] = time.perf_counter() - start_time
    tensors = {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "y_adv": y_adv,
        "x_adv": x_adv,
    }
    return Result(config, metrics, models, curves, tensors, device=str(device))


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)
