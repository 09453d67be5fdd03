"""The stages of the images pipeline (:mod:`pertlearn.experiments.pipelines.images`): what one
run shares (:class:`ImageRun`), a fresh image network trained by mini-batch SGD, and the
crafted set: the adversarial images attacked against f in batches (optionally band-limited)
or D_R / D_NR constructed from f's representation (Ilyas et al. arXiv:1905.02175, Sec. 3.1).

Each stage draws its randomness from generators named by its stage (:mod:`pertlearn.seeding`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from pertlearn.attacks import Attack, make_attack
from pertlearn.data.catalogue import DatasetInfo
from pertlearn.experiments.image_data import (
    draw_image_targets,
    make_noise,
    noise_batches,
)
from pertlearn.experiments.pipelines.images_config import (
    PIXEL_RANGE,
    ConstructConfig,
    ImageModelConfig,
    ImagesConfig,
    PerturbationFilterConfig,
    untargeted_options,
)
from pertlearn.features.constructed import construct_dataset, representation, start_points
from pertlearn.features.spectra import high_pass, low_pass
from pertlearn.metrics import predictions
from pertlearn.models.cnn import build_image_model
from pertlearn.seeding import seeded_global_generator, stage_generator
from pertlearn.training.accel import Precision, probe_batch_size
from pertlearn.training.adversarial import AdversarialConfig, Perturb
from pertlearn.training.minibatch import MinibatchConfig, MinibatchResult, fit_minibatch

ModelFactory = Callable[[tuple[int, int, int], int, torch.Generator], nn.Module]
"""``(in_shape (C, H, W), num_classes, generator) -> nn.Module`` returning logits ``(N, K)``."""


@dataclass(frozen=True)
class ImageRun:
    """What every stage of one images run shares: its config, the data split (``x_train``
    ``(N, C, H, W)``, ``y_train`` ``(N,)``, ``x_test`` ``(M, C, H, W)``, ``y_test`` ``(M,)``,
    pixels in ``[0, 1]``, classes ``0..K-1``, on ``device`` in ``dtype``), the data set's
    ``info`` (shape, pixel mean and std), the batch size of evaluation, and how networks are
    built (``model_factory``, else ``config.model`` / ``model_g``) and trained (``progress``
    bars, per-epoch checkpoints under ``checkpoint_root``); ``data_sha256``: the SHA-256 of
    the data file (``data.name = "file"``), else ``None``; ``class_names``: the name of each
    class ``0..K-1`` of the run (after ``data.classes``), from the data set or the file."""

    config: ImagesConfig
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: DatasetInfo
    num_classes: int
    device: torch.device
    dtype: torch.dtype
    eval_batch: int
    progress: bool = False
    model_factory: ModelFactory | None = None
    checkpoint_root: Path | None = None
    data_sha256: str | None = None
    class_names: tuple[str, ...] = ()

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return self.info.shape


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
    attack = make_attack(name, eps, **untargeted_options(steps, step_size, precision))

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


# ----------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class ImageNetworks:
    """How the networks of an images run are built: for images ``in_shape`` ``(C, H, W)`` and
    ``num_classes`` classes, normalising inputs with the per-channel pixel ``mean`` and
    ``std``, by ``model_factory`` when given (else from each network's config), initialised
    from the stages of ``seed``, on ``device`` in ``dtype``."""

    in_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    seed: int
    device: torch.device
    dtype: torch.dtype
    model_factory: ModelFactory | None = None

    def build(self, stage: str, model_config: ImageModelConfig) -> nn.Module:
        """A fresh network (``(N, C, H, W)`` → logits ``(N, K)``, checked by
        :func:`check_logits`) initialised from the stage ``init_{stage}``:
        ``model_factory`` when given, else ``model_config``."""
        generator = stage_generator(self.seed, f"init_{stage}")
        if self.model_factory is not None:
            # torch's default initialisation draws from the global generator: seeded per stage
            with seeded_global_generator(generator.initial_seed()):
                model = self.model_factory(self.in_shape, self.num_classes, generator)
        else:
            model = build_image_model(
                model_config.name,
                self.in_shape,
                self.num_classes,
                mean=self.mean,
                std=self.std,
                options=model_config.options,
                generator=generator,
            )
        model = model.to(device=self.device, dtype=self.dtype)
        check_logits(model, self.in_shape, self.num_classes, self.device, self.dtype)
        return model


def new_model(run: ImageRun, stage: str, model_config: ImageModelConfig) -> nn.Module:
    """A fresh network for ``run``'s images (``(N, C, H, W)`` → logits ``(N, K)``) on its
    device and dtype, initialised from the stage ``init_{stage}``: ``run.model_factory`` when
    given, else ``model_config``."""
    networks = ImageNetworks(
        run.in_shape,
        run.num_classes,
        run.info.mean,
        run.info.std,
        run.seed,
        run.device,
        run.dtype,
        run.model_factory,
    )
    return networks.build(stage, model_config)


def check_logits(
    model: nn.Module,
    in_shape: tuple[int, int, int],
    num_classes: int,
    device: torch.device,
    dtype: torch.dtype,
) -> None:
    """Raise ValueError unless ``model`` maps one image ``(1, *in_shape)`` (zeros, in eval mode,
    its mode restored after) to logits ``(1, num_classes)``: the contract of every network of
    the images pipeline, checked before it is trained."""
    contract = (
        f"a network of the images pipeline maps images (N, {', '.join(map(str, in_shape))}) "
        f"in [0, 1] to logits (N, {num_classes})"
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, *in_shape), device=device, dtype=dtype))
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{contract}; {type(model).__name__} fails on one image: {first}") from err
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (1, num_classes):
        raise ValueError(f"{contract}; {type(model).__name__} returns {shape} for one image")


def train_model(
    run: ImageRun,
    name: str,
    model_config: ImageModelConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    train_config: MinibatchConfig,
    stage: str | None = None,
) -> tuple[nn.Module, MinibatchResult]:
    """Stage *train*: the fresh network :func:`new_model` of ``stage`` (default ``name``)
    trained on ``x`` ``(n, C, H, W)`` with labels ``y`` ``(n,)`` by
    :func:`~pertlearn.training.minibatch.fit_minibatch`, mini-batches from the stage
    ``batches_{stage}``, validated on the test images, adversarially when
    ``train_config.adversarial`` is set; checkpoints go to ``checkpoint_root / name``."""
    stage = stage or name
    model = new_model(run, stage, model_config)
    history = fit_minibatch(
        model,
        x,
        y,
        train_config,
        x_val=run.x_test,
        y_val=run.y_test,
        generator=stage_generator(run.seed, f"batches_{stage}"),
        name=name,
        progress=run.progress,
        checkpoint_dir=run.checkpoint_root / name if run.checkpoint_root else None,
        perturb=adversarial_perturb(train_config),
    )
    return model, history


# ----------------------------------------------------------------------------- crafting

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


BAND_FILTERS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "low_pass": low_pass,
    "high_pass": high_pass,
}
"""``perturbation_filter.kind`` → filter ``(δ (N, C, H, W), cutoff) -> (N, C, H, W)``."""


@dataclass(frozen=True)
class CraftedSet:
    """The set crafted against f, before the fooling check: ``x_adv`` ``(n_adv, C, H, W)``
    with labels ``y_adv`` ``(n_adv,)`` (the attack's targets; D_R / D_NR: the labels of the
    images matched), made ``craft_batch`` images at a time. D_R / D_NR also give their start
    points ``x_start`` ``(n_adv, C, H, W)`` and ``distances`` (the metrics
    ``construct_distance_start`` / ``construct_distance_final``); a band-limited attack gives
    ``band`` (``fooling_rate_unfiltered``, ``perturbation_energy_kept``)."""

    x_adv: torch.Tensor
    y_adv: torch.Tensor
    craft_batch: int
    x_start: torch.Tensor | None = None
    distances: dict[str, float] = field(default_factory=dict)
    band: dict[str, float] = field(default_factory=dict)

    @property
    def n_adv(self) -> int:
        return self.x_adv.shape[0]


def craft_attack(run: ImageRun, f: nn.Module) -> tuple[Attack, int]:
    """The crafting attack (``config.attack``, clipped to ``(0, 1)`` and in
    ``craft_precision`` unless its options say otherwise) and the craft batch size
    (:func:`resolve_craft_batch`; with ``"auto"`` on CUDA also the attack's own chunk). Built
    for every scenario, so that a bad attack fails the same way for all."""
    config = run.config
    options = dict(config.attack.options)
    options.setdefault("clip", PIXEL_RANGE)
    if config.craft_precision != "fp32":
        options.setdefault("precision", config.craft_precision)
    craft_batch = resolve_craft_batch(
        config.craft_batch_size, f, run.x_train[:1], options.get("precision", "fp32")
    )
    if config.craft_batch_size == "auto" and run.device.type == "cuda":
        options.setdefault("batch_size", craft_batch)  # one attack chunk per craft batch
    return make_attack(config.attack.name, config.eps, **options), craft_batch


def attack_targets(run: ImageRun, generator: torch.Generator) -> torch.Tensor:
    """Stage *targets*: ``y_adv`` ``(n_adv,)`` from ``generator``: for ``uniform`` one
    uniform class per noise image (``n_adv = data.n_noise``), else
    :func:`~pertlearn.experiments.image_data.draw_image_targets` of the training labels."""
    config = run.config
    if config.scenario == "uniform":
        n_noise = config.data.n_noise
        return torch.randint(0, run.num_classes, (n_noise,), generator=generator).to(run.device)
    return draw_image_targets(config.scenario, run.y_train, run.num_classes, generator)


def clean_batches(run: ImageRun, n: int, craft_batch: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, clean)`` for each craft batch of the ``n`` images the attack starts from:
    ``clean`` ``(size, C, H, W)`` are training images, or for ``uniform`` noise from the
    batch's own stage ``noise_b`` (so the same noise can be regenerated instead of stored)."""
    if run.config.scenario == "uniform":
        for start, size, generator in noise_batches(n, run.in_shape, craft_batch, run.seed):
            noise = make_noise(size, run.in_shape, generator)
            yield start, noise.to(device=run.device, dtype=run.dtype)
    else:
        for start in range(0, n, craft_batch):
            yield start, run.x_train[start : start + craft_batch]


@dataclass
class BandTally:
    """Running sums of a band-limited attack over the craft batches: ``kept`` and ``total``
    perturbation energy ``Σ‖·‖²`` (float64) and the ``hits`` of the unfiltered images."""

    kept: float = 0.0
    total: float = 0.0
    hits: int = 0

    def metrics(self, n_adv: int) -> dict[str, float]:
        """``fooling_rate_unfiltered`` and ``perturbation_energy_kept`` of ``n_adv`` images."""
        return {
            "fooling_rate_unfiltered": self.hits / max(n_adv, 1),
            "perturbation_energy_kept": self.kept / self.total if self.total > 0 else math.nan,
        }


def band_limit(
    run: ImageRun,
    f: nn.Module,
    band: PerturbationFilterConfig,
    clean: torch.Tensor,
    crafted: torch.Tensor,
    targets: torch.Tensor,
    tally: BandTally,
) -> torch.Tensor:
    """``clean + filter(δ)`` ``(n, C, H, W)`` with ``δ = crafted − clean`` and the filter of
    ``band`` (:data:`BAND_FILTERS`), not clipped; adds the batch's energies and f's hits of
    ``targets`` ``(n,)`` on the unfiltered ``crafted`` to ``tally``."""
    delta = crafted - clean
    kept = BAND_FILTERS[band.kind](delta, band.cutoff)
    tally.kept += float(kept.double().pow(2).sum())
    tally.total += float(delta.double().pow(2).sum())
    tally.hits += int((predictions(f, crafted, run.eval_batch) == targets).sum())
    return clean + kept


def attacked_set(run: ImageRun, f: nn.Module, attack: Attack, craft_batch: int) -> CraftedSet:
    """Stages *targets* and *craft* of the attacked scenarios (``natural_rand``,
    ``natural_det``, ``uniform``): targets from the stage ``targets``, then ``attack`` on f
    ``craft_batch`` images at a time with the randomness of the stage ``attack``; with
    ``perturbation_filter`` each crafted batch is band-limited (:func:`band_limit`)."""
    config = run.config
    attack_gen = stage_generator(run.seed, "attack")
    y_adv = attack_targets(run, stage_generator(run.seed, "targets"))
    n_adv = y_adv.shape[0]
    band, tally = config.perturbation_filter, BandTally()
    x_adv = torch.empty((n_adv, *run.in_shape), dtype=run.dtype, device=run.device)
    bar = _bar(n_adv, f"attack ({config.attack.name})", run.progress)
    for start, clean in clean_batches(run, n_adv, craft_batch):
        stop = start + clean.shape[0]
        crafted = attack(f, clean, y_adv[start:stop], generator=attack_gen)
        if band is not None:
            crafted = band_limit(run, f, band, clean, crafted, y_adv[start:stop], tally)
        x_adv[start:stop] = crafted
        bar.update(clean.shape[0])
    bar.close()
    metrics = tally.metrics(n_adv) if band is not None else {}
    return CraftedSet(x_adv, y_adv, craft_batch, band=metrics)


def constructed_set(
    run: ImageRun, f: nn.Module, construction: ConstructConfig, craft_batch: int
) -> CraftedSet:
    """Stage *craft* of D_R / D_NR: :func:`construct_set` from the training images with start
    points of the stage ``construct_start``; the images keep their labels ``y_train``."""
    generator = stage_generator(run.seed, "construct_start")
    built = construct_set(f, run.x_train, run.y_train, construction, generator, run.progress)
    distances = {f"construct_{key}": built[key] for key in ("distance_start", "distance_final")}
    return CraftedSet(built["x"], run.y_train, craft_batch, built["x_start"], distances)


def check_representation(run: ImageRun) -> None:
    """Before f is trained: raise ValueError unless a fresh f of ``run`` (its network of the
    stage ``init_f``) has the penultimate representation D_R / D_NR are constructed from
    (:func:`~pertlearn.features.constructed.representation` of one training image)."""
    # networks are built on the CPU (then moved): the CPU's global random state is kept
    with torch.random.fork_rng(devices=[]):
        f = new_model(run, "f", run.config.model).eval()
    try:
        with torch.no_grad():
            representation(f, run.x_train[:1])
    except ValueError as err:
        raise ValueError(
            f"scenario {run.config.scenario!r} constructs its images from f's penultimate "
            f"representation, and {type(f).__name__} has none the pipeline can find ({err}); "
            "give the network a penultimate(x) method returning (N, D) features, or make it an "
            "nn.Sequential whose last child is the classifier"
        ) from None


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
