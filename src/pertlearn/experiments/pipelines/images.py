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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from pertlearn.attacks import Attack, make_attack
from pertlearn.attacks.base import per_class_hit_rates
from pertlearn.experiments.image_data import (
    draw_image_targets,
    image_split,
    make_noise,
    noise_batches,
)
from pertlearn.experiments.pipelines.images_config import (
    CONSTRUCTED_SCENARIOS,
    ConstructConfig,
    ImageModelConfig,
    ImagesConfig,
)
from pertlearn.experiments.result import Result
from pertlearn.experiments.stages import CONTROL_STAGE, DTYPES, RunOutputs, split_tensors
from pertlearn.experiments.trained_f import f_weights_file, load_f_weights
from pertlearn.features.constructed import construct_dataset, start_points
from pertlearn.features.spectra import high_pass, low_pass
from pertlearn.features.transfer import transfer_rate
from pertlearn.metrics import predictions
from pertlearn.models.cnn import build_image_model
from pertlearn.seeding import resolve_device, stage_generator
from pertlearn.training.accel import Precision, probe_batch_size
from pertlearn.training.adversarial import AdversarialConfig, Perturb, robust_accuracy
from pertlearn.training.minibatch import MinibatchConfig, MinibatchResult, fit_minibatch

ModelFactory = Callable[[tuple[int, int, int], int, torch.Generator], nn.Module]
"""``(in_shape (C, H, W), num_classes, generator) -> nn.Module`` returning logits ``(N, K)``."""


BAND_FILTERS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "low_pass": low_pass,
    "high_pass": high_pass,
}
"""``perturbation_filter.kind`` → filter ``(δ (N, C, H, W), cutoff) -> (N, C, H, W)``."""

TRANSFER_STAGE = "transfer_model"
"""Seeding stage (and model name) of the independently trained model of ``transfer_eval``."""


def untargeted_attack(
    name: str,
    eps: float,
    steps: int,
    step_size: float | None = None,
    precision: Precision = "fp32",
) -> Perturb:
    """An untargeted registry attack clipped to the pixel range [0, 1], as a callable
    ``(model, x, y, generator) -> x_adv`` (Madry et al. arXiv:1706.06083 eq. 2.1), its forward
    passes in ``precision``."""
    options: dict[str, Any] = {"steps": steps, "targeted": False, "clip": (0.0, 1.0)}
    if step_size is not None:
        options["step_size"] = step_size
    if precision != "fp32":
        options["precision"] = precision
    attack = make_attack(name, eps, **options)

    def perturb(
        model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return attack(model, x, y, generator=generator)

    return perturb


def adversarial_perturb(config: MinibatchConfig) -> Perturb | None:
    """The attack of PGD adversarial training when ``config.adversarial`` is set."""
    adv: AdversarialConfig | None = config.adversarial
    if adv is None:
        return None
    return untargeted_attack(adv.attack, adv.eps, adv.steps, adv.step_size, config.precision)


CPU_CRAFT_BATCH = 1000
"""Images generated and attacked at once on the CPU with ``craft_batch_size = "auto"``."""


def resolve_craft_batch(
    setting: int | Literal["auto"], model: nn.Module, sample: torch.Tensor, precision: Precision
) -> int:
    """The craft batch size: ``setting`` when a number; for ``"auto"``, :data:`CPU_CRAFT_BATCH`
    on the CPU, and on CUDA what half the free memory holds for the attack's forward and
    input-backward pass of ``model`` on images like ``sample`` (``(1, C, H, W)``), measured by
    :func:`~pertlearn.training.accel.probe_batch_size`."""
    if setting != "auto":
        return setting
    if sample.device.type != "cuda":
        return CPU_CRAFT_BATCH
    return probe_batch_size(model, sample, precision=precision)


# ----------------------------------------------------------------------------- metrics


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    if x.shape[0] == 0:
        return math.nan
    return (predictions(model, x, batch) == y).double().mean().item()


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
    the control and must return an ``nn.Module`` mapping ``(N, C, H, W)`` pixels in ``[0, 1]``
    to logits ``(N, K)``.
    """
    out = RunOutputs(config, resolve_device(config.device))
    # a trained f to load is checked before any work is done
    f_file = None
    if config.f_weights is not None:
        f_file = f_weights_file(config.f_weights, config.model_dump(mode="json"))
    clock, device = out.clock, out.device
    dtype = DTYPES[config.dtype]
    seed = config.seed
    with clock("data"):
        split = image_split(config.data, seed, binary=False, center=False, dtype=dtype)
        info = split.info
        num_classes = len(split.classes)
        in_shape = info.shape
        x_train, y_train = split.x_train.to(device), split.y_train.to(device)
        x_test, y_test = split.x_test.to(device), split.y_test.to(device)
    ckpt_root = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    eval_batch = max(config.train_f.eval_batch_size, 1)

    def new_model(stage: str, model_config: ImageModelConfig) -> nn.Module:
        generator = stage_generator(seed, f"init_{stage}")
        if model_factory is not None:
            model = model_factory(in_shape, num_classes, generator)
        else:
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
        model_config: ImageModelConfig,
        x: torch.Tensor,
        y: torch.Tensor,
        train_cfg: MinibatchConfig,
        stage: str | None = None,
    ) -> tuple[nn.Module, MinibatchResult]:
        stage = stage or name
        model = new_model(stage, model_config)
        history = fit_minibatch(
            model,
            x,
            y,
            train_cfg,
            x_val=x_test,
            y_val=y_test,
            generator=stage_generator(seed, f"batches_{stage}"),
            name=name,
            progress=progress,
            checkpoint_dir=ckpt_root / name if ckpt_root else None,
            perturb=adversarial_perturb(train_cfg),
        )
        return model, history

    # 1. f on the clean training images (or a trained f, loaded).
    f_weights_sha256 = None
    with clock("train_f"):
        if f_file is None:
            f, f_history = train("f", config.model, x_train, y_train, config.train_f)
        else:
            f, f_history = new_model("f", config.model), MinibatchResult()
            f_weights_sha256 = load_f_weights(f_file, f)

    # 2.-3. targets and the adversarial set, crafted in batches.
    with clock("craft"):
        options = dict(config.attack.options)
        options.setdefault("clip", (0.0, 1.0))
        if config.craft_precision != "fp32":
            options.setdefault("precision", config.craft_precision)
        craft_batch = resolve_craft_batch(
            config.craft_batch_size, f, x_train[:1], options.get("precision", "fp32")
        )
        if config.craft_batch_size == "auto" and device.type == "cuda":
            options.setdefault("batch_size", craft_batch)  # one attack chunk per craft batch
        eps = config.eps
        attack: Attack = make_attack(config.attack.name, eps, **options)
        attack_gen = stage_generator(seed, "attack")
        targets_gen = stage_generator(seed, "targets")
        scenario = config.scenario
        constructed: dict[str, Any] = {}
        if scenario in CONSTRUCTED_SCENARIOS:
            n_adv = x_train.shape[0]
            y_adv = y_train
            batches: list[tuple[int, int, torch.Generator]] = []
        elif scenario == "uniform":
            n_adv = config.data.n_noise
            y_adv = torch.randint(0, num_classes, (n_adv,), generator=targets_gen).to(device)
            batches = noise_batches(n_adv, in_shape, craft_batch, seed)
        else:
            n_adv = x_train.shape[0]
            y_adv = draw_image_targets(scenario, y_train, num_classes, targets_gen)
            batches = [
                (s, min(craft_batch, n_adv - s), attack_gen) for s in range(0, n_adv, craft_batch)
            ]

        def clean_batch(start: int, size: int, generator: torch.Generator) -> torch.Tensor:
            if scenario == "uniform":
                return make_noise(size, in_shape, generator).to(device=device, dtype=dtype)
            return x_train[start : start + size]

        band = config.perturbation_filter
        energy = {"kept": 0.0, "total": 0.0}
        unfiltered_hits = 0
        if config.construction is not None:  # D_R / D_NR: built, not attacked
            constructed = construct_set(
                f,
                x_train,
                y_train,
                config.construction,
                stage_generator(seed, "construct_start"),
                progress,
            )
            x_adv = constructed.pop("x")
        else:
            x_adv = torch.empty((n_adv, *in_shape), dtype=dtype, device=device)
            bar = _bar(n_adv, f"attack ({config.attack.name})", progress)
            for start, size, generator in batches:
                clean = clean_batch(start, size, generator)
                crafted = attack(f, clean, y_adv[start : start + size], generator=attack_gen)
                if band is not None:
                    delta = crafted - clean
                    kept = BAND_FILTERS[band.kind](delta, band.cutoff)
                    energy["kept"] += float(kept.double().pow(2).sum())
                    energy["total"] += float(delta.double().pow(2).sum())
                    targets = y_adv[start : start + size]
                    unfiltered_hits += int((predictions(f, crafted, eval_batch) == targets).sum())
                    crafted = clean + kept
                x_adv[start : start + size] = crafted
                bar.update(size)
            bar.close()

        # Fooling check (ICLR24 arXiv:2402.10470, image experiments): does f predict the
        # target on the adversarial set?
        predicted_adv = predictions(f, x_adv, eval_batch)
        fooled = predicted_adv == y_adv
        # g learns from these only (None: from all)
        keep_idx = fooled.nonzero().squeeze(1) if config.keep == "fooled" else None
        if keep_idx is not None and keep_idx.numel() == 0:
            raise ValueError("keep = 'fooled' kept no example; raise attack.eps or keep = 'all'")
        x_g, y_g = (x_adv, y_adv) if keep_idx is None else (x_adv[keep_idx], y_adv[keep_idx])

    # 4. a fresh g on the adversarial set only.
    g_model_config = config.model_g or config.model
    with clock("train_g"):
        g, g_history = train("g", g_model_config, x_g, y_g, config.train_g)
    with clock("evaluate"):
        f_test_pred = predictions(f, x_test, eval_batch)
        g_test_pred = predictions(g, x_test, eval_batch)
        counts = torch.bincount(g_test_pred, minlength=num_classes)

        metrics: dict[str, Any] = {
            "f_acc_train": _accuracy(f, x_train, y_train, eval_batch),
            "f_acc_test": (f_test_pred == y_test).double().mean().item(),
            "g_acc_train": _accuracy(g, x_train, y_train, eval_batch),
            "g_acc_test": (g_test_pred == y_test).double().mean().item(),
            "g_best_acc_test": g_history.best_val_acc,
            "g_best_epoch": g_history.best_epoch,
            "agreement": (f_test_pred == g_test_pred).double().mean().item(),
            "chance": 1.0 / num_classes,
            "fooling_rate": fooled.double().mean().item(),
            "fooling_rate_per_class": per_class_hit_rates(fooled, y_adv, num_classes),
            "g_fit_acc": _accuracy(g, x_g, y_g, eval_batch),
            "g_majority_share": int(counts.max().item()) / max(x_test.shape[0], 1),
            "eps": eps,
            "scenario": scenario,
            "num_classes": num_classes,
            "n_train": x_train.shape[0],
            "n_test": x_test.shape[0],
            "n_adv": n_adv,
        }
        for key in ("distance_start", "distance_final"):
            if key in constructed:
                metrics[f"construct_{key}"] = constructed[key]
        if scenario != "uniform":
            metrics["fooling_rate_per_source_class"] = per_class_hit_rates(
                fooled, y_train, num_classes
            )
        metrics["g_degenerate"] = metrics["g_majority_share"] > config.degenerate_threshold
        if config.craft_batch_size == "auto":
            metrics["craft_batch_size"] = craft_batch
        if f_weights_sha256 is not None:
            metrics["f_weights_sha256"] = f_weights_sha256
        if keep_idx is not None:
            metrics["n_kept"] = int(keep_idx.numel())
            metrics["kept_share"] = keep_idx.numel() / max(n_adv, 1)
        if band is not None:
            metrics["fooling_rate_unfiltered"] = unfiltered_hits / max(n_adv, 1)
            metrics["perturbation_energy_kept"] = (
                energy["kept"] / energy["total"] if energy["total"] > 0 else math.nan
            )
        if config.robust_eval is not None:
            robust = config.robust_eval
            perturb = untargeted_attack(robust.attack, robust.eps, robust.steps)
            x_eval, y_eval = x_test[: robust.n_test], y_test[: robust.n_test]
            for key, model in (("f", f), ("g", g)):
                metrics[f"{key}_robust_acc"] = robust_accuracy(
                    model, x_eval, y_eval, perturb, eval_batch, stage_generator(seed, "robust_eval")
                )

    out.metrics = metrics
    out.add("f", (f, f_history))
    out.add("g", (g, g_history))

    # Transfer (Ilyas et al. arXiv:1905.02175 Sec. 3): an independent model of g's network,
    # trained on the clean images, scores the adversarial set.
    if config.transfer_eval:
        with clock("transfer"):
            trained = train(TRANSFER_STAGE, g_model_config, x_train, y_train, config.train_f)
            independent = out.add(TRANSFER_STAGE, trained)
            metrics["transfer_rate"] = transfer_rate(
                independent, x_adv, y_adv, batch_size=eval_batch
            )
            metrics["transfer_model_acc_test"] = _accuracy(independent, x_test, y_test, eval_batch)

    # Control g': the same inputs without the perturbation, the same targets.
    if "unperturbed_inputs" in config.controls:
        with clock("controls"):
            if "x_start" in constructed:
                clean_inputs = constructed["x_start"]
            elif scenario == "uniform":
                clean_inputs = torch.empty_like(x_adv)
                for start, size, generator in noise_batches(n_adv, in_shape, craft_batch, seed):
                    clean_inputs[start : start + size] = clean_batch(start, size, generator)
            else:
                clean_inputs = x_train
            if keep_idx is not None:
                clean_inputs = clean_inputs[keep_idx]
            trained = train(
                "unperturbed_inputs",
                g_model_config,
                clean_inputs,
                y_g,
                config.train_g,
                CONTROL_STAGE,
            )
            del clean_inputs
            control = out.add("unperturbed_inputs", trained)
            metrics["control_g_acc_train"] = _accuracy(control, x_train, y_train, eval_batch)
            metrics["control_g_acc_test"] = _accuracy(control, x_test, y_test, eval_batch)
            metrics["control_g_best_acc_test"] = trained[1].best_val_acc

    # Leakage control: the clean images g's inputs were made from, with g's labels.
    if "mislabeled_clean" in config.controls:
        with clock("controls"):
            leak_inputs = constructed.get("x_start", x_train)
            if keep_idx is not None:
                leak_inputs = leak_inputs[keep_idx]
            trained = train("mislabeled_clean", g_model_config, leak_inputs, y_g, config.train_g)
            leak = out.add("mislabeled_clean", trained)
            metrics.update(
                mislabeled_clean_acc_train=_accuracy(leak, x_train, y_train, eval_batch),
                mislabeled_clean_acc_test=_accuracy(leak, x_test, y_test, eval_batch),
                mislabeled_clean_best_acc_test=trained[1].best_val_acc,
                mislabeled_clean_fit_acc=_accuracy(leak, leak_inputs, y_g, eval_batch),
            )

    tensors = split_tensors(x_train, y_train, x_test, y_test) | {"y_adv": y_adv, "x_adv": x_adv}
    tensors |= {} if keep_idx is None else {"kept": keep_idx}
    if "x_start" in constructed:
        tensors["x_start"] = constructed["x_start"]
    return out.result(tensors)


def construct_set(
    f: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: ConstructConfig,
    generator: torch.Generator,
    progress: bool,
) -> dict[str, Any]:
    """D_R (robust ``f``) or D_NR (standard ``f``) of Ilyas et al. (arXiv:1905.02175,
    Sec. 3.1): for every training image ``x`` ``(N, C, H, W)`` an image ``x_r`` minimizing
    ``‖rep(x_r) − rep(x)‖₂`` by ``config.steps`` normalized gradient steps from the start
    points drawn by ``generator`` (:func:`~pertlearn.features.constructed.start_points`).

    Returns ``x`` (the constructed images ``(N, C, H, W)``, to pair with ``y``), ``x_start``
    (their start points) and the mean representation distances ``distance_start`` /
    ``distance_final`` before and after the descent.
    """
    x_start = start_points(x, y, config.start, generator=generator)
    parts: list[torch.Tensor] = []
    first: list[torch.Tensor] = []
    last: list[torch.Tensor] = []
    bar = _bar(x.shape[0], f"construct ({config.steps} steps)", progress)
    settings = config.model_dump(include={"steps", "step_size", "eps", "batch_size"})
    for xt, x0 in zip(x.split(config.batch_size), x_start.split(config.batch_size), strict=True):
        built = construct_dataset(f, xt, x0, **settings)
        parts.append(built.x)
        first.append(built.distance[0])
        last.append(built.final_distance)
        bar.update(xt.shape[0])
    bar.close()
    return {
        "x": torch.cat(parts),
        "x_start": x_start,
        "distance_start": torch.cat(first).double().mean().item(),
        "distance_final": torch.cat(last).double().mean().item(),
    }


def _bar(total: int, desc: str, enabled: bool) -> Any:
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)
